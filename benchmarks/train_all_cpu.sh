#!/usr/bin/env bash
# Everything from scratch on a CPU in one command: a surrogate with the world-model head trained from a
# random initialisation, then stage 3 (a new grid policy and that surrogate, alternating) on the
# train-broad curriculum, then stage 3's second phase on train-broad itself. No expert, no GPU, no
# packaged weights are read.
#
#   bash benchmarks/train_all_cpu.sh OUT [MINUTES]
#
# MINUTES (default 120) is split 40 % / 40 % / 20 % between the three stages. Background-friendly and
# resumable in pieces: run the same command again after an interruption; a finished stage is skipped
# (OUT/<stage>.done), an interrupted one continues from its last checkpoint with the same data stream.
# The measured runs (BENCHMARKS.md, "Stage 3 from scratch on a CPU"): one thread of the 2-core box,
#   OMP_NUM_THREADS=1 nohup bash benchmarks/train_all_cpu.sh runs/from-scratch 120 > runs/from-scratch.out &
# and both cores (torch's default; against the one-thread run, on another box: 2.0x the surrogate's steps
# and 1.4x stage 3's rounds per minute):
#   nohup bash benchmarks/train_all_cpu.sh runs/from-scratch-2t 105 > runs/from-scratch-2t.out &
# The pair it ends with: OUT/stage3-ft/policy.pt (+ surrogate.pt beside it), for
#   acbo bench --methods amortized --option amortized.checkpoint=OUT/stage3-ft/policy.pt ...
# A tiny run to try the script (CPU, about a minute): SIZE=tiny bash benchmarks/train_all_cpu.sh /tmp/all 1
set -euo pipefail
OUT=${1:?output folder}
MINUTES=${2:-120}
SIZE=${SIZE:-full}
PY=${PY:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
export SIZE PY PYTHONUNBUFFERED=1
mkdir -p "$OUT"
share() { "$PY" -c "print(round($MINUTES * $1, 3))"; }

stage() {  # name, command...: run once to the end, then mark done
  local name=$1; shift
  if [ -e "$OUT/$name.done" ]; then echo "[$(date -u +%T)] $name: done before, skipped"; return; fi
  echo "[$(date -u +%T)] $name: $*"
  "$@"
  touch "$OUT/$name.done"
}

SURROGATE=(--data.families train-broad,train-lin,train-broad,train-nonlin --run.steps 100000 --run.batch-size 32
           --data.n-obs 20,400 --n-int 0,20 --optim.lr 3e-4 --model.pair-bias true --model.queries true --model.query-stats true
           --training-queries.vars 4 --training-queries.values 8 --training-queries.mc 128 --greedy 0.3
           --val.family test-broad --val.buffers 64 --run.eval-every 100)
if [ "$SIZE" = tiny ]; then
  SURROGATE+=(--steps 3 --batch-size 4 --n-obs 20,40 --query-mc 16 --val-buffers 4 --eval-every 2)
fi
stage surrogate "$PY" -m acbo.surrogate.train "${SURROGATE[@]}" --run.max-minutes "$(share 0.4)" --run.seed 0 \
  --run.out "$OUT/surrogate"
stage stage3 bash "$HERE/train_stage3.sh" "$OUT/stage3" "$(share 0.4)" cpu --surrogate "$OUT/surrogate/model.pt"
stage stage3-ft bash "$HERE/finetune_stage3.sh" "$OUT/stage3/policy.pt" "$OUT/stage3-ft" "$(share 0.2)" cpu
echo "[$(date -u +%T)] the pair: $OUT/stage3-ft/policy.pt + $OUT/stage3-ft/surrogate.pt"
