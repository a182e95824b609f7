"""CausalOptimizer: the ask/tell interface for users, tests, benchmarks and outside scripts.

    opt = acbo.CausalOptimizer(observational, target="Y", method="amortized", seed=0)
    iv = opt.ask()              # Intervention {name: value}
    opt.tell(iv, sample)        # one joint measurement of every variable under do(iv)
    batch = opt.ask(n=4)        # four experiments to run in parallel; tell them in any order
    opt.recommend()             # what the model believes best: among the experiments run, and anywhere
    opt.best, opt.posterior(), opt.history, opt.drop(3), opt.save(path), CausalOptimizer.load(path)

Measurements are kept as told; the models see every value within ``MODEL_SPREADS`` robust spreads
of its variable's observational median (a value beyond is clamped onto that bound and the clamp
recorded in ``opt.clamped``), so no value can break them. A measurement beyond ``OUTLIER_SPREADS``
is refused at ``tell`` as a likely error unless accepted (``accept_outlier=True``). Decisions and
predictions run with one torch thread (``threads``) unless the user says otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
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
from acbo.costs import BudgetSpent, Costs, pays, previous_settings
from acbo.io import atomic_save, load_state
from acbo.method import Method, Problem, build_method
from acbo.parallel import intra_op_threads
from acbo.posterior import ParentPosterior
from acbo.seeding import generator as make_generator

FORMAT_VERSION = 1
_KIND = "acbo.CausalOptimizer"
SET_TOLERANCE = 1e-4
"""A variable that was set may be reported within this fraction of (its value + its domain's width)
of the value set (rounding in a lab's report); the value set is what is recorded."""
SET_PRECISION = (f"a set variable's measured value must be the value set to within {SET_TOLERANCE:g} of (|value| + "
                 "its domain's width)")
"""The rule of :data:`SET_TOLERANCE` as the messages of a refused result state it."""
SET_GRID_CELLS = 441
"""The most settings :meth:`CausalOptimizer.recommend` predicts over one allowed set of several
variables (21 per axis for two, 7 for three)."""
OUTLIER_SPREADS = 1e4
"""The stated rule for a likely error: a measured value further than this many robust spreads from
its variable's observational median is refused at ``tell`` unless accepted (``accept_outlier=True``)."""
MODEL_SPREADS = 1e6
"""The models see every value within this many robust spreads of its variable's observational
median; a value beyond it (an accepted outlier, or one in the observational data) is clamped onto
that bound and the clamp recorded. The simulators' test families reach about 3e3 robust spreads at
the ends of their domains, so no ordinary value is clamped."""
DECISION_THREADS = 1
"""torch intra-op threads for decisions and predictions (see :func:`acbo.parallel.intra_op_threads`)."""


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
    """One experiment: what was set, what was measured (every variable, as told), and whether the
    user dropped it (then the models do not see it; it stays in the history)."""

    intervention: Intervention
    outcome: dict[str, float]
    dropped: bool = False
    cost: float | None = None
    """What it cost (:mod:`acbo.costs`; None in a campaign without costs)."""


@dataclass(frozen=True)
class Pending:
    """An experiment asked and not yet told: what it sets, its price when asked (charged when it
    is told; None without costs), and whether it was asked on its own (``ask()``, ``ask(n=1)``)
    rather than in a batch: only such a one is replaced by an experiment the user chose instead."""

    intervention: Intervention
    cost: float | None = None
    alone: bool = True


@dataclass(frozen=True)
class Clamp:
    """A value the models see clamped (:data:`MODEL_SPREADS`): where it was, what was measured, what
    the models use."""

    where: str
    variable: str
    value: float
    used: float


@dataclass(frozen=True)
class Suggestion:
    """An intervention with what is believed of it: the predicted E[Y | do] and its 90 % interval
    (observed units; NaN where the method has no model of the response), the measurements made at it
    (within half a grid step for a setting predicted anywhere) and their mean."""

    intervention: Intervention
    mean: float
    q05: float
    q95: float
    n: int
    measured_mean: float


@dataclass(frozen=True)
class Recommendation:
    """What to take away from a campaign: the experiment run that the method's model believes best
    (``tried``), and the best setting it predicts anywhere in the domains (``anywhere``; None for a
    method without a model of the response, whose ``tried`` is the best measured mean instead)."""

    tried: Suggestion | None
    anywhere: Suggestion | None
    model: bool
    """Whether the method's model of the response chose them (else: the best measured mean)."""


def robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of n x d rows: the median and the robust spread, 1.4826 x the median absolute
    deviation (the std where that is 0, and 1 where both are)."""
    center = np.median(x, axis=0)
    spread = 1.4826 * np.median(np.abs(x - center), axis=0)
    std = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])
    spread = np.where(spread > 0, spread, np.where(std > 0, std, 1.0))
    return center, spread


def clean_name(name) -> str:
    """A variable name as typed: surrounding spaces and a byte-order mark removed (the one rule for
    data frames, mappings and the campaign's files)."""
    return str(name).lstrip("\ufeff").strip()


def cleaned(mapping: Mapping, what: str) -> dict:
    """``mapping`` with its keys cleaned (:func:`clean_name`); ValueError naming keys that become one."""
    out: dict = {}
    for k, v in mapping.items():
        name = clean_name(k)
        if name in out:
            raise ValueError(f"{what} names {name!r} twice (after trimming spaces): {[str(x) for x in mapping]}")
        out[name] = v
    return out


def _as_columns(observational) -> tuple[list[str], np.ndarray]:
    """names, n x d float64 array from a DataFrame or a mapping name -> 1-D array."""
    if isinstance(observational, pd.DataFrame):
        names = [clean_name(c) for c in observational.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate variable names in observational data: {dup}")
        cols = [observational[c].to_numpy() for c in observational.columns]
    elif isinstance(observational, Mapping):
        names = [clean_name(k) for k in observational]
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


def _set_options(problem: Problem, max_set, exploration_sets) -> dict:
    """``max_set`` and the exploration sets (names) as a Problem's fields, checked: ValueError
    naming the offending value."""
    derived = max_set is None  # as many as the largest exploration set (once the sets are checked), else one
    if derived:
        sets_ok = isinstance(exploration_sets, (list, tuple)) and all(isinstance(s, (list, tuple)) for s in exploration_sets)
        max_set = max((len(s) for s in exploration_sets), default=1) if sets_ok else 1
    elif isinstance(max_set, bool) or not isinstance(max_set, (int, np.integer)) or max_set < 1:
        raise ValueError(f"max_set must be a positive integer, got {max_set!r}")
    settable = [n for n, ok in zip(problem.names, problem.intervenable.tolist()) if ok]
    if not derived and max_set > len(settable):
        raise ValueError(f"max_set={max_set} but only {len(settable)} variables may be set: {settable}")
    if exploration_sets is None:
        return {"max_set": int(max_set), "sets": None}
    if isinstance(exploration_sets, (str, Mapping)) or not hasattr(exploration_sets, "__iter__"):
        raise ValueError(f"exploration_sets must be a list of lists of variable names, got {exploration_sets!r}")
    if len(list(exploration_sets)) == 0:
        raise ValueError("exploration_sets is empty: give at least one set, or None for every set of at most max_set")
    sets = []
    for s in exploration_sets:
        if isinstance(s, str) or not hasattr(s, "__iter__"):
            raise ValueError(f"an exploration set must be a list of variable names, got {s!r}")
        names = [clean_name(n) for n in s]
        unknown = [n for n in names if n not in settable]
        why = None
        if not names:
            why = "it is empty"
        elif unknown:
            why = f"{unknown} may not be set (settable: {settable})"
        elif len(set(names)) != len(names):
            why = "it repeats a variable"
        elif len(names) > max_set:
            why = f"it has {len(names)} variables, more than max_set={max_set}"
        if why:
            raise ValueError(f"exploration set {list(s)!r}: {why}")
        sets.append(tuple(sorted(problem.names.index(n) for n in names)))
    return {"max_set": int(max_set), "sets": tuple(dict.fromkeys(sets))}


def _cost_options(problem: Problem, costs, move_costs, budget_cost) -> tuple[Costs | None, float | None]:
    """The costs (:class:`acbo.costs.Costs`) and the budget in cost units, checked: ValueError
    naming the offending value."""
    if costs is None:
        if move_costs is not None or budget_cost is not None:
            raise ValueError("move_costs and budget_cost need costs (the cost of setting each variable that may be set)")
        return None, None
    settable = [n for n, ok in zip(problem.names, problem.intervenable.tolist()) if ok]

    def table(given, what: str, positive: bool) -> torch.Tensor:
        if not isinstance(given, Mapping):
            raise ValueError(f"{what} must be a mapping name -> cost, got {given!r}")
        given = cleaned(given, what)
        out = torch.zeros(problem.d, dtype=torch.float64)
        for name, c in given.items():
            if name not in settable:
                raise ValueError(f"{what} names {name!r}, which may not be set (settable: {settable})")
            try:
                c = float(c)
            except (TypeError, ValueError):
                raise ValueError(f"{what}[{name!r}] must be a number, got {c!r}") from None
            if not math.isfinite(c) or c < 0 or (positive and c == 0):
                raise ValueError(f"{what}[{name!r}] must be finite and {'> 0' if positive else '>= 0'}, got {c}")
            out[problem.names.index(name)] = c
        return out

    fixed = table(costs, "costs", True)
    missing = [n for n in settable if fixed[problem.names.index(n)] == 0]
    if missing:
        raise ValueError(f"costs gives no cost for {missing}: give every variable that may be set its cost")
    per_unit = table(move_costs, "move_costs", False) if move_costs is not None else torch.zeros_like(fixed)
    if budget_cost is not None:
        try:
            budget_cost = float(budget_cost)
        except (TypeError, ValueError):
            raise ValueError(f"budget_cost must be a number, got {budget_cost!r}") from None
        if not math.isfinite(budget_cost) or budget_cost <= 0:
            raise ValueError(f"budget_cost must be finite and > 0, got {budget_cost}")
    return Costs(fixed, per_unit), budget_cost


class CausalOptimizer:
    """Find the intervention that minimises (or maximises) E[Y | do(.)] without knowing the graph.

    observational: pandas DataFrame, or mapping name -> 1-D array (all the same length).
    target: name of Y. domains: {name: (low, high)}; default each variable's observed
    [min, max]. intervenable: names that may be set (default: all but the target).
    method: a registered method name (see ``acbo.METHODS``). minimize: direction.
    seed: the same seed and the same tells give the same asks. threads: torch intra-op threads
    for decisions and predictions (default 1; None: torch's own setting). max_set: how many
    variables one experiment may set at once (default: the largest exploration set, else 1: one
    at a time, as every method can);
    exploration_sets: the sets of variable names an experiment may set together (as CBO's; each
    at most ``max_set`` intervenable variables; default every such set); both need a method that
    chooses sets (``acbo.METHODS[name].chooses_sets``). costs: {name: cost} of setting each
    settable variable in an experiment (money, hours; :mod:`acbo.costs`), move_costs: {name: cost
    per unit} it is moved from the last experiment's value, budget_cost: the campaign's budget in
    those units (asks stop when it cannot pay for another experiment); cost_aware: whether the
    method is told the costs and chooses per unit cost (False: costs are only counted). options:
    method-specific keyword arguments (e.g. ``scm=`` for ``oracle``).
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
        threads: int | None = DECISION_THREADS,
        max_set: int | None = None,
        exploration_sets: list[list[str]] | None = None,
        costs: Mapping[str, float] | None = None,
        move_costs: Mapping[str, float] | None = None,
        budget_cost: float | None = None,
        cost_aware: bool = True,
        **options: Any,
    ):
        names, x = _as_columns(observational)
        self.threads = threads
        self._center, self._spread = robust_scale(x)
        self.clamped: list[Clamp] = []
        """Values the models see clamped onto :data:`MODEL_SPREADS` robust spreads."""
        x = self._model_rows(names, x, np.zeros_like(x, dtype=bool), "observation", 1)
        if isinstance(domains, Mapping):
            domains = cleaned(domains, "domains")
        if isinstance(intervenable, (list, tuple)):
            intervenable = [clean_name(v) for v in intervenable]
        problem = Problem.from_data(names, x, clean_name(target), domains, intervenable, minimize, seed)
        problem = dataclasses.replace(problem, **_set_options(problem, max_set, exploration_sets))
        self.costs, self.budget_cost = _cost_options(problem, costs, move_costs, budget_cost)
        """What experiments cost (:class:`acbo.costs.Costs`, None without costs) and the budget in those units."""
        if not isinstance(cost_aware, bool):
            raise ValueError(f"cost_aware must be True or False, got {cost_aware!r}")
        self.cost_aware = cost_aware
        self.problem = dataclasses.replace(problem, costs=self.costs if cost_aware else None)
        if self.budget_cost is not None and not pays(self._cheapest, self.budget_cost):
            raise ValueError(f"budget_cost {self.budget_cost:g} cannot pay for any experiment: the cheapest allowed "
                             f"one costs {self._cheapest:g}")
        self._check_domains()
        self.method_name = method
        self.method: Method = build_method(method, self.problem, options)
        if self.costs is not None and cost_aware and not self.method.reads_costs:
            warnings.warn(f"method {method!r} does not weigh costs in its choices: they are counted (spent, "
                          "budget_cost) only", UserWarning, stacklevel=2)
        self.seed = int(seed)
        self._gen = make_generator("ask", self.seed)
        self._n_obs = x.shape[0]
        self.buffer = Buffer(len(names), capacity=x.shape[0] + 64)
        """What the models read: the observational rows, then every experiment not dropped."""
        self.buffer.add(torch.from_numpy(x))
        self.history: list[Record] = []
        self._pending: list[Pending] = []  # asked and not yet told, in the order asked

    @property
    def threads(self) -> int | None:
        """torch intra-op threads for decisions and predictions (None: torch's own setting)."""
        return self._threads

    @threads.setter
    def threads(self, threads: int | None) -> None:
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None (torch's own setting), got {threads!r}")
        self._threads = None if threads is None else int(threads)

    def _check_domains(self) -> None:
        """ValueError for a domain that reaches further than MODEL_SPREADS robust spreads from its
        variable's observations: the models could not take its values in (a typo, most likely)."""
        p = self.problem
        for j in np.flatnonzero(p.intervenable.numpy()):
            far = max(abs(float(p.low[j]) - self._center[j]), abs(float(p.high[j]) - self._center[j])) / self._spread[j]
            if far > MODEL_SPREADS:
                raise ValueError(f"the domain of {p.names[j]!r}, [{float(p.low[j]):.6g}, {float(p.high[j]):.6g}], reaches "
                                 f"{far:.3g} robust spreads from its observational median {self._center[j]:.6g}; "
                                 f"domains within {MODEL_SPREADS:.0e} are accepted")

    def _model_rows(self, names, x: np.ndarray, was_set: np.ndarray, what: str, first: int) -> np.ndarray:
        """Rows (n x d) as the models see them: every measured value (``was_set`` False) within
        MODEL_SPREADS robust spreads of its observational median; a clamp is recorded for each value
        moved (where: ``what`` and the row's number, counted from ``first``)."""
        bound = MODEL_SPREADS * self._spread
        out = np.where(was_set, x, np.clip(x, self._center - bound, self._center + bound))
        for i, j in np.argwhere(out != x):
            self.clamped.append(Clamp(f"{what} {first + i}", names[j], float(x[i, j]), float(out[i, j])))
        return out

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

    @property
    def pending(self) -> Intervention | None:
        """The oldest experiment asked and not yet told (None if none; all of them:
        :attr:`pending_experiments`)."""
        return self._pending[0].intervention if self._pending else None

    @property
    def pending_experiments(self) -> tuple[Intervention, ...]:
        """Every experiment asked and not yet told, in the order asked."""
        return tuple(q.intervention for q in self._pending)

    @property
    def pending_costs(self) -> tuple[float, ...] | None:
        """What each pending experiment (:attr:`pending_experiments`, in order) will be charged when
        told: its price when it was asked. None without costs."""
        return None if self.costs is None else tuple(float(q.cost) for q in self._pending)

    def ask(self, n: int | None = None) -> Intervention | list[Intervention]:
        """The next experiment to run (an :class:`Intervention`), or (``n``) a list of the next
        ``n`` to run at once, as a batch.

        Asked experiments stay pending until told (in any order) or withdrawn: ``ask()`` returns
        the oldest pending one if there is one; ``ask(n)`` returns the pending ones topped up
        with new ones to ``n`` (a ValueError if more than ``n`` are pending). A new experiment is
        chosen with the pending ones as input (:meth:`acbo.method.Method.propose_batch`: their
        outcomes stood in for by the method's prediction, or independent draws for a
        Thompson-sampling method), so a batch does not repeat itself where it need not. With a
        budget in cost units each is priced when asked, and that price is charged when it is told."""
        if n is None:
            return self.pending if self._pending else self._ask_more(1, alone=True)[0]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer (experiments to run at once), got {n!r}")
        if len(self._pending) > n:
            raise ValueError(f"{len(self._pending)} experiments are pending, more than n={n}: tell or withdraw "
                             f"some first, or ask for at least {len(self._pending)}")
        self._ask_more(int(n) - len(self._pending), alone=n == 1)
        return list(self.pending_experiments)

    def _ask_more(self, k: int, alone: bool) -> list[Intervention]:
        """Choose ``k`` new experiments, each with the ones pending before it, and make them
        pending (``alone``: asked on their own, not as a batch); all or none: on any error (e.g.
        :class:`acbo.costs.BudgetSpent`, the budget in cost units cannot pay for them) the campaign
        is as it was."""
        p = self.problem
        state, before = self._gen.get_state(), len(self._pending)
        try:
            for m in range(k):
                out = [{p.names.index(name): v for name, v in q.intervention.items()} for q in self._pending]
                self.method.allowance, self.method.start = self._allowance(m, k), self._previous()
                with intra_op_threads(self.threads):
                    choice = self.method.propose_batch(self.buffer, self._gen, out)
                iv = Intervention({p.names[i]: v for i, v in choice.items()})
                cost = self.cost(iv) if self.costs is not None else None
                if self.budget_cost is not None and not pays(cost, self.method.allowance):
                    again = "ask again for another draw, " if self.method.stochastic else "and asks the same again: "
                    remedy = "use a method that does" if self.cost_aware else "tell it them (cost_aware=True)"
                    blind = (f"; it does not weigh costs, {again}{remedy}, or extend_budget_cost"
                             if not (self.cost_aware and self.method.reads_costs) else "")
                    raise BudgetSpent(f"method {self.method_name!r} chose {iv}, costing {cost:.6g}, but only "
                                      f"{self.method.allowance:.6g} of the budget of {self.budget_cost:.6g} is left"
                                      + blind)
                self._pending.append(Pending(iv, cost, alone))
        except BaseException:
            del self._pending[before:]
            self._gen.set_state(state)
            raise
        finally:
            self.method.allowance, self.method.start = math.inf, None
        return [q.intervention for q in self._pending[before:]]

    # ------------------------------------------------------------------ costs
    def cost(self, intervention) -> float:
        """What the experiment ``intervention`` would cost now (:mod:`acbo.costs`: the variables'
        costs, and their moves from the values of the last experiment told, dropped or not).
        ValueError without costs."""
        if self.costs is None:
            raise ValueError("this campaign has no costs (CausalOptimizer(costs={name: cost}))")
        iv = self._check_intervention(intervention)
        return self.costs.of({self.names.index(n): v for n, v in iv.items()}, self._previous())

    def _previous(self) -> torch.Tensor:
        """Where the next experiment starts (d): the last experiment told, as measured, or the
        observational means before any."""
        if not self.history:
            return previous_settings(self.buffer)
        last = self.history[-1].outcome
        return torch.tensor([last[n] for n in self.names], dtype=torch.float64)

    @property
    def spent(self) -> float | None:
        """What the experiments told cost in all (dropped ones included: they were run); None without costs."""
        return None if self.costs is None else float(sum(r.cost for r in self.history))

    @functools.cached_property
    def _cheapest(self) -> float:
        """The fixed cost of the cheapest allowed experiment (costs and allowed sets never change
        over a campaign: computed once)."""
        return min(float(self.costs.fixed[list(s)].sum()) for s in self.problem.allowed_sets)

    def _allowance(self, member: int = 0, batch: int = 1) -> float:
        """The most the next experiment may cost: the budget less what was spent and the prices
        of the pending experiments (inf without a budget). BudgetSpent when that cannot pay for
        the cheapest allowed experiment (every variable at its last value); ``member`` of
        ``batch``: which of the experiments asked at once this is, for the message."""
        if self.budget_cost is None:
            return math.inf
        committed = sum(q.cost for q in self._pending)
        left = self.budget_cost - self.spent - committed
        cheapest = self._cheapest
        if not pays(cheapest, left):
            what = f"only {member} of the {batch} asked fit" if member else "it is spent"
            raise BudgetSpent(f"the budget of {self.budget_cost:.6g} cannot pay for another experiment ({what}): "
                              f"{self.spent:.6g} spent on the experiments told"
                              + (f", {committed:.6g} on the {len(self._pending)} pending" if self._pending else "")
                              + f"; the cheapest experiment costs {cheapest:.6g} (raise the budget with "
                              "extend_budget_cost, or `acbo campaign extend --budget-cost`)")
        return left

    def extend_budget_cost(self, budget_cost: float) -> None:
        """Raise the budget in cost units to ``budget_cost`` (the new total, larger than now; a
        campaign with costs and a budget). ValueError naming the value otherwise."""
        if self.budget_cost is None:
            raise ValueError("this campaign has no budget in cost units to extend (CausalOptimizer(costs=..., "
                             "budget_cost=...))")
        try:
            new = float(budget_cost)
        except (TypeError, ValueError):
            raise ValueError(f"budget_cost must be a number, got {budget_cost!r}") from None
        if isinstance(budget_cost, bool) or not math.isfinite(new) or new <= self.budget_cost:
            raise ValueError(f"the budget in cost units is {self.budget_cost:g} already; extending takes a larger "
                             f"finite one, got {budget_cost!r}")
        self.budget_cost = new

    def withdraw(self, intervention=None) -> list[Intervention]:
        """Take pending experiments back (they will not be run, or their results are lost): the
        one matching ``intervention``, or every one (None). Returns what was withdrawn; nothing is
        recorded. ValueError when nothing is pending or nothing pending matches."""
        if not self._pending:
            raise ValueError("no experiment is pending: nothing to withdraw")
        if intervention is None:
            out, self._pending = self.pending_experiments, []
            return list(out)
        i = self._pending_index(self._check_intervention(intervention))
        if i is None:
            raise ValueError(f"{Intervention(self._check_intervention(intervention))} is not pending; pending: "
                             f"{list(self.pending_experiments)}")
        return [self._pending.pop(i).intervention]

    def _pending_index(self, iv: Mapping[str, float]) -> int | None:
        """The first pending experiment that sets exactly ``iv``'s variables to its values (to the
        precision of a report); None if none."""
        for i, q in enumerate(self.pending_experiments):
            if set(iv) == set(q) and all(self._agrees(n, v, q[n]) for n, v in iv.items()):
                return i
        return None

    def pending_for(self, sample: Mapping[str, float]) -> Intervention | None:
        """The pending experiment a measured row answers: the one whose settings the row holds;
        None if none. ValueError when the row holds the settings of several different pending
        experiments (say which with the intervention)."""
        row = self._check_sample(sample)
        fits = list(dict.fromkeys(q for q in self.pending_experiments if self.holds(q, row)))
        if len(fits) > 1:
            raise ValueError(f"the result holds the settings of {len(fits)} pending experiments ({', '.join(map(str, fits))}):"
                             " say which it answers (command line: --intervention)")
        return fits[0] if fits else None

    def holds(self, intervention: Mapping[str, float], sample: Mapping[str, float]) -> bool:
        """Whether the measured row ``sample`` holds the settings of ``intervention`` (each set
        variable's value to the precision of a report, as a tell matches rows to experiments)."""
        return all(n in sample and self._agrees(n, float(sample[n]), float(v)) for n, v in intervention.items())

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
        sample = cleaned(sample, "the sample")
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

    def _check_asked(self, iv: dict[str, float], chosen: bool) -> int | None:
        """The contract of tell: it answers a pending ask (its index returned), unless the
        experiment was ``chosen`` by the user (then it may be anything legal; the index of the
        pending ask it matches, if any)."""
        i = self._pending_index(iv)
        if chosen or i is not None:
            return i
        own = "; to record an experiment you chose yourself, pass chosen=True"
        if not self._pending:
            last = f" (the last told: {self.history[-1].intervention})" if self.history else ""
            raise ValueError(f"no experiment is pending: {Intervention(iv)} was not asked{last}{own}")
        what = (f"the pending experiment {self.pending}" if len(self._pending) == 1 else
                f"any of the {len(self._pending)} pending experiments {list(self.pending_experiments)}")
        raise ValueError(f"{Intervention(iv)} is not {what}{own}")

    def outliers(self, row: Mapping[str, float], iv: Mapping[str, float]) -> list[str]:
        """The measured (not set by ``iv``) values of ``row`` (every variable) beyond the outlier
        rule, OUTLIER_SPREADS robust spreads from the observational median, each described."""
        out = []
        for j, n in enumerate(self.names):
            k = abs(row[n] - self._center[j]) / self._spread[j]
            if n not in iv and k > OUTLIER_SPREADS:
                out.append(f"{n} = {row[n]:.6g} lies {k:.3g} robust spreads from its observational median "
                           f"{self._center[j]:.6g}")
        return out

    def tell(self, intervention, sample, chosen: bool = False, accept_outlier: bool = False) -> Intervention | None:
        """Record the outcome of one experiment: ``sample`` measures every variable under
        do(``intervention``) (the intervened variables at the values they were set to).

        The experiment is a pending one (asked and not yet told; a batch's are told in any
        order), or with ``chosen=True`` one the user chose (any intervenable variables at values in
        their domains). A chosen experiment that is not pending replaces the pending one when that
        one was asked on its own (it was run instead); experiments asked in a batch stay pending
        (``withdraw`` takes them back). A tell that answers no pending ask is refused (each asked
        experiment is told once: a batch that holds one experiment twice takes it twice). A
        measured value beyond OUTLIER_SPREADS robust spreads of its variable (a likely typo) is
        refused unless ``accept_outlier=True``; the models then see it as measured, clamped only
        beyond MODEL_SPREADS (``clamped``); if it skews them, ``drop`` the experiment. Returns the
        pending experiment told (None for a chosen one that was not pending)."""
        iv = self._check_intervention(intervention)
        asked = self._check_asked(iv, chosen)
        row = self._check_sample(sample)
        for name, v in iv.items():  # reported to the precision of a measurement; recorded as set
            if not self._agrees(name, row[name], v):
                raise ValueError(f"sample[{name!r}] = {row[name]} but the intervention set {name} = {v} "
                                 f"({SET_PRECISION}); if the lab ran other values than those asked, tell the "
                                 "experiment as run (chosen=True; command line: --intervention) and withdraw the "
                                 "pending one")
            row[name] = v
        far = self.outliers(row, iv)
        if far and not accept_outlier:
            raise ValueError("; ".join(far) + f" (more than {OUTLIER_SPREADS:.0e} is refused as a likely error); if "
                             "it is a real measurement, tell it again with accept_outlier=True (command line: "
                             "--accept-outlier)")
        told = self._pending.pop(asked) if asked is not None else None
        cost = None if self.costs is None else told.cost if told is not None else self.cost(iv)
        self.history.append(Record(Intervention(iv), row, cost=cost))
        self._add_to_buffer(self.history[-1], len(self.history))
        committed = sum(q.cost for q in self._pending) if self.budget_cost is not None else 0.0
        if told is None and self.budget_cost is not None and not pays(self.spent + committed, self.budget_cost):
            warnings.warn(f"experiment {len(self.history)}, your own, cost {cost:.6g}: the campaign has now spent "
                          f"{self.spent:.6g}" + (f" and committed {committed:.6g} to {len(self._pending)} pending"
                                                 if self._pending else "")
                          + f", over its budget of {self.budget_cost:.6g} (it is recorded: it was run); withdraw "
                          "pending experiments or raise the budget (extend_budget_cost)", UserWarning, stacklevel=2)
        if told is not None:
            return told.intervention
        if len(self._pending) == 1 and self._pending[0].alone:  # the user's own replaces the one suggestion
            self._pending.clear()
        return None

    def _add_to_buffer(self, record: Record, number: int) -> None:
        """Append experiment ``number`` (1 = the first told) to what the models read."""
        was_set = np.array([[n in record.intervention for n in self.names]])
        raw = np.array([[record.outcome[n] for n in self.names]], dtype=np.float64)
        x = self._model_rows(self.names, raw, was_set, "experiment", number)
        self.buffer.add(torch.from_numpy(x[0]), torch.from_numpy(was_set[0]))

    def drop(self, experiment: int, undo: bool = False) -> None:
        """Drop experiment number ``experiment`` (1 = the first told) from what the models see, or
        (``undo``) bring a dropped one back. It stays in ``history``, marked; the models are rebuilt
        from the observations and the experiments kept (the method starts afresh on them)."""
        n = len(self.history)
        if isinstance(experiment, bool) or not isinstance(experiment, (int, np.integer)) or not 1 <= experiment <= n:
            raise ValueError(f"experiment must be a number from 1 to {n} (the experiments told), got {experiment!r}")
        rec = self.history[experiment - 1]
        if rec.dropped != undo:
            raise ValueError(f"experiment {experiment} is {'' if rec.dropped else 'not '}dropped; nothing to "
                             f"{'undo' if undo else 'drop'}")
        self.history[experiment - 1] = dataclasses.replace(rec, dropped=not undo)
        self._rebuild()

    def _rebuild(self) -> None:
        """The buffer from the observations and the experiments kept, and the method afresh."""
        obs = self.buffer.values[: self._n_obs].clone()
        self.buffer = Buffer(len(self.names), capacity=len(obs) + len(self.history) + 64)
        self.buffer.add(obs)
        self.clamped = [c for c in self.clamped if c.where.startswith("observation")]
        for t, rec in enumerate(self.history, 1):
            if not rec.dropped:
                self._add_to_buffer(rec, t)
        self.method = build_method(self.method_name, self.problem, self.method.options())

    # ------------------------------------------------------------------ results
    @property
    def best(self) -> tuple[Intervention, float] | None:
        """(intervention, measured target value) of the best single measurement so far (dropped
        experiments left out); None before any. One lucky reading can make it; for the answer of a
        campaign use :meth:`recommend`."""
        kept = [r for r in self.history if not r.dropped]
        if not kept:
            return None
        ys = [r.outcome[self.target] for r in kept]
        i = int(np.argmin(ys) if self.problem.minimize else np.argmax(ys))
        return kept[i].intervention, ys[i]

    def recommend(self, points: int = 101) -> Recommendation:
        """What the method believes best (:class:`Recommendation`): among the experiments run (not
        dropped), the one whose predicted E[Y | do] is best, and the best setting predicted
        anywhere: on a grid of ``points`` values over each settable variable's domain and over the
        box of each set of variables measured together (:data:`SET_GRID_CELLS` settings at most,
        ``points`` per axis at most; a grid over every allowed set would take the expert minutes
        at d = 20). Experiments that set several variables count where the method models such
        experiments (:attr:`Method.models_sets`) and the set is one the campaign allows. A method
        without a model of the response recommends the best measured mean among the experiments
        run."""
        if isinstance(points, bool) or not isinstance(points, (int, np.integer)) or points < 2:
            raise ValueError(f"points must be an integer >= 2 (the grid over each domain), got {points!r}")
        kept = [r for r in self.history if not r.dropped]
        groups: list[tuple[Intervention, list[float]]] = []  # distinct settings run, with their readings
        for r in kept:
            for iv, ys in groups:
                if set(iv) == set(r.intervention) and all(self._agrees(n, r.intervention[n], iv[n]) for n in iv):
                    ys.append(r.outcome[self.target])
                    break
            else:
                groups.append((r.intervention, [r.outcome[self.target]]))
        better = min if self.problem.minimize else max
        if not self.has_model:
            tried = [Suggestion(iv, float("nan"), float("nan"), float("nan"), len(ys), float(np.mean(ys)))
                     for iv, ys in groups]
            return Recommendation(better(tried, key=lambda s: s.measured_mean) if tried else None, None, False)
        allowed = set(self.problem.allowed_sets) if self.method.models_sets else set()
        modelled = lambda names: len(names) == 1 or tuple(sorted(self.names.index(n) for n in names)) in allowed
        tried = []
        for iv, ys in groups:
            if modelled(list(iv)):
                names = list(iv)
                pred = self.predict(names[0] if len(iv) == 1 else names, [[iv[n] for n in names]],
                                    quantity="expectation").iloc[0]
                tried.append(Suggestion(iv, float(pred["mean"]), float(pred["q05"]), float(pred["q95"]), len(ys),
                                        float(np.mean(ys))))
        settable = [[n] for n, can in zip(self.names, self.problem.intervenable.tolist()) if can]
        measured_sets = [list(iv) for iv, _ in groups if len(iv) > 1 and modelled(list(iv))]
        anywhere = [self._best_on_grid(names, points, kept) for names in settable + measured_sets]
        return Recommendation(better(tried, key=lambda s: s.mean) if tried else None,
                              better(anywhere, key=lambda s: s.mean), True)

    @property
    def has_model(self) -> bool:
        """Whether the method has a model of the response (``predict``, a recommendation by it)."""
        return type(self.method).predict is not Method.predict

    def reconfigure(self, **options: Any) -> None:
        """Change options of the method (e.g. the amortized policy's ``horizon`` when the budget
        grows): it is rebuilt with them and keeps its state."""
        state = self.method.state_dict()
        method = build_method(self.method_name, self.problem, {**self.method.options(), **options})
        method.load_state_dict(state)
        self.method = method

    def _best_on_grid(self, names: list[str], points: int, kept: list[Record]) -> Suggestion:
        """The best predicted E[Y | do(names = x)] on a grid over the variables' box (``points``
        values over one variable's domain; for k > 1 variables, G per axis, G^k <=
        :data:`SET_GRID_CELLS`, G <= ``points``), with the readings of the experiments that set
        exactly these variables within half a grid step of it on every axis."""
        k = len(names)
        G = points if k == 1 else max(2, min(points, int(SET_GRID_CELLS ** (1 / k) + 1e-9)))
        axes = [np.linspace(*self.domains[n], G) for n in names]
        grid = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)                 # G^k x k
        pred = self.predict(names[0] if k == 1 else names, grid, quantity="expectation")
        i = int(pred["mean"].idxmin() if self.problem.minimize else pred["mean"].idxmax())
        x = {n: float(grid[i, c]) for c, n in enumerate(names)}
        half = {n: (self.domains[n][1] - self.domains[n][0]) / (2 * (G - 1)) for n in names}
        ys = [r.outcome[self.target] for r in kept if set(r.intervention) == set(names)
              and all(abs(r.intervention[n] - x[n]) <= half[n] for n in names)]
        return Suggestion(Intervention(x), float(pred["mean"][i]), float(pred["q05"][i]), float(pred["q95"][i]),
                          len(ys), float(np.mean(ys)) if ys else float("nan"))

    def posterior(self) -> ParentPosterior:
        """The method's current posterior over the target's parents."""
        with intra_op_threads(self.threads):
            return self.method.posterior(self.buffer)

    def predict(self, variable: str | list[str], values, quantity: str = "measurement") -> pd.DataFrame:
        """What the method believes an experiment do(variable = value) would give, for each value:
        a frame with columns value, mean, std, q05, q50, q95 (observed units of the target).
        ``quantity``: ``measurement`` (a fresh measurement of Y, noise included) or ``expectation``
        (E[Y | do], the quantity optimised). ``variable`` may be a list of k names set together,
        ``values`` then Q x k (one setting per row; the frame holds a column per name instead of
        value), for a method with a model of such experiments (``amortized``, ``parent_scale``,
        ``cbo-parents``). Values outside a
        domain are predicted with a warning (the models were not asked to be right there). Methods
        without a model of the response (random, oracle) raise a ValueError that says so."""
        p = self.problem
        names = [variable] if isinstance(variable, str) else list(variable) if isinstance(variable, (list, tuple)) else None
        if not names:
            raise ValueError(f"variable must be a name or a list of names, got {variable!r}")
        for name in names:
            if name not in p.names:
                raise ValueError(f"unknown variable {name!r}; variables: {list(p.names)}")
            if not bool(p.intervenable[p.names.index(name)]):
                raise ValueError(f"variable {name!r} is not intervenable")
        if len(set(names)) != len(names):
            raise ValueError(f"variables must differ, got {names}")
        if quantity not in ("measurement", "expectation"):
            raise ValueError(f"quantity must be 'measurement' or 'expectation', got {quantity!r}")
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"values must be numbers, got {values!r}") from None
        k = len(names)
        if isinstance(variable, str):
            x = x.reshape(-1, 1)
        elif (x.ndim == 2 and x.shape[1] == k) or (x.ndim == 1 and x.size == k):
            x = x.reshape(-1, k)
        else:
            raise ValueError(f"values for {names} must be settings of {k} numbers each (Q x {k}, one row per "
                             f"setting), got shape {x.shape}")
        if x.size == 0:
            raise ValueError("values is empty")
        if not np.isfinite(x).all():
            raise ValueError(f"values must be finite, got {x[~np.isfinite(x)][:5].tolist()}")
        for c, name in enumerate(names):
            lo, hi = self.domains[name]
            outside = x[(x[:, c] < lo) | (x[:, c] > hi), c]
            if outside.size:
                warnings.warn(f"predicting {name} at {outside.size} value(s) outside its domain [{lo:.6g}, {hi:.6g}] "
                              f"(e.g. {outside[0]:.6g}): an extrapolation", UserWarning, stacklevel=2)
        idx = [p.names.index(n) for n in names]
        with intra_op_threads(self.threads):
            if len(names) == 1:
                pred = self.method.predict(self.buffer, idx[0], torch.from_numpy(x[:, 0]), draw=quantity == "measurement")
            else:
                pred = self.method.predict_set(self.buffer, idx, torch.from_numpy(x), draw=quantity == "measurement")
        where = {"value": x[:, 0]} if isinstance(variable, str) else {n: x[:, c] for c, n in enumerate(names)}
        cols = {"mean": pred.mean, "std": pred.std, "q05": pred.quantile(0.05), "q50": pred.quantile(0.5),
                "q95": pred.quantile(0.95)}
        return pd.DataFrame({**where, **{k: np.asarray(torch.as_tensor(v).detach().double().cpu()) for k, v in cols.items()}})

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
            "max_set": p.max_set,
            "sets": None if p.sets is None else [list(t) for t in p.sets],
            "costs": None if self.costs is None else {"fixed": self.costs.fixed.tolist(),
                                                      "per_unit": self.costs.per_unit.tolist()},
            "budget_cost": self.budget_cost,
            "cost_aware": self.cost_aware,
            "record_costs": [r.cost for r in self.history],
            "method": self.method_name,
            "options": self.method.options(),
            "method_state": self.method.state_dict(),
            "seed": self.seed,
            "rng_state": self._gen.get_state(),
            "buffer": self.buffer.state_dict(),
            "n_observational": self._n_obs,
            "history": [(dict(r.intervention), dict(r.outcome)) for r in self.history],
            "pending": [{"intervention": dict(q.intervention), "cost": q.cost, "alone": q.alone} for q in self._pending],
            "dropped": [t for t, r in enumerate(self.history, 1) if r.dropped],
            "threads": self.threads,
            "robust_scale": (self._center.tolist(), self._spread.tolist()),
            "clamped": [(c.where, c.variable, c.value, c.used) for c in self.clamped],
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
        sets = state.get("sets")  # files written before sets have neither: one variable at a time
        costs = state.get("costs")  # files written before costs have none
        obj.costs = None if costs is None else Costs(torch.tensor(costs["fixed"], dtype=torch.float64),
                                                     torch.tensor(costs["per_unit"], dtype=torch.float64))
        obj.budget_cost, obj.cost_aware = state.get("budget_cost"), state.get("cost_aware", True)
        obj.problem = Problem(tuple(state["names"]), state["target"], state["low"], state["high"],
                              state["intervenable"], state["minimize"], state["seed"], state.get("max_set", 1),
                              None if sets is None else tuple(tuple(t) for t in sets),
                              obj.costs if obj.cost_aware else None)
        obj.method_name = state["method"]
        obj.method = build_method(state["method"], obj.problem, state["options"])
        obj.method.load_state_dict(state.get("method_state", {}))
        obj.seed = state["seed"]
        obj._gen = torch.Generator()
        obj._gen.set_state(state["rng_state"])
        obj.buffer = Buffer.from_state(state["buffer"])
        dropped = set(state.get("dropped", []))  # files written before drop have none
        paid = state.get("record_costs", [None] * len(state["history"]))
        obj.history = [Record(Intervention(iv), out, t in dropped, c)
                       for t, ((iv, out), c) in enumerate(zip(state["history"], paid), 1)]
        pending = state.get("pending")  # files written before the tell contract: none; before batches: one or None
        pending = [] if pending is None else [{"intervention": pending}] if isinstance(pending, Mapping) else pending
        obj.threads = state.get("threads", DECISION_THREADS)
        obj._n_obs = state.get("n_observational", obj.buffer.n - len(obj.history))
        scale = state.get("robust_scale")  # files written before the clamp: from their observations
        obj._center, obj._spread = (np.array(v) for v in scale) if scale else \
            robust_scale(obj.buffer.values[: obj._n_obs].numpy())
        obj.clamped = [Clamp(*c) for c in state.get("clamped", [])]
        obj._pending = [Pending(Intervention(q["intervention"]), q.get("cost"), q.get("alone", True)) for q in pending]
        bound = MODEL_SPREADS * obj._spread
        if scale is None and (np.abs(obj.buffer.values.numpy() - obj._center) > bound).any():
            obj._rebuild()  # a file written before the clamp, with a value the models cannot take: clamp it now
        return obj
