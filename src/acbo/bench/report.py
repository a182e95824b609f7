"""Benchmark reports: a markdown table of mean and 95% CI per method, and a regret plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from acbo.metrics import mean_ci


def _num(x: float, digits: int) -> str:
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # never -0.000


def _fmt(m: float, h: float, digits: int = 3) -> str:
    """mean ± half-width of its 95 % confidence interval."""
    if np.isnan(m):
        return "–"
    return _num(m, digits) if np.isnan(h) else f"{_num(m, digits)} ± {_num(h, digits)}"


def summary_table(df: pd.DataFrame, steps: tuple[int, ...] | None = None) -> str:
    """Markdown: per family and method, normalised regret at chosen steps (mean ± 95% CI over
    seeds), posterior AUPRC and mass on the true set at the last step, and the median wall time
    of one decision."""
    T = int(df["step"].max())
    steps = steps or tuple(sorted({s for s in (1, 5, 10, 20, 30, T) if s <= T}))
    lines = ["Cells: mean ± half-width of the 95 % confidence interval over SCMs (Student t); ms / decision: median."]
    for fam, dff in df.groupby("family", sort=False):
        n = dff["seed"].nunique()
        d_lo, d_hi = int(dff["d"].min()), int(dff["d"].max())
        lines.append(f"\n**{fam}** ({n} SCMs, d = {d_lo if d_lo == d_hi else f'{d_lo}–{d_hi}'}, T = {T})\n")
        head = ["method"] + [f"regret@{s}" for s in steps] + [f"AUPRC@{T}", f"P(true set)@{T}", "ms / decision"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for method, dm in dff.groupby("method", sort=False):
            cells = [method]
            for s in steps:  # a campaign that stopped earlier (its budget spent) keeps its last regret
                cells.append(_fmt(*mean_ci(dm[dm["step"] <= s].groupby("seed")["regret"].last())))
            last = dm.groupby("seed").last()
            cells.append(_fmt(*mean_ci(last["auprc"])))
            cells.append(_fmt(*mean_ci(last["mass_true"])))
            cells.append(f"{1000 * dm['time_s'].dropna().median():.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines += _by_round(dff) + _by_spend(dff)
    return "\n".join(lines) + "\n"


SPENDS = (1, 2, 5, 10, 20)
"""Spends, in mean costs of a problem's settable variables, at which the summary gives regret."""


def _by_spend(df: pd.DataFrame) -> list[str]:
    """Markdown lines: regret at each of :data:`SPENDS` mean costs of spend (the best found by the
    experiments paid within it; a campaign that ended below that spend counts with what it found;
    mean ± 95 % CI), and at the end, where the rows carry costs; none otherwise."""
    if "cost_unit" not in df or df["cost_unit"].isna().all():
        return []
    spend = df["cost"] / df["cost_unit"]                                                          # in mean costs
    levels = [s for s in SPENDS if s <= spend.max() + 1e-9]
    lines = ["", "| method | " + " | ".join(f"regret at a spend of {s} mean costs" for s in levels)
             + " | at the end | spend at the end (mean costs) |", "|" + "---|" * (len(levels) + 3)]
    for method, dm in df.assign(spend=spend).groupby("method", sort=False):
        cells = []
        for s in levels:
            within = dm[dm["spend"] <= s + 1e-9].groupby("seed")["regret"].last()                   # step 0 always within
            cells.append(_fmt(*mean_ci(within)))
        end = dm.groupby("seed")[["regret", "spend"]].last()
        cells += [_fmt(*mean_ci(end["regret"])), f"{end['spend'].mean():.2f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _by_round(df: pd.DataFrame) -> list[str]:
    """Markdown lines: regret after each round (mean ± 95 % CI) where experiments ran in batches
    (rows with a ``round`` that runs behind ``step``); none otherwise."""
    if "round" not in df or df["round"].isna().all() or (df["round"] == df["step"]).all():
        return []
    R = int(df["round"].max())
    lines = ["", "| method | " + " | ".join(f"regret after round {r}" for r in range(1, R + 1)) + " |",
             "|" + "---|" * (R + 1)]
    for method, dm in df.groupby("method", sort=False):
        after = (dm[dm["round"] > 0].groupby(["seed", "round"])["regret"].last().unstack("round")
                 .reindex(columns=range(1, R + 1)).ffill(axis=1))                                   # a stopped campaign: its last
        lines.append(f"| {method} | " + " | ".join(_fmt(*mean_ci(after[r].dropna())) for r in range(1, R + 1)) + " |")
    return lines


def posterior_table(df: pd.DataFrame, steps: tuple[int, ...] | None = None) -> str:
    """Markdown: per family and method, the posterior's mass on the true parent set and the F1 of
    its most probable set at chosen steps (mean ± 95% CI over seeds)."""
    T = int(df["step"].max())
    steps = steps or tuple(sorted({s for s in (0, 5, 10, 20, 30, T) if s <= T}))
    lines = []
    for fam, dff in df.groupby("family", sort=False):
        lines.append(f"\n**{fam}**: posterior by step\n")
        head = ["method"] + [f"P(true set)@{s}" for s in steps] + [f"F1@{s}" for s in steps]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for method, dm in dff.groupby("method", sort=False):
            cells = [method]
            for col in ("mass_true", "f1"):
                for s in steps:
                    cells.append(_fmt(*mean_ci(dm.loc[dm["step"] == s, col]), digits=2))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_regret(df: pd.DataFrame, path: str | Path) -> None:
    """Mean normalised regret vs step, with 95% CI bands, one panel per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(df["family"]))
    fig, axes = plt.subplots(1, len(fams), figsize=(4.5 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        dff = df[df["family"] == fam]
        for method, dm in dff.groupby("method", sort=False):
            stats = [mean_ci(g["regret"]) for _, g in dm.groupby("step")]
            steps = sorted(dm["step"].unique())
            m = np.array([s[0] for s in stats])
            h = np.nan_to_num(np.array([s[1] for s in stats]))
            ax.plot(steps, m, label=method)
            ax.fill_between(steps, m - h, m + h, alpha=0.2)
        ax.set_title(f"{fam} ({dff['seed'].nunique()} SCMs)")
        ax.set_xlabel("interventions")
        ax.set_ylabel("normalised simple regret")
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
