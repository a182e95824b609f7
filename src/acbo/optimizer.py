"""CausalOptimizer: the ask/tell interface for users, tests, benchmarks and outside scripts.

    opt = acbo.CausalOptimizer(observational, target="Y", method="amortized", seed=0)
    iv = opt.ask()              # Intervention {name: value}
    opt.tell(iv, sample)        # one joint measurement of every variable under do(iv)
    opt.best, opt.posterior(), opt.history, opt.save(path), CausalOptimizer.load(path)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

import acbo.baselines  # noqa: F401  (registers the baseline methods)
import acbo.experts  # noqa: F401  (registers parent_scale and cbo-parents)
import acbo.policy  # noqa: F401  (registers amortized)
from acbo.buffer import Buffer
from acbo.io import atomic_save, load_state
from acbo.method import Method, Problem, build_method
from acbo.posterior import ParentPosterior
from acbo.seeding import generator as make_generator

FORMAT_VERSION = 1
_KIND = "acbo.CausalOptimizer"
SET_TOLERANCE = 1e-4
"""A variable that was set may be reported within this fraction of (its value + its domain's width)
of the value set (rounding in a lab's report); the value set is what is recorded."""


class Intervention(Mapping):
    """An immutable hard intervention do(X = v, ...): a mapping {name: value}."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, float] | None = None, **kwargs: float):
        merged = dict(items or {}, **kwargs)
        self._items = {str(k): float(v) for k, v in merged.items()}

    def __getitem__(self, key: str) -> float:
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return "do(" + ", ".join(f"{k}={v:.6g}" for k, v in self._items.items()) + ")"


@dataclass(frozen=True)
class Record:
    """One experiment: what was set, and what was measured (every variable)."""

    intervention: Intervention
    outcome: dict[str, float]


def _as_columns(observational) -> tuple[list[str], np.ndarray]:
    """names, n x d float64 array from a DataFrame or a mapping name -> 1-D array."""
    if isinstance(observational, pd.DataFrame):
        names = [str(c) for c in observational.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate variable names in observational data: {dup}")
        cols = [observational[c].to_numpy() for c in observational.columns]
    elif isinstance(observational, Mapping):
        names = [str(k) for k in observational]
        if len(set(names)) != len(names):
            raise ValueError(f"variable names collide after conversion to str: {names}")
        cols = [np.asarray(observational[k]) for k in observational]
        for name, c in zip(names, cols):
            if c.ndim != 1:
                raise ValueError(f"observational[{name!r}] must be 1-D, got shape {c.shape}")
        lengths = {name: len(c) for name, c in zip(names, cols)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"observational columns differ in length: {lengths}")
    else:
        raise ValueError(f"observational data must be a pandas DataFrame or a mapping name -> 1-D array, "
                         f"got {type(observational).__name__}")
    if len(names) < 2:
        raise ValueError(f"need at least 2 variables (the target and one to intervene on), got {names}")
    for name, c in zip(names, cols):
        if not (np.issubdtype(c.dtype, np.number) or c.dtype == bool):
            raise ValueError(f"variable {name!r} is not numeric (dtype {c.dtype})")
    x = np.stack([c.astype(np.float64) for c in cols], axis=1) if cols else np.zeros((0, 0))
    if x.shape[0] < 2:
        raise ValueError(f"observational data need at least 2 rows, got {x.shape[0]}")
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"observational data contain NaN or inf ({int(bad.sum())} cells; first: row {r}, "
                         f"variable {names[c]!r})")
    return names, x


class CausalOptimizer:
    """Find the intervention that minimises (or maximises) E[Y | do(.)] without knowing the graph.

    observational: pandas DataFrame, or mapping name -> 1-D array (all the same length).
    target: name of Y. domains: {name: (low, high)}; default each variable's observed
    [min, max]. intervenable: names that may be set (default: all but the target).
    method: a registered method name (see ``acbo.METHODS``). minimize: direction.
    seed: the same seed and the same tells give the same asks. options: method-specific
    keyword arguments (e.g. ``scm=`` for ``oracle``).
    """

    def __init__(
        self,
        observational,
        target: str = "Y",
        domains: Mapping[str, tuple[float, float]] | None = None,
        intervenable: list[str] | None = None,
        method: str = "amortized",
        minimize: bool = True,
        seed: int = 0,
        **options: Any,
    ):
        names, x = _as_columns(observational)
        self.problem = Problem.from_data(names, x, target, domains, intervenable, minimize, seed)
        self.method_name = method
        self.method: Method = build_method(method, self.problem, options)
        self.seed = int(seed)
        self._gen = make_generator("ask", self.seed)
        self.buffer = Buffer(len(names), capacity=x.shape[0] + 64)
        self.buffer.add(torch.from_numpy(x))
        self.history: list[Record] = []
        self.pending: Intervention | None = None
        """The experiment the last ``ask`` suggested, until it is told."""

    # ------------------------------------------------------------------ ask / tell
    @property
    def names(self) -> tuple[str, ...]:
        return self.problem.names

    @property
    def target(self) -> str:
        return self.problem.names[self.problem.target]

    @property
    def domains(self) -> dict[str, tuple[float, float]]:
        return {n: (float(self.problem.low[j]), float(self.problem.high[j])) for j, n in enumerate(self.names)}

    def ask(self) -> Intervention:
        """The next experiment to run. It stays pending until told: asking again before
        telling returns the same experiment."""
        if self.pending is None:
            i, v = self.method.propose(self.buffer, self._gen)
            self.pending = Intervention({self.problem.names[i]: v})
        return self.pending

    def _check_intervention(self, iv) -> dict[str, float]:
        if not isinstance(iv, Mapping) or len(iv) == 0:
            raise ValueError(f"an intervention must be a non-empty mapping name -> value, got {iv!r}")
        p, out = self.problem, {}
        for name, v in iv.items():
            if name not in p.names:
                raise ValueError(f"intervention on unknown variable {name!r}; variables: {list(p.names)}")
            j = p.names.index(name)
            if j == p.target:
                raise ValueError(f"cannot intervene on the target {name!r}")
            if not bool(p.intervenable[j]):
                raise ValueError(f"variable {name!r} is not intervenable")
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"intervention value of {name!r} must be a number, got {v!r}") from None
            lo, hi = float(p.low[j]), float(p.high[j])
            if not math.isfinite(v) or not lo - 1e-9 * (1 + abs(lo)) <= v <= hi + 1e-9 * (1 + abs(hi)):
                raise ValueError(f"intervention {name}={v} is outside its domain [{lo}, {hi}]")
            out[name] = v
        return out

    def _check_sample(self, sample) -> dict[str, float]:
        if isinstance(sample, pd.DataFrame):
            if len(sample) != 1:
                raise ValueError(f"a sample is one row; got a frame of {len(sample)} rows")
            sample = sample.iloc[0].to_dict()
        elif isinstance(sample, pd.Series):
            sample = sample.to_dict()
        if not isinstance(sample, Mapping):
            raise ValueError(f"a sample must be a mapping name -> value or a 1-row DataFrame, got {type(sample).__name__}")
        names = self.names
        missing = [n for n in names if n not in sample]
        extra = [str(k) for k in sample if k not in names]
        if missing or extra:
            raise ValueError(f"sample must measure exactly the variables {list(names)}: missing {missing}, unknown {extra}")
        out = {}
        for n in names:
            try:
                v = float(sample[n])
            except (TypeError, ValueError):
                raise ValueError(f"sample[{n!r}] must be a number, got {sample[n]!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"sample[{n!r}] is {v}; measurements must be finite")
            out[n] = v
        return out

    def _agrees(self, name: str, value: float, setting: float) -> bool:
        """``value`` is ``setting`` of variable ``name`` to the precision of a report (SET_TOLERANCE
        relative to the setting and the domain's width)."""
        j = self.problem.names.index(name)
        width = float(self.problem.high[j] - self.problem.low[j])
        return abs(value - setting) <= SET_TOLERANCE * (abs(setting) + width)

    def _check_asked(self, iv: dict[str, float], chosen: bool) -> None:
        """The contract of tell: it answers the pending ask, unless the experiment was ``chosen``
        by the user (then it may be anything legal, and replaces the pending suggestion)."""
        if chosen:
            return
        own = "; to record an experiment you chose yourself, pass chosen=True"
        if self.pending is None:
            last = f" (the last told: {self.history[-1].intervention})" if self.history else ""
            raise ValueError(f"no experiment is pending: {Intervention(iv)} was not asked{last}{own}")
        same = set(iv) == set(self.pending) and all(self._agrees(n, v, self.pending[n]) for n, v in iv.items())
        if not same:
            raise ValueError(f"{Intervention(iv)} is not the pending experiment {self.pending}{own}")

    def tell(self, intervention, sample, chosen: bool = False) -> None:
        """Record the outcome of one experiment: ``sample`` measures every variable under
        do(``intervention``) (the intervened variables at the values they were set to).

        The experiment is the pending one (the last ``ask``), or with ``chosen=True`` one the user
        chose (any intervenable variables at values in their domains); either way nothing is
        pending afterwards. A tell that answers no ask, or the same ask twice, is refused."""
        iv = self._check_intervention(intervention)
        self._check_asked(iv, chosen)
        row = self._check_sample(sample)
        for name, v in iv.items():  # reported to the precision of a measurement; recorded as set
            if not self._agrees(name, row[name], v):
                raise ValueError(f"sample[{name!r}] = {row[name]} but the intervention set {name} = {v}")
            row[name] = v
        x = torch.tensor([row[n] for n in self.names], dtype=torch.float64)
        mask = torch.tensor([n in iv for n in self.names])
        self.buffer.add(x, mask)
        self.history.append(Record(Intervention(iv), row))
        self.pending = None

    # ------------------------------------------------------------------ results
    @property
    def best(self) -> tuple[Intervention, float] | None:
        """(intervention, observed target value) of the best experiment so far; None before any."""
        if not self.history:
            return None
        ys = [r.outcome[self.target] for r in self.history]
        i = int(np.argmin(ys) if self.problem.minimize else np.argmax(ys))
        return self.history[i].intervention, ys[i]

    def posterior(self) -> ParentPosterior:
        """The method's current posterior over the target's parents."""
        return self.method.posterior(self.buffer)

    def predict(self, variable: str, values, quantity: str = "measurement") -> pd.DataFrame:
        """What the method believes an experiment do(variable = value) would give, for each value:
        a frame with columns value, mean, std, q05, q50, q95 (observed units of the target).
        ``quantity``: ``measurement`` (a fresh measurement of Y, noise included) or ``expectation``
        (E[Y | do], the quantity optimised). Methods without a model of the response (random,
        oracle, surrogate-ts) raise a ValueError that says so."""
        p = self.problem
        if variable not in p.names:
            raise ValueError(f"unknown variable {variable!r}; variables: {list(p.names)}")
        j = p.names.index(variable)
        if not bool(p.intervenable[j]):
            raise ValueError(f"variable {variable!r} is not intervenable")
        if quantity not in ("measurement", "expectation"):
            raise ValueError(f"quantity must be 'measurement' or 'expectation', got {quantity!r}")
        try:
            x = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"values must be numbers, got {values!r}") from None
        if x.size == 0:
            raise ValueError("values is empty")
        if not np.isfinite(x).all():
            raise ValueError(f"values must be finite, got {x[~np.isfinite(x)][:5].tolist()}")
        pred = self.method.predict(self.buffer, j, torch.from_numpy(x), draw=quantity == "measurement")
        cols = {"value": x, "mean": pred.mean, "std": pred.std, "q05": pred.quantile(0.05), "q50": pred.quantile(0.5),
                "q95": pred.quantile(0.95)}
        return pd.DataFrame({k: np.asarray(torch.as_tensor(v).detach().double().cpu()) for k, v in cols.items()})

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        p = self.problem
        return {
            "kind": _KIND,
            "format_version": FORMAT_VERSION,
            "names": list(p.names),
            "target": p.target,
            "low": p.low.clone(),
            "high": p.high.clone(),
            "intervenable": p.intervenable.clone(),
            "minimize": p.minimize,
            "method": self.method_name,
            "options": self.method.options(),
            "method_state": self.method.state_dict(),
            "seed": self.seed,
            "rng_state": self._gen.get_state(),
            "buffer": self.buffer.state_dict(),
            "n_observational": self.buffer.n - len(self.history),
            "history": [(dict(r.intervention), dict(r.outcome)) for r in self.history],
            "pending": None if self.pending is None else dict(self.pending),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole campaign to ``path`` atomically (resumable bit for bit with ``load``)."""
        atomic_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CausalOptimizer":
        """Resume a campaign saved with :meth:`save`."""
        return cls.from_state(load_state(path, _KIND, FORMAT_VERSION, "acbo optimizer file", "acbo CausalOptimizer file"))

    @classmethod
    def from_state(cls, state: dict) -> "CausalOptimizer":
        """Rebuild from :meth:`state_dict`'s output (its next ask is the original's, bit for bit)."""
        obj = cls.__new__(cls)
        obj.problem = Problem(tuple(state["names"]), state["target"], state["low"], state["high"],
                              state["intervenable"], state["minimize"], state["seed"])
        obj.method_name = state["method"]
        obj.method = build_method(state["method"], obj.problem, state["options"])
        obj.method.load_state_dict(state.get("method_state", {}))
        obj.seed = state["seed"]
        obj._gen = torch.Generator()
        obj._gen.set_state(state["rng_state"])
        obj.buffer = Buffer.from_state(state["buffer"])
        obj.history = [Record(Intervention(iv), out) for iv, out in state["history"]]
        pending = state.get("pending")  # files written before the tell contract have none
        obj.pending = None if pending is None else Intervention(pending)
        return obj
