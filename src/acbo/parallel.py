"""Run independent tasks in local worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
R = TypeVar("R")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def map_tasks(fn: Callable[[T], R], tasks: Iterable[T], workers: int = 1, description: str = "tasks",
              progress: bool = True, on_result: Callable[[int, R], None] | None = None,
              units: list[int] | None = None) -> list[R]:
    """[fn(t) for t in tasks], in order, over ``workers`` processes (1: in this process).
    ``on_result(i, result)`` is called in this process as each task finishes (e.g. to save it).
    ``units``: what each task counts for on the progress bar (default 1: tasks)."""
    tasks = list(tasks)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    units = units or [1] * len(tasks)
    results: list = [None] * len(tasks)
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, disable=not progress, transient=False) as bar:
        job = bar.add_task(description, total=sum(units))
        if workers == 1:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                if on_result is not None:
                    on_result(i, results[i])
                bar.advance(job, units[i])
            return results
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker) as pool:
            futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                if on_result is not None:
                    on_result(i, results[i])
                bar.advance(job, units[i])
    return results
