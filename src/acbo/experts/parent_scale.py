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
from acbo.experts.causal_gp import GRID, average_models, do_effect, fit_set_gp, maximise_ei, train_cholesky
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
    expert took 176 s and 12.7 GB for five decisions at n = 830."""

    believes_pending = True
    reads_costs = True

    def __init__(self, problem: Problem, n_init: int = 0, max_rows: int = 300):
        super().__init__(problem)
        if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 0:
            raise ValueError(f"n_init must be a non-negative integer, got {n_init!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 10:
            raise ValueError(f"max_rows must be an integer >= 10, got {max_rows!r}")
        self.n_init = n_init
        self.max_rows = max_rows
        self._stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None   # D_O, mean, std
        self._rows: torch.Tensor | None = None                                         # the GP rows of D_O
        self._set_gps: dict[tuple[int, ...], tuple[object, torch.Tensor]] = {}          # GP, Cholesky factor
        self._effects: dict[tuple[tuple[int, ...], int], tuple[torch.Tensor, torch.Tensor]] = {}
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

    def _effect(self, buffer: Buffer, members: tuple[int, ...], var: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal effect of do(X_var = grid) on standardised Y under the set ``members``."""
        key = (members, var)
        if key not in self._effects:
            x, mean, std = self.observational(buffer)
            x = x[self.gp_rows(buffer)]
            idx = list(members)
            Z = (x[:, idx] - mean[idx]) / std[idx]
            if members not in self._set_gps:
                t = self.problem.target
                gp = fit_set_gp(Z, (x[:, t] - mean[t]) / std[t])
                self._set_gps[members] = (gp, train_cholesky(gp))
            p = self.problem
            raw = p.low[var] + (p.high[var] - p.low[var]) * torch.linspace(0, 1, GRID, dtype=torch.float64)
            gp, chol = self._set_gps[members]
            self._effects[key] = do_effect(gp, Z, idx.index(var), (raw - mean[var]) / std[var], chol)
        return self._effects[key]

    def causal_prior(self, buffer: Buffer, sets: torch.Tensor, weights: torch.Tensor, var: int):
        """Model-averaged prior mean and variance (GRID each) of standardised Y under do(X_var)."""
        means, variances = [], []
        for s in sets:
            members = tuple(torch.nonzero(s).flatten().tolist())
            if var in members:
                m, v = self._effect(buffer, members, var)
            else:  # no causal effect in "S -> Y": Y's observational mean (0 in standardised units)
                m = v = torch.zeros(GRID, dtype=torch.float64)
            means.append(m)
            variances.append(v)
        return average_models(weights.to(torch.float64), torch.stack(means), torch.stack(variances))

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The causal-GP predictive of Y under do(X_variable = x): the model-averaged causal prior,
        updated by the causal GP on the interventions made on the variable (the model EI is
        maximised on); a Gaussian over x in observed units. ``draw`` adds the GP's noise (before
        any intervention on the variable: the per-set GPs' mean noise)."""
        from acbo.experts.causal_gp import causal_gp, interpolate
        from acbo.predictive import GaussianMixture

        p = self.problem
        sets, weights = self.sets_and_weights(buffer)
        _, mean, std = self.observational(buffer)
        t = p.target
        width = float(p.high[variable] - p.low[variable]) or 1.0
        u = ((x.to(torch.float64) - p.low[variable]) / width)
        m_grid, v_grid = self.causal_prior(buffer, sets, weights, variable)
        rows = (buffer.intervened.sum(1) == 1) & buffer.intervened[:, variable]
        if rows.any():
            ys = (buffer.values[rows, t] - mean[t]) / std[t]
            gp = causal_gp((buffer.values[rows, variable] - p.low[variable]) / width, ys, m_grid, v_grid)
            with torch.no_grad():
                post = gp.posterior(u.clamp(0, 1)[:, None, None])
            f_mean, f_var = post.mean.flatten(), post.variance.flatten()
            noise = float(gp.likelihood.noise.detach())
        else:  # the causal prior (as EI scores it before any data on the variable)
            f_mean, f_var = interpolate(u, m_grid), 1.0 + interpolate(u, v_grid)
            gps = [self._set_gps[k][0] for k in self._set_gps]
            noise = float(sum(float(g.likelihood.noise.detach()) for g in gps) / len(gps)) if gps else 1.0
        var = f_var + (noise if draw else 0.0)
        Q = x.shape[0]
        return GaussianMixture.normal(f_mean, var.clamp_min(1e-12).sqrt()).affine(mean[t].expand(Q), std[t].expand(Q))

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        t0 = time.perf_counter()
        p = self.problem
        sets, weights = self.sets_and_weights(buffer)
        explore = torch.nonzero(sets.any(0) & p.intervenable).flatten().tolist()
        if not explore:
            self.last_decision = {"phase": "random", "ei": {}}
            return self.random_proposal(generator)
        single = buffer.intervened.sum(1) == 1
        counts = {v: int((single & buffer.intervened[:, v]).sum()) for v in explore}
        for v in explore:  # the initial design: n_init random interventions per exploration variable
            if counts[v] < self.n_init:
                u = float(torch.rand(1, generator=generator, dtype=torch.float64))
                self.last_decision = {"phase": "init", "ei": {}, "seconds": time.perf_counter() - t0}
                return v, float(p.low[v] + u * (p.high[v] - p.low[v]))
        _, mean, std = self.observational(buffer)
        t = p.target
        sign = 1.0 if p.minimize else -1.0
        ys = sign * (buffer.values[:, t] - mean[t]) / std[t]                                # standardised, minimised
        interventional = ~buffer.observational_rows & ~buffer.intervened[:, t]
        best = float(ys[interventional].min()) if interventional.any() else float(ys.min())
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        results = {}
        for v in explore:
            m, var = self.causal_prior(buffer, sets, weights, v)
            rows = single & buffer.intervened[:, v]
            width = float(p.high[v] - p.low[v]) or 1.0
            xv = (buffer.values[rows, v] - p.low[v]) / width
            results[v] = maximise_ei(sign * m, var, xv, ys[rows], best, seed)
        score = {v: results[v][1] for v in results}
        if p.costs is not None:  # EI per unit cost at each variable's EI maximiser, among what the allowance pays for
            prev = self.previous(buffer)
            for v, (x01, ei) in results.items():
                c = p.costs.of({v: float(p.low[v] + x01 * (p.high[v] - p.low[v]))}, prev)
                score[v] = ei / c if c <= self.allowance else -math.inf
        v_best = max(score, key=score.get)
        x01 = results[v_best][0]
        self.last_decision = {"phase": "ei", "ei": {p.names[v]: results[v][1] for v in results},
                              "seconds": time.perf_counter() - t0}
        return v_best, float(p.low[v_best] + x01 * (p.high[v_best] - p.low[v_best]))


@register_method
class ParentScale(CausalGPMethod):
    """PARENT_SCALE: the doubly robust prior over parent sets, the sequential set posterior and
    the causal-GP loop. Options select the DR variant and regressor, the number of bootstraps,
    the set model (linear BLR or random Fourier features) and the initial design size."""

    name = "parent_scale"

    def __init__(self, problem: Problem, dr_variant: str = "dr2", dr_regressor: str = "ridge", n_bootstrap: int = 10,
                 dr_hidden: int = 200, set_model: str = "linear", n_init: int = 0, max_rows: int = 300):
        super().__init__(problem, n_init, max_rows)
        self.dr = DRConfig(variant=dr_variant, regressor=dr_regressor, n_bootstrap=n_bootstrap, hidden=dr_hidden)
        self.set_cfg = SetPosteriorConfig(model=set_model)
        self.prior: DRPrior | None = None
        self._post: CandidateSetPosterior | None = None
        self._n_seen = 0

    def options(self) -> dict:
        return {"dr_variant": self.dr.variant, "dr_regressor": self.dr.regressor, "n_bootstrap": self.dr.n_bootstrap,
                "dr_hidden": self.dr.hidden, "set_model": self.set_cfg.model, "n_init": self.n_init,
                "max_rows": self.max_rows}

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

    def __init__(self, problem: Problem, parents: list[str] | None = None, n_init: int = 0, max_rows: int = 300):
        super().__init__(problem, n_init, max_rows)
        if not parents or isinstance(parents, str):
            raise ValueError("method 'cbo-parents' needs the true parents: CausalOptimizer(..., parents=['X1', ...])")
        unknown = [v for v in parents if v not in problem.names]
        if unknown or problem.names[problem.target] in parents:
            raise ValueError(f"cbo-parents: parents must be non-target variables of the data; got {list(parents)}")
        self.parents = list(parents)
        self._set = torch.zeros(1, problem.d, dtype=torch.bool)
        self._set[0, [problem.names.index(v) for v in parents]] = True

    def options(self) -> dict:
        return {"parents": list(self.parents), "n_init": self.n_init, "max_rows": self.max_rows}

    def sets_and_weights(self, buffer: Buffer) -> tuple[torch.Tensor, torch.Tensor]:
        return self._set, torch.ones(1, dtype=torch.float64)

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        return ParentPosterior.from_sets(self.problem.names, self.problem.target, self._set, torch.zeros(1, dtype=torch.float64))
