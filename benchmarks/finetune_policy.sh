#!/usr/bin/env bash
# Stage 2 from the shipped pair, a recipe at a time: what train_sets.sh and train_costs.sh share (the
# starting pair, the run length and cadence, the sizes per machine). Called by them:
#
#   bash benchmarks/finetune_policy.sh OUT MINUTES DEVICE RECIPE_FLAGS... [-- more acbo.policy.train flags]
#
# Sizes: SIZE=tiny (a minute's try on the CPU), else the CPU box's or one GPU's (by DEVICE). The flags
# after -- come last, so they override the recipe's.
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:?minutes}
DEVICE=${3:?device}
shift 3
RECIPE=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do RECIPE+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the --
SIZE=${SIZE:-full}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
ARGS=(--init-policy "$HERE/src/acbo/checkpoints/policy.pt" --run.steps 100000 "${RECIPE[@]}" --val.horizon 10
      --run.eval-every 20)
if [ "$SIZE" = tiny ]; then
  ARGS+=(--run.batch-size 4 --design.size 4 --design.horizon 3,3 --val.campaigns 4 --val.horizon 3 --run.eval-every 2
         --rewards.mc 32)
elif [ "$DEVICE" = cpu ]; then
  ARGS+=(--run.batch-size 16 --design.size 8 --design.horizon 10,12 --val.campaigns 32)
else
  ARGS+=(--run.batch-size 64 --design.size 8 --design.horizon 10,12 --update.minibatch 1024 --val.campaigns 64)
fi
export PYTHONUNBUFFERED=1
"$PY" -m acbo.policy.train --run.out "$OUT" --run.max-minutes "$MINUTES" --run.device "$DEVICE" "${ARGS[@]}" "$@"
