#!/usr/bin/env bash
# A policy that reads costs (issue 29, item 6): the shipped pair with a cost head (the per-unit rule's
# weight, starting at 1, and a learned correction, starting at 0), fine-tuned with GRPO on simulated
# campaigns whose settable variables cost log-uniform in [1, 10] (drawn per campaign from the train
# stream), with a reward term of minus each experiment's cost over the campaign's mean cost (0.1),
# only the head trained (so every decision without costs stays the shipped pair's), on train-broad
# and train-shapes, validated on train-broad's test stream (the held-out test-broad and test-shapes
# are only benchmarked afterwards, with benchmarks/cost_bench.py).
#
#   bash benchmarks/train_costs.sh OUT [MINUTES] [DEVICE] [more acbo.policy.train flags]
#
# CPU (2 cores): bash benchmarks/train_costs.sh runs/policy-costs 50 cpu
#   resumable: run the same command again after an interruption and it continues from the last
#   checkpoint (every 20 iterations) until MINUTES of training in all.
# One GPU, 10 minutes: bash benchmarks/train_costs.sh OUT 9 cuda   (more campaigns per iteration)
# A tiny run to try the script (CPU, about a minute): SIZE=tiny bash benchmarks/train_costs.sh /tmp/costs 1 cpu
# Then: python benchmarks/cost_bench.py --methods amortized,amortized:checkpoint=OUT/policy.pt ...
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-50}
DEVICE=${3:-cpu}
shift $(( $# < 3 ? $# : 3 ))
exec bash "$(dirname "$0")/finetune_policy.sh" "$OUT" "$MINUTES" "$DEVICE" --data.families train-broad,train-shapes --design.costs 1,10 --trainable cost_head \
  --rewards.cost 0.1 --optim.lr 3e-3 --val.family train-broad -- "$@"
