"""Does choosing per unit cost pay? Methods told the costs against the same methods not told them,
compared at equal spend.

    python benchmarks/cost_bench.py --out runs/cost-bench [--families test-broad,test-shapes]
        [--seeds 50] [--budget 10] [--methods amortized,exact-ts] [--workers 2]

A method may carry options, ``name:key=value[:key=value]`` (e.g. ``amortized:cost_rule=ei``). A
cost-blind ``amortized`` plans for the experiments the budget buys at the mean cost (``horizon`` =
--budget), as the cost-aware one does from its budget.

For each (family, seed) of the test stream: ``acbo bench``'s problem, with unequal costs for its
settable variables drawn log-uniform in [1, 10] (``acbo.bench.runner.draw_costs``) and a budget of
--budget times their mean cost. Cost-aware: the method is told the costs and the budget
(``CausalOptimizer(costs=, budget_cost=)``) and runs until the budget cannot pay for another
experiment. Cost-blind: the same method, not told them (``cost_aware=False``; the costs only
counted), run for more experiments than the budget pays for and scored on those that it does (the
cumulative cost within the budget). ``random`` is scored the same way. Printed per family and method:
regret at the spend of the budget (mean ± 95 % CI), aware, blind and paired aware − blind (negative:
costs help), and the mean number of experiments the budget bought; with several methods told the
costs, each against the first, paired (e.g. ``amortized,amortized:checkpoint=runs/policy-costs/policy.pt``:
a policy that reads costs against the per-unit rule). Writes results.csv and summary.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from acbo.bench.report import _fmt
from acbo.bench.runner import draw_costs, make_problem, method_spec, run_method
from acbo.metrics import mean_ci
from acbo.parallel import map_tasks

BLIND_STEPS = 60
"""Experiments a cost-blind run may take (more than a budget of 10 mean costs buys but in rare cases)."""


def at_spend(rows: list[dict], budget: float) -> tuple[float, int]:
    """(regret, experiments) after the experiments whose cumulative cost stays within ``budget``."""
    within = [r for r in rows[1:] if r["cost"] <= budget * (1 + 1e-9)]
    return (within[-1]["regret"], len(within)) if within else (rows[0]["regret"], 0)


def evaluate(task: tuple) -> list[dict]:
    """Every method told and not told the costs, on one problem."""
    family, seed, factor, methods = task
    torch.set_num_threads(1)
    p = make_problem(family, seed)
    costs = draw_costs(p)
    budget = factor * float(np.mean(list(costs.values())))
    out = []
    for spec in methods:
        method, opts = method_spec(spec)
        for aware in ((True, False) if method != "random" else (False,)):
            plan = {"horizon": round(factor)} if method == "amortized" and not aware and "horizon" not in opts else {}
            rows, _ = run_method(p, method, BLIND_STEPS, {**opts, **plan}, costs=costs,
                                 budget_cost=budget if aware else None, cost_aware=aware)
            regret, n = at_spend(rows, budget)
            out.append({"family": family, "seed": seed, "method": spec, "aware": aware, "budget": budget,
                        "regret": regret, "experiments": n, "spent": rows[n]["cost"] if n else 0.0,
                        "cheapest_share": float(np.mean([min(costs.values()) == costs[r["variable"]]
                                                         for r in rows[1:n + 1]])) if n else float("nan")})
    return out


def summary(df: pd.DataFrame, factor: float) -> str:
    lines = [f"| family | method | regret at a spend of {factor:g} mean costs, told the costs | not told | "
             "told − not told, paired | experiments bought, told / not told |", "|---|---|---|---|---|---|"]
    for (fam, method), g in df.groupby(["family", "method"], sort=False):
        blind = g[~g.aware].set_index("seed")
        aware = g[g.aware].set_index("seed")
        if len(aware):
            diff = aware["regret"] - blind["regret"].reindex(aware.index)
            lines.append(f"| {fam} | {method} | {_fmt(*mean_ci(aware['regret']))} | {_fmt(*mean_ci(blind['regret']))} | "
                         f"{_fmt(*mean_ci(diff))} | {aware['experiments'].mean():.1f} / {blind['experiments'].mean():.1f} |")
        else:
            lines.append(f"| {fam} | {method} | – | {_fmt(*mean_ci(blind['regret']))} | – | – / "
                         f"{blind['experiments'].mean():.1f} |")
    return "\n".join(lines) + "\n" + against_first(df, factor)


def against_first(df: pd.DataFrame, factor: float) -> str:
    """Told the costs, each later method against the first one of --methods on the same problems
    (paired; negative: lower regret at the same spend); '' with one method told the costs."""
    told = df[df.aware]
    methods = list(dict.fromkeys(told["method"]))
    if len(methods) < 2:
        return ""
    first = methods[0]
    lines = ["", f"Told the costs, against `{first}` on the same problems (regret at a spend of {factor:g} mean "
             "costs, paired):", "", "| family | method | method − first, paired | experiments bought |", "|---|---|---|---|"]
    for fam, g in told.groupby("family", sort=False):
        base = g[g.method == first].set_index("seed")["regret"]
        for method in methods[1:]:
            m = g[g.method == method].set_index("seed")
            lines.append(f"| {fam} | {method} | {_fmt(*mean_ci(m['regret'] - base.reindex(m.index)))} | "
                         f"{m['experiments'].mean():.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad,test-shapes")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--budget", type=float, default=10.0, help="The budget in mean costs of the settable variables.")
    ap.add_argument("--methods", default="amortized,exact-ts,random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(f, s, args.budget, tuple(args.methods.split(","))) for f in args.families.split(",") for s in range(args.seeds)]
    results = map_tasks(evaluate, tasks, workers=args.workers, description="cost bench")
    df = pd.DataFrame([r for rows in results for r in rows])
    df.to_csv(out / "results.csv", index=False)
    text = summary(df, args.budget)
    (out / "summary.md").write_text(text)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))
    print(text)


if __name__ == "__main__":
    main()
