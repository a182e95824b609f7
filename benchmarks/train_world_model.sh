#!/usr/bin/env bash
# The shipped world model, on a CPU: the shipped surrogate (parent head, pair path) fine-tuned
# with the world-model head added, half its batches from the broad world, half classic, for a
# wall-time budget (resumable: run the same command again to continue an interrupted run).
#   bash benchmarks/train_world_model.sh [OUT] [MINUTES]
set -euo pipefail
OUT=${1:-runs/world-model}
MINUTES=${2:-100}
python -m acbo.surrogate.train --families train-broad,train-lin,train-broad,train-nonlin --steps 100000 \
  --max-minutes "$MINUTES" --batch-size 32 --n-obs 20,400 --n-int 0,20 --lr 3e-4 --init pretrained --pair-bias true \
  --queries true --w-draw 1.0 --w-mean 1.0 --query-vars 4 --query-values 8 --query-mc 128 --greedy 0.3 \
  --val-family test-broad --val-buffers 64 --eval-every 100 --seed 0 --out "$OUT"
# then: python -c "from acbo.surrogate import export_checkpoint; export_checkpoint('$OUT/model.pt', 'src/acbo/checkpoints/surrogate.pt')"
