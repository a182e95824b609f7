#!/usr/bin/env bash
# Issue 10's table: the baselines and the current amortized system on test-broad and every shift
# family, T = 20 (the summary also reports T = 10), then the family report. Resumable: run the same
# command again and finished (method, family, seed) tasks are kept; a larger SEEDS adds seeds.
#   bash benchmarks/broad_baselines.sh [SEEDS] [WORKERS] [OUT]
set -euo pipefail
SEEDS=${1:-50}
WORKERS=${2:-2}
OUT=${3:-runs/broad-bench}
# surrogate-ts reads the stage-1 surrogate (git show b98bf89:src/acbo/checkpoints/surrogate.pt >
# runs/stage1-surrogate.pt), the one the committed tasks in benchmarks/figures/broad-bench used
acbo bench --methods random,exact-ts,oracle,amortized,surrogate-ts,cbo-parents,parent_scale \
  --families test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded \
  --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT" --option surrogate-ts.checkpoint=runs/stage1-surrogate.pt
