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
python -m acbo.surrogate.train --data.families train-broad,train-lin,train-broad,train-nonlin --run.steps 100000 \
  --run.max-minutes "$MINUTES" --run.batch-size 32 --data.n-obs 20,400 --n-int 0,20 --optim.lr "$LR" --init-surrogate "$INIT" --model.pair-bias true \
  --model.queries true --model.query-stats "$STATS" --loss.w-draw 1.0 --loss.w-mean 1.0 --training-queries.vars 4 --training-queries.values 8 --training-queries.mc 128 \
  --greedy 0.3 --val.family test-broad --val.buffers 64 --run.eval-every 100 --run.seed 0 --run.out "$OUT"
# then: python -c "from acbo.surrogate import export_checkpoint; export_checkpoint('$OUT/model.pt', 'src/acbo/checkpoints/surrogate.pt')"
