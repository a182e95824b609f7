"""Simulated campaigns: B SCMs stepped together, on any device.

One :class:`Env` holds B campaigns of the same d at the same step: the buffers (B x N x d), the
problem posed in each (domains and which variables may be set, by the family's rules; by default
each variable's observed [min, max] and every non-target variable, as ``CausalOptimizer`` uses),
the observational E[Y] and the best E[Y | do] reached so far. ``expected`` evaluates candidate
interventions without running them (exact for linear SCMs, common-random-number Monte Carlo
otherwise); ``step`` runs one intervention per campaign (on one variable or a set) and appends
its outcome row. The only Python loop is over the SCM's topological order inside the simulator.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from acbo.buffer import CampaignBatch, TrainingBatch
from acbo.costs import experiments_bought, pays
from acbo.scm import SCM, Family, resolve_family


OBSERVED_RANGES = Family("observed-ranges")
"""The default problem rules: each variable's observed range, every non-target variable settable."""


@dataclass
class Env:
    """B campaigns. values/intervened: B x N x d; low/high/intervenable: B x d; y_obs, y_scale, best: B."""

    scm: SCM
    values: torch.Tensor
    intervened: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    intervenable: torch.Tensor
    """Which variables may be set (never Y)."""
    y_obs: torch.Tensor
    """E[Y] without intervention (exact or MC)."""
    y_scale: torch.Tensor
    """Observational std of Y in the data (the reward's unit)."""
    best: torch.Tensor
    """Best (lowest) E[Y | do] of the interventions made so far; y_obs before any."""
    horizon: int
    step_count: int = 0
    n_mc: int = 256
    costs: torch.Tensor | None = None
    """B x d: what setting each variable costs in an experiment (0 for those that cannot be set;
    :meth:`with_costs`), None: experiments cost nothing of their own."""
    budget: torch.Tensor | None = None
    """B: what each campaign may spend in all, in its cost units (:meth:`with_budget`); None: no
    budget in cost units (a campaign runs its ``horizon`` experiments)."""
    spent: torch.Tensor | None = None
    """B: what each campaign has spent (with a budget; experiments made after its budget ran out,
    which the batch runs on with the others, are not paid and do not count)."""
    noise_of: torch.Tensor | None = None
    """B indices: campaign b's measured rows carry the outcome noise drawn for campaign
    noise_of[b] (common random numbers between the copies of one campaign, :meth:`repeat`);
    None: each campaign its own."""

    @classmethod
    def reset(cls, scm: SCM, n_obs: int, horizon: int, generator: torch.Generator, n_mc: int = 256,
              family: Family | None = None) -> "Env":
        """Draw n_obs observational rows per SCM and start B campaigns of T = horizon steps, with
        ``family``'s domains and intervenable sets (default: observed ranges, every non-target)."""
        obs = scm.sample(n_obs, generator)                                                  # B x n_obs x d
        B = scm.batch_size
        t = scm.target
        low, high, can = (family or OBSERVED_RANGES).domains(generator, scm, obs)
        y_obs = scm.observational_mean(n_mc)
        y_scale = obs[torch.arange(B, device=obs.device), :, t].std(1).clamp_min(1e-8)
        return cls(scm, obs, torch.zeros_like(obs, dtype=torch.bool), low, high, can, y_obs, y_scale,
                   y_obs.clone(), horizon, 0, n_mc)

    @classmethod
    def from_family(cls, family: str | Family, B: int, n_obs: int, horizon: int, generator: torch.Generator,
                    n_mc: int = 256) -> "Env":
        """B SCMs drawn from ``family`` (a name or a Family), then :meth:`reset` with its problem rules."""
        fam = resolve_family(family)
        return cls.reset(fam.sample(generator, B), n_obs, horizon, generator, n_mc, fam)

    def with_costs(self, low: float, high: float, generator: torch.Generator) -> "Env":
        """These campaigns with unequal costs for their settable variables, log-uniform in [low,
        high], drawn per campaign from ``generator``."""
        if not 0 < low <= high < float("inf"):
            raise ValueError(f"costs must be drawn from (low, high) with 0 < low <= high, got {(low, high)}")
        u = torch.rand(self.B, self.d, generator=generator, device=self.values.device, dtype=torch.float64)
        c = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return dataclasses.replace(self, costs=torch.where(self.settable, c, torch.zeros_like(c)))

    def with_budget(self, mean_costs: float, cap: int) -> "Env":
        """These campaigns (with costs) with a budget of ``mean_costs`` times their settable
        variables' mean cost, nothing spent yet: each runs until what is left pays for no settable
        variable (:meth:`live`), at most ``cap`` experiments in all (the new ``horizon``)."""
        if self.costs is None:
            raise ValueError("a budget in cost units needs costs: call with_costs first")
        if not (math.isfinite(mean_costs) and mean_costs > 0) or isinstance(cap, bool) or not isinstance(cap, int) \
                or cap < self.step_count + 1:
            raise ValueError(f"a budget needs mean_costs > 0 and a cap above the {self.step_count} experiments made, "
                             f"got {mean_costs!r} and {cap!r}")
        mean = self.mean_cost()
        return dataclasses.replace(self, budget=mean_costs * mean, spent=torch.zeros_like(mean), horizon=cap)

    def allowance(self) -> torch.Tensor:
        """B: what each campaign may still spend (inf without a budget)."""
        if self.budget is None:
            return torch.full((self.B,), math.inf, dtype=torch.float64, device=self.values.device)
        return self.budget - self.spent

    def affordable(self) -> torch.Tensor:
        """B x d bool: the settable variables each campaign's allowance pays for
        (:func:`acbo.costs.pays`); all of them without a budget."""
        if self.budget is None:
            return self.settable
        return self.settable & pays(self.costs, self.allowance()[:, None])

    def live(self) -> torch.Tensor:
        """B bool: the campaigns that may run another experiment (without a budget, all of them;
        with one, those whose allowance pays for some settable variable)."""
        if self.budget is None:
            return torch.ones(self.B, dtype=torch.bool, device=self.values.device)
        return self.affordable().any(1)

    @property
    def settable(self) -> torch.Tensor:
        """B x d: the variables an experiment may set (intervenable, not the target)."""
        t = torch.zeros_like(self.intervenable)
        t[torch.arange(self.B, device=t.device), self.scm.target] = True
        return self.intervenable & ~t

    def relative_costs(self) -> torch.Tensor:
        """B x d: each variable's cost over its campaign's mean cost of a settable variable (1 for
        every settable variable without costs; 0 for the others)."""
        if self.costs is None:
            return self.settable.to(torch.float64)
        return self.costs / self.mean_cost().clamp_min(1e-12)[:, None]

    def mean_cost(self) -> torch.Tensor:
        """B: the mean cost of each campaign's settable variables (campaigns with costs)."""
        s = self.settable.to(self.costs.dtype)
        return (self.costs * s).sum(1) / s.sum(1).clamp_min(1)

    @property
    def B(self) -> int:
        return self.scm.batch_size

    @property
    def d(self) -> int:
        return self.scm.d

    def campaign(self) -> CampaignBatch:
        """The campaigns as a policy sees them (raw rows, domains, step and budget; with a budget in
        cost units, the horizon is the experiments made plus what the allowance buys at the mean
        cost, at least one, as a deployed campaign with ``budget_cost`` reads it)."""
        c = CampaignBatch.of_rows(self.values, self.intervened, self.scm.target, self.low, self.high, self.step_count,
                                  self.horizon, self.intervenable)
        if self.budget is None:
            return c
        buys = experiments_bought(self.allowance(), self.mean_cost())
        return dataclasses.replace(c, horizon=c.step + buys.to(c.horizon.dtype))

    def training_batch(self) -> TrainingBatch:
        """The rows collected so far as a surrogate training batch, labelled with the true parents:
        the data the surrogate will see in deployment (stage 3 trains on it)."""
        return self.campaign().training_batch(self.scm.parents(), self.scm.linear, self.scm)

    def _do(self, var: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k candidates per campaign -> (do_mask, do_value) B x k x d. var/value: B x k (one
        variable each), or B x k x m (up to m variables each; a member repeated with the same
        value, as an experiment of fewer variables is written, sets it once)."""
        if var.dim() == 2:
            var, value = var[..., None], value[..., None]
        B, k, m = var.shape
        mask = torch.zeros(B, k, self.d, dtype=torch.bool, device=var.device)
        mask.scatter_(2, var, True)
        vals = torch.zeros(B, k, self.d, dtype=self.values.dtype, device=var.device)
        vals.scatter_(2, var, value.to(vals.dtype))
        return mask, vals

    def expected(self, var: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """E[Y | do(X_var = value)] for k candidates per campaign (var, value: B x k, or B x k x m
        for experiments on sets, as :meth:`_do`; B x k out)."""
        mask, vals = self._do(var, value)
        return self.scm.expected_target(mask, vals, self.n_mc)

    def outcomes(self, var: torch.Tensor, value: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """One measured row per candidate (var, value as :meth:`expected`), without appending:
        (rows B x k x d, do_mask B x k x d)."""
        mask, vals = self._do(var, value)
        return self.scm.sample(var.shape[1], generator, do_mask=mask, do_value=vals, noise_of=self.noise_of), mask

    def step(self, var: torch.Tensor, value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Run do(X_var = value) in every campaign (var, value: B, or B x m for a set), append the
        measured row, update the best. Returns E[Y | do] of the interventions (B)."""
        rows, mask = self.outcomes(var[:, None], value[:, None], generator)
        e_y = self.expected(var[:, None], value[:, None])[:, 0]
        self.append(rows, mask, e_y)
        return e_y

    def append(self, rows: torch.Tensor, mask: torch.Tensor, e_y: torch.Tensor) -> None:
        """Add measured rows (B x 1 x d) with their do_mask and E[Y | do] (B). With a budget, the
        campaigns :meth:`live` before the rows pay for the variables set (``mask``) and count
        E[Y | do]; the others' rows are kept (the batch moves together) but count for nothing."""
        if self.budget is not None:
            live = self.live()
            self.spent = self.spent + torch.where(live, (self.costs * mask[:, 0].to(self.costs.dtype)).sum(1), 0.0)
            e_y = torch.where(live, e_y, torch.full_like(e_y, math.inf))
        self.values = torch.cat([self.values, rows], dim=1)
        self.intervened = torch.cat([self.intervened, mask], dim=1)
        self.best = torch.minimum(self.best, e_y)
        self.step_count += 1

    def repeat(self, G: int, common_noise: bool = False) -> "Env":
        """Each campaign G times in a row (B*G campaigns, group-major: b*G + g), for groups of
        rollouts from the same SCM and starting buffer; with ``common_noise`` the copies of a
        campaign measure with the same outcome noise at each step (:attr:`noise_of`: that of the
        group's first copy), so that what differs between their returns is what they chose."""
        if self.noise_of is not None:
            raise ValueError("these campaigns are copies already (noise_of is set): repeat the originals")
        idx = torch.arange(self.B, device=self.values.device).repeat_interleave(G)
        rep = lambda t: t[idx]
        return Env(self.scm[idx], rep(self.values), rep(self.intervened), rep(self.low), rep(self.high),
                   rep(self.intervenable), rep(self.y_obs), rep(self.y_scale), rep(self.best), self.horizon, self.step_count,
                   self.n_mc, *(None if t is None else rep(t) for t in (self.costs, self.budget, self.spent)),
                   idx * G if common_noise else None)
