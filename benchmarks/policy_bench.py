"""Regret of trained policies (the `amortized` method with different checkpoints) on held-out
families, on exactly the problems and outcome streams of `acbo bench`, merged with a baseline
`acbo bench` run into one table per family and horizon.

    python benchmarks/policy_bench.py --steps 10 --variants amortized=,grpo-traj=runs/gpu2/traj/policy.pt \
        --baselines runs/bench-policy/baselines/results.jsonl --out runs/bench-policy/T10

A variant is NAME=CHECKPOINT (empty: the shipped policy). Each runs with horizon = steps (the
policy is told the budget). Rows are written to OUT/results.jsonl with method "amortized:NAME"
(the shipped one as plain "amortized"); OUT/summary.md holds regret at steps 1, 5, 10 (and T),
the posterior's AUPRC and mass on the true set at T, and the median wall time per decision.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from acbo.metrics import mean_ci
from acbo.bench.report import _fmt, plot_regret, summary_table
from acbo.bench.runner import make_problem, run_method
from acbo.parallel import map_tasks


def run_task(task: tuple[str, int, int, tuple[tuple[str, str], ...]]) -> list[dict]:
    family, seed, steps, variants = task
    problem = make_problem(family, seed)
    rows = []
    for name, ckpt in variants:
        opts = {"horizon": steps, "checkpoint": ckpt or None}
        label = "amortized" if name == "amortized" else f"amortized:{name}"
        for r in run_method(problem, "amortized", steps, opts)[0]:
            rows.append({**r, "method": label})
    return rows


def by_family_table(df: pd.DataFrame, steps: int) -> str:
    """Markdown: normalised regret at T (mean ± 95% CI over seeds), one row per method, one column
    per family, in the order the methods appear."""
    fams = list(dict.fromkeys(df["family"]))
    last = df[df["step"] == steps]
    lines = [f"\nregret@{steps} (mean ± 95% CI over SCMs)\n", "| method | " + " | ".join(fams) + " |",
             "|---|" + "---|" * len(fams)]
    for m in dict.fromkeys(df["method"]):
        cells = [_fmt(*mean_ci(last.loc[(last["method"] == m) & (last["family"] == f), "regret"])) for f in fams]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="lin-er-10,lin-er-20,nonlin-er-10,cfc-mixed-10,lin-er-50")
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--variants", default="amortized=")
    ap.add_argument("--baselines", default="", help="comma-separated results.jsonl (or tasks.jsonl, if unfinished) of "
                    "`acbo bench` runs on the same families and seeds; LABEL=PATH renames that run's method, "
                    "LABEL=PATH@METHOD takes only METHOD's rows of it (and renames them); a label may repeat "
                    "(e.g. one method's seeds split over two runs)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/results.jsonl's policy rows; only merge and report")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    variants = tuple(tuple(v.split("=", 1)) for v in args.variants.split(",") if v)
    for v in variants:
        if len(v) != 2:
            raise SystemExit(f"a variant is NAME=CHECKPOINT, got {v}")
    out = Path(args.out)
    if args.reuse:  # only re-merge with the baselines
        df = pd.read_json(out / "results.jsonl", lines=True)
        df = df[df["method"].str.startswith("amortized") & (df["seed"] < args.seeds)]
    else:
        tasks = [(f, s, args.steps, variants) for f in args.families.split(",") for s in range(args.seeds)]
        df = pd.DataFrame([r for rs in map_tasks(run_task, tasks, workers=args.workers, description="policies") for r in rs])
    bases = []
    for spec in (b for b in args.baselines.split(",") if b):
        label, _, path = spec.rpartition("=")  # LABEL=PATH relabels that run's rows
        path, _, method = path.partition("@")
        if Path(path).name == "tasks.jsonl":  # an unfinished `acbo bench` run: its finished tasks
            base = pd.DataFrame([r for line in open(path) for r in json.loads(line)["rows"]])
        else:
            base = pd.read_json(path, lines=True)
        if method:
            if method not in set(base["method"]):
                raise SystemExit(f"{path} has no rows of method {method!r} (it has {sorted(set(base['method']))})")
            base = base[base["method"] == method]
        base = base[base["family"].isin(df["family"].unique()) & (base["seed"] < args.seeds) & (base["step"] <= args.steps)]
        bases.append(base.assign(method=label) if label else base)
    df = pd.concat([*bases, df], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w") as fh:
        for rec in df.to_dict(orient="records"):
            fh.write(json.dumps(rec, default=str) + "\n")
    table = by_family_table(df, args.steps) + summary_table(df)
    (out / "summary.md").write_text(table)
    plot_regret(df, out / "regret.png")
    print(table)


if __name__ == "__main__":
    main()
