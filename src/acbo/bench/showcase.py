"""What ``acbo run`` shows: methods side by side on the built-in bioreactor (:mod:`acbo.bioreactor`).

Every method starts from the same 60 observations and the same domains, may set up to
``max_set`` variables per experiment (the demo: two, so the joint peak of temperature and pH is
within reach), and is told the same
measurement whenever it asks for the same experiment at the same step (the lab's seed is the
step). Each experiment is scored by E[titer | do] (Monte Carlo on the simulator, never seen by
the methods); the figure shows the best of those so far per method against the optimum, the
shipped system's belief about titer's parents after every experiment, and its predicted
response curve of the variable it believes best, against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from acbo import bioreactor
from acbo.method import simulate_campaign
from acbo.optimizer import CausalOptimizer

N_OBS = 60


@dataclass
class Trace:
    """One method's campaign: per step the experiment, measured titer, E[titer | do], wall time."""

    method: str
    rows: list[dict] = field(default_factory=list)
    marginals: list[list[float]] = field(default_factory=list)
    optimizer: CausalOptimizer | None = None


def run_showcase(methods: list[str], steps: int, seed: int = 0, on_step=None, options: dict | None = None,
                 max_set: int | None = None) -> tuple[list[Trace], dict]:
    """Run every method for ``steps`` experiments of up to ``max_set`` variables (None: two for a
    method that chooses sets, one for the others); ``on_step(method, row)`` sees each as it
    happens. Returns the traces and the optima: {"single": (variable, value, E[titer | do]),
    "set": ({name: value}, E[titer | do]) where some method may set two, else None}."""
    from acbo.method import get_method

    sizes = {m: max_set or (2 if get_method(m).chooses_sets else 1) for m in methods}
    obs = pd.DataFrame(bioreactor.observe(N_OBS, seed), columns=bioreactor.NAMES)
    traces = []
    for m in methods:
        opts = dict((options or {}).get(m, {}))
        if m == "amortized":
            opts.setdefault("horizon", steps)
        opt = CausalOptimizer(obs, target=bioreactor.TARGET, minimize=False, seed=seed, domains=bioreactor.DOMAINS,
                              intervenable=list(bioreactor.SETTABLE), method=m, max_set=sizes[m], **opts)
        tr = Trace(m, optimizer=opt)
        tr.marginals.append(opt.posterior().marginals.double().tolist())
        best = -np.inf

        def record(t: int, iv, sample: dict, seconds: float) -> None:
            nonlocal best
            e = bioreactor.expected_titer(dict(iv))
            best = max(best, e)
            row = {"step": t, "do": ", ".join(f"{k}={v:.4g}" for k, v in iv.items()), "titer": sample[bioreactor.TARGET],
                   "e_titer": e, "best_e": best, "ms": 1000 * seconds}
            tr.rows.append(row)
            tr.marginals.append(opt.posterior().marginals.double().tolist())
            if on_step is not None:
                on_step(m, row)

        simulate_campaign(opt.ask, lambda iv, t: bioreactor.experiment(dict(iv), seed=1000 * seed + t),
                          partial(opt.tell, accept_outlier=True), steps, record)
        traces.append(tr)
    return traces, {"single": bioreactor.optimum(), "set": bioreactor.set_optimum() if max(sizes.values()) > 1 else None}


def showcase_figure(traces: list[Trace], optima: dict, path, believer: str = "amortized") -> None:
    """Best E[titer | do] so far per method against the optima (:func:`run_showcase`); the
    ``believer``'s parent marginals by step; its predicted E[titer | do] (with 90 % band) along the
    variable it believes best, with the truth and its experiments that set that variable alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    e_obs = bioreactor.expected_titer({})
    for tr in traces:  # from the first experiment on: the best among the interventions run so far
        ax.plot([r["step"] for r in tr.rows], [r["best_e"] for r in tr.rows], marker=".", label=tr.method)
    single = optima["single"]
    ax.axhline(single[2], ls="--", color="k", lw=1, label=f"best single: {single[0]} = {single[1]:.3g}")
    if optima.get("set"):
        setting, value = optima["set"]
        ax.axhline(value, ls="-.", color="k", lw=1, label="best pair: " + ", ".join(f"{k} = {v:.3g}" for k, v in setting.items()))
    ax.axhline(e_obs, ls=":", color="0.5", lw=1, label="no intervention (for reference)")
    ax.set_xlabel("experiments")
    ax.set_ylabel("best E[titer | do] among the experiments run (g/L)")
    ax.set_title("the titer reached (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    tr = next((t for t in traces if t.method == believer), traces[0])
    marg = np.array(tr.marginals)
    names = list(bioreactor.NAMES)
    ax = axes[1]
    for j, n in enumerate(names):
        if n != bioreactor.TARGET:
            style = "-" if n in bioreactor.PARENTS else ":"
            ax.plot(np.arange(len(marg)), marg[:, j], style, marker=".", label=n + (" (a parent)" if n in bioreactor.PARENTS else ""))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("experiments (0: the observations only)")
    ax.set_ylabel("P(parent of titer)")
    ax.set_title(f"{tr.method}: what it believes causes titer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[2]
    opt = tr.optimizer
    try:
        beliefs = {v: opt.predict(v, np.linspace(*bioreactor.DOMAINS[v], 60), quantity="expectation") for v in bioreactor.SETTABLE}
    except ValueError as e:
        ax.text(0.5, 0.5, str(e), ha="center", va="center", wrap=True, fontsize=9)
        ax.set_axis_off()
    else:
        var = max(beliefs, key=lambda v: beliefs[v]["mean"].max())
        pred = beliefs[var]
        grid = pred["value"].to_numpy()
        ax.fill_between(grid, pred["q05"], pred["q95"], alpha=0.25, color="C1", label="its 90 % interval")
        ax.plot(grid, pred["mean"], color="C1", label=f"{tr.method}'s E[titer | do]")
        ax.plot(grid, [bioreactor.expected_titer({var: v}, 4000) for v in grid], "k:", label="the truth")
        hist = [(r.intervention[var], r.outcome[bioreactor.TARGET]) for r in opt.history
                if set(r.intervention) == {var}]
        if hist:
            ax.plot(*zip(*hist), "o", color="C0", label="its measurements (that variable alone)")
        ax.set_xlabel(f"{var} (set to)")
        ax.set_ylabel("titer (g/L)")
        ax.set_title(f"{tr.method}'s response curve of {var}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
