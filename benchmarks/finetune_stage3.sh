#!/usr/bin/env bash
# Stage 3, second phase: a trained stage-3 pair (benchmarks/train_stage3.sh) trained on in alternation
# on the whole training world (no curriculum: it passed every level in the first phase), with the
# primary reward alone (the best-so-far improvement; the reward ablations in BENCHMARKS.md found the
# other terms cost regret), validation on 64 campaigns in 4 batches of their own d.
#
#   bash benchmarks/finetune_stage3.sh INIT OUT [MINUTES] [DEVICE] [more acbo.e2e.train flags]
#
# The shipped pair (CPU, 2 cores; one thread, so a benchmark or the tests can share the machine):
#   bash benchmarks/train_stage3.sh runs/e2e-grid 90 cpu
#   OMP_NUM_THREADS=1 bash benchmarks/finetune_stage3.sh runs/e2e-grid/policy.pt runs/e2e-ft 75 cpu
# Resumable as the first phase: the same command again continues from the last checkpoint.
# A tiny run to try the script (CPU, seconds): SIZE=tiny bash benchmarks/finetune_stage3.sh INIT /tmp/ft 1 cpu
set -euo pipefail
INIT=${1:?policy checkpoint of a stage-3 pair}
OUT=${2:?output folder}
MINUTES=${3:-75}
DEVICE=${4:-cpu}
shift $(( $# < 4 ? $# : 4 ))
SIZE=${SIZE:-full}
PY=${PY:-python}
ARGS=(--init-pair "$INIT" --curriculum.levels 1 --run.steps 3000 --run.eval-every 25 --policy-optim.lr 1e-4
      --rewards.outcome 0 --rewards.info-gain 0 --rewards.parent 0 --val.campaigns 64 --val.chunks 4)
if [ "$SIZE" = tiny ]; then
  ARGS+=(--run.steps 4 --run.eval-every 2 --run.batch-size 4 --design.size 2 --design.horizon 2,3 --update.minibatch 16 --reward-mc 16
         --training-queries.vars 2 --training-queries.values 4 --val.campaigns 4 --val.chunks 2 --val.horizon 2 --val.mc 64)
elif [ "$DEVICE" != cpu ]; then
  ARGS+=(--run.batch-size 64 --design.size 8 --update.minibatch 1024 --val.campaigns 128)
fi
export PYTHONUNBUFFERED=1
"$PY" -m acbo.e2e.train --run.out "$OUT" --run.max-minutes "$MINUTES" --run.device "$DEVICE" "${ARGS[@]}" "$@"
