"""Wall time per decision of every method on the same problems, in one process, as ratios.

    python benchmarks/decision_time.py --families lin-er-20,lin-er-50 --seeds 3 --steps 10

For each family and seed the same problem is driven through the ask/tell loop by each method in
turn (one process, one thread, sequential, so the methods see the same machine load). Reports the
median time of one `ask` (the decision, inference included), the one-off setup time (e.g.
PARENT_SCALE's doubly robust prior), and each method's median per decision divided by the
amortized system's.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from acbo.bench.runner import make_problem, run_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="lin-er-20,lin-er-50")
    ap.add_argument("--methods", default="amortized,surrogate-ts,exact-ts,random,cbo-parents,parent_scale")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for fam in args.families.split(","):
        for seed in range(args.seeds):
            problem = make_problem(fam, seed)
            for m in args.methods.split(","):
                opts = {"horizon": args.steps} if m == "amortized" else {}
                out = run_method(problem, m, args.steps, opts)[0]
                for r in out[1:]:
                    rows.append({"family": fam, "d": problem.scm.d, "method": m, "time_s": r["time_s"],
                                 "setup_s": r["setup_s"]})
    df = pd.DataFrame(rows)
    print(f"torch threads: {torch.get_num_threads()}; {args.seeds} problems x {args.steps} decisions per family")
    print("| family | method | ms / decision (median) | setup s (mean) | x amortized (median) | x amortized (mean incl. setup / T) |")
    print("|---|---|---|---|---|---|")
    for fam, dff in df.groupby("family", sort=False):
        ref = dff[dff["method"] == "amortized"]
        ref_med, ref_all = ref["time_s"].median(), ref["time_s"].mean() + ref["setup_s"].mean() / args.steps
        for m, dm in dff.groupby("method", sort=False):
            med, all_in = dm["time_s"].median(), dm["time_s"].mean() + dm["setup_s"].mean() / args.steps
            print(f"| {fam} | {m} | {1000 * med:.2f} | {dm['setup_s'].mean():.2f} | {med / ref_med:.0f} | {all_in / ref_all:.0f} |")


if __name__ == "__main__":
    main()
