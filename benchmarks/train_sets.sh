#!/usr/bin/env bash
# Set actions (issue 29, item 4): the shipped pair fine-tuned with GRPO on experiments of one or two
# variables (stage 2 with --design.max-set 2: the policy's first member, the world model's partner or
# stop, the policy's new stop head; a cost of 0.02 per variable set) on train-joint, validated on
# train-joint's test stream (test-joint, the held-out family, is only benchmarked afterwards).
#
#   bash benchmarks/train_sets.sh OUT [MINUTES] [DEVICE] [more acbo.policy.train flags]
#
# CPU (2 cores): bash benchmarks/train_sets.sh runs/policy-sets 60 cpu
#   resumable: run the same command again after an interruption and it continues from the last
#   checkpoint (every 20 iterations) until MINUTES of training in all.
# One GPU, 10 minutes: bash benchmarks/train_sets.sh OUT 9 cuda   (more campaigns per iteration)
# A tiny run to try the script (CPU, about a minute): SIZE=tiny bash benchmarks/train_sets.sh /tmp/sets 1 cpu
# Then benchmark it against the shipped pair on test-joint (benchmarks/sets_bench.py with
#   --methods amortized,amortized:checkpoint=OUT/policy.pt).
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-60}
DEVICE=${3:-cpu}
shift $(( $# < 3 ? $# : 3 ))
exec bash "$(dirname "$0")/finetune_policy.sh" "$OUT" "$MINUTES" "$DEVICE" --data.families train-joint --design.max-set 2 --rewards.cost 0.02 --optim.lr 1e-4 \
  --update.entropy-coef 0.003 --val.family train-joint -- "$@"
