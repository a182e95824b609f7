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
SIZE=${SIZE:-full}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
ARGS=(--init-policy "$HERE/src/acbo/checkpoints/policy.pt" --data.families train-broad,train-shapes --run.steps 100000
      --design.costs 1,10 --trainable cost_head --rewards.cost 0.1 --optim.lr 3e-3
      --val.family train-broad --val.horizon 10 --run.eval-every 20)
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
