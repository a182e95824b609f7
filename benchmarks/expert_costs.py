"""Wall time of the PARENT_SCALE expert: the doubly robust prior and one decision.

    python benchmarks/expert_costs.py [--dims 10,20,50] [--variants dr2-mlp,dr1-mlp,dr2-ridge,dr1-ridge]
                                      [--steps 12] [--mlp2-bootstrap 10,1,1]

For each d: one linear-Gaussian ER SCM (test stream, 200 observational rows). Prints the DR
prior's wall time per variant (B = 10 bootstraps, K = 5 folds; mlp = 3 x 200 ReLU with early
stopping; the published dr2-mlp trains B x K x d networks, so --mlp2-bootstrap can give it fewer
bootstraps per d: its cost is linear in B, the table says which B ran), with the number of candidate sets it returns and the prior mass on the true set; then
a parent_scale campaign (dr2-ridge prior, linear set posterior) of --steps interventions: the
median wall time of an initial-design decision and of an EI decision. Everything runs in this
process on the CPU (torch's default threads).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

from acbo import CausalOptimizer
from acbo.experts import DRConfig, fit_dr_prior
from acbo.scm import get_family
from acbo.seeding import generator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="10,20,50")
    ap.add_argument("--variants", default="dr2-mlp,dr1-mlp,dr2-ridge,dr1-ridge")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--mlp2-bootstrap", default="10,1,1", help="B for dr2-mlp at each d")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("\n| d | DR prior variant | B | seconds | candidate sets | prior mass on true set |")
    print("|---|---|---|---|---|---|")
    problems = {}
    dims = [int(x) for x in args.dims.split(",")]
    b_mlp2 = dict(zip(dims, (int(b) for b in args.mlp2_bootstrap.split(","))))
    for d in dims:
        fam = get_family("lin-er-10").with_(d_range=(d, d))
        g = generator("test", "expert-costs", d)
        scm = fam.sample(g)
        x = scm.sample(200, g)[0].double()
        truth = scm.parents()[0]
        problems[d] = (scm, x)
        for name in args.variants.split(","):
            variant, regressor = name.split("-")
            B = b_mlp2.get(d, 10) if name == "dr2-mlp" else 10
            cfg = DRConfig(variant=variant, regressor=regressor, n_bootstrap=B)
            prior = fit_dr_prior(x, int(scm.target[0]), generator("prior", d), cfg)
            mass = float(prior.probs[(prior.sets == truth).all(1)].sum())
            print(f"| {d} | {name} | {B} | {prior.seconds:.2f} | {len(prior.probs)} | {mass:.2f} |", flush=True)

    print(f"\n| d | decisions (T = {args.steps}) | init-design decision, median s | EI decision, median s | EI decisions |")
    print("|---|---|---|---|---|")
    for d, (scm, x) in problems.items():
        names = scm.names()
        opt = CausalOptimizer(pd.DataFrame(x.numpy(), columns=names), method="parent_scale", seed=0)
        opt.posterior()  # the prior, outside the decision timings
        init, ei = [], []
        for t in range(args.steps):
            t0 = time.perf_counter()
            iv = opt.ask()
            dt = time.perf_counter() - t0
            (init if opt.method.last_decision["phase"] == "init" else ei).append(dt)
            opt.tell(iv, scm.run_experiment(iv, generator("expert-costs-outcome", d, t)), accept_outlier=True)
        med = lambda xs: f"{statistics.median(xs):.3f}" if xs else "–"
        print(f"| {d} | {args.steps} | {med(init)} | {med(ei)} | {len(ei)} |", flush=True)


if __name__ == "__main__":
    main()
