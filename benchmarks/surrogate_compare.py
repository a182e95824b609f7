"""One table from `surrogate_eval.py` runs: a candidate surrogate's metrics next to an earlier
surrogate's AUPRC, the exact posterior's and the expert's, on the same held-out buffers.

    python benchmarks/surrogate_compare.py --new runs/A,runs/B --old runs/surrogate-eval-v2

``--new``: the candidate's runs (their `summary.csv`; exact rows are recomputed there, expert rows
may be left out with --no-expert); ``--old``: a run of the earlier surrogate with exact and expert
rows (the buffers are the test stream's, so the same in every run: exact AUPRC is checked to
agree). Rows with several d (small-mixed) are pooled, weighted by buffer counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

METRICS = ["auprc", "auroc", "f1", "log_p_true", "bce", "ece"]


def pooled(paths: list[str]) -> pd.DataFrame:
    """Family x n_int x posterior rows, metrics averaged over d weighted by buffers."""
    df = pd.concat([pd.read_csv(Path(p) / "summary.csv") for p in paths], ignore_index=True)
    w = df["buffers"]
    agg = df[METRICS].mul(w, axis=0).groupby([df["family"], df["n_int"], df["posterior"]], sort=False).sum()
    return agg.div(w.groupby([df["family"], df["n_int"], df["posterior"]], sort=False).sum(), axis=0).reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new", required=True, help="comma-separated surrogate_eval output folders of the candidate")
    ap.add_argument("--old", required=True, help="a surrogate_eval output folder of the earlier surrogate")
    args = ap.parse_args()
    new, old = pooled(args.new.split(",")), pooled([args.old])
    key = ["family", "n_int"]
    pick = lambda df, post, cols: df[df["posterior"] == post].set_index(key)[cols]
    exact_new, exact_old = pick(new, "exact", ["auprc"]), pick(old, "exact", ["auprc"])
    both = exact_new.merge(exact_old, left_index=True, right_index=True, suffixes=("_new", "_old"))
    if not ((both["auprc_new"] - both["auprc_old"]).abs() < 1e-9).all():
        raise SystemExit("the exact posterior's AUPRC differs between the runs: not the same buffers")
    t = pick(new, "surrogate", METRICS)
    t = t.join(pick(old, "surrogate", ["auprc"]).rename(columns={"auprc": "auprc_before"}), how="left")
    t = t.join(exact_old.rename(columns={"auprc": "auprc_exact"}), how="left")
    t = t.join(pick(old, "expert", ["auprc"]).rename(columns={"auprc": "auprc_expert"}), how="left")
    print("| family | interventions | AUPRC | before | exact | expert | vs exact | AUROC | F1 (MAP set) | "
          "log P(true set) | BCE | ECE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda v, d=3: "–" if pd.isna(v) else f"{v:.{d}f}"
    for (fam, n_int), r in t.iterrows():
        print(f"| {fam} | {n_int} | {f(r.auprc)} | {f(r.auprc_before)} | {f(r.auprc_exact)} | {f(r.auprc_expert)} | "
              f"{r.auprc - r.auprc_exact:+.3f} | {f(r.auroc)} | {f(r.f1)} | {f(r.log_p_true, 1)} | {f(r.bce)} | {f(r.ece)} |")


if __name__ == "__main__":
    main()
