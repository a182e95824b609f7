"""What every training loop shares: a step and wall-time budget with its cosine learning-rate
schedule, resuming from a checkpoint, running means of diagnostics, and the JSONL log.

A run's budget is ``total`` steps and, optionally, ``max_minutes`` of wall time, whichever is
spent first; progress is the larger of the two fractions, and the learning rate decays along a
cosine from its base to 10 % of it as progress goes from 0 to 1. The time already spent is saved
in every checkpoint, so a run resumed in pieces (a 2-hour CPU run in four sittings) spends one
budget, not one per piece.

Data parallel (``torchrun``): every process draws its share of a step's shards, gradients are
summed over the processes, and process 0's clock decides when a time budget is spent.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

LR_FLOOR = 0.1
"""The learning rate at the end of the schedule, as a fraction of its base."""


def cosine_lr(base: float, progress: float) -> float:
    """base x (0.1 + 0.9 x (1 + cos(pi progress)) / 2): base at 0, 0.1 base at 1."""
    return base * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Budget:
    """``total`` steps and ``max_minutes`` of wall time (0: none), of which ``elapsed_before``
    seconds were spent by earlier pieces of the same run."""

    total: int
    max_minutes: float = 0.0
    elapsed_before: float = 0.0
    _t0: float = field(default_factory=time.perf_counter, repr=False)

    def elapsed(self) -> float:
        """Seconds spent by the run so far, all pieces together."""
        return self.elapsed_before + time.perf_counter() - self._t0

    def progress(self, step: int) -> float:
        """max(step / total, elapsed / max_minutes), at most 1."""
        used = self.elapsed() / (60 * self.max_minutes) if self.max_minutes else 0.0
        return min(1.0, max(step / self.total, used))

    def spent(self, step: int) -> bool:
        """Whether the time budget is spent (the step budget ends the loop by itself)."""
        return bool(self.max_minutes) and self.progress(step) >= 1.0

    def lr(self, base: float, step: int) -> float:
        return cosine_lr(base, self.progress(step))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def resume(path: Path, config: dict, read: Callable[[Path], dict], defaults: dict | None = None,
           placement: tuple[str, ...] = ()) -> dict | None:
    """The checkpoint at ``path`` read by ``read`` if there is one (None otherwise), after
    checking that the same configuration wrote it (ValueError if not: a new run needs a new folder).
    ``defaults``: settings added since, which a run written before them lacks, with the value it means.
    ``placement``: settings that say where the work runs, not what it computes (they may change)."""
    if not path.exists():
        return None
    state = read(path)
    saved = {**{k: v for k, v in (defaults or {}).items() if k not in state["train_config"]}, **state["train_config"]}
    saved = {k: v for k, v in saved.items() if k not in placement}
    if saved != {k: v for k, v in config.items() if k not in placement}:
        raise ValueError(f"{path} was written by another configuration; use a new --out")
    return state


class Window:
    """Running means of named diagnostics over a logging window."""

    def __init__(self):
        self._sums: dict[str, tuple[float, int]] = {}

    def add(self, terms: dict[str, float]) -> None:
        for k, v in terms.items():
            tot, cnt = self._sums.get(k, (0.0, 0))
            self._sums[k] = (tot + float(v), cnt + 1)

    def means(self) -> dict[str, float]:
        """The means since the last call, and a fresh window."""
        out = {k: tot / cnt for k, (tot, cnt) in self._sums.items()}
        self._sums = {}
        return out


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record to a JSONL log."""
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------- data parallel
def process_group(device: str) -> tuple[int, int]:
    """(rank, world size): under ``torchrun`` (WORLD_SIZE > 1) the process group, joined here if
    needed (gloo on CPU, nccl on CUDA); alone, (0, 1)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Sum every parameter's gradient over the processes (a parameter without a gradient here
    counts as zero)."""
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def world_size() -> int:
    """The number of processes training together (1 outside ``torchrun``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def broadcast_params(model: torch.nn.Module) -> None:
    """Process 0's weights everywhere (one start, whatever each process read or drew)."""
    for p in model.parameters():
        dist.broadcast(p.data, 0)


def from_process_0(stop: bool, lr: float, world: int) -> tuple[bool, float]:
    """Process 0's stop decision and learning rate everywhere (a time budget is read on one clock)."""
    if world == 1:
        return stop, lr
    t = torch.tensor([1.0 if stop else 0.0, lr], dtype=torch.float64)
    dist.broadcast(t, 0)
    return bool(t[0].item()), float(t[1].item())
