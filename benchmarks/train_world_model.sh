#!/usr/bin/env bash
# The shipped world model, on a CPU: a surrogate (parent head, pair path) fine-tuned with the
# world-model head, half its batches from the broad world, half classic, for a wall-time budget
# (resumable: run the same command again to continue an interrupted run).
#   bash benchmarks/train_world_model.sh OUT MINUTES INIT [QUERY_STATS] [LR]
# The shipped checkpoint was trained in two pieces (BENCHMARKS.md, "The world model"):
#   git show b98bf89:src/acbo/checkpoints/surrogate.pt > runs/stage1-surrogate.pt   # the stage-1 surrogate
#   bash benchmarks/train_world_model.sh runs/world-model 110 runs/stage1-surrogate.pt false 3e-4   # stopped at step 1000
#   bash benchmarks/train_world_model.sh runs/world-model-stats 65 runs/world-model/model.pt true 6e-4
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:?minutes}
INIT=${3:?init checkpoint}
STATS=${4:-true}
LR=${5:-6e-4}
python -m acbo.surrogate.train --families train-broad,train-lin,train-broad,train-nonlin --steps 100000 \
  --max-minutes "$MINUTES" --batch-size 32 --n-obs 20,400 --n-int 0,20 --lr "$LR" --init "$INIT" --pair-bias true \
  --queries true --query-stats "$STATS" --w-draw 1.0 --w-mean 1.0 --query-vars 4 --query-values 8 --query-mc 128 \
  --greedy 0.3 --val-family test-broad --val-buffers 64 --eval-every 100 --seed 0 --out "$OUT"
# then: python -c "from acbo.surrogate import export_checkpoint; export_checkpoint('$OUT/model.pt', 'src/acbo/checkpoints/surrogate.pt')"
