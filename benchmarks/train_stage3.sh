#!/usr/bin/env bash
# Stage 3, the shipped pair's recipe: a new policy that reads the world model (16 grid points per
# variable) trained end to end with the shipped world-model surrogate on the train-broad curriculum.
#
#   bash benchmarks/train_stage3.sh OUT [MINUTES] [DEVICE] [more acbo.e2e.train flags, e.g. --surrogate PATH]
#
# CPU (2 cores, the shipped pair): bash benchmarks/train_stage3.sh runs/e2e-grid 90 cpu
#   background-friendly and resumable in pieces: run the same command again after an interruption and
#   it continues from the last checkpoint (every 25 rounds) until MINUTES of training in all.
# One GPU, 10 minutes: bash benchmarks/train_stage3.sh OUT 9 cuda   (more campaigns per round)
# A tiny run to try the script (CPU, seconds): SIZE=tiny bash benchmarks/train_stage3.sh /tmp/s3 1 cpu
# Then ship the pair: python -c "from acbo.policy.checkpoint import export_policy; export_policy('OUT/policy.pt',
#   'src/acbo/checkpoints/policy.pt')"  (copies OUT/surrogate.pt beside it: the pair).
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-90}
DEVICE=${3:-cpu}
shift $(( $# < 3 ? $# : 3 ))
SIZE=${SIZE:-full}
PY=${PY:-python}
ARGS=(--policy.grid 16 --run.steps 3000 --run.eval-every 25 --policy-optim.lr 3e-4)
if [ "$SIZE" = tiny ]; then
  ARGS=(--policy.grid 4 --run.steps 4 --run.eval-every 2 --run.batch-size 4 --design.size 2 --design.horizon 2,3 --update.minibatch 16 --reward-mc 16
        --training-queries.vars 2 --training-queries.values 4 --val.campaigns 4 --val.horizon 2 --val.mc 64 --curriculum.max-steps 2)
elif [ "$DEVICE" != cpu ]; then
  ARGS+=(--run.batch-size 64 --design.size 8 --update.minibatch 1024 --val.campaigns 64)
fi
export PYTHONUNBUFFERED=1
"$PY" -m acbo.e2e.train --run.out "$OUT" --run.max-minutes "$MINUTES" --run.device "$DEVICE" "${ARGS[@]}" "$@"
