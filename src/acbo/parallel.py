"""Run independent tasks in local worker processes or on a Ray cluster, with a progress bar.

Both backends return the results in task order and call ``on_result`` once per task, in this
process, as each finishes; a task whose worker died (killed, out of memory) is run again, up to
``retries`` times, so no result is lost or duplicated. Tasks are pure functions of their inputs
(seeds included), so the same tasks give the same results on either backend.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Placement:
    """Where a run's tasks run (not what they compute: a resumed run may change it): stage 2's
    rollout shards, the benchmark's problems."""

    workers: int = 1
    """Processes that run the tasks at once (CPU): 1 runs them in this process (training's rollout
    shards) or one worker (the benchmark); more run them as tasks of ``backend``, each with what it
    needs (the same results)."""
    backend: str = "local"
    """'local' processes or 'ray' (a cluster at ``address``, or one started for the run)."""
    address: str = ""
    """A Ray cluster's address for backend 'ray' ('' = start one here)."""

    def __post_init__(self):
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.address and self.backend != "ray":
            raise ValueError(f"an address is for the ray backend; backend is {self.backend!r}")

    @property
    def here(self) -> bool:
        """Whether rollouts run in the training process."""
        return self.workers == 1 and self.backend == "local"


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """torch's intra-op threads set to ``n`` inside the block and restored after it (None: left as
    they are). Small tensor work, such as one decision, gains nothing from several threads and
    collapses when the other cores are busy (a decision went from 4 ms to 300+ ms on a busy 2-core
    machine), so decisions and predictions run with one thread unless the user says otherwise."""
    import torch

    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None and n != before:
            torch.set_num_threads(before)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _call(fn, task):
    """A task in a Ray worker: one thread, like the local workers."""
    _init_worker()
    return fn(task)


def map_tasks(fn: Callable[[T], R], tasks: Iterable[T], workers: int = 1, description: str = "tasks",
              progress: bool = True, on_result: Callable[[int, R], None] | None = None,
              units: list[int] | None = None, backend: str = "local", address: str | None = None,
              retries: int = 2) -> list[R]:
    """[fn(t) for t in tasks], in order: in this process (local, 1 worker), over ``workers`` local
    processes, or as Ray tasks (``backend="ray"``: on the cluster at ``address``, or on one started
    here with ``workers`` CPUs). ``on_result(i, result)`` is called here as each task finishes (e.g.
    to save it). ``units``: what each task counts for on the progress bar (default 1: tasks)."""
    tasks = list(tasks)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"an address is for the ray backend; backend is {backend!r}")
    units = units or [1] * len(tasks)
    results: list = [None] * len(tasks)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, disable=not progress, transient=False) as bar:
        job = bar.add_task(description, total=sum(units))

        def finished(i: int, result) -> None:
            results[i] = result
            if on_result is not None:
                on_result(i, result)
            bar.advance(job, units[i])

        if backend == "ray":
            _map_ray(fn, tasks, workers, address, retries, finished)
        elif workers == 1:
            for i, t in enumerate(tasks):
                finished(i, fn(t))
        else:
            _map_local(fn, tasks, workers, retries, finished)
    return results


def _map_local(fn, tasks: list, workers: int, retries: int, finished: Callable[[int, object], None]) -> None:
    """Local worker processes; when one dies the pool breaks: the unfinished tasks go to a new pool."""
    todo = list(range(len(tasks)))
    for attempt in range(retries + 1):
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
                futures = {pool.submit(fn, tasks[i]): i for i in todo}
                for fut in as_completed(futures):
                    i = futures[fut]
                    finished(i, fut.result())
                    todo.remove(i)
            return
        except BrokenProcessPool:
            if attempt == retries:
                raise RuntimeError(f"a worker process died {retries + 1} times; {len(todo)} task(s) unfinished") from None


def _map_ray(fn, tasks: list, workers: int, address: str | None, retries: int,
             finished: Callable[[int, object], None]) -> None:
    """Ray tasks (retried by Ray when their worker dies), collected as they finish."""
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'acbo[dist]'") from None
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    elif started:  # a one-machine cluster on the loopback interface
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        remote = ray.remote(num_cpus=1, max_retries=retries)(_call)
        refs = {remote.remote(fn, t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                finished(refs[ref], ray.get(ref))
    finally:
        if started:
            ray.shutdown()
