"""The tables of a benchmark folder's finished tasks (while it runs, or after it stopped).

    python benchmarks/bench_summary.py runs/broad-bench [runs/broad-bench-d50 ...] [--steps 10,20]
        [--rename FOLDER:METHOD:NAME ...] [--paired parent_scale[,random,...]]

Reads each folder's ``tasks.jsonl`` (every finished (family, seed) task of ``acbo bench``); prints,
per folder, one compact table per step of the list, methods x families, normalised regret (mean ±
95 % CI over the SCMs finished, their count in the header) and the median ms per decision over that
folder's families, then ``acbo bench``'s full table per family of every folder.

``--rename`` gives a method of one folder another name (two runs of one method, e.g. two shipped
models, told apart). ``--paired REF`` (or several, comma-separated): per step and REF, the paired difference of every method to REF over
the (family, seed) problems both finished, pooled over all folders — mean ± 95 % CI of
regret(method) - regret(REF), negative = better than REF — and the ratio of REF's median time per
decision to the method's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from acbo.bench.report import _fmt, summary_table
from acbo.metrics import mean_ci


def finished(folder: Path) -> pd.DataFrame:
    rows = []
    for line in (folder / "tasks.jsonl").read_text().splitlines():
        try:
            rows += json.loads(line)["rows"]
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
    if not rows:
        raise SystemExit(f"{folder}: no finished task yet")
    return pd.DataFrame(rows)


def compact(df: pd.DataFrame, step: int) -> str:
    fams = list(dict.fromkeys(df["family"]))
    head = ["method"] + [f"{f} ({df.loc[df['family'] == f, 'seed'].nunique()})" for f in fams] + ["ms / decision"]
    lines = [f"regret@{step}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, dm in df.groupby("method", sort=False):
        cells = [method] + [_fmt(*mean_ci(dm.loc[(dm["family"] == f) & (dm["step"] == step), "regret"])) for f in fams]
        cells.append(f"{1000 * dm['time_s'].dropna().median():.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired(df: pd.DataFrame, ref: str, step: int) -> str:
    """Methods x families: regret(method) - regret(ref) on the same problems at ``step``."""
    at = df[df["step"] == step].set_index(["family", "seed", "method"])["regret"]
    if ref not in set(df["method"]):
        raise SystemExit(f"--paired {ref}: no such method among {sorted(set(df['method']))}")
    fams = list(dict.fromkeys(df["family"]))
    r = at.xs(ref, level="method")
    ms = df.groupby("method")["time_s"].median()
    head = ["method"] + fams + [f"{ref} time / method time"]
    lines = [f"regret@{step} - regret@{step} of {ref}, same problems (negative: better than {ref})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in dict.fromkeys(df["method"]):
        if method == ref:
            continue
        m = at.xs(method, level="method")
        cells = [method]
        for f in fams:
            both = m.index.intersection(r.index)
            both = [i for i in both if i[0] == f]
            d = (m.loc[both] - r.loc[both]).to_numpy() if both else []
            mean, half = mean_ci(d)
            cells.append(f"{_fmt(mean, half)} (n={len(d)})" if len(d) else "—")
        cells.append(f"{ms[ref] / ms[method]:.0f}x" if ms.get(method, 0) > 0 else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--steps", default="10,20")
    ap.add_argument("--rename", action="append", default=[], metavar="FOLDER:METHOD:NAME")
    ap.add_argument("--paired", default="", metavar="REF[,REF...]")
    args = ap.parse_args()
    frames = [finished(f) for f in args.folders]
    for spec in args.rename:
        try:
            folder, method, name = spec.split(":", 2)
            i = [str(f) for f in args.folders].index(folder)
        except ValueError:
            raise SystemExit(f"--rename {spec!r}: want FOLDER:METHOD:NAME with FOLDER one of the folders given")
        frames[i].loc[frames[i]["method"] == method, "method"] = name
    steps = [int(v) for v in args.steps.split(",")]
    for folder, df in zip(args.folders, frames):
        print(f"## {folder}\n")
        for s in steps:
            print(compact(df, s))
    every = pd.concat(frames, ignore_index=True)
    for ref in (r for r in args.paired.split(",") if r):
        for s in steps:
            print(paired(every, ref, s))
    print(summary_table(every))


if __name__ == "__main__":
    main()
