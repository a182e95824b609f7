"""What one decision on the world model costs, on one CPU thread.

    python benchmarks/world_model_cost.py [--checkpoint PATH] [--decisions 20]

For d = 20 and d = 50 (an SCM of test-broad drawn at d = 20, one of test-d50), a
``surrogate-ei`` campaign runs ``--decisions`` steps; after each measurement is told, three
figures are timed (median over the decisions, ms):

- ``queries``: the world model's E[Y | do] for every settable variable at K = 32 values, one
  query pass on the warm incremental encoding (``predict_grid``): "all queries of one decision";
  and the same for every variable but Y (the worst case, everything settable);
- ``ask``: the whole decision: the incremental encoding of the new row, the grid, the refined grid
  around the best point and the posterior means at the points already tried;
- ``amortized ask``: the shipped policy's decision on the same data, for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import dataclasses

import pandas as pd

from acbo.optimizer import CausalOptimizer
from acbo.scm import get_family
from acbo.seeding import generator

K = 32


def draw_problem(family: str, d: int):
    """The first test-stream SCM of ``family`` at d variables, its data, domains and settable names."""
    fam = dataclasses.replace(get_family(family), d_range=(d, d))
    g = generator("test", "cost", family, d)
    scm = fam.sample(g)
    x = scm.sample(fam.draw_n_obs(g), g)[0]                                                    # n x d
    low, high, can = (t[0] for t in fam.domains(g, scm, x[None]))
    names = scm.names()
    t = int(scm.target[0])
    domains = {n: (float(low[j]), float(high[j])) for j, n in enumerate(names) if j != t}
    return scm, pd.DataFrame(x.double().numpy(), columns=names), domains, [n for j, n in enumerate(names) if can[j]]


def campaign_costs(family: str, d: int, checkpoint: str | None, decisions: int) -> dict:
    """Median ms of the query pass, of surrogate-ei's ask and of amortized's ask over ``decisions`` steps."""
    scm, frame, domains, settable_names = draw_problem(family, d)
    opts = {} if checkpoint is None else {"checkpoint": checkpoint}
    ei = CausalOptimizer(frame, target="Y", method="surrogate-ei", domains=domains, intervenable=settable_names, **opts)
    am = CausalOptimizer(frame, target="Y", method="amortized", domains=domains, intervenable=settable_names)
    prob = ei.method.problem
    settable = torch.nonzero(prob.intervenable).flatten().tolist()
    every = [j for j in range(scm.d) if j != prob.target]
    grids = {}
    for name, var in (("queries", settable), ("queries, all d - 1", every)):
        lo, hi = prob.low[var], prob.high[var]
        grids[name] = (var, lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, K, dtype=torch.float64))  # Q x K
    times = {"queries": [], "queries, all d - 1": [], "ask": [], "amortized ask": []}
    for t in range(decisions):
        for name, opt in (("ask", ei), ("amortized ask", am)):
            t0 = time.perf_counter()
            iv = opt.ask()
            times[name].append(time.perf_counter() - t0)
            opt.tell(iv, scm.run_experiment(iv, generator("test", "cost", family, t, name)), accept_outlier=True)
        ei.method.predict_grid(ei.buffer, settable, grids["queries"][1])  # warm: the new row is encoded
        for name, (var, xs) in grids.items():
            t0 = time.perf_counter()
            ei.method.predict_grid(ei.buffer, var, xs)
            times[name].append(time.perf_counter() - t0)
    return {"family": family, "d": scm.d, "settable": len(settable), "n_obs": frame.shape[0],
            **{k: 1000 * statistics.median(v) for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="world-model surrogate (default: the shipped one)")
    ap.add_argument("--decisions", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, K = {K} values per variable")
    print("\n| problem | d | settable | n_obs | queries, settable (ms) | queries, all d - 1 (ms) | surrogate-ei ask (ms) | amortized ask (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for family, d in (("test-broad", 20), ("test-d50", 50)):
        r = campaign_costs(family, d, args.checkpoint, args.decisions)
        print(f"| {r['family']} | {r['d']} | {r['settable']} | {r['n_obs']} | {r['queries']:.1f} "
              f"| {r['queries, all d - 1']:.1f} | {r['ask']:.1f} "
              f"| {r['amortized ask']:.1f} |")


if __name__ == "__main__":
    main()
