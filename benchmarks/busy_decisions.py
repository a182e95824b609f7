"""Time per decision of the shipped `amortized` method with the machine idle and with another
process keeping a core busy, with acbo's default of one decision thread and with torch's default
threads.

    python benchmarks/busy_decisions.py --families test-broad --seeds 4 --steps 10

For each family and seed the same problem (d <= 20 on test-broad) is driven through ask/tell four
times, in this order per problem: idle with one thread (``threads=1``, the default), idle with
torch's own thread count (``threads=None``), then the same two with a second process spinning on
one core (a tight Python loop, started before and stopped after). Every campaign asks exactly the
same experiments (same seed); the median over all decisions is reported per condition, and each
busy figure as a multiple of the idle one with the same threads (goal: within 1.5x with the
default). The machine's cores and torch's default thread count are printed first.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from functools import partial

import numpy as np
import torch

from acbo.bench.runner import make_problem, with_problem_knowledge
from acbo.method import simulate_campaign
from acbo.optimizer import CausalOptimizer
from acbo.seeding import generator


def spin(stop) -> None:
    """Keep one core busy until ``stop`` is set."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def campaign(problem, threads: int | None, steps: int) -> list[float]:
    """Seconds per decision of one amortized campaign with ``threads`` decision threads."""
    opt = CausalOptimizer(problem.frame, target="Y", method="amortized", seed=problem.seed, threads=threads,
                          **with_problem_knowledge(problem, "amortized", {"horizon": steps}))
    out = []
    simulate_campaign(opt.ask, lambda iv, t: problem.scm.run_experiment(iv, generator("test", "bench-outcome", problem.family,
                                                                                     problem.seed, t)),
                      partial(opt.tell, accept_outlier=True), steps, lambda t, iv, sample, seconds: out.append(seconds))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    print(f"cores: {os.cpu_count()}; torch {torch.__version__}, default intra-op threads {default_threads}")
    times: dict[tuple[str, str], list[float]] = {}
    for fam in args.families.split(","):
        for seed in range(args.seeds):
            problem = make_problem(fam, seed)
            campaign(problem, 1, 2)  # warm the caches (model loads) outside the timings
            for load in ("idle", "busy"):
                stop = mp.Event()
                spinner = mp.Process(target=spin, args=(stop,)) if load == "busy" else None
                if spinner is not None:
                    spinner.start()
                    time.sleep(0.5)
                try:
                    for name, threads in (("1 thread (default)", 1), (f"torch default ({default_threads})", None)):
                        times.setdefault((load, name), []).extend(campaign(problem, threads, args.steps))
                finally:
                    if spinner is not None:
                        stop.set()
                        spinner.join()
    names = [n for load, n in times if load == "idle"]
    print(f"{args.seeds} problems x {args.steps} decisions per family ({args.families})")
    print("| decision threads | idle: ms / decision (median) | other core busy: ms / decision (median) | busy / idle |")
    print("|---|---|---|---|")
    for name in names:
        idle, busy = (1000 * float(np.median(times[(load, name)])) for load in ("idle", "busy"))
        print(f"| {name} | {idle:.1f} | {busy:.1f} | {busy / idle:.2f} |")


if __name__ == "__main__":
    main()
