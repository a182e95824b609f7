"""Ablation of the stage-1 loss mix: true parents only vs true parents + exact-posterior
distillation, same data, steps and seed.

    python benchmarks/surrogate_ablation.py [--steps 300] [--w-exact 0,1] [--buffers 200]
        [--demos DIR --demo-every 4 --w-expert 1]

Each setting trains a surrogate from scratch on ``train-lin`` (linear ER/SF, d = 5-20) for
``--steps`` steps of 32 buffers, then is scored on held-out lin-er-20 and lin-sf-20 buffers
(n_obs = 200, 5 interventions) next to the exact posterior. With ``--demos``, every
``--demo-every``-th step trains on the expert's demonstration buffers instead, with the expert's
posterior as an extra distillation target (weight ``--w-expert``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from acbo.surrogate.evaluate import evaluate, summarise
from acbo.surrogate.train import SurrogateTrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--w-exact", default="0,1")
    ap.add_argument("--buffers", type=int, default=200)
    ap.add_argument("--out", default="runs/surrogate-ablation")
    ap.add_argument("--demos", default="")
    ap.add_argument("--demo-every", type=int, default=0)
    ap.add_argument("--w-expert", type=float, default=0.0)
    args = ap.parse_args()
    rows = []
    for w in (float(x) for x in args.w_exact.split(",")):
        tag = f"w_exact_{w:g}" + (f"_demos{args.demo_every}_w_expert_{args.w_expert:g}" if args.demos else "")
        cfg = SurrogateTrainConfig(families=("train-lin",), steps=args.steps, w_exact=w, lr=1e-3,
                                   eval_every=args.steps, out=str(Path(args.out) / tag), demos=args.demos,
                                   demo_every=args.demo_every, w_expert=args.w_expert)
        model = train(cfg, log=lambda s: None)
        for fam in ("lin-er-20", "lin-sf-20"):
            s = summarise(evaluate(model, fam, n_buffers=args.buffers, n_int=5, expert=False))
            s.insert(0, "w_exact", w)
            s.insert(1, "demo_every", args.demo_every)
            s.insert(2, "w_expert", args.w_expert)
            rows.append(s)
    table = pd.concat(rows).drop(columns=["ms_per_buffer"])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
