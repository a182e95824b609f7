"""Two `acbo eval-surrogate --out` CSVs side by side: parent AUPRC per family and interventional budget.

    python benchmarks/compare_surrogates.py NEW.csv OLD.csv

Families of several d (test-broad) are averaged over their buffers. Columns: the surrogate of
each file and the exact posterior (of the first file).
"""

from __future__ import annotations

import sys

import pandas as pd


def auprc(path: str) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["weighted"] = df["auprc"] * df["buffers"]
    g = df.groupby(["family", "n_int", "posterior"], sort=False)[["weighted", "buffers"]].sum()
    return (g["weighted"] / g["buffers"]).unstack("posterior")


def main() -> None:
    new, old = auprc(sys.argv[1]), auprc(sys.argv[2])
    print("| family | interventions | surrogate (first file) | surrogate (second file) | exact posterior |")
    print("|---|---|---|---|---|")
    for (fam, n_int), row in new.iterrows():
        print(f"| {fam} | {n_int} | {row['surrogate']:.3f} | {old.loc[(fam, n_int), 'surrogate']:.3f} | {row['exact']:.3f} |")


if __name__ == "__main__":
    main()
