#!/usr/bin/env bash
# Reward-term ablations of stage 3: the shipped recipe (benchmarks/train_stage3.sh) for MINUTES each
# on one CPU thread, one run after another, each with one reward term (or all but improvement) off;
# then each exported policy on test-broad (50 SCMs, T = 20) and the table:
#   bash benchmarks/stage3_ablations.sh [MINUTES] [PREFIX]
#   python benchmarks/bench_summary.py PREFIX-bench-* --paired ...   (see BENCHMARKS.md, stage 3)
set -u
MINUTES=${1:-15}
PREFIX=${2:-runs/abl}
PY=${PY:-python}
for v in "full" "no-info --w-info-gain 0" "no-parent --w-parent 0" "no-improvement --w-improvement 0" \
         "improvement-only --w-outcome 0 --w-info-gain 0 --w-parent 0"; do
  set -- $v; name=$1; shift
  OMP_NUM_THREADS=1 "$PY" -m acbo.e2e.train --run.out "$PREFIX-$name" --policy.grid 16 --run.steps 3000 --run.max-minutes "$MINUTES" \
    --run.eval-every 25 --policy-optim.lr 3e-4 "$@" > "$PREFIX-$name.log" 2>&1
done
for name in full no-info no-parent no-improvement improvement-only; do
  OMP_NUM_THREADS=1 acbo bench --methods amortized --families test-broad --seeds 50 --steps 20 --workers 1 \
    --out "$PREFIX-bench-$name" --option "amortized.checkpoint=$PREFIX-$name/policy.pt" > /dev/null
done
