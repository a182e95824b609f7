#!/usr/bin/env bash
# Stage-1 and stage-2 training runs, side by side on one GPU (or CPU with DEVICE=cpu).
#
#   DEVICE=cuda MINUTES=6 OUT=/tmp/out bash benchmarks/train_gpu.sh
#
# Runs (each under $WORK/<name>, packed into $OUT/*.tgz at the end):
#   surrogate      stage 1, ground-truth loss, batch 128, time-budgeted
#   grpo-cand      GRPO, per-candidate groups, all reward components
#   grpo-traj      GRPO, trajectory groups
#   bc-grpo-cand   BC warm start on the expert's demonstrations, then GRPO with a KL to the BC policy
#   bc-only        BC alone
#   cand-no-info / cand-no-parent / cand-no-improvement / cand-improvement-only: reward ablations
# The policies read the shipped surrogate (src/acbo/checkpoints/surrogate.pt), which each
# policy checkpoint embeds. The recorded run (BENCHMARKS.md, "v1") read the CPU-trained surrogate
# shipped at commit a80661e; since then the shipped one is this script's own GPU-trained surrogate. Demonstrations are read from $DEMOS (made by `acbo demos`).
set -u
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-6}
OUT=${OUT:?set OUT}
DEMOS=${DEMOS:-runs/demos-bc}
WORK=${WORK:-/tmp/acbo-train}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$OUT"
B=64
if [ "$DEVICE" = cpu ]; then B=8; fi
LIMIT=$("$PY" -c "print(int(60 * $MINUTES + 90))")   # hard stop per run, so packing always happens

policy() {  # name, extra flags
  local name=$1; shift
  timeout "$LIMIT" "$PY" -m acbo.policy.train --device "$DEVICE" --out "$WORK/$name" --iterations 100000 \
    --max-minutes "$MINUTES" --batch-size "$B" --group-size 8 --minibatch 512 --val-every 50 --val-campaigns 64 \
    --val-family lin-er-20 --entropy-coef 0.003 "$@" > "$WORK/$name.out" 2>&1 &
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
timeout "$LIMIT" "$PY" -m acbo.surrogate.train --device "$DEVICE" --out "$WORK/surrogate" --steps 100000 \
  --max-minutes "$MINUTES" --batch-size $((B * 2)) --eval-every 250 > "$WORK/surrogate.out" 2>&1 &
policy grpo-cand
policy grpo-traj --mode trajectory
policy bc-grpo-cand --bc-demos "$DEMOS" --bc-steps 300 --beta 0.01
policy bc-only --bc-demos "$DEMOS" --bc-steps 1500 --iterations 0
policy cand-no-info --w-info-gain 0
policy cand-no-parent --w-parent 0
policy cand-no-improvement --w-improvement 0
policy cand-improvement-only --w-outcome 0 --w-info-gain 0 --w-parent 0
sleep 20; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
wait
for f in "$WORK"/*.out; do echo "== $f"; tail -n 3 "$f" | cut -c1-400; done
cd "$WORK"
tar czf "$OUT/surrogate.tgz" surrogate surrogate.out
tar czf "$OUT/policies-a.tgz" grpo-cand grpo-traj bc-grpo-cand bc-only ./grpo-cand.out ./grpo-traj.out ./bc-grpo-cand.out ./bc-only.out
tar czf "$OUT/policies-b.tgz" cand-no-info cand-no-parent cand-no-improvement cand-improvement-only ./cand-*.out
ls -la "$OUT"
