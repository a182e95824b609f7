#!/usr/bin/env bash
# The shipped policy and its two siblings: three stage-2 runs side by side on one GPU, reading
# the surrogate trained by benchmarks/train_gpu.sh (the shipped surrogate.pt).
#
#   SURROGATE=runs/gpu1/surrogate/model.pt OUT=runs/gpu2 bash benchmarks/train_policies_gpu.sh
#
#   cand    GRPO, per-candidate groups (shipped as src/acbo/checkpoints/policy.pt)
#   traj    GRPO, trajectory groups
#   bccand  BC warm start on the expert's demonstrations ($DEMOS), then GRPO with a KL to it
set -u
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-4.2}
OUT=${OUT:?set OUT}
DEMOS=${DEMOS:-runs/demos-bc}
SURROGATE=${SURROGATE:-runs/gpu1/surrogate/model.pt}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LIMIT=$("$PY" -c "print(int(60 * $MINUTES + 60))")
C="--run.device $DEVICE --run.steps 100000 --run.max-minutes $MINUTES --run.batch-size 64 --design.size 8 --update.minibatch 512
   --run.eval-every 50 --val.campaigns 64 --val.family lin-er-20 --update.entropy-coef 0.003 --surrogate $SURROGATE"
timeout "$LIMIT" "$PY" -m acbo.policy.train $C --run.out "$OUT/cand" > /dev/null 2>&1 &
timeout "$LIMIT" "$PY" -m acbo.policy.train $C --run.out "$OUT/traj" --design.mode trajectory > /dev/null 2>&1 &
timeout "$LIMIT" "$PY" -m acbo.policy.train $C --run.out "$OUT/bccand" --bc.folder "$DEMOS" --bc.steps 300 --update.beta 0.01 > "$OUT/bccand.out" 2>&1 &
wait
# then: python -c "from acbo.policy.checkpoint import export_policy; export_policy('$OUT/cand/policy.pt', 'src/acbo/checkpoints/policy.pt')"
