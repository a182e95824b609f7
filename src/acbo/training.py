"""What every training loop shares: a step and wall-time budget with its cosine learning-rate
schedule, resuming from a checkpoint, running means of diagnostics, and the JSONL log.

A run's budget is ``total`` steps and, optionally, ``max_minutes`` of wall time, whichever is
spent first; progress is the larger of the two fractions, and the learning rate decays along a
cosine from its base to 10 % of it as progress goes from 0 to 1. The time already spent is saved
in every checkpoint, so a run resumed in pieces (a 2-hour CPU run in four sittings) spends one
budget, not one per piece.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

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


def resume(path: Path, config: dict, read: Callable[[Path], dict], defaults: dict | None = None) -> dict | None:
    """The checkpoint at ``path`` read by ``read`` if there is one (None otherwise), after
    checking that the same configuration wrote it (ValueError if not: a new run needs a new folder).
    ``defaults``: settings added since, which a run written before them lacks, with the value it means."""
    if not path.exists():
        return None
    state = read(path)
    saved = {**{k: v for k, v in (defaults or {}).items() if k not in state["train_config"]}, **state["train_config"]}
    if saved != config:
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
