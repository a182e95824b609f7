"""What a batch costs to choose: the wall time of one ask of q experiments, one thread, against one
ask of a single experiment in the same run; and what an experiment that may set two variables costs.

    python benchmarks/batch_time.py [--family test-broad] [--problems 20] [--q 8] [--repeats 3]

For each problem of the family's test stream, a campaign of --told experiments (the pair's own,
measured on the simulator), then for each repeat, in turn, on copies of it (``copy.deepcopy``: its
caches as a running campaign has them): ``ask()`` of one experiment, ``ask(n=q)`` with
``batch="believer"`` (the default) and with ``batch="distinct"``, and ``ask()`` and ``ask(n=q)`` (in
both batch modes) in a campaign with ``max_set=2`` (its own --told experiments, pairs among them; :mod:`acbo.policy.sets`). Prints the median milliseconds of each, and each batch's median over the single ask's (a
ratio from one run, which a busy machine moves less than the times).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from acbo.bench.runner import make_problem
from acbo.optimizer import CausalOptimizer
from acbo.seeding import generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="test-broad")
    ap.add_argument("--problems", type=int, default=20)
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--told", type=int, default=4, help="Experiments told before the asks are timed.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"single": [], "believer": [], "distinct": [], "pair": [], "pairs": [],
                                     "pairs-distinct": []}
    ds = []
    for seed in range(args.problems):
        p = make_problem(args.family, seed)
        ds.append(len(p.settable))
        kw = dict(target="Y", method="amortized", seed=seed, domains=p.domains, intervenable=p.settable)
        campaigns = {}
        modes = {"believer": dict(batch="believer"), "distinct": dict(batch="distinct"), "pair": dict(max_set=2),
                 "pair-distinct": dict(max_set=2, batch="distinct")}
        for mode, options in modes.items():
            opt = CausalOptimizer(p.frame, **options, **kw)
            for t in range(args.told):
                iv = opt.ask()
                opt.tell(iv, p.scm.run_experiment(dict(iv), generator("test", "batch-time", seed, t)), accept_outlier=True)
            campaigns[mode] = opt
        for _ in range(args.repeats):
            for name, n, mode in (("single", None, "believer"), ("believer", args.q, "believer"),
                                  ("distinct", args.q, "distinct"), ("pair", None, "pair"), ("pairs", args.q, "pair"),
                                  ("pairs-distinct", args.q, "pair-distinct")):
                opt = copy.deepcopy(campaigns[mode])
                t0 = time.perf_counter()
                opt.ask(n)
                times[name].append(1000 * (time.perf_counter() - t0))
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"{args.family}: {args.problems} problems x {args.repeats}, {min(ds)}-{max(ds)} settable variables, "
          f"after {args.told} experiments, one thread")
    print(f"  one experiment: {med['single']:.1f} ms")
    for k in ("believer", "distinct"):
        print(f"  a batch of {args.q}, {k}: {med[k]:.1f} ms ({med[k] / med['single']:.1f}x one)")
    print(f"  one experiment of up to two variables (max_set=2): {med['pair']:.1f} ms ({med['pair'] / med['single']:.1f}x one)")
    for k in ("pairs", "pairs-distinct"):
        mode = "believer" if k == "pairs" else "distinct"
        print(f"  a batch of {args.q} of up to two variables each, {mode}: {med[k]:.1f} ms ({med[k] / med['single']:.1f}x one)")


if __name__ == "__main__":
    main()
