"""What a family's problems look like: the family report.

For each family, ``n`` problems of its test stream (exactly those the benchmark poses: same
seeds) and per problem: where the optimum lies (inside the domain or at one of its ends), whether
the best variable is a parent of Y, how far the optimum is from doing nothing (in observational
std of Y), the variables' scales, and the regret of uniform random search and of the oracle.
The report says whether a family is neither trivial (random search solves it) nor degenerate
(nothing to gain, or every optimum at an end).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from acbo.bench.runner import make_problem, run_method
from acbo.metrics import mean_ci
from acbo.parallel import map_tasks

INSIDE = 0.01
"""An optimum is inside its domain if its setting is more than this fraction of the domain's
width away from both ends."""


def problem_facts(task: tuple[str, int, int]) -> dict:
    """One problem's facts (family, seed, T for random search's regret)."""
    family, seed, steps = task
    p = make_problem(family, seed)
    j = p.y_star_variable
    lo, hi = float(p.low[j]), float(p.high[j])
    pos = (p.y_star_setting - lo) / (hi - lo) if hi > lo else 0.5
    x = p.frame.to_numpy()
    y_std = float(x[:, p.names.index("Y")].std())
    stds = x.std(axis=0)
    rand_rows, _ = run_method(p, "random", steps)
    oracle_rows, _ = run_method(p, "oracle", 1)
    return {
        "family": family, "seed": seed, "d": p.scm.d, "n_obs": len(p.frame), "settable": int(p.intervenable.sum()),
        "n_parents": int(p.truth.sum()), "mechanism": p.scm.mechanism,
        "inside": INSIDE < pos < 1 - INSIDE, "best_is_parent": bool(p.truth[j]),
        "gain_std": (p.e_obs - p.y_star) / max(y_std, 1e-12), "y_star_se_rel": p.y_star_se / max(p.e_obs - p.y_star, 1e-12),
        "log10_std_min": float(np.log10(stds.min())), "log10_std_max": float(np.log10(stds.max())),
        "log10_abs_mean_max": float(np.log10(np.abs(x.mean(axis=0)).max() + 1e-12)),
        "random_regret": rand_rows[-1]["regret"], "oracle_regret": oracle_rows[-1]["regret"],
    }


def family_report(families: list[str], n: int | dict[str, int], steps: int = 10, workers: int = 1,
                  progress: bool = True, backend: str = "local", address: str | None = None) -> pd.DataFrame:
    """One row per problem (see :func:`problem_facts`); ``n`` problems per family (or per family name)."""
    counts = n if isinstance(n, dict) else {f: n for f in families}
    tasks = [(f, s, steps) for f in families for s in range(counts[f])]
    return pd.DataFrame(map_tasks(problem_facts, tasks, workers=workers, description="family report", progress=progress,
                                  backend=backend, address=address))


def report_table(df: pd.DataFrame, steps: int = 10) -> str:
    """Markdown: per family, the shares and ranges of :func:`family_report`'s facts."""
    head = ["family", "problems", "d", "n_obs", "settable", "optimum inside", "best var. a parent", "gain (std of Y)",
            "MC SE / gap", "log10 std of variables", "log10 abs mean max", f"random regret@{steps}", "oracle regret"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fam, g in df.groupby("family", sort=False):
        rr, rh = mean_ci(g["random_regret"])
        orr, _ = mean_ci(g["oracle_regret"])
        gain = g["gain_std"]
        cells = [fam, str(len(g)), f"{g['d'].min()}–{g['d'].max()}", f"{g['n_obs'].min()}–{g['n_obs'].max()}",
                 f"{g['settable'].median():.0f} (median)", f"{g['inside'].mean():.0%}", f"{g['best_is_parent'].mean():.0%}",
                 f"{gain.median():.2f} (median; {np.mean(gain < 0.05):.0%} < 0.05)",
                 f"{g['y_star_se_rel'].median():.1e}", f"{g['log10_std_min'].min():.1f} to {g['log10_std_max'].max():.1f}",
                 f"{g['log10_abs_mean_max'].max():.1f}", f"{rr:.3f} ± {rh:.3f}" if not math.isnan(rh) else f"{rr:.3f}",
                 f"{orr:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
