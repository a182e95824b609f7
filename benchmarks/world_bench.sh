#!/usr/bin/env bash
# Issue 28's regret table: the shipped pair reading the conditioned world model (`amortized`), the
# pair shipped before it (the same weights reading the network's own answer; OLD, a policy file),
# and `surrogate-ei`, on test-broad, test-shapes and every shift family (SEEDS SCMs each, T = 20;
# LARGE_SEEDS at d = 50, half as many at d = 100); `parent_scale` and `random` on test-shapes (the
# other families' rows are the committed tasks of issue 10, benchmarks/figures/broad-bench*, the
# same SCMs). Resumable (finished tasks are kept).
#   bash benchmarks/world_bench.sh OLD_POLICY [SEEDS] [WORKERS] [OUT] [LARGE_SEEDS]
set -euo pipefail
OLD=$1
SEEDS=${2:-50}
WORKERS=${3:-2}
OUT=${4:-runs/world-bench}
LARGE_SEEDS=${5:-20}
FAMS=test-broad,test-shapes,test-interactions,test-heavy-tail,test-wide-domains,test-confounded
acbo bench --methods amortized,surrogate-ei --families "$FAMS" --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT"
acbo bench --methods amortized --families "$FAMS" --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT-old" \
  --option "amortized.checkpoint=$OLD"
acbo bench --methods parent_scale,random --families test-shapes --seeds "$SEEDS" --steps 20 --workers "$WORKERS" \
  --out "$OUT-shapes-baselines"
[ "$LARGE_SEEDS" -gt 0 ] || exit 0
for D in 50 100; do
  N=$([ "$D" = 50 ] && echo "$LARGE_SEEDS" || echo $((LARGE_SEEDS / 2)))
  acbo bench --methods amortized,surrogate-ei --families "test-d$D" --seeds "$N" --steps 20 --workers "$WORKERS" \
    --out "$OUT-d$D"
  acbo bench --methods amortized --families "test-d$D" --seeds "$N" --steps 20 --workers "$WORKERS" --out "$OUT-d$D-old" \
    --option "amortized.checkpoint=$OLD"
done
# then:
#   python benchmarks/bench_summary.py $OUT $OUT-old $OUT-shapes-baselines benchmarks/figures/broad-bench \
#     --rename $OUT-old:amortized:"amortized (before)" --paired parent_scale,random,"amortized (before)"
