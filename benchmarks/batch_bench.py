"""What does running experiments in batches cost? Methods at q = 1, 4, 8 experiments per round,
the same total number of experiments.

    python benchmarks/batch_bench.py --out runs/batch-bench [--families test-broad,test-shapes]
        [--seeds 50] [--experiments 16] [--batches 1,4,8] [--methods amortized,random] [--workers 2]
        [--max-set 1] [--baseline runs/earlier/results.csv]

A method may carry options, ``name:key=value[:key=value]`` (e.g. ``amortized:batch=distinct``); it
is then reported under that label.

For each (family, seed) of the test stream, every method runs once per batch size q on the same
problem with the same outcome noise per experiment number (``acbo bench``'s problems; a round
asks q experiments with ``CausalOptimizer.ask(n=q)`` and tells them before the next round).
Printed per family and method: regret after all the experiments (mean ± 95 % CI) per q and the
paired difference q − 1 (positive: what batching costs); regret after R rounds per q (what it
buys in wall-clock time when a round takes as long as one experiment); and the median wall time
of one round's ask. Writes results.csv, summary.md and regret.png (regret against experiments
and against rounds) to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from acbo.bench.report import _fmt
from acbo.bench.runner import make_problem, method_spec, run_method
from acbo.metrics import mean_ci
from acbo.parallel import map_tasks


def evaluate(task: tuple) -> list[dict]:
    """Every method at every batch size on one problem: one row per experiment."""
    family, seed, steps, methods, batches, max_set = task
    torch.set_num_threads(1)
    p = make_problem(family, seed, max_set=max_set)
    rows = []
    for spec in methods:
        method, opts = method_spec(spec)
        for q in batches:
            for r in run_method(p, method, steps, opts, batch=q)[0][1:]:
                rows.append({"family": family, "seed": seed, "method": spec, "q": q, "d": p.scm.d,
                             "step": r["step"], "round": r["round"], "regret": r["regret"], "time_s": r["time_s"]})
    return rows


def summary(df: pd.DataFrame, batches: list[int], steps: int) -> str:
    rounds = sorted({steps // q for q in batches})
    head = ([f"regret@{steps}, q = {q}" for q in batches] + [f"q = {q} − 1, paired" for q in batches if q != 1]
            + [f"after {r} rounds, q = {q}" for r in rounds[:2] for q in batches if r * q <= steps]
            + [f"round's ask, q = {q} (median ms)" for q in batches])
    lines = ["| family | method | " + " | ".join(head) + " |", "|" + "---|" * (len(head) + 2)]
    for (fam, method), g in df.groupby(["family", "method"], sort=False):
        last = {q: g[(g.q == q) & (g.step == steps)].set_index("seed")["regret"] for q in batches}
        cells = [_fmt(*mean_ci(last[q])) for q in batches]
        cells += [_fmt(*mean_ci(last[q] - last[1].reindex(last[q].index))) for q in batches if q != 1]
        for r in rounds[:2]:
            for q in batches:
                if r * q <= steps:
                    at = g[(g.q == q) & (g["round"] == r)].groupby("seed")["regret"].last()
                    cells.append(_fmt(*mean_ci(at)))
        for q in batches:
            per_round = g[g.q == q].groupby(["seed", "round"])["time_s"].sum()
            cells.append(f"{1000 * float(np.median(per_round)):.1f}")
        lines.append(f"| {fam} | {method} | " + " | ".join(cells) + " |")
    methods = list(dict.fromkeys(df.method))
    if len(methods) > 1:  # the others against the first, paired, at each batch size
        lines += ["", f"| family | method − {methods[0]}, paired | " + " | ".join(f"regret@{steps}, q = {q}" for q in batches)
                  + " |", "|" + "---|" * (len(batches) + 2)]
        for fam, g in df.groupby("family", sort=False):
            last = g[g.step == steps].set_index(["method", "q", "seed"])["regret"]
            for m in methods[1:]:
                cells = [_fmt(*mean_ci(last[m, q] - last[methods[0], q].reindex(last[m, q].index))) for q in batches]
                lines.append(f"| {fam} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def against_baseline(df: pd.DataFrame, base: pd.DataFrame, batches: list[int], steps: int) -> str:
    """Each method's regret after all the experiments minus its own in ``base`` (an earlier run's
    results.csv, e.g. of an earlier commit), paired by family, seed and q, with how many problems
    ended the same to 1e-12 (methods the baseline lacks: –)."""
    key = ["family", "method", "q", "seed"]
    both = df[df.step == steps][key + ["regret"]].merge(base[base.step == steps][key + ["regret"]], on=key,
                                                          suffixes=("", "_base"))
    lines = ["| family | method | " + " | ".join(f"now − baseline, q = {q} (same)" for q in batches) + " |",
             "|" + "---|" * (len(batches) + 2)]
    for (fam, method), _ in df.groupby(["family", "method"], sort=False):
        cells = []
        for q in batches:
            g = both[(both.family == fam) & (both.method == method) & (both.q == q)]
            d = g.regret - g.regret_base
            cells.append(f"{_fmt(*mean_ci(d))} ({int((d.abs() < 1e-12).sum())} of {len(d)})" if len(d) else "–")
        lines.append(f"| {fam} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, path: Path) -> None:
    """Mean regret against experiments and against rounds, per family, method and q."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(df.family))
    fig, axes = plt.subplots(len(fams), 2, figsize=(10, 3.6 * len(fams)), squeeze=False)
    for i, fam in enumerate(fams):
        for (method, q), g in df[df.family == fam].groupby(["method", "q"], sort=False):
            by_step = g.groupby("step")["regret"].mean()
            by_round = g.groupby(["seed", "round"])["regret"].last().groupby("round").mean()
            axes[i, 0].plot(by_step.index, by_step.values, label=f"{method}, q = {q}")
            axes[i, 1].plot(by_round.index, by_round.values, marker="o", label=f"{method}, q = {q}")
        for ax, x in zip(axes[i], ("experiments", "rounds")):
            ax.set(xlabel=x, ylabel="normalised regret", title=fam)
        axes[i, 1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad,test-shapes")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--experiments", type=int, default=16)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--methods", default="amortized,random")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-set", type=int, default=1,
                    help="Variables an experiment may set (y* over sets of that many; at most the problem's "
                         "settable variables).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--baseline", help="An earlier run's results.csv: also print each method's paired difference "
                                       "from its rows there (e.g. the same command at an earlier commit).")
    args = ap.parse_args()
    base = None if args.baseline is None else pd.read_csv(args.baseline)
    batches = [int(q) for q in args.batches.split(",")]
    if 1 not in batches or min(batches) < 1:
        raise SystemExit(f"--batches must hold 1 (the sequential reference) and positive sizes, got {args.batches}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = tuple(args.methods.split(","))
    tasks = [(f, s, args.experiments, methods, tuple(batches), args.max_set)
             for f in args.families.split(",") for s in range(args.seeds)]
    results = map_tasks(evaluate, tasks, workers=args.workers, description="batch bench")
    df = pd.DataFrame([r for rows in results for r in rows])
    df.to_csv(out / "results.csv", index=False)
    text = summary(df, batches, args.experiments)
    if base is not None:
        text += "\n" + against_baseline(df, base, batches, args.experiments)
    (out / "summary.md").write_text(text)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))
    plot(df, out / "regret.png")
    print(text)


if __name__ == "__main__":
    main()
