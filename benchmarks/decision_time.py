"""Wall time per decision of every method on the same problems, in one process, as ratios.

    python benchmarks/decision_time.py --families lin-er-20,nonlin-er-10,lin-er-50 --seeds 2 --steps 20

For each family and seed the same problem is driven through ask/tell by each method in turn
(one process, one thread, sequential, so the methods share the machine's load). Reported per
method: the mean time of one decision including its one-off setup spread over the T decisions
(PARENT_SCALE's doubly robust prior, for example), the setup alone, and the median time of the
model-based decisions only (PARENT_SCALE and CBO spend their first steps on a random initial
design, which costs nothing; their EI decisions are what a decision costs once they decide),
each also as a multiple of the amortized system's; then the same two ratios per problem (median
over the problems, and their range), since how long PARENT_SCALE takes depends on the problem.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from acbo.bench.runner import make_problem, with_problem_knowledge
from acbo.optimizer import CausalOptimizer
from acbo.seeding import generator


def campaign(problem, spec: str, steps: int) -> list[dict]:
    """spec: a method name, optionally with options, e.g. ``parent_scale:n_init=0``."""
    method, _, rest = spec.partition(":")
    opts = {"horizon": steps} if method == "amortized" else {}
    for kv in (x for x in rest.split(";") if x):
        k, v = kv.split("=", 1)
        opts[k] = int(v) if v.lstrip("-").isdigit() else v
    t0 = time.perf_counter()
    opt = CausalOptimizer(problem.frame, target="Y", method=method, seed=problem.seed,
                          **with_problem_knowledge(problem, method, opts))
    setup = time.perf_counter() - t0
    rows = []
    for t in range(steps):
        t0 = time.perf_counter()
        iv = opt.ask()
        dt = time.perf_counter() - t0
        phase = getattr(opt.method, "last_decision", {}).get("phase", "model")
        opt.tell(iv, problem.scm.run_experiment(iv, generator("test", "bench-outcome", problem.family, problem.seed, t + 1)), accept_outlier=True)
        rows.append({"seconds": dt, "phase": phase})
    setup = max(setup, opt.method.setup_seconds)
    return [{**r, "setup": setup} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="lin-er-20,nonlin-er-10,lin-er-50")
    ap.add_argument("--methods", default="amortized,surrogate-ts,exact-ts,random,cbo-parents,parent_scale",
                    help="method names, optionally NAME:key=value;key=value")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for fam in args.families.split(","):
        for seed in range(args.seeds):
            problem = make_problem(fam, seed)
            for m in args.methods.split(","):
                for r in campaign(problem, m, args.steps):
                    rows.append({"family": fam, "seed": seed, "method": m, **r})
    df = pd.DataFrame(rows)

    def figures(dm):
        """(mean s per decision incl. setup / T, setup s, model-based decisions, their median s)."""
        setup = dm.groupby("seed")["setup"].first().mean()
        model = dm.loc[~dm["phase"].isin(["init", "random"]), "seconds"]
        return dm["seconds"].mean() + setup / args.steps, setup, len(model), model.median() if len(model) else float("nan")

    print(f"torch threads: {torch.get_num_threads()}; {args.seeds} problems x {args.steps} decisions per family")
    print("| family | method | ms / decision (mean, incl. setup / T) | setup s | model-based decisions | ms / model-based decision (median) | x amortized (mean incl. setup) | x amortized (model-based) |")
    print("|---|---|---|---|---|---|---|---|")
    for fam, dff in df.groupby("family", sort=False):
        ref_all, _, _, ref_model = figures(dff[dff["method"] == "amortized"])
        for m, dm in dff.groupby("method", sort=False):
            all_in, setup, n_model, med = figures(dm)
            print(f"| {fam} | {m} | {1000 * all_in:.2f} | {setup:.2f} | {n_model}/{len(dm)} | {1000 * med:.2f} | "
                  f"{all_in / ref_all:.1f} | {med / ref_model:.1f} |")
    print("\nPer problem (the same campaign's figures as ratios), median over problems (min - max):")
    print("| family | method | x amortized (mean incl. setup) | x amortized (model-based median) |")
    print("|---|---|---|---|")
    for fam, dff in df.groupby("family", sort=False):
        per = {(m, seed): figures(d) for (m, seed), d in dff.groupby(["method", "seed"], sort=False)}
        for m in dff["method"].unique():
            r_all = pd.Series([per[m, s][0] / per["amortized", s][0] for s in range(args.seeds)])
            r_med = pd.Series([per[m, s][3] / per["amortized", s][3] for s in range(args.seeds)])
            print(f"| {fam} | {m} | {r_all.median():.1f} ({r_all.min():.1f} - {r_all.max():.1f}) | "
                  f"{r_med.median():.1f} ({r_med.min():.1f} - {r_med.max():.1f}) |")


if __name__ == "__main__":
    main()
