"""Progressive difficulty: a ladder of families that ends at the whole training world.

Level k of L (k = 0 .. L - 1) is the base family (e.g. ``train-broad``) with every difficulty
axis opened to the fraction f = (k + 1) / L of its way from an easy start to the base's own
range, so the last level *is* the base family (under another name, which keys its seed streams):

- variables: d_range (low, low + f (high - low)), at least the low end;
- density: the upper end of expected_degree, from its low end;
- mechanisms: the first ceil(f M) of the base's M mechanism kinds, in the order the base lists
  them (the base lists the easy ones first: linear before poly, saturating ... gp);
- noise: the upper end of noise_std, from the low end (log-linear when the base draws it
  log-uniformly);
- observational budget: the lower end of n_obs, from the upper end down (a small budget is
  harder);
- domain width: the upper end of domain_width, from its low end.

The rule (:meth:`Curriculum.advance`): a level is passed when the validation metric (lower is
better, e.g. the policy's normalised regret) is at or below ``threshold`` for ``patience``
evaluations in a row; a level held for ``max_steps`` training steps is left anyway (the
schedule as a fallback). The state is three integers, saved with the checkpoints, so a resumed
run continues on the level it left.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from acbo.scm import Family, resolve_family


@dataclass(frozen=True)
class CurriculumState:
    """Where a run stands on the ladder."""

    level: int = 0
    """The level being trained on (0 = easiest)."""
    steps: int = 0
    """Training steps spent on this level."""
    passes: int = 0
    """Consecutive evaluations on this level at or below the threshold."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> "CurriculumState":
        """The state as :meth:`to_dict` wrote it; ValueError naming what is wrong otherwise."""
        if not isinstance(state, dict) or set(state) != {"level", "steps", "passes"}:
            raise ValueError(f"a curriculum state has exactly the keys level, steps, passes; got {state!r}")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in state.values()):
            raise ValueError(f"a curriculum state holds non-negative integers, got {state!r}")
        return cls(**state)


@dataclass(frozen=True)
class Curriculum:
    """A ladder of ``levels`` families ending at ``base`` and the rule that climbs it."""

    base: Family | str = "train-broad"
    """The whole training world: the last level (a registered name or a broad Family)."""
    levels: int = 4
    """Rungs of the ladder (1: train on the base family from the start)."""
    threshold: float = 0.3
    """A level is passed when the validation metric (lower is better) is at most this ..."""
    patience: int = 2
    """... in this many evaluations in a row."""
    max_steps: int = 200
    """Training steps after which a level is left even if not passed (the schedule fallback)."""

    def __post_init__(self):
        fam = resolve_family(self.base)
        if fam.classic:
            raise ValueError(f"a curriculum climbs to a broad family; {fam.name!r} is a classic one")
        if isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1:
            raise ValueError(f"levels must be a positive integer, got {self.levels!r}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        for name in ("patience", "max_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    def family(self, level: int) -> Family:
        """The family of ``level`` (see the module docstring); the last level is the base's world."""
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.levels:
            raise ValueError(f"level must be an integer in [0, {self.levels - 1}], got {level!r}")
        base = resolve_family(self.base)
        name = f"{base.name}@{level + 1}of{self.levels}"
        if level == self.levels - 1:
            return base.with_(name=name)
        f = (level + 1) / self.levels
        d_lo, d_hi = base.d_range
        e_lo, e_hi = as_range(base.expected_degree)
        n_lo, n_hi = as_range(base.n_obs)
        s_lo, s_hi = base.noise_std
        w_lo, w_hi = base.domain_width
        noise_hi = s_lo * (s_hi / s_lo) ** f if base.noise_log else s_lo + f * (s_hi - s_lo)
        return base.with_(
            name=name,
            d_range=(d_lo, max(d_lo, round(d_lo + f * (d_hi - d_lo)))),
            expected_degree=(e_lo, e_lo + f * (e_hi - e_lo)),
            mechanism=base.mechanism[:max(1, math.ceil(f * len(base.mechanism)))],
            noise_std=(s_lo, noise_hi),
            n_obs=(min(n_hi, round(n_hi - f * (n_hi - n_lo))), n_hi),
            domain_width=(w_lo, w_lo + f * (w_hi - w_lo)),
        )

    def advance(self, state: CurriculumState, steps: int, metric: float | None = None) -> tuple[CurriculumState, str]:
        """The state after ``steps`` more training steps and, if an evaluation was made, its
        ``metric``; and why it moved: '' (it stayed), 'passed' (threshold held ``patience`` times)
        or 'schedule' (``max_steps`` spent on the level). The last level is never left."""
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
        if metric is not None and not math.isfinite(metric):
            raise ValueError(f"the validation metric must be a finite number, got {metric!r}")
        spent = state.steps + steps
        passes = state.passes if metric is None else (state.passes + 1 if metric <= self.threshold else 0)
        last = state.level == self.levels - 1
        if not last and passes >= self.patience:
            return CurriculumState(state.level + 1), "passed"
        if not last and spent >= self.max_steps:
            return CurriculumState(state.level + 1), "schedule"
        return CurriculumState(state.level, spent, passes), ""


def as_range(v) -> tuple:
    """A family field that is a value or a (low, high) range, as a range."""
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)
