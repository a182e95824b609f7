"""The world model against every other model of the response, on the same held-out buffers.

    python benchmarks/world_model_eval.py --out runs/world-eval [--problems 30] [--workers 2]
        [--checkpoint PATH] [--families ...] [--n-int 0,5,20]

For each family (test stream, the benchmark's problems: its domains and settable variables) and
each number of interventional rows (uniformly random settable variable and value in its domain,
added to the observational data), every model predicts E[Y | do(X_j = x)] on a grid of 32 values
over the domain of every settable variable j; scored against the truth (exact for linear SCMs,
4,000-sample common-random-number Monte Carlo otherwise):

- rmse: root mean squared error of the predicted mean, in observational std of Y;
- crps: mean CRPS of the predicted distribution of E[Y | do] at the truth (same unit);
- cover90: share of grid points whose truth lies in the central 90 % interval;
- argmin_regret: normalised regret of the grid point with the lowest predicted mean (go where
  the model says is best, r = (E[Y | do there] - y*) / (E[Y]_obs - y*));
- ms: wall time of predicting every settable variable's grid (one call per variable).

Models: ``conditioned`` (the world model conditioned on the data, :mod:`acbo.surrogate.world`:
what the shipped ``amortized`` reads and predicts), ``world`` (the network's own E[Y | do] head,
``surrogate-ei``'s model), ``blr``
(the exact posterior's model-averaged BLR, ``exact-ts``), ``ps-gp`` (PARENT_SCALE's causal-GP
mixture), ``true-parents-gp`` (the same causal GP given the true parents: ``cbo-parents``),
``plain-gp`` (a GP fitted only to the interventional rows of that variable: plain BO).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from acbo.baselines.exact_ts import ExactThompsonSampling
from acbo.bench.report import _fmt
from acbo.bench.runner import make_problem
from acbo.buffer import Buffer
from acbo.experts.parent_scale import CBOParents, ParentScale
from acbo.metrics import mean_ci, normalised_regret
from acbo.method import Problem
from acbo.parallel import map_tasks
from acbo.predictive import GaussianMixture
from acbo.seeding import generator

GRID = 32
N_MC = 4000
MODELS = ("conditioned", "world", "blr", "ps-gp", "true-parents-gp", "plain-gp")


def plain_gp(buffer: Buffer, problem: Problem, j: int, x: torch.Tensor) -> GaussianMixture:
    """A GP (RBF, fitted) on the interventional rows of variable j only, zero prior mean in Y's
    observational standard units; its prior N(0, 1) before any such row. Observed units out."""
    from acbo.experts.causal_gp import fit_set_gp

    mean, std = buffer.observational_stats()
    t = problem.target
    rows = (buffer.intervened.sum(1) == 1) & buffer.intervened[:, j]
    width = float(problem.high[j] - problem.low[j]) or 1.0
    u = ((x - problem.low[j]) / width)[:, None]
    if not rows.any():
        f_mean, f_var = torch.zeros(len(x), dtype=torch.float64), torch.ones(len(x), dtype=torch.float64)
    else:
        xr = ((buffer.values[rows, j] - problem.low[j]) / width)[:, None]
        gp = fit_set_gp(xr, (buffer.values[rows, t] - mean[t]) / std[t])
        with torch.no_grad():
            post = gp.posterior(u[:, None, :])
        f_mean, f_var = post.mean.flatten(), post.variance.flatten()
    return GaussianMixture.normal(f_mean, f_var.clamp_min(1e-12).sqrt()).affine(mean[t].expand(len(x)), std[t].expand(len(x)))


def _buffer(p, n_int: int) -> Buffer:
    """The problem's observational rows plus n_int random interventions in its domains."""
    scm, d = p.scm, p.scm.d
    buf = Buffer(d, capacity=len(p.frame) + n_int)
    buf.add(torch.from_numpy(p.frame.to_numpy()))
    g = generator("test", "world-eval-buffer", p.family, p.seed, n_int)
    settable = torch.nonzero(p.intervenable).flatten()
    for i in range(n_int):
        j = int(settable[torch.randint(len(settable), (1,), generator=g)])
        v = float(p.low[j] + (p.high[j] - p.low[j]) * torch.rand(1, generator=g, dtype=torch.float64))
        row = scm.run_experiment({p.names[j]: v}, g)
        mask = torch.zeros(d, dtype=torch.bool)
        mask[j] = True
        buf.add(torch.tensor([row[n] for n in p.names], dtype=torch.float64), mask)
    return buf


def evaluate_problem(task: tuple) -> list[dict]:
    """Every model on one problem and interventional budget."""
    family, seed, n_int, checkpoint = task
    torch.set_num_threads(1)
    p = make_problem(family, seed)
    buf = _buffer(p, n_int)
    problem = Problem.from_data(p.names, p.frame.to_numpy(), "Y", p.domains, p.settable, True, seed)
    truth_parents = [n for n, t in zip(p.names, p.truth.tolist()) if t]
    from acbo.baselines.surrogate_ei import SurrogateEI

    methods = {"world": SurrogateEI(problem, checkpoint=checkpoint), "blr": ExactThompsonSampling(problem),
               "ps-gp": ParentScale(problem), "true-parents-gp": CBOParents(problem, parents=truth_parents)}
    settable = torch.nonzero(p.intervenable).flatten().tolist()
    grids = {j: p.low[j] + (p.high[j] - p.low[j]) * torch.linspace(0, 1, GRID, dtype=torch.float64) for j in settable}
    # the truth on every grid point
    d = p.scm.d
    mask = torch.zeros(len(settable) * GRID, d, dtype=torch.bool)
    vals = torch.zeros(len(settable) * GRID, d)
    for i, j in enumerate(settable):
        mask[i * GRID:(i + 1) * GRID, j] = True
        vals[i * GRID:(i + 1) * GRID, j] = grids[j].float()
    truth = p.scm.expected_target(mask, vals, N_MC)[0].double()                              # all grid points
    y_std = float(p.frame["Y"].std())
    rows = []
    for name in MODELS:
        t0 = time.perf_counter()
        preds = []
        if name == "world":  # one query pass for every variable, as a decision makes it
            grid = methods[name].predict_grid(buf, settable, torch.stack([grids[j] for j in settable]))
            from acbo.predictive import AffineBar, BarDistribution

            preds = [AffineBar(BarDistribution(grid.base.probs[i], grid.base.edges), grid.loc[i], grid.scale[i])
                     for i in range(len(settable))]
        if name == "conditioned":  # one pass for every variable, as a decision makes it
            from acbo.surrogate.inference import conditioned_grid

            preds = conditioned_grid(methods["world"].model, buf, p.names.index("Y"), settable,
                                     torch.stack([grids[j] for j in settable]), p.low[settable], p.high[settable])
        for j in settable if name not in ("world", "conditioned") else []:
            if name == "plain-gp":
                preds.append(plain_gp(buf, problem, j, grids[j]))
            else:
                preds.append(methods[name].predict(buf, j, grids[j], draw=False))
        ms = 1000 * (time.perf_counter() - t0)
        mean = torch.cat([pr.mean.double() for pr in preds])
        lo = torch.cat([pr.quantile(0.05).double() for pr in preds])
        hi = torch.cat([pr.quantile(0.95).double() for pr in preds])
        crps = torch.cat([pr.crps(truth[i * GRID:(i + 1) * GRID].to(pr.mean.dtype)).double() for i, pr in enumerate(preds)])
        best = int(mean.argmin())
        rows.append({"family": family, "seed": seed, "n_int": n_int, "d": d, "n_obs": len(p.frame), "model": name,
                     "rmse": float(((mean - truth) ** 2).mean().sqrt()) / y_std, "crps": float(crps.mean()) / y_std,
                     "cover90": float(((lo <= truth) & (truth <= hi)).double().mean()),
                     "argmin_regret": normalised_regret(float(truth[best]), p.y_star, p.e_obs), "ms": ms,
                     "settable": len(settable)})
    return rows


def summary(df: pd.DataFrame) -> str:
    lines = []
    for (fam, n_int), g in df.groupby(["family", "n_int"], sort=False):
        lines.append(f"\n**{fam}**, {n_int} interventional rows ({g['seed'].nunique()} problems, d = "
                     f"{g['d'].min()}–{g['d'].max()})\n")
        lines.append("| model | RMSE (std of Y) | CRPS (std of Y) | 90 % coverage | regret of the argmin | ms (all variables) |")
        lines.append("|---|---|---|---|---|---|")
        for model, gm in g.groupby("model", sort=False):
            cells = [model] + [_fmt(*mean_ci(gm[c])) for c in ("rmse", "crps", "cover90", "argmin_regret")]
            cells.append(f"{gm['ms'].median():.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded")
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("--n-int", default="0,5,20")
    ap.add_argument("--checkpoint", default=None, help="world-model surrogate (default: the shipped one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(f, s, int(k), args.checkpoint) for f in args.families.split(",") for k in args.n_int.split(",")
             for s in range(args.problems)]
    done_path = out / "tasks.jsonl"
    done = {}
    if done_path.exists():
        for line in done_path.read_text().splitlines():
            rec = json.loads(line)
            done[tuple(rec["task"])] = rec["rows"]
    todo = [t for t in tasks if (t[0], t[1], t[2]) not in done]

    def save(i, rows):
        with open(done_path, "a") as fh:
            fh.write(json.dumps({"task": list(todo[i][:3]), "rows": rows}) + "\n")

    results = map_tasks(evaluate_problem, todo, workers=args.workers, description="world-model eval", on_result=save)
    for t, rows in zip(todo, results):
        done[t[:3]] = rows
    df = pd.DataFrame([r for t in tasks for r in done[t[:3]]])
    df.to_csv(out / "results.csv", index=False)
    text = summary(df)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
