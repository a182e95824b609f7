"""Decision latency and peak memory at scale: d = 20 ... 200 variables, n = 200 ... 10,000 rows.

    python benchmarks/scale.py [--methods amortized,parent_scale,cbo-parents] [--timeout 300] [--sizes 20x200,100x1000]

Each (method, d, n) runs in a fresh process on one CPU thread: an SCM of the classic linear ER
world at that d (expected degree 2), n observational rows, then 6 decisions through ask / tell.
Reported: the first decision (everything the method does on first seeing the data: the
surrogate's full pass, the expert's doubly robust prior), the median of the other five (what a
decision costs during a campaign), and the process's peak resident memory. A configuration
that does not finish within ``--timeout`` seconds is reported as such; one that fails (out of
memory included) with its error.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

SIZES = [(20, 200), (20, 1000), (20, 10000), (50, 1000), (50, 10000), (100, 1000), (100, 10000), (200, 1000),
         (200, 10000)]


def one(method: str, d: int, n: int) -> dict:
    """Run in the child process: time 6 decisions of ``method`` on a d-variable problem with n rows."""
    import pandas as pd
    import torch

    from acbo.optimizer import CausalOptimizer
    from acbo.scm import random_scms
    from acbo.seeding import generator

    torch.set_num_threads(1)
    g = generator("test", "scale", d, n)
    scm = random_scms(g, 1, d, mechanism="linear", expected_degree=2.0)
    frame = pd.DataFrame(scm.sample(n, g)[0].double().numpy(), columns=scm.names())
    opts = {"parents": [scm.names()[j] for j in scm.parents()[0].nonzero().flatten().tolist()]} \
        if method == "cbo-parents" else {}
    opt = CausalOptimizer(frame, target="Y", method=method, seed=0, **opts)
    times = []
    for t in range(6):
        t0 = time.perf_counter()
        iv = opt.ask()
        times.append(time.perf_counter() - t0)
        opt.tell(iv, scm.run_experiment(iv, generator("test", "scale-outcome", d, n, t)), accept_outlier=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"first_ms": 1000 * times[0], "next_ms": 1000 * statistics.median(times[1:]), "peak_mb": peak_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="amortized,parent_scale,cbo-parents")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--sizes", default=",".join(f"{d}x{n}" for d, n in SIZES),
                    help="d x n pairs, comma-separated (default: all)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, d, n = args.child
        print(json.dumps(one(method, int(d), int(n))))
        return
    print("| method | d | n | first decision (ms) | next decisions, median (ms) | peak memory (MB) |")
    print("|---|---|---|---|---|---|")
    sizes = [tuple(int(v) for v in pair.split("x")) for pair in args.sizes.split(",")]
    for method in args.methods.split(","):
        for d, n in sizes:
            cmd = [sys.executable, __file__, "--child", method, str(d), str(n)]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                print(f"| {method} | {d} | {n} | did not finish in {args.timeout:.0f} s | | |", flush=True)
                continue
            if out.returncode != 0:
                err = (out.stderr.strip().splitlines() or ["killed"])[-1][:120]
                print(f"| {method} | {d} | {n} | failed: {err} | | |", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {method} | {d} | {n} | {r['first_ms']:.0f} | {r['next_ms']:.1f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
