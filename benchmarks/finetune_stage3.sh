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
ARGS=(--init "$INIT" --levels 1 --rounds 3000 --val-every 25 --policy-lr 1e-4
      --w-outcome 0 --w-info-gain 0 --w-parent 0 --val-campaigns 64 --val-chunks 4)
if [ "$SIZE" = tiny ]; then
  ARGS+=(--rounds 4 --val-every 2 --batch-size 4 --group-size 2 --horizon 2,3 --minibatch 16 --reward-mc 16
         --query-vars 2 --query-values 4 --val-campaigns 4 --val-chunks 2 --val-horizon 2 --val-mc 64)
elif [ "$DEVICE" != cpu ]; then
  ARGS+=(--batch-size 64 --group-size 8 --minibatch 1024 --val-campaigns 128)
fi
export PYTHONUNBUFFERED=1
"$PY" -m acbo.e2e.train --out "$OUT" --max-minutes "$MINUTES" --device "$DEVICE" "${ARGS[@]}" "$@"
