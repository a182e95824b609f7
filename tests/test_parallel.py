"""The task backends: local processes and Ray give the same results in task order, call
on_result once per task, and run again a task whose worker died."""

import os
from pathlib import Path

import pytest

from acbo.parallel import map_tasks


def square(x: int) -> int:
    return x * x


def dies_once(task: tuple[str, int]) -> int:
    """Kills its own worker process the first time it runs for a value (a marker file remembers)."""
    folder, x = task
    marker = Path(folder) / f"ran-{x}"
    if x == 2 and not marker.exists():
        marker.write_text("")
        os._exit(1)
    return x * x


def _collect(backend: str, fn, tasks, workers: int = 2):
    seen = []
    out = map_tasks(fn, tasks, workers=workers, progress=False, on_result=lambda i, r: seen.append((i, r)),
                    backend=backend)
    return out, sorted(seen)


def test_local_workers_survive_a_killed_worker(tmp_path):
    tasks = [(str(tmp_path), x) for x in range(5)]
    out, seen = _collect("local", dies_once, tasks)
    assert out == [0, 1, 4, 9, 16]
    assert seen == [(i, i * i) for i in range(5)]  # every result once, none lost or duplicated
    assert (tmp_path / "ran-2").exists()


def test_bad_backend_arguments():
    with pytest.raises(ValueError, match="backend must be one of"):
        map_tasks(square, [1], backend="dask")
    with pytest.raises(ValueError, match="an address is for the ray backend"):
        map_tasks(square, [1], address="ray://x:1")


def test_ray_gives_the_local_results_and_retries_a_dead_worker(tmp_path):
    ray = pytest.importorskip("ray")
    import sys

    from acbo.bench.runner import BenchConfig, run_bench

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        _ray_checks(tmp_path, BenchConfig, run_bench)
    finally:
        ray.shutdown()


def _ray_checks(tmp_path, BenchConfig, run_bench):
    out, seen = _collect("ray", dies_once, [(str(tmp_path), x) for x in range(4)])
    assert out == [0, 1, 4, 9] and seen == [(i, i * i) for i in range(4)]  # the dead worker's task ran again
    from acbo.parallel import Placement
    cfg = BenchConfig(methods=("random", "exact-ts"), families=("lin-er-10",), n_seeds=2, steps=2,
                      placement=Placement(workers=2))
    local = run_bench(cfg, progress=False)
    ray_df = run_bench(BenchConfig(**{**cfg.__dict__, "placement": Placement(2, "ray")}), progress=False)
    cols = ["family", "seed", "method", "step", "variable", "value", "e_y", "regret", "auprc"]
    assert ray_df[cols].equals(local[cols])
