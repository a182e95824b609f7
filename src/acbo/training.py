"""What every training run shares: the run skeleton (:func:`run_loop`: out folder, resume, first
validation, the step loop with its budget and learning-rate schedule, validation and checkpoint
cadence, one end-of-run rule, the JSONL log, process 0's duties), the settings every run has
(:class:`RunConfig`, :class:`OptimConfig`), running means of diagnostics.

Each stage's ``train()`` builds its models and hands :func:`run_loop` a :class:`Loop`: its step,
validation, checkpoint writer and reader. The end-of-run rule: when a run ends (steps done, time
budget spent, or no step to take), the checkpoint on disk holds the last step done, validated.

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

from acbo.configs import flat_dict, format_record, positive_ints

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
        return min(1.0, max(step / self.total if self.total else 1.0, used))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class RunConfig:
    """What every training run has: its length, cadence, seed, device and folder."""

    steps: int = 1000
    """Steps of the run: optimizer steps (stage 1), GRPO iterations (stage 2) or rounds (stage 3)."""
    max_minutes: float = 0.0
    """Wall-time budget over all pieces of a resumed run: the learning-rate schedule follows
    max(step, time) progress and the run stops when it is spent (0: no budget; a budget makes the
    run depend on the machine's speed)."""
    batch_size: int = 32
    """Problems drawn per step: buffers (stage 1) or campaigns (stages 2 and 3)."""
    eval_every: int = 100
    """Steps between validations and checkpoints."""
    log_every: int = 1
    """Steps between log records (each the means over its window where a stage keeps them)."""
    seed: int = 0
    """Seed of the training stream and the initialisation."""
    device: str = "cpu"
    """Training device."""
    out: str = "runs/run"
    """Folder for the checkpoint and the log (log.jsonl); an existing run resumes."""

    def __post_init__(self):
        positive_ints(self, ("batch_size", "eval_every", "log_every"))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not self.max_minutes >= 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes}")


@dataclass(frozen=True)
class OptimConfig:
    """An AdamW optimizer; its learning rate follows the run's cosine schedule (to 10 %)."""

    lr: float = 3e-4
    """Base learning rate."""
    weight_decay: float = 1e-4
    """Weight decay."""

    def __post_init__(self):
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={self.lr}, weight_decay={self.weight_decay}")

    def adamw(self, params) -> torch.optim.AdamW:
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


def resume(path: Path, config, read: Callable[[Path], dict], legacy: dict | None = None,
           defaults: dict | None = None, placement: tuple[str, ...] = ()) -> dict | None:
    """The checkpoint at ``path`` read by ``read`` if there is one (None otherwise), after
    checking that the same configuration wrote it (ValueError if not: a new run needs a new folder).
    Configurations are compared setting by setting (dotted paths). ``legacy``: a run written with
    the flat configs of old, its setting names -> today's paths (a name not listed kept its leaf
    name). ``defaults``: settings added since, which a run written before them lacks, with the
    value it means. ``placement``: settings that say where the work runs, not what it computes."""
    if not path.exists():
        return None
    state = read(path)
    ours = flat_dict(config)
    saved = state["train_config"]
    if "run" not in saved:  # an old flat config: map its names (one old name may set several paths)
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in ours}
        paths = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (legacy or {}).items()}
        saved = {p: v for k, v in saved.items() for p in paths.get(k, (by_leaf.get(k, k),))}
    else:
        saved = flat_dict(saved)
    saved = {**{k: v for k, v in (defaults or {}).items() if k not in saved}, **saved}

    def what(d: dict) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if k not in placement}

    if what(saved) != what(ours):
        differ = sorted(k for k in set(saved) | set(ours) if what(saved).get(k) != what(ours).get(k))
        raise ValueError(f"{path} was written by another configuration (settings {differ}); use a new --out")
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


class Throughput:
    """Items per second since the last reading."""

    def __init__(self):
        self._t0, self._n = time.perf_counter(), 0

    def count(self, n: int) -> None:
        self._n += n

    def rate(self) -> float:
        """The rate since the last reading, and a fresh count."""
        now = time.perf_counter()
        out = self._n / (now - self._t0)
        self._t0, self._n = now, 0
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


def leave_process_group() -> None:
    """At the end of a run under ``torchrun``: wait for every process (process 0 validates and
    writes the checkpoint last), then close the process group, so that no process exits with the
    group's threads still running (which aborts it: "terminate called without an active
    exception"). Alone, nothing."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard_share(shards: int, device: str) -> tuple[int, int]:
    """(rank, world size) of this process (:func:`process_group`), after checking that the ``shards``
    of a step split evenly over the processes (ValueError if not)."""
    rank, world = process_group(device)
    if shards % world:
        raise ValueError(f"shards ({shards}) must be a multiple of the processes ({world})")
    return rank, world


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


def from_process_0(stop: bool, progress: float, world: int) -> tuple[bool, float]:
    """Process 0's stop decision and schedule progress everywhere (a time budget is read on one clock)."""
    if world == 1:
        return stop, progress
    t = torch.tensor([1.0 if stop else 0.0, progress], dtype=torch.float64)
    dist.broadcast(t, 0)
    return bool(t[0].item()), float(t[1].item())


# ----------------------------------------------------------------------------- the run skeleton
@dataclass(kw_only=True)
class Loop:
    """What a stage hands to :func:`run_loop`. ``read``, ``restore``, ``begin`` and ``step`` run in
    every process under ``torchrun``; the others on process 0 only."""

    step: Callable[[int], dict | None]
    """Train step i (0-based); returns its log terms (or None where ``record`` keeps them)."""
    validate: Callable[[], dict]
    """The validation metrics of the models as they are now."""
    save: Callable[[Path, int, list, float], None]
    """Write the checkpoint: (its path, steps done, history, seconds spent by the run)."""
    read: Callable[[Path], dict]
    """Read (and check) the checkpoint file."""
    restore: Callable[[dict], float]
    """Load a checkpoint's state into the models and optimizers; returns the seconds it had spent."""
    checkpoint: str
    """The checkpoint's file name in the run's folder."""
    optimizers: list[tuple[torch.optim.Optimizer, float]]
    """Each optimizer with its base learning rate (the schedule sets them at every step)."""
    models: list[torch.nn.Module] = field(default_factory=list)
    """Models whose weights process 0 broadcasts under ``torchrun`` once ``begin`` has run."""
    unit: str = "step"
    """What a step is called in the log (``step``, ``iteration``, ``round``)."""
    first_validation: bool = False
    """Validate the starting point of a fresh run (history entry 0)."""
    begin: Callable[[bool], None] | None = None
    """Called once after resuming (argument: whether a checkpoint was resumed), before any step."""
    after: Callable[[dict], dict] | None = None
    """Called after every step with its validation metrics (empty where it had none), before the
    checkpoint; returns entries for the step's log record."""
    where: Callable[[], str] | None = None
    """Where a resumed run stands, beyond its step (e.g. " on level 2"), for the log."""
    record: Callable[[], dict] | None = None
    """The log record of the steps since the last one, where the stage keeps a window."""
    legacy: dict[str, str] = field(default_factory=dict)
    """Old flat setting names -> dotted paths (see :func:`resume`)."""
    defaults: dict = field(default_factory=dict)
    """Settings added since the first runs, with the value those runs mean (dotted paths)."""
    placement: tuple[str, ...] = ()
    """Settings of where the work runs, which a resumed run may change."""


def restore_into(model: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[dict], float]:
    """:attr:`Loop.restore` for a checkpoint of one model: its ``state_dict`` and, under
    ``optimizer``, the optimizer's state (``opt``) and the seconds spent (``elapsed_s``)."""

    def restore(state: dict) -> float:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"]["opt"])
        return state["optimizer"].get("elapsed_s", 0.0)

    return restore


# long: the run skeleton, top to bottom, in the order it runs
def run_loop(cfg: RunConfig, config, loop: Loop, log: Callable[[str], None]) -> None:
    """Run (or resume) a training run in ``cfg.out`` (``config``: the whole configuration, saved and
    checked on resume). Under ``torchrun`` every process steps; process 0 validates, logs and writes
    the checkpoint, and its clock decides when a time budget is spent. When the run ends, the
    checkpoint holds the last step done, validated."""
    rank, world = process_group(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    budget, start, history = Budget(cfg.steps, cfg.max_minutes), 0, []
    state = resume(out / loop.checkpoint, config, loop.read, loop.legacy, loop.defaults, loop.placement)
    if state is not None:
        budget.elapsed_before = loop.restore(state)
        start, history = state["step"], state["history"]
        if rank == 0:
            log(f"resumed from {loop.unit} {start}{loop.where() if loop.where is not None else ''}")
    if loop.begin is not None:
        loop.begin(state is not None)
    for model in loop.models if world > 1 else ():  # one start everywhere, whatever each process read
        broadcast_params(model)
    saved = start if state is not None else None  # the step the checkpoint on disk holds
    validated = history[-1][loop.unit] if history else None
    if loop.first_validation and state is None and rank == 0:  # the starting point, for comparison
        history.append({loop.unit: 0, **loop.validate()})
        validated = 0
        log(format_record(history[-1]))
    done = start
    for i in range(start, cfg.steps):
        progress = budget.progress(i) if rank == 0 else 0.0
        stop, progress = from_process_0(bool(cfg.max_minutes) and progress >= 1.0, progress, world)
        if stop:
            if rank == 0:
                log(f"time budget spent at {loop.unit} {i}")
            break
        for opt, base in loop.optimizers:
            set_lr(opt, cosine_lr(base, progress))
        terms = loop.step(i)
        done = i + 1
        if rank != 0:
            continue
        evaluate = done % cfg.eval_every == 0 or done == cfg.steps
        metrics = loop.validate() if evaluate else {}
        validated = done if evaluate else validated
        extra = loop.after(metrics) if loop.after is not None else {}
        if evaluate or done % cfg.log_every == 0:
            rec = {loop.unit: done, **(loop.record() if loop.record is not None else terms), **metrics, **extra}
            if evaluate:
                history.append(rec)
                loop.save(out / loop.checkpoint, done, history, budget.elapsed())
                saved = done
            append_jsonl(out / "log.jsonl", rec)
            log(format_record(rec))
    if rank == 0 and saved != done:  # the end-of-run rule: the files hold the last step done
        if validated != done:
            history.append({loop.unit: done, **loop.validate()})
            log(format_record(history[-1]))
        loop.save(out / loop.checkpoint, done, history, budget.elapsed())
