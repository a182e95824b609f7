"""The one interface every optimisation method implements, and the registry of methods.

A method sees a :class:`Problem` (names, target, domains, which variables may be set, the
direction) and the :class:`~acbo.buffer.Buffer` of everything measured so far; it proposes one
intervention and reports its posterior over the target's parents. :class:`acbo.CausalOptimizer`
drives every method through this interface, and so do the tests and the benchmark harness.
Adding a method means registering a class here, not changing the interface.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from acbo.buffer import Buffer
from acbo.costs import BudgetSpent, Costs, pays, previous_settings
from acbo.posterior import ExactPosteriorConfig, ParentPosterior, exact_posterior
from acbo.scm.optimum import candidate_sets


@dataclass(frozen=True, eq=False)
class Problem:
    """What a method may know about the system. low/high/intervenable: d (label order)."""

    names: tuple[str, ...]
    target: int
    low: torch.Tensor
    high: torch.Tensor
    intervenable: torch.Tensor
    minimize: bool = True
    seed: int = 0
    """The campaign's seed: methods derive any internal randomness (e.g. bootstraps) from it."""
    max_set: int = 1
    """How many variables one experiment may set at once (1: one at a time)."""
    sets: tuple[tuple[int, ...], ...] | None = None
    """The sets of variables (label indices, sorted) an experiment may set together, as CBO's
    exploration sets; None: every set of at most ``max_set`` intervenable variables."""
    costs: Costs | None = None
    """What experiments cost, for a method that chooses per unit cost (None: the method is not
    told; every experiment counts the same)."""

    @property
    def d(self) -> int:
        return len(self.names)

    @functools.cached_property
    def allowed_sets(self) -> list[tuple[int, ...]]:
        """Every set an experiment may set (label indices, sorted; sizes 1 … ``max_set``)."""
        return candidate_sets(self.intervenable, self.max_set, None if self.sets is None else list(self.sets))

    @classmethod
    def from_data(cls, names: list[str], x: np.ndarray, target: str, domains: Mapping[str, tuple[float, float]] | None = None,
                  intervenable: list[str] | None = None, minimize: bool = True, seed: int = 0) -> "Problem":
        """The problem of observational data ``x`` (n x d, columns ``names``): domains default to
        each variable's observed [min, max]; every non-target variable is intervenable unless
        ``intervenable`` says otherwise. ValueError naming the offending argument."""
        if target not in names:
            raise ValueError(f"target {target!r} is not a variable of the data; variables: {names}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        t = names.index(target)
        low, high = x.min(axis=0), x.max(axis=0)
        if low[t] == high[t]:
            raise ValueError(f"the target {target!r} is constant in the observational data (every row {low[t]:g}): "
                             "nothing in them says what moves it")
        for name, dom in (domains or {}).items():
            if name not in names:
                raise ValueError(f"domain given for unknown variable {name!r}; variables: {names}")
            if name == target:
                raise ValueError(f"a domain was given for the target {target!r}, which is never set; "
                                 "domains are for the variables that may be set")
            try:
                lo, hi = (float(v) for v in dom)
            except (TypeError, ValueError):
                raise ValueError(f"domain of {name!r} must be a pair (low, high), got {dom!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"domain of {name!r} must be finite with low < high, got {(lo, hi)}")
            j = names.index(name)
            low[j], high[j] = lo, hi
        if intervenable is None:
            can = [j for j in range(len(names)) if j != t]
        else:
            if isinstance(intervenable, str):
                raise ValueError(f"intervenable must be a list of names, got the string {intervenable!r}")
            unknown = [v for v in intervenable if v not in names]
            if unknown:
                raise ValueError(f"intervenable names unknown variables {unknown}; variables: {names}")
            if target in intervenable:
                raise ValueError(f"the target {target!r} cannot be intervenable")
            if len(set(intervenable)) != len(list(intervenable)):
                raise ValueError(f"intervenable has duplicates: {list(intervenable)}")
            if not intervenable:
                raise ValueError("intervenable is empty: nothing could be set")
            can = [names.index(v) for v in intervenable]
        _check_constant_columns(names, x, t, can, set(domains or {}))
        mask = torch.zeros(len(names), dtype=torch.bool)
        mask[can] = True
        return cls(tuple(names), t, torch.from_numpy(low), torch.from_numpy(high), mask, bool(minimize), int(seed))


def _check_constant_columns(names: list[str], x: np.ndarray, target: int, can: list[int], given: set[str]) -> None:
    """A variable constant in the observational data: refused if it may be set and has no domain
    (its default domain would be one point), else a warning naming it (methods see it as noise-free)."""
    const = [j for j in range(len(names)) if j != target and x[:, j].min() == x[:, j].max()]
    stuck = [names[j] for j in const if j in can and names[j] not in given]
    if stuck:
        raise ValueError(f"variables {stuck} are constant in the observational data, so their default domains are "
                         "single points: give their domains, or leave them out of intervenable")
    if const:
        warnings.warn(f"variables {[names[j] for j in const]} are constant in the observational data: "
                      "no method can learn their effect from them", UserWarning, stacklevel=4)


class Method:
    """Base class: ``ask`` proposes (variable index, value); ``posterior`` reports the belief
    over pa(Y). Methods without a structural model of their own report the exact BLR posterior
    of the data they collected (so their experiments can be judged for what they reveal)."""

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = True
    """False for methods whose choices do not depend on the seed (the oracle)."""
    chooses_sets: ClassVar[bool] = False
    """True for methods whose :meth:`ask_set` chooses several variables at once (needed when the
    problem allows more than one per experiment, or restricts them to exploration sets)."""
    reads_costs: ClassVar[bool] = False
    """True for methods that weigh ``problem.costs`` in their choices (per unit cost); the others
    only keep within the budget left where they draw at random."""
    believes_pending: ClassVar[bool] = False
    """True for methods that choose a batch's next experiment with the pending ones believed
    (:meth:`believed`: a kriging believer); False for methods whose choices are independent draws
    (random, Thompson sampling), which a batch diversifies by itself."""

    def __init__(self, problem: Problem, **options: Any):
        if options:
            raise ValueError(f"method {self.name!r} takes no options {sorted(options)}")
        self.problem = problem
        self._believed: tuple[torch.Tensor, torch.Tensor, dict, torch.Tensor] | None = None
        """For :meth:`believed`: the measured rows it read (values, which were set), {(variable,
        value): E[Y | do]} on them, and their observational means."""
        self.pending: list[dict[int, float]] = []
        """The experiments of the batch being chosen that are already asked ({variable index:
        value} each), during :meth:`propose_batch`; empty otherwise."""
        self.allowance = math.inf
        """The most the next experiment may cost (the rest of the campaign's budget in cost
        units; inf without one): set by the caller before each decision (``CausalOptimizer.ask``);
        a method that reads ``problem.costs`` chooses within it."""
        self.start: torch.Tensor | None = None
        """Where the next experiment starts, for costs per unit moved (d: the last experiment told,
        dropped or not): set by the caller with :attr:`allowance`; None: read off the buffer
        (:func:`acbo.costs.previous_settings`)."""

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        raise NotImplementedError

    def propose(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """``ask``, checked: an intervenable variable and a value inside its domain (a value a
        hair outside it, from float rounding, is moved onto its end)."""
        i, v = self.ask(buffer, generator)
        p = self.problem
        lo, hi = float(p.low[i]), float(p.high[i])
        assert bool(p.intervenable[i]) and lo - 1e-9 <= v <= hi + 1e-9, (self.name, i, v)
        return i, min(max(v, lo), hi)

    def ask_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        """The next experiment as {variable index: value} over one of ``problem.allowed_sets``
        (methods with :attr:`chooses_sets`)."""
        raise NotImplementedError

    def propose_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        """The next experiment, checked, as {variable index: value}: :meth:`propose` where the
        problem sets one variable at a time with no exploration sets (today's choices, bit for
        bit), else :meth:`ask_set` — one of the allowed sets, each value inside its domain (a
        hair outside it, from float rounding, moved onto its end); with costs, brought within the
        allowance where moving costs (:meth:`within_allowance`)."""
        p = self.problem
        if p.max_set == 1 and p.sets is None:
            i, v = self.propose(buffer, generator)
            return self.within_allowance({i: v}, buffer)
        choice = self.within_allowance(self.ask_set(buffer, generator), buffer)
        assert tuple(sorted(choice)) in p.allowed_sets, (self.name, choice)
        out = {}
        for i, v in choice.items():
            lo, hi = float(p.low[i]), float(p.high[i])
            assert lo - 1e-9 <= v <= hi + 1e-9, (self.name, i, v)
            out[int(i)] = min(max(float(v), lo), hi)
        return out

    def previous(self, buffer: Buffer) -> torch.Tensor:
        """Where the next experiment starts (d): :attr:`start`, else the buffer's last experiment."""
        return self.start if self.start is not None else previous_settings(buffer)

    def within_allowance(self, choice: dict[int, float], buffer: Buffer) -> dict[int, float]:
        """``choice``, or where moves cost (``problem.costs``) and it costs more than the
        :attr:`allowance`, with each moving variable's value brought towards where the last
        experiment left it (inside its domain) until the allowance pays (the spare shared equally)."""
        p = self.problem
        if p.costs is None or not p.costs.moves or not math.isfinite(self.allowance):
            return choice
        prev = self.previous(buffer)
        if pays(p.costs.of(choice, prev), self.allowance):
            return choice
        fixed = sum(float(p.costs.fixed[i]) for i in choice)
        moving = [i for i in choice if float(p.costs.per_unit[i]) > 0]
        if not pays(fixed, self.allowance) or not moving:
            return choice  # no value helps: the caller refuses it
        spare = max(self.allowance - fixed, 0.0)  # at the edge of what pays: no move at all
        out = dict(choice)
        for i in moving:
            r = spare / (len(moving) * float(p.costs.per_unit[i]))
            lo, hi = max(float(p.low[i]), float(prev[i]) - r), min(float(p.high[i]), float(prev[i]) + r)
            out[i] = min(max(out[i], lo), hi) if lo <= hi else out[i]
        return out

    def propose_batch(self, buffer: Buffer, generator: torch.Generator, pending: list[dict[int, float]]
                      ) -> dict[int, float]:
        """The next experiment while the ``pending`` ones ({variable index: value} each; asked, not
        yet measured) are out: :meth:`propose_set` on the data with the pending experiments
        believed (:meth:`believed`) for a method that :attr:`believes_pending`, else on the data
        alone. With nothing pending it is :meth:`propose_set`, bit for bit."""
        if pending and self.believes_pending:
            buffer = self.believed(buffer, pending)
        self.pending = pending
        try:
            return self.propose_set(buffer, generator)
        finally:
            self.pending = []

    def believed(self, buffer: Buffer, pending: list[dict[int, float]]) -> Buffer:
        """``buffer`` and one row per pending experiment as the method believes it would come out
        (the kriging believer): the variables set at their values, the target at the method's
        predicted E[Y | do] given the data measured (:meth:`believed_means`, or
        :meth:`believed_set_mean` for an experiment that sets several; each computed once),
        every other variable at its observational mean. The rows are marked
        :attr:`Buffer.believed`: what a method learns of the structure it learns from the
        measured rows alone (:attr:`Buffer.told`); the believed ones tell it where it has asked."""
        told = buffer.told
        P, d, t = len(pending), buffer.d, self.problem.target
        kept = self._believed
        if kept is None or not (torch.equal(kept[0], told.values) and torch.equal(kept[1], told.intervened)):
            kept = self._believed = (told.values.clone(), told.intervened.clone(), {},  # other rows: predict afresh
                                     told.observational_stats()[0].to(buffer.values.dtype))
        _, _, memo, obs_mean = kept
        rows = obs_mean.repeat(P, 1)                                                                # P x d
        mask = torch.zeros(P, d, dtype=torch.bool)
        for r, q in enumerate(pending):
            for j, v in q.items():
                rows[r, j] = v
                mask[r, j] = True
        keys = [tuple(sorted((int(j), float(v)) for j, v in q.items())) for q in pending]
        for k in dict.fromkeys(keys):  # one at a time, in the order asked: a resumed batch computes the same
            if k in memo:
                continue
            var = torch.tensor([j for j, _ in k])
            val = torch.tensor([v for _, v in k], dtype=torch.float64)
            if len(k) == 1:
                memo[k] = float(self.believed_means(told, var, val)[0])
            else:
                memo[k] = self.believed_set_mean(told, var.tolist(), val)
        rows[:, t] = torch.tensor([memo[k] for k in keys], dtype=rows.dtype)
        out = told.copy()
        out.add(rows, mask)
        out.believed = P
        return out

    def believed_set_mean(self, told: Buffer, variables: list[int], values: torch.Tensor) -> float:
        """The predicted E[Y | do(X_variables = values)] (observed units; values: k) given the
        measured rows ``told``: :meth:`predict_set`."""
        return float(self.predict_set(told, variables, values[None], draw=False).mean[0])

    def believed_means(self, told: Buffer, var: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """The predicted E[Y | do(X_var[p] = val[p])] (observed units, P) given the measured rows
        ``told``: :meth:`predict`, once per variable."""
        out = torch.empty(len(var), dtype=torch.float64)
        for j in var.unique().tolist():
            at = var == j
            out[at] = self.predict(told, j, val[at], draw=False).mean.to(torch.float64)
        return out

    def random_set(self, generator: torch.Generator) -> dict[int, float]:
        """A uniformly random allowed set (each set equally likely; with costs, among those whose
        fixed costs the allowance pays for, if any), each variable at a uniform value in its domain."""
        sets = self._affordable(self.problem.allowed_sets)
        s = sets[int(torch.randint(len(sets), (1,), generator=generator))]
        u = torch.rand(len(s), generator=generator, dtype=torch.float64)
        p = self.problem
        return {i: float(p.low[i]) + float(u[k]) * (float(p.high[i]) - float(p.low[i])) for k, i in enumerate(s)}

    def _affordable(self, sets: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """The sets whose fixed costs the :attr:`allowance` pays for (all of them without costs, or
        when none is)."""
        costs = self.problem.costs
        if costs is None or not math.isfinite(self.allowance):
            return sets
        ok = [s for s in sets if pays(float(costs.fixed[list(s)].sum()), self.allowance)]
        return ok or sets

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        return self.exact_posterior(buffer, ExactPosteriorConfig())

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The method's predictive distribution (:mod:`acbo.predictive`, over the Q values x, in
        Y's observed units) of Y under do(X_variable = x): of a fresh measurement (``draw``) or of
        E[Y | do] itself. Methods without a model of the response raise a ValueError."""
        has = sorted(n for n, cls in METHODS.items() if cls.predict is not Method.predict)
        raise ValueError(f"method {self.name!r} has no model of the response; methods with one: {has}")

    @property
    def models_sets(self) -> bool:
        """Whether :meth:`predict_set` answers for the sets this method may set (a model of
        experiments that set several variables)."""
        return type(self).predict_set is not Method.predict_set

    def predict_set(self, buffer: Buffer, variables: list[int], x: torch.Tensor, draw: bool = True):
        """The predictive of Y (observed units, over the Q rows of x, Q x k) under do(X_variables =
        x) for k variables set together; methods without a model of such experiments raise a
        ValueError that names those with one."""
        has = sorted(n for n, cls in METHODS.items() if cls.predict_set is not Method.predict_set)
        raise ValueError(f"method {self.name!r} has no model of experiments that set several variables; "
                         f"methods with one: {has}")

    def exact_posterior(self, buffer: Buffer, cfg: ExactPosteriorConfig) -> ParentPosterior:
        """The exact posterior of everything in ``buffer`` (recomputed on every call, so that a
        decision's wall time includes its inference)."""
        return exact_posterior(buffer.values, buffer.intervened, self.problem.target, self.problem.names, cfg)

    def options(self) -> dict:
        """Keyword options that rebuild this method (saved with the optimizer)."""
        return {}

    def state_dict(self) -> dict:
        """Internal state that a rebuilt method could only recompute up to float rounding (e.g. an
        incrementally updated encoding), saved with the optimizer so that a resumed campaign asks
        exactly what the original would have; empty for methods whose state is a deterministic
        function of their options, the seed and the buffer."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output."""
        if state:
            raise ValueError(f"method {self.name!r} keeps no state, got {sorted(state)}")

    @property
    def setup_seconds(self) -> float:
        """Wall time of one-off work done before the first decision (e.g. a prior fit); 0 if none."""
        return 0.0

    def describe(self) -> str:
        """The method and the settings that change its results, for every benchmark row."""
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items() if not isinstance(v, dict))
        return f"{self.name}({opts})" if opts else self.name

    def random_proposal(self, generator: torch.Generator) -> tuple[int, float]:
        """A uniformly random intervenable variable (with costs, among those whose fixed cost the
        allowance pays for, if any), at a uniform value in its domain."""
        can = [(int(i),) for i in torch.nonzero(self.problem.intervenable).flatten()]
        idx = [s[0] for s in self._affordable(can)]
        i = idx[int(torch.randint(len(idx), (1,), generator=generator))]
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        lo, hi = float(self.problem.low[i]), float(self.problem.high[i])
        return i, lo + u * (hi - lo)


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``CausalOptimizer(method=cls.name)``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is registered already")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def option_names(cls: type[Method]) -> list[str]:
    """The keyword options a method takes."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[2:]                       # after self, problem
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_method(name: str, problem: Problem, options: dict) -> Method:
    """The registered method ``name`` for ``problem``; ValueError naming any option it does not take."""
    cls = get_method(name)
    known = option_names(cls)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"method {name!r} takes no option(s) {unknown}; its options: {known or 'none'}")
    if (problem.max_set > 1 or problem.sets is not None) and not cls.chooses_sets:
        able = sorted(n for n, c in METHODS.items() if c.chooses_sets)
        raise ValueError(f"method {name!r} sets one variable per experiment, so it takes neither max_set > 1 nor "
                         f"exploration sets (max_set={problem.max_set}); methods that choose sets: {able}")
    return cls(problem, **options)


def simulate_campaign(ask: Callable[..., Mapping[str, float] | list], experiment: Callable[[Mapping[str, float], int], dict],
                      tell: Callable[[Mapping[str, float], dict], None], steps: int,
                      on_step: Callable[[int, Mapping[str, float], dict, float], None], batch: int = 1,
                      on_round: Callable[[int], None] | None = None) -> None:
    """The simulated ask/tell campaign loop over ``steps`` experiments: ``ask()`` the next
    intervention ({name: value}; its wall time measured) or, with ``batch = q > 1``, ``ask(q)`` the
    next round's q at once (fewer in the last round if ``steps`` is not a multiple of q; the time
    of the round shared equally among them); ``experiment(iv, t)`` measures experiment t = 1 ..
    ``steps`` (one sample {name: value}), ``tell(iv, sample)`` records it (a round's in the order
    asked), and ``on_step(t, iv, sample, seconds)`` sees it. Where the budget in cost units cannot
    pay for a round (:class:`acbo.costs.BudgetSpent`), a smaller one is asked; the campaign ends
    when it cannot pay for one experiment. ``on_round(r)`` (optional) hears that round r = 1, 2, …
    starts. The benchmark, the showcase and the expert demonstrations all run their campaigns
    through it."""
    t, r = 0, 0
    while t < steps:
        q = min(batch, steps - t)
        while True:
            t0 = time.perf_counter()
            try:
                ivs = [ask()] if batch == 1 else ask(q)
                break
            except BudgetSpent:
                if q == 1:
                    return
                q -= 1
        seconds = (time.perf_counter() - t0) / q
        r += 1
        if on_round is not None:
            on_round(r)
        for iv in ivs:
            t += 1
            sample = experiment(iv, t)
            tell(iv, sample)
            on_step(t, iv, sample, seconds)
