#!/usr/bin/env bash
# Issue 13's table: the shipped stage-3 pair (`amortized`), `surrogate-ei` on the same world model,
# and the untrained grid policy on it (`ei-prop`: cells sampled in proportion to the world model's
# expected improvement, what the policy starts from), on test-broad and every shift family
# (SEEDS SCMs each, T = 20), then test-d50 / test-d100 (LARGE_SEEDS, half as many at d = 100);
# `amortized` also as a T = 10 campaign (horizon 10). The other methods' rows are the committed
# tasks of issue 10 (benchmarks/figures/broad-bench*: the same SCMs, seeds 0..), so the summary pairs
# every method with parent_scale problem by problem. Resumable (finished tasks are kept).
#   bash benchmarks/stage3_bench.sh [SEEDS] [WORKERS] [OUT] [LARGE_SEEDS]
set -euo pipefail
SEEDS=${1:-50}
WORKERS=${2:-2}
OUT=${3:-runs/s3-bench}
LARGE_SEEDS=${4:-20}
PY=${PY:-python}
FAMS=test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded
# the untrained grid policy, paired with the shipped surrogate
"$PY" - "$OUT-ei-prop" <<'EOF'
import sys
from dataclasses import asdict

import torch
from acbo.policy.checkpoint import save_policy
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.checkpoint import load_pretrained_policy
shipped, surrogate = load_pretrained_policy()
torch.manual_seed(0)
save_policy(f"{sys.argv[1]}/policy.pt", Policy(PolicyConfig(**asdict(shipped.cfg))), surrogate, 0,
            {"note": "untrained: (variable, cell) sampled in proportion to the world model's EI"})
EOF
acbo bench --methods amortized,surrogate-ei --families "$FAMS" --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT"
acbo bench --methods amortized --families "$FAMS" --seeds "$SEEDS" --steps 10 --workers "$WORKERS" --out "$OUT-T10" \
  --option amortized.horizon=10
acbo bench --methods amortized --families "$FAMS" --seeds "$SEEDS" --steps 20 --workers "$WORKERS" --out "$OUT-ei-prop-bench" \
  --option "amortized.checkpoint=$OUT-ei-prop/policy.pt"
[ "$LARGE_SEEDS" -gt 0 ] || exit 0
acbo bench --methods amortized,surrogate-ei --families test-d50 --seeds "$LARGE_SEEDS" --steps 20 --workers "$WORKERS" \
  --out "$OUT-d50"
acbo bench --methods amortized,surrogate-ei --families test-d100 --seeds $((LARGE_SEEDS / 2)) --steps 20 \
  --workers "$WORKERS" --out "$OUT-d100"
# then:
#   python benchmarks/bench_summary.py benchmarks/figures/broad-bench $OUT $OUT-ei-prop-bench \
#     --rename benchmarks/figures/broad-bench:amortized:"amortized (stage 1+2)" \
#     --rename $OUT:amortized:"amortized (stage 3)" --rename $OUT-ei-prop-bench:amortized:ei-prop --paired parent_scale
