"""PARENT_SCALE (CBO-U) and CBO with the true parents, behind the CausalOptimizer interface.

Both share the causal-GP loop of :mod:`acbo.experts.causal_gp`; they differ in the sets and
weights they average over:

- ``parent_scale``: candidate sets and prior from the doubly robust feature selection
  (:mod:`acbo.experts.drcfs`), reweighted by every interventional sample
  (:mod:`acbo.experts.set_posterior`); the exploration set is the union of the surviving sets;
- ``cbo-parents``: one set, the true parents (given), with weight 1: the classical reference.

Each trial picks the variable and value with the largest expected improvement. ``n_init`` > 0
first spends that many random interventions on every exploration variable: the paper's initial
interventional data (2 per variable), which it gets for free. Here they are experiments like any
other and count towards the budget, and measured on our benchmark they cost regret (T = 20, 20
SCMs: 0.343 vs 0.002 on lin-er-20, see BENCHMARKS.md), so the default is ``n_init = 0``: the
causal GPs start from the causal prior and EI decides from the first step. The method's state is a deterministic
function of the campaign's seed and its buffer (rebuilt after ``CausalOptimizer.load``).
"""

from __future__ import annotations

import math
import time

import torch

from acbo.buffer import Buffer, clamped_stats
from acbo.costs import pays
from acbo.experts.causal_gp import (SET_GRID, average_models, do_effect, fit_set_gp, grid_points, interpolate_grid,
                                    maximise_ei, train_cholesky)
from acbo.experts.drcfs import DRConfig, DRPrior, fit_dr_prior
from acbo.experts.set_posterior import CandidateSetPosterior, SetPosteriorConfig
from acbo.method import Method, Problem, register_method
from acbo.posterior import ParentPosterior
from acbo.seeding import generator as make_generator


class CausalGPMethod(Method):
    """The CBO loop over weighted candidate sets; subclasses say which sets and weights.

    ``max_rows``: the per-set GPs are fitted on, and the do-calculus average runs over, at most
    this many observational rows (a seeded random subset of D_O when it has more; all of them
    otherwise). Exact GPs cost O(n^3) to fit and the average O(grid x n^2): without a bound the
    expert took 176 s and 12.7 GB for five decisions at n = 830.

    ``min_outputscale``: a floor on the causal GP's sigma_f^2 (the RBF part of its kernel; Y's
    standardised units). 0, the default, fits it freely, as the published method does; the
    marginal likelihood then often drives it towards 0 where the causal prior's mean explains the
    rows (about 40 % of the fits on test-broad), leaving the posterior only the causal prior's
    variance, which is tiny where the observations are dense, so that expected improvement
    underflows everywhere and its maximiser goes where that variance is largest, often a domain
    end already measured to be poor (the bioreactor: temperature 40, eight times).
    BENCHMARKS.md measures a floor of 0.01."""

    believes_pending = True
    reads_costs = True
    chooses_sets = True

    def __init__(self, problem: Problem, n_init: int = 0, max_rows: int = 300, min_outputscale: float = 0.0):
        super().__init__(problem)
        if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 0:
            raise ValueError(f"n_init must be a non-negative integer, got {n_init!r}")
        if isinstance(min_outputscale, bool) or not isinstance(min_outputscale, (int, float)) \
                or not 0 <= min_outputscale < math.inf:
            raise ValueError(f"min_outputscale must be a finite number >= 0, got {min_outputscale!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 10:
            raise ValueError(f"max_rows must be an integer >= 10, got {max_rows!r}")
        big = [e for e in problem.allowed_sets if len(e) > max(SET_GRID)]
        if big:
            raise ValueError(f"{self.name} sets at most {max(SET_GRID)} variables per experiment; the problem allows "
                             f"sets of {max(map(len, big))} (max_set={problem.max_set})")
        self.n_init = n_init
        self.max_rows = max_rows
        self.min_outputscale = float(min_outputscale)
        self._stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None   # D_O, mean, std
        self._rows: torch.Tensor | None = None                                         # the GP rows of D_O
        self._set_gps: dict[tuple[int, ...], tuple[object, torch.Tensor]] = {}          # GP, Cholesky factor
        self._effects: dict[tuple[tuple[int, ...], tuple[int, ...], int], tuple[torch.Tensor, torch.Tensor]] = {}
        # (candidate set, its members set, grid points per axis) -> causal effect (:meth:`_effect`)
        self.last_decision: dict = {}

    # -- what subclasses provide
    def sets_and_weights(self, buffer: Buffer) -> tuple[torch.Tensor, torch.Tensor]:
        """Current candidate sets (S x d bool) and weights (S)."""
        raise NotImplementedError

    # -- shared machinery
    def observational(self, buffer: Buffer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """D_O (n x d, the buffer's rows with no intervention), its mean and std."""
        if self._stats is None:
            x = buffer.values[buffer.observational_rows].to(torch.float64)
            if x.shape[0] < 2:
                raise ValueError(f"{self.name} needs at least 2 observational rows, got {x.shape[0]}")
            self._stats = (x, *clamped_stats(x))
        return self._stats

    def gp_rows(self, buffer: Buffer) -> torch.Tensor:
        """The observational rows (indices into D_O) the causal GPs use: all, or a seeded subset
        of ``max_rows`` of them."""
        if self._rows is None:
            n = self.observational(buffer)[0].shape[0]
            if n <= self.max_rows:
                self._rows = torch.arange(n)
            else:
                g = make_generator("parent_scale", "gp-rows", self.problem.seed)
                self._rows = torch.randperm(n, generator=g)[: self.max_rows].sort().values
        return self._rows

    def _effect(self, buffer: Buffer, members: tuple[int, ...], inside: tuple[int, ...], G: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal effect on standardised Y (G^m each) of do(X_inside = grid) under the set
        ``members`` (``inside``: m of its members, set together on a grid of G points per axis)."""
        key = (members, inside, G)
        if key not in self._effects:
            x, mean, std = self.observational(buffer)
            x = x[self.gp_rows(buffer)]
            idx = list(members)
            Z = (x[:, idx] - mean[idx]) / std[idx]
            if members not in self._set_gps:
                t = self.problem.target
                gp = fit_set_gp(Z, (x[:, t] - mean[t]) / std[t])
                self._set_gps[members] = (gp, train_cholesky(gp))
            p, at = self.problem, list(inside)
            raw = p.low[at] + (p.high[at] - p.low[at]) * grid_points(len(at), G)                    # G^m x m
            gp, chol = self._set_gps[members]
            cols = idx.index(at[0]) if len(at) == 1 else [idx.index(v) for v in at]
            points = (raw - mean[at]) / std[at]
            self._effects[key] = do_effect(gp, Z, cols, points[:, 0] if len(at) == 1 else points, chol)
        return self._effects[key]

    def causal_prior(self, buffer: Buffer, sets: torch.Tensor, weights: torch.Tensor, explore: tuple[int, ...]):
        """Model-averaged prior mean and variance of standardised Y under do(X_explore) on the
        grid over its box (G^k each, G = ``SET_GRID[k]``, :func:`grid_points` order): under each
        candidate set S, the do-calculus average with the members of ``explore`` in S set; no
        effect when none is (Y's observational mean, 0 in standardised units, no variance)."""
        k = len(explore)
        G = SET_GRID[k]
        means, variances = [], []
        for s in sets:
            members = tuple(torch.nonzero(s).flatten().tolist())
            inside = tuple(v for v in explore if v in members)
            if inside:
                m, v = self._effect(buffer, members, inside, G)
                shape = [G if e in inside else 1 for e in explore]  # constant along the members not in S
                m, v = (t.reshape(shape).expand([G] * k).reshape(-1) for t in (m, v))
            else:
                m = v = torch.zeros(G ** k, dtype=torch.float64)
            means.append(m)
            variances.append(v)
        return average_models(weights.to(torch.float64), torch.stack(means), torch.stack(variances))

    def _unit(self, explore: tuple[int, ...], values: torch.Tensor) -> torch.Tensor:
        """Settings of ``explore`` (... x k, observed units) rescaled to [0, 1]^k over their domains."""
        p, at = self.problem, list(explore)
        width = (p.high[at] - p.low[at]).to(torch.float64)
        width = torch.where(width > 0, width, torch.ones_like(width))
        return (values.to(torch.float64) - p.low[at]) / width

    @staticmethod
    def _exactly(buffer: Buffer, explore: tuple[int, ...]) -> torch.Tensor:
        """n (bool): the rows that set exactly the variables of ``explore``."""
        want = torch.zeros(buffer.d, dtype=torch.bool)
        want[list(explore)] = True
        return (buffer.intervened == want).all(1)

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The causal-GP predictive of Y under do(X_variable = x) (:meth:`predict_set` of one)."""
        return self.predict_set(buffer, [variable], x[:, None], draw)

    def predict_set(self, buffer: Buffer, variables: list[int], x: torch.Tensor, draw: bool = True):
        """The causal-GP predictive of Y under do(X_variables = x) (x: Q x k): the model-averaged
        causal prior of the set, updated by the causal GP on the experiments that set exactly
        these variables (the model EI is maximised on); a Gaussian over the Q settings in observed
        units. ``draw`` adds the GP's noise (before any such experiment: the per-set GPs' mean noise)."""
        from acbo.experts.causal_gp import causal_gp
        from acbo.predictive import GaussianMixture

        p = self.problem
        if len(variables) > max(SET_GRID):
            raise ValueError(f"{self.name} predicts sets of at most {max(SET_GRID)} variables, got {len(variables)}")
        order = sorted(range(len(variables)), key=lambda c: variables[c])
        explore = tuple(variables[c] for c in order)
        sets, weights = self.sets_and_weights(buffer)
        _, mean, std = self.observational(buffer)
        t = p.target
        u = self._unit(explore, x[:, order]).clamp(0, 1)                                            # Q x k
        m_grid, v_grid = self.causal_prior(buffer, sets, weights, explore)
        rows = self._exactly(buffer, explore)
        if rows.any():
            ys = (buffer.values[rows, t] - mean[t]) / std[t]
            gp = causal_gp(self._unit(explore, buffer.values[rows][:, list(explore)]), ys, m_grid, v_grid,
                           self.min_outputscale)
            with torch.no_grad():
                post = gp.posterior(u[:, None, :])
            f_mean, f_var = post.mean.flatten(), post.variance.flatten()
            noise = float(gp.likelihood.noise.detach())
        else:  # the causal prior (as EI scores it before any data on the set)
            f_mean, f_var = interpolate_grid(u, m_grid), 1.0 + interpolate_grid(u, v_grid)
            gps = [self._set_gps[k][0] for k in self._set_gps]
            noise = float(sum(float(g.likelihood.noise.detach()) for g in gps) / len(gps)) if gps else 1.0
        var = f_var + (noise if draw else 0.0)
        Q = x.shape[0]
        return GaussianMixture.normal(f_mean, var.clamp_min(1e-12).sqrt()).affine(mean[t].expand(Q), std[t].expand(Q))

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """The variable and value of largest EI (per unit cost, with costs) among the variables of
        the candidate sets; a random one when they hold none that may be set."""
        t0 = time.perf_counter()
        sets, _ = self.sets_and_weights(buffer)
        explore = torch.nonzero(sets.any(0) & self.problem.intervenable).flatten().tolist()
        if not explore:
            self.last_decision = {"phase": "random", "ei": {}}
            return self.random_proposal(generator)
        (v, *_), (x, *_) = self._decide(buffer, generator, [(v,) for v in explore], t0)
        return v, x

    def ask_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        """PARENT_SCALE over sets: the exploration sets are the allowed sets whose members all lie
        in the candidate parent sets (subsets of the believed parents, sizes 1 … ``max_set``); the
        set and values of largest EI (per unit cost, with costs) under each one's causal GP; a
        random allowed set when no allowed set lies in the candidates."""
        t0 = time.perf_counter()
        sets, _ = self.sets_and_weights(buffer)
        believed = sets.any(0) & self.problem.intervenable
        explore = [e for e in self.problem.allowed_sets if bool(believed[list(e)].all())]
        if not explore:
            self.last_decision = {"phase": "random", "ei": {}}
            return self.random_set(generator)
        chosen, values = self._decide(buffer, generator, explore, t0)
        return dict(zip(chosen, values))

    def _decide(self, buffer: Buffer, generator: torch.Generator, explore: list[tuple[int, ...]], t0: float
                ) -> tuple[tuple[int, ...], list[float]]:
        """The exploration set (of ``explore``) and its values (observed units) with the largest EI,
        after ``n_init`` random settings of each; ``t0``: when the decision began."""
        p = self.problem
        for e in explore:  # the initial design: n_init random settings per exploration set
            if int(self._exactly(buffer, e).sum()) < self.n_init:
                u = torch.rand(len(e), generator=generator, dtype=torch.float64)
                self.last_decision = {"phase": "init", "ei": {}, "seconds": time.perf_counter() - t0}
                return e, [float(p.low[v] + u[c] * (p.high[v] - p.low[v])) for c, v in enumerate(e)]
        sets, weights = self.sets_and_weights(buffer)
        _, mean, std = self.observational(buffer)
        t = p.target
        sign = 1.0 if p.minimize else -1.0
        ys = sign * (buffer.values[:, t] - mean[t]) / std[t]                                # standardised, minimised
        interventional = ~buffer.observational_rows & ~buffer.intervened[:, t]
        best = float(ys[interventional].min()) if interventional.any() else float(ys.min())
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        results, settings = {}, {}
        for e in explore:
            m, var = self.causal_prior(buffer, sets, weights, e)
            rows = self._exactly(buffer, e)
            x01, ei = maximise_ei(sign * m, var, self._unit(e, buffer.values[rows][:, list(e)]), ys[rows], best, seed,
                                  self.min_outputscale)
            results[e] = ei
            settings[e] = [float(p.low[v] + x01[c] * (p.high[v] - p.low[v])) for c, v in enumerate(e)]
        score = dict(results)
        if p.costs is not None:  # EI per unit cost at each set's EI maximiser, among what the allowance pays for
            prev = self.previous(buffer)
            for e in results:
                c = p.costs.of(dict(zip(e, settings[e])), prev)
                score[e] = results[e] / c if pays(c, self.allowance) else -math.inf
        e_best = max(score, key=score.get)
        self.last_decision = {"phase": "ei", "ei": {"+".join(p.names[v] for v in e): results[e] for e in results},
                              "seconds": time.perf_counter() - t0}
        return e_best, settings[e_best]


@register_method
class ParentScale(CausalGPMethod):
    """PARENT_SCALE: the doubly robust prior over parent sets, the sequential set posterior and
    the causal-GP loop. Options select the DR variant and regressor, the number of bootstraps,
    the set model (linear BLR or random Fourier features) and the initial design size."""

    name = "parent_scale"

    def __init__(self, problem: Problem, dr_variant: str = "dr2", dr_regressor: str = "ridge", n_bootstrap: int = 10,
                 dr_hidden: int = 200, set_model: str = "linear", n_init: int = 0, max_rows: int = 300,
                 min_outputscale: float = 0.0):
        super().__init__(problem, n_init, max_rows, min_outputscale)
        self.dr = DRConfig(variant=dr_variant, regressor=dr_regressor, n_bootstrap=n_bootstrap, hidden=dr_hidden)
        self.set_cfg = SetPosteriorConfig(model=set_model)
        self.prior: DRPrior | None = None
        self._post: CandidateSetPosterior | None = None
        self._n_seen = 0

    def options(self) -> dict:
        return {"dr_variant": self.dr.variant, "dr_regressor": self.dr.regressor, "n_bootstrap": self.dr.n_bootstrap,
                "dr_hidden": self.dr.hidden, "set_model": self.set_cfg.model, "n_init": self.n_init,
                "max_rows": self.max_rows, "min_outputscale": self.min_outputscale}

    @property
    def setup_seconds(self) -> float:
        return 0.0 if self.prior is None else self.prior.seconds

    def _sync(self, buffer: Buffer) -> CandidateSetPosterior:
        """Build the prior on first use, then fold every measured row not yet seen into the set
        posterior (believed rows, :attr:`Buffer.believed`, are not evidence about the sets)."""
        p = self.problem
        buffer = buffer.told
        if self._post is None:
            x, _, _ = self.observational(buffer)
            self.prior = fit_dr_prior(x, p.target, make_generator("parent_scale", "prior", p.seed), self.dr)
            self._post = CandidateSetPosterior(self.prior.sets, self.prior.probs, x, p.target,
                                               make_generator("parent_scale", "rff", p.seed), self.set_cfg)
            self._n_seen = 0
        obs = buffer.observational_rows
        for i in range(self._n_seen, buffer.n):  # one rank-1 update per new experiment
            if not obs[i]:
                self._post.update(buffer.values[i], y_intervened=bool(buffer.intervened[i, p.target]))
        self._n_seen = buffer.n
        return self._post

    def sets_and_weights(self, buffer: Buffer) -> tuple[torch.Tensor, torch.Tensor]:
        post = self._sync(buffer)
        return post.sets, post.probs

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        return self._sync(buffer).posterior(self.problem.names)


@register_method
class CBOParents(CausalGPMethod):
    """CBO given the true parent set (``parents=[names]``): the same causal-GP loop, one set."""

    name = "cbo-parents"

    def __init__(self, problem: Problem, parents: list[str] | None = None, n_init: int = 0, max_rows: int = 300,
                 min_outputscale: float = 0.0):
        super().__init__(problem, n_init, max_rows, min_outputscale)
        if not parents or isinstance(parents, str):
            raise ValueError("method 'cbo-parents' needs the true parents: CausalOptimizer(..., parents=['X1', ...])")
        unknown = [v for v in parents if v not in problem.names]
        if unknown or problem.names[problem.target] in parents:
            raise ValueError(f"cbo-parents: parents must be non-target variables of the data; got {list(parents)}")
        self.parents = list(parents)
        self._set = torch.zeros(1, problem.d, dtype=torch.bool)
        self._set[0, [problem.names.index(v) for v in parents]] = True

    def options(self) -> dict:
        return {"parents": list(self.parents), "n_init": self.n_init, "max_rows": self.max_rows,
                "min_outputscale": self.min_outputscale}

    def sets_and_weights(self, buffer: Buffer) -> tuple[torch.Tensor, torch.Tensor]:
        return self._set, torch.ones(1, dtype=torch.float64)

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        return ParentPosterior.from_sets(self.problem.names, self.problem.target, self._set, torch.zeros(1, dtype=torch.float64))
