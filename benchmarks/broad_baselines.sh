#!/usr/bin/env bash
# Issue 10's table: the baselines and the current amortized system on test-broad and every shift
# family, T = 20 (the summary also reports T = 10), then the large families in their own folders
# (test-d50 with LARGE_SEEDS SCMs, test-d100 with half as many: the expert's time; 0: skip them). Resumable: run
# the same command again and finished (method, family, seed) tasks are kept; more seeds add seeds.
#   bash benchmarks/broad_baselines.sh [SEEDS] [WORKERS] [OUT] [LARGE_SEEDS]
#   python benchmarks/bench_summary.py OUT OUT-d50 OUT-d100
set -euo pipefail
SEEDS=${1:-50}
WORKERS=${2:-2}
OUT=${3:-runs/broad-bench}
LARGE_SEEDS=${4:-20}
METHODS=random,exact-ts,oracle,amortized,surrogate-ts,cbo-parents,parent_scale
# surrogate-ts reads the stage-1 surrogate (git show b98bf89:src/acbo/checkpoints/surrogate.pt >
# runs/stage1-surrogate.pt), the one the committed tasks in benchmarks/figures/broad-bench used
PIN=surrogate-ts.checkpoint=runs/stage1-surrogate.pt
acbo bench --methods "$METHODS" \
  --families test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded \
  --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT" --option "$PIN"
[ "$LARGE_SEEDS" -gt 0 ] || exit 0
acbo bench --methods "$METHODS" --families test-d50 --seeds "$LARGE_SEEDS" --steps 20 \
  --workers "$WORKERS" --out "$OUT-d50" --option "$PIN"
acbo bench --methods "$METHODS" --families test-d100 --seeds $((LARGE_SEEDS / 2)) --steps 20 \
  --workers "$WORKERS" --out "$OUT-d100" --option "$PIN"
