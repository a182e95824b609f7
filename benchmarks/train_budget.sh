#!/usr/bin/env bash
# A policy that reads costs and the budget left (issue 29, item 6), trained on campaigns that end when a
# budget in cost units is spent: the shipped pair with a cost head (the per-unit rule's weight, starting
# at 1, and a learned correction, starting at 0), fine-tuned with GRPO on trajectory groups (8 copies of
# each campaign rolled out independently) of simulated campaigns whose settable variables cost
# log-uniform in [1, 10] and whose budget is T of their mean costs (T from 10 to 12; at most 3 T
# experiments), each drawing only what its allowance pays for. A trajectory's return is the improvement
# of the best E[Y | do] by the budget's end (no other reward term), so what a cheaper experiment buys
# counts. Only the head is trained (every decision without costs stays the shipped pair's), on
# train-broad and train-shapes, validated on train-broad's test stream at a budget of 10 mean costs (the
# held-out test-broad and test-shapes are only benchmarked afterwards, with benchmarks/cost_bench.py).
#
#   bash benchmarks/train_budget.sh OUT [MINUTES] [DEVICE] [more acbo.policy.train flags]
#
# CPU (2 cores): bash benchmarks/train_budget.sh runs/policy-budget 50 cpu
#   resumable: run the same command again after an interruption and it continues from the last
#   checkpoint (every 20 iterations) until MINUTES of training in all.
# One GPU, 10 minutes: bash benchmarks/train_budget.sh OUT 9 cuda   (more campaigns per iteration)
# A tiny run to try the script (CPU, about a minute): SIZE=tiny bash benchmarks/train_budget.sh /tmp/budget 1 cpu
# Then: python benchmarks/cost_bench.py --methods amortized,amortized:checkpoint=OUT/policy.pt ...
# The recipe is train_costs.sh's (families, costs, the head alone, its learning rate, the validation
# family) with campaigns that end at their budget and a return of the improvement alone.
set -euo pipefail
OUT=${1:?output folder}
exec bash "$(dirname "$0")/train_costs.sh" "$OUT" "${2:-50}" "${3:-cpu}" --design.budget true --design.mode trajectory \
  --rewards.improvement 1 --rewards.outcome 0 --rewards.parent 0 --rewards.info-gain 0 --rewards.cost 0 "${@:4}"
