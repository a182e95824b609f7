"""The Ray backend against serial and local processes: demonstration collection and evaluation.

    python benchmarks/ray_speedup.py [--workers 2] [--scms 8] [--seeds 8]

Each workload runs three times on the same tasks: serially in this process (one worker), over
``--workers`` local processes, and as Ray tasks on a one-machine Ray cluster of ``--workers`` CPUs
started beforehand (its start-up time is printed on its own line: a cluster is started once and
serves many jobs). Every task runs on one thread (this process too, so that the serial run
computes what a worker does). Printed: wall seconds, the speed-up over serial, and whether the
results are identical to the serial ones (demonstrations: every array of every shard but the
expert's decision times; evaluation: every row, the time columns left out).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from acbo.bench.runner import BenchConfig, run_bench
from acbo.parallel import Placement
from acbo.experts.demos import DemoConfig, collect_demos

TIME_COLUMNS = ("time_s", "setup_s")
TIME_ARRAYS = ("seconds",)
"""What a run measures rather than computes: left out of the comparisons."""


def shards(folder: Path) -> dict[str, np.ndarray]:
    """Every array of every shard in a demonstration folder, keyed by shard file and name."""
    out = {}
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            out.update({f"{f.name}/{k}": z[k] for k in z.files if k.rsplit("/", 1)[-1] not in TIME_ARRAYS})
    return out


def same_demos(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    keep = [c for c in a.columns if c not in TIME_COLUMNS]
    key = ["family", "seed", "method", "step"]
    return a[keep].sort_values(key).reset_index(drop=True).equals(b[keep].sort_values(key).reset_index(drop=True))


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scms", type=int, default=8, help="demonstrations (SCMs) to collect, one per task")
    ap.add_argument("--seeds", type=int, default=8, help="SCMs of the evaluation, one task each")
    args = ap.parse_args()
    import ray
    import torch

    torch.set_num_threads(1)

    demo_cfg = DemoConfig(family="lin-er-10", n_scms=args.scms, steps=10, shard_size=1)
    bench_cfg = BenchConfig(methods=("random", "exact-ts", "parent_scale"), families=("test-broad",),
                            n_seeds=args.seeds, steps=10)
    runs = [("serial", "local", 1), (f"local x {args.workers}", "local", args.workers),
            (f"ray x {args.workers}", "ray", args.workers)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo_ref = bench_ref = None
        serial = {}
        for label, backend, workers in runs:
            if backend == "ray":
                start, _ = timed(lambda: ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                                                  _node_ip_address="127.0.0.1"))
                print(f"Ray cluster of {workers} CPUs started in {start:.1f} s", flush=True)
            folder = Path(tmp) / label.replace(" ", "")
            t_demo, _ = timed(lambda: collect_demos(demo_cfg, folder, workers=workers, progress=False, backend=backend))
            t_bench, df = timed(lambda: run_bench(replace(bench_cfg, placement=Placement(workers, backend)), progress=False))
            demos = shards(folder)
            if demo_ref is None:
                demo_ref, bench_ref, serial = demos, df, {"demo": t_demo, "bench": t_bench}
            rows.append((label, "demonstrations", args.scms, t_demo, serial["demo"] / t_demo, same_demos(demos, demo_ref)))
            rows.append((label, "evaluation", args.seeds, t_bench, serial["bench"] / t_bench, same_rows(df, bench_ref)))
            if backend == "ray":
                ray.shutdown()
    print("\n| backend | workload | tasks | wall (s) | speed-up over serial | identical to serial |")
    print("|---|---|---|---|---|---|")
    for label, work, n, t, speed, same in sorted(rows, key=lambda r: r[1]):
        print(f"| {label} | {work} | {n} | {t:.1f} | {speed:.2f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
