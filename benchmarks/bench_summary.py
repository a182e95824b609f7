"""The tables of a benchmark folder's finished tasks (while it runs, or after it stopped).

    python benchmarks/bench_summary.py runs/broad-bench [runs/broad-bench-d50 ...] [--steps 10,20]

Reads each folder's ``tasks.jsonl`` (every finished (family, seed) task of ``acbo bench``); prints,
per folder, one compact table per step of the list, methods x families, normalised regret (mean ±
95 % CI over the SCMs finished, their count in the header) and the median ms per decision over that
folder's families, then ``acbo bench``'s full table per family of every folder.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+")
    ap.add_argument("--steps", default="10,20")
    args = ap.parse_args()
    frames = [finished(f) for f in args.folders]
    for folder, df in zip(args.folders, frames):
        print(f"## {folder}\n")
        for s in (int(v) for v in args.steps.split(",")):
            print(compact(df, s))
    print(summary_table(pd.concat(frames, ignore_index=True)))


if __name__ == "__main__":
    main()
