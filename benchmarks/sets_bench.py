"""Does setting several variables at once help? Methods that choose sets, at max_set = 1 and K.

    python benchmarks/sets_bench.py --out runs/sets-bench [--families lin-er-10,lin-er-20] [--seeds 30]
        [--steps 10] [--methods random,exact-ts] [--max-set 2] [--sets-only parent_scale] [--workers 2]

``--against M`` adds each method's paired difference from M (both at K, and at K against M at 1);
``--summarise`` prints the summary of a finished run's results again (with ``--against``);
``--baseline OLD/results.csv`` (with a run or ``--summarise``) adds each method's paired difference
from an earlier run of it on the same problems: a code change measured on the same data and noise. A method
may carry options, ``name:key=value`` (``amortized:checkpoint=runs/policy-sets/policy.pt``:
another policy pair).

For each (family, seed) of the test stream: the problem of ``acbo bench`` with y* over sets of at
most K variables (:meth:`acbo.scm.SCM.set_optimum`); every method runs twice on the same data and
outcome noise, once allowed one variable per experiment and once up to K. Both are scored against
the same y* (over sets), so a one-variable method is capped at the best single intervention's
regret, which the table reports as "best single" (what a perfect one-variable campaign reaches).
Printed per family: regret after ``steps`` experiments (mean ± 95 % CI) per method and max_set,
and the paired difference K − 1 per method (negative: sets help); then, at max_set = K, the
paired difference of every method against each ``--sets-only`` method (run at K alone, to spare
a slow method's one-variable campaigns).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch

from acbo.bench.report import _fmt
from acbo.bench.runner import make_problem, method_spec, run_method
from acbo.metrics import mean_ci, normalised_regret
from acbo.parallel import map_tasks


def evaluate(task: tuple) -> list[dict]:
    """Every method at max_set 1 and K on one problem."""
    family, seed, steps, methods, K, sets_only = task
    torch.set_num_threads(1)
    p = make_problem(family, seed, max_set=K)
    single = make_problem(family, seed)                                                  # the same SCM and data
    base = {"family": family, "seed": seed, "d": p.scm.d, "settable": len(p.settable),
            "best_single": normalised_regret(single.y_star, p.y_star, p.e_obs), "best_set": json.dumps(p.y_star_set)}
    rows = []
    for method in methods + sets_only:
        name, options = method_spec(method)
        for k in ((K,) if method in sets_only else (1, K)):
            steps_rows, _ = run_method(dataclasses.replace(p, max_set=k), name, steps, options)
            last = steps_rows[-1]
            rows.append({**base, "method": method, "max_set": k, "regret": last["regret"],
                         "sets_used": sum(isinstance(r["value"], list) for r in steps_rows[1:])})
    return rows


def summary(df: pd.DataFrame, K: int, steps: int, sets_only: tuple[str, ...] = (), against: str = "") -> str:
    lines = [f"| family | method | regret@{steps}, max_set = 1 | regret@{steps}, max_set = {K} | "
             f"max_set {K} − 1, paired | experiments that set a set (of {steps}) |", "|---|---|---|---|---|---|"]
    for fam, g in df.groupby("family", sort=False):
        for method, gm in g.groupby("method", sort=False):
            if method in sets_only:
                many = gm.set_index("seed")["regret"]
                lines.append(f"| {fam} | {method} | – | {_fmt(*mean_ci(many))} | – | {gm['sets_used'].mean():.1f} |")
                continue
            one = gm[gm.max_set == 1].set_index("seed")["regret"]
            many = gm[gm.max_set == K].set_index("seed")["regret"]
            used = gm[gm.max_set == K]["sets_used"].mean()
            lines.append(f"| {fam} | {method} | {_fmt(*mean_ci(one))} | {_fmt(*mean_ci(many))} | "
                         f"{_fmt(*mean_ci(many - one.reindex(many.index)))} | {used:.1f} |")
        best = g.drop_duplicates("seed")["best_single"]
        lines.append(f"| {fam} | best single intervention | {_fmt(*mean_ci(best))} | – | – | – |")
    at_k = df[df.max_set == K].pivot_table(index=["family", "seed"], columns="method", values="regret")
    if against:
        one = df[df.max_set == 1].pivot_table(index=["family", "seed"], columns="method", values="regret")
        lines += ["", f"| family | method | − {against}, both at max_set = {K}, paired | at {K} − {against} at 1, paired |",
                  "|---|---|---|---|"]
        for fam, g in at_k.groupby(level="family", sort=False):
            for method in (m for m in g.columns if m != against and m not in sets_only):
                lines.append(f"| {fam} | {method} | {_fmt(*mean_ci(g[method] - g[against]))} | "
                             f"{_fmt(*mean_ci(g[method] - one.loc[fam, against].reindex(g.index.get_level_values('seed')).values))} |")
    for ref in sets_only:
        lines += ["", f"| family | method − {ref}, max_set = {K}, paired |", "|---|---|"]
        for fam, g in at_k.groupby(level="family", sort=False):
            for method in (m for m in g.columns if m != ref):
                lines.append(f"| {fam} | {method} | {_fmt(*mean_ci(g[method] - g[ref]))} |")
    return "\n".join(lines) + "\n"


def against_baseline(df: pd.DataFrame, base: pd.DataFrame) -> str:
    """Per (family, method, max_set) in both runs: the paired difference now − baseline over the
    seeds both ran, and on how many of them the regret is the same to 1e-12."""
    key = ["family", "method", "max_set", "seed"]
    both = df.merge(base, on=key, suffixes=("", "_base"))
    lines = ["| family | method | max_set | now − baseline, paired | problems the same |", "|---|---|---|---|---|"]
    for (fam, method, k), g in both.groupby(["family", "method", "max_set"], sort=False):
        diff = g["regret"] - g["regret_base"]
        lines.append(f"| {fam} | {method} | {k} | {_fmt(*mean_ci(diff))} | {int((diff.abs() < 1e-12).sum())} of {len(g)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="lin-er-10,lin-er-20")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--methods", default="random,exact-ts")
    ap.add_argument("--max-set", type=int, default=2)
    ap.add_argument("--sets-only", default="", help="methods run at --max-set only (compared with the others there)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--against", default="", help="a method of --methods every other is paired with (at K; and at K "
                                                 "against it at 1)")
    ap.add_argument("--summarise", action="store_true", help="print the summary of the results already in --out")
    ap.add_argument("--baseline", help="an earlier run's results.csv, paired with this one's")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.summarise:
        config = json.loads((Path(args.out) / "config.json").read_text())
        df = pd.read_csv(Path(args.out) / "results.csv")
        sets_only = tuple(m for m in config["sets_only"].split(",") if m)
        if args.against and args.against not in config["methods"].split(","):
            raise SystemExit(f"--against must be one of the run's --methods {config['methods']!r} (a --sets-only "
                             f"method is paired with every other in the summary already), got {args.against!r}")
        print(summary(df, config["max_set"], config["steps"], sets_only, args.against))
        if args.baseline:
            print(against_baseline(df, pd.read_csv(args.baseline)))
        return
    if args.max_set < 2:
        raise SystemExit(f"--max-set must be at least 2 (it is compared with 1), got {args.max_set}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = tuple(args.methods.split(","))
    sets_only = tuple(m for m in args.sets_only.split(",") if m)
    if set(methods) & set(sets_only):
        raise SystemExit(f"a method is in both --methods and --sets-only: {sorted(set(methods) & set(sets_only))}")
    tasks = [(f, s, args.steps, methods, args.max_set, sets_only) for f in args.families.split(",") for s in range(args.seeds)]
    results = map_tasks(evaluate, tasks, workers=args.workers, description="sets bench")
    df = pd.DataFrame([r for rows in results for r in rows])
    df.to_csv(out / "results.csv", index=False)
    text = summary(df, args.max_set, args.steps, sets_only, args.against)
    if args.baseline:
        text += "\n" + against_baseline(df, pd.read_csv(args.baseline))
    (out / "summary.md").write_text(text)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))
    print(text)


if __name__ == "__main__":
    main()
