"""The deployed system as a method: ``amortized`` = surrogate posterior + trained policy.

data -> posterior -> intervention -> outcome -> repeat, with no expert and no per-problem
fitting. The surrogate's pooled state is kept between decisions and updated with the new rows
only (:class:`acbo.surrogate.Encoding`), so a decision costs one row pass, the variable-attention
readout and the policy, whatever the number of samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

from acbo.buffer import Buffer, CampaignBatch
from acbo.costs import experiments_bought, pays
from acbo.method import Method, Problem, register_method
from acbo.policy.checkpoint import shared_policy
from acbo.policy.decide import after_experiments, decide, per_unit_cost
from acbo.policy.features import cost_features, grid_positions, world_domains
from acbo.policy.model import GridActionDist
from acbo.policy.sets import SetActionDist, allowed_pairs, pair_logits, world_pairs
from acbo.posterior import ParentPosterior
from acbo.surrogate import Belief, EncodingCache
from acbo.surrogate.checkpoint import shared_surrogate
from acbo.surrogate.model import ContextMemo
from acbo.surrogate.conditioning import set_posterior
from acbo.surrogate.world import (SetRows, WorldBelief, WorldFit, WorldPrior, measurements, set_rows, world_at,
                                 world_given, world_measured, world_prior)


BATCH_MODES = ("believer", "distinct")
"""How the amortized method chooses a batch's later members (see :meth:`Amortized.propose_batch`)."""


COST_RULES = ("policy", "ei")
"""How the amortized method reads costs: ``policy`` (the default), the policy's probabilities
divided by each action's cost, renormalised, or, for a policy with a cost head
(:attr:`acbo.policy.model.PolicyConfig.cost_head`), the policy's own reading of the costs and of
the budget left; ``ei``, the variable of most expected improvement per unit cost on the world
model and the policy's value on it (BENCHMARKS.md, costs, compares them)."""


@dataclasses.dataclass(frozen=True)
class MeasuredWorld:
    """The conditioned world model of a campaign's measured rows, kept over a batch's members
    (:meth:`Amortized._measured_world`): the rows it read (values, which were set: N x d each), the
    surrogate's belief about them, the settable variables (Q), their prior
    (:class:`acbo.surrogate.world.WorldPrior`) and its fit to their measurements (Q), the rows
    that set several of them as evidence about each (:class:`acbo.surrogate.world.SetRows`, or
    None), the world model on the policy's grid (1 x Q x K), and Y's observational mean and std
    (the campaign's Y: -Y when maximising)."""

    rows: torch.Tensor
    intervened: torch.Tensor
    belief: Belief
    var: torch.Tensor
    prior: WorldPrior
    fit: WorldFit
    shared: SetRows | None
    grid: WorldBelief
    y_scale: tuple[float, float]

    def shared_of(self, slots: torch.Tensor) -> SetRows | None:
        """The set rows of the instances ``slots`` (rows in Q), or None."""
        return None if self.shared is None else self.shared.select(slots)

    def slots(self, var: torch.Tensor) -> torch.Tensor:
        """The rows in Q of the variables ``var`` (each one of the settable ones)."""
        hit = self.var[:, None] == var[None, :]
        assert bool(hit.any(0).all()), (var, self.var)
        return hit.to(torch.int64).argmax(0)


def _world_model():
    model = shared_surrogate(None)
    if not model.cfg.queries:
        raise ValueError("neither the policy's surrogate nor the shipped one has a world-model head")
    return model


def _pair_block(prior_mean: torch.Tensor, prior_var: torch.Tensor, rows_mean: torch.Tensor, rows_var: torch.Tensor,
                rows_var_y: torch.Tensor, u_rows: torch.Tensor, ys: torch.Tensor, settings: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pair's block of the pair table corrected by the M rows that set exactly that pair
    (:func:`acbo.surrogate.conditioning.set_posterior`): prior_mean, prior_var (K x K, the additive
    prior at the grid's cells), the members' world model at the rows (rows_mean, rows_var of
    E[Y | do], rows_var_y of a measurement: 2 x M), their positions (u_rows M x 2), Y there (ys, M)
    and the values set (settings M x 2, to find replicates). Returns the posterior mean and variance
    (K x K) and the lowest posterior mean at the rows' settings (a 0-d tensor)."""
    K = prior_mean.shape[0]
    at = grid_positions(K, torch.float64)
    cells = torch.cartesian_prod(at, at)                                                          # K^2 x 2
    m_rows, v_rows = rows_mean.sum(0).double(), rows_var.sum(0).double()                          # M each
    noise = float((rows_var_y - rows_var).mean())
    prior_m = torch.cat([prior_mean.reshape(-1).double(), m_rows, m_rows])                        # queries: cells, settings
    prior_v = torch.cat([prior_var.reshape(-1).double(), v_rows, v_rows])
    post, post_var, _ = set_posterior(prior_m, prior_v, torch.cat([cells, u_rows, u_rows]), ys, settings, noise)
    return post[:K * K].reshape(K, K), post_var[:K * K].reshape(K, K), post[K * K:].min()


@register_method
class Amortized(Method):
    """Options: checkpoint (a policy checkpoint, read with the surrogate it names; default the
    shipped pair), horizon (the budget T the policy plans for; it sees steps taken and left; with
    a budget in cost units the policy plans for what that buys instead, see :meth:`_campaign`),
    greedy (take the most probable action instead of sampling), batch (how a batch's later
    members are chosen: ``believer``, each decided anew with the pending ones believed, or
    ``distinct``, all drawn from the first member's decision, apart; :meth:`propose_batch`),
    cost_rule (how costs are read, :data:`COST_RULES`). Where an
    experiment may set two variables (``max_set=2`` or exploration sets of at most two), the
    policy's action is the first member and the world model picks a partner or none
    (:meth:`ask_set`, :mod:`acbo.policy.sets`); sets of three or more are refused."""

    name = "amortized"
    believes_pending = True
    reads_costs = True
    chooses_sets = True

    def __init__(self, problem: Problem, checkpoint: str | None = None, horizon: int = 20, greedy: bool = False,
                 batch: str = "believer", cost_rule: str = "policy"):
        super().__init__(problem)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        if batch not in BATCH_MODES:
            raise ValueError(f"batch must be one of {BATCH_MODES}, got {batch!r}")
        if cost_rule not in COST_RULES:
            raise ValueError(f"cost_rule must be one of {COST_RULES}, got {cost_rule!r}")
        self.cost_rule = cost_rule
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.horizon, self.greedy, self.batch = horizon, bool(greedy), batch
        self._first = None  # (buffer.n, policy input, distribution) of the last decision on measured rows only
        self._first_set = None  # (rows, which were set, policy input, distribution, partner logits): pairs
        self._world: MeasuredWorld | None = None  # the world model of the measured rows (:meth:`_measured_world`)
        self._pair_blocks = None  # (that world, {pair: block}) of a batch's first member (:meth:`_measured_pairs`)
        self._believed_sets = None  # (that world, believed values, which were set, their SetRows): :meth:`_later_shared`
        self.policy, self.surrogate = shared_policy(self.checkpoint)
        if problem.max_set > 1 or problem.sets is not None:
            big = [s for s in problem.allowed_sets if len(s) > 2]
            if big:
                raise ValueError(f"amortized sets at most two variables per experiment; the problem allows sets of "
                                 f"{max(map(len, big))} (max_set={problem.max_set})")
            if not self.policy.cfg.grid or self.policy.cfg.world != "conditioned":
                raise ValueError("amortized chooses sets with the conditioned world model; this policy does not read it "
                                 f"(grid={self.policy.cfg.grid}, world={self.policy.cfg.world!r})")
        self._cache = EncodingCache(self.surrogate)
        self._memo = ContextMemo()  # the world model's context rows, encoded once over the campaign

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "horizon": self.horizon, "greedy": self.greedy, "batch": self.batch,
                "cost_rule": self.cost_rule}

    def state_dict(self) -> dict:
        """The incremental encoding (see :class:`acbo.surrogate.EncodingCache`): a reloaded campaign
        continues it, so that its next ask is the original's, bit for bit."""
        return self._cache.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._cache.load_state_dict(state, "amortized")
        self._world = self._first = self._first_set = self._pair_blocks = self._believed_sets = None  # read anew

    def _campaign(self, buffer: Buffer) -> CampaignBatch:
        """The campaign the policy reads; with a budget in cost units (and costs read) its horizon is
        the experiments run plus those the rest of the budget pays for at the settable variables'
        mean cost, in place of the ``horizon`` option."""
        p = self.problem
        horizon = self.horizon
        if p.costs is not None and math.isfinite(self.allowance):
            mean_cost = p.costs.fixed[p.intervenable].double().mean()
            horizon = buffer.n_int + int(experiments_bought(torch.tensor(self.allowance, dtype=torch.float64), mean_cost))
        return CampaignBatch.of_buffer(buffer, p.target, p.low, p.high, p.intervenable, horizon,
                                  negate_target=not p.minimize)  # the policy minimises: hand it -Y

    def _belief(self, c: CampaignBatch, buffer: Buffer) -> Belief:
        """The surrogate's belief about the measured rows (:attr:`Buffer.told`; ``c`` is ``buffer``'s campaign)."""
        told = buffer.told
        return self._cache.belief(c if told is buffer else self._campaign(told), told.n, told.n_obs)

    def _cell_costs(self, low: torch.Tensor, high: torch.Tensor, K: int, buffer: Buffer) -> torch.Tensor:
        """1 x D x K: the cost of setting each variable at the centre of each of K grid cells of its
        domain (low, high: 1 x D, as the policy's input holds them; :mod:`acbo.costs`)."""
        D = low.shape[1]
        x = low[0, :, None].double() + (high - low)[0, :, None].double() * grid_positions(K, torch.float64)  # D x K
        return self.problem.costs.of_settings(torch.arange(D), x, self.previous(buffer))[None]

    def _cost_input(self, c: CampaignBatch, buffer: Buffer) -> torch.Tensor | None:
        """What each grid cell costs as a policy with a cost head reads it (1 x D x K x 3,
        :func:`acbo.policy.features.cost_features`: against the allowance, or without a budget in
        cost units what the steps left buy); None without costs, without a cost head, or with
        ``cost_rule="ei"`` (which reads the costs itself)."""
        if self.problem.costs is None or not self.policy.cfg.cost_head or self.cost_rule != "policy":
            return None
        cost = self._cell_costs(c.low.float(), c.high.float(), self.policy.cfg.grid, buffer)
        valid = c.intervenable & c.var_mask & ~c.target
        allowance = torch.tensor([self.allowance], dtype=torch.float64)
        return cost_features(cost, valid, allowance, (c.horizon - c.step).double())

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The learned predictive: the world model the policy reads (:attr:`PolicyConfig.world`),
        of the policy's own surrogate if it has a world-model head, else of the shipped surrogate
        (``acbo.surrogate.load_pretrained``)."""
        from acbo.surrogate.inference import conditioned_predictive, world_predictive

        model = self.surrogate if self.surrogate.cfg.queries else _world_model()
        if self.policy.cfg.world == "conditioned":
            p = self.problem
            return conditioned_predictive(model, buffer, p.target, variable, x, float(p.low[variable]),
                                          float(p.high[variable]), draw, (p.low, p.high))
        return world_predictive(model, buffer, self.problem.target, variable, x, draw)

    @property
    def models_sets(self) -> bool:
        """Only a policy that reads the conditioned world model predicts sets (:meth:`predict_set`)."""
        return self.policy.cfg.world == "conditioned"

    def predict_set(self, buffer: Buffer, variables: list[int], x: torch.Tensor, draw: bool = True):
        """The conditioned world model for several variables set together
        (:func:`acbo.surrogate.inference.conditioned_set`); a policy reading the network world
        model has none."""
        from acbo.surrogate.inference import conditioned_set

        if self.policy.cfg.world != "conditioned":
            raise ValueError("this policy reads the network world model, which answers one variable at a time")
        model = self.surrogate if self.surrogate.cfg.queries else _world_model()
        var = torch.tensor(variables)
        return conditioned_set(model, buffer, self.problem.target, list(variables), x, self.problem.low[var],
                               self.problem.high[var], draw, (self.problem.low, self.problem.high))

    @torch.inference_mode()
    def believed_means(self, told: Buffer, var: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """E[Y | do(X_var[p] = val[p])] (observed units, P) for a batch's believed rows: the world
        model the policy reads, of the measured rows (:meth:`_measured_world`, which the batch's
        first decision computed), at each value; the network world model (a policy without the
        conditioned one) through :meth:`predict`. For a maximisation the policy's world model
        reads -Y, so this may differ a little from :meth:`predict`."""
        if not self._reads_world():
            return super().believed_means(told, var, val)
        p = self.problem
        kept = self._measured_world(told)
        slot = kept.slots(var)                                                                    # P: var's row in Q
        u = (val - p.low[var].double()) / (p.high[var] - p.low[var]).double().clamp_min(1e-12)  # P
        z = world_at(kept.prior, kept.fit.select(slot), u[:, None]).mean[0, :, 0]                 # P
        mean, std = kept.y_scale
        sign = 1.0 if p.minimize else -1.0  # the campaign hands the world model -Y when maximising
        return sign * (mean + std * z)

    @torch.inference_mode()
    def believed_set_mean(self, told: Buffer, variables: list[int], values: torch.Tensor) -> float:
        """E[Y | do(X_variables = values)] (observed units) for a batch's believed row of a pair:
        as :meth:`predict_set` computes it (the members' effects added, corrected by the rows that
        set exactly this pair), on the world model of the measured rows the batch's first decision
        kept (:meth:`_measured_world`), not a new pass over the rows. As :meth:`believed_means`,
        the policy's world model reads -Y when maximising."""
        if not self._reads_world():
            return super().believed_set_mean(told, variables, values)
        p = self.problem
        kept = self._measured_world(told)
        var = torch.tensor(variables)
        slots = kept.slots(var)                                                                     # k: rows in Q
        exact = told.intervened[:, var].all(1) & (told.intervened.sum(1) == len(variables))          # N: rows that set S
        settings = told.values[exact][:, var].double()                                               # M x k
        at = torch.cat([values.double()[None], settings])                                            # (1 + M) x k
        u = (at - p.low[var].double()) / (p.high[var] - p.low[var]).double().clamp_min(1e-12)
        w = world_at(kept.prior, kept.fit.select(slots), u.T)                                        # 1 x k x (1 + M)
        y_mean, y_std = kept.y_scale
        sign = 1.0 if p.minimize else -1.0  # the campaign hands the world model -Y when maximising
        ys = (sign * told.values[exact, p.target].double() - y_mean) / y_std                         # M
        noise = float((w.var_y - w.var_f)[0].mean())
        z = set_posterior(w.mean[0].sum(0), w.var_f[0].sum(0), u, ys, settings, noise)[0][0]
        return float(sign * (y_mean + y_std * z))

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        """The surrogate's marginals; with the conditioned world model, those of the settable
        variables after the experiments on them (an experiment that showed no effect lowers them)."""
        p = self.problem
        with torch.inference_mode():
            c = self._campaign(buffer)
            belief = self._belief(c, buffer)
            marginals = belief.marginals[0].double()
            if self.policy.cfg.world == "conditioned":
                marginals = after_experiments(self.surrogate, c, belief)[0]
        return ParentPosterior.from_marginals(p.names, p.target, marginals)

    @torch.inference_mode()
    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """The policy's action on the data. In a batch (:meth:`Method.propose_batch`: the buffer
        ends in the pending experiments' believed rows), the policy reads them as measured and
        its draw avoids their (variable, grid cell) pairs (:attr:`Method.pending`): a batch never puts two experiments in
        one cell of the policy's grid. With costs (``problem.costs``; each cell at its centre's cost,
        within the allowance) the policy's probabilities are divided by the costs, or a policy with
        a cost head reads them itself (``cost_rule="policy"``), or the variable is the one with the
        most expected improvement per unit cost (:func:`acbo.policy.decide.per_unit_cost`) and the
        policy, not told the costs, chooses its value (``cost_rule="ei"``)."""
        c = self._campaign(buffer)
        x, dist = self._decide(c, buffer)
        if not buffer.believed and self.batch == "distinct":
            self._first = (buffer.n, x, dist)
        return self._choose(x, dist, buffer, self.pending, generator)

    def _decide(self, c: CampaignBatch, buffer: Buffer):
        """The policy's input and distribution on ``buffer`` (``c``: its campaign): the belief of
        its measured rows and, for a policy that reads it, the world model of :meth:`_grid_world`."""
        cost = self._cost_input(c, buffer)
        if not self._reads_world():
            return decide(self.policy, c, self._belief(c, buffer), self.surrogate, self._memo, cost=cost)
        kept = self._measured_world(buffer.told, None if buffer.believed else c)
        return decide(self.policy, c, kept.belief, self.surrogate, self._memo, self._grid_world(c, buffer, kept), cost)

    def _reads_world(self) -> bool:
        """Whether the policy reads the conditioned world model of its own surrogate (what
        :meth:`_grid_world` and :meth:`believed_means` keep between a batch's members)."""
        return self.policy.cfg.world == "conditioned" and bool(self.policy.cfg.grid) and self.surrogate.cfg.queries

    def _measured_world(self, told: Buffer, c: CampaignBatch | None = None) -> MeasuredWorld:
        """The surrogate's belief and the world model of the measured rows ``told`` (``c``: their
        campaign, or None to build it), kept while they are the same."""
        kept = self._world
        if kept is not None and torch.equal(kept.rows, told.values) and torch.equal(kept.intervened, told.intervened):
            return kept
        c = self._campaign(told) if c is None else c
        belief = self._belief(c, told)
        var, _, lo, hi = world_domains(c)                                                          # 1 x Q each
        batch = c.standardised()
        prior = world_prior(self.surrogate, batch, belief.tokens, belief.marginals, var, lo, hi, self._memo)
        grid, fit, shared = world_measured(prior, batch, var, self._grid_at(var.shape[1], var.device))
        y_mean, y_std = (float(t[0, self.problem.target]) for t in c.observational_stats())
        self._world = MeasuredWorld(told.values.clone(), told.intervened.clone(), belief, var[0], prior, fit, shared,
                                    grid, (y_mean, y_std))
        return self._world

    def _grid_at(self, R: int, device) -> torch.Tensor:
        """R x K: the policy's grid cell centres, once per variable instance."""
        K = self.policy.cfg.grid
        return grid_positions(K, torch.float64, device).expand(R, K)

    def _grid_world(self, c: CampaignBatch, buffer: Buffer, kept: MeasuredWorld) -> WorldBelief:
        """The conditioned world model on the policy's grid for a decision on ``buffer`` (``c``
        its campaign; ``kept``, the world model of its measured rows, :meth:`_measured_world`):
        that world, and with a batch's believed rows (:meth:`Method.believed`) the variables
        that pending experiments set conditioned anew on their rows, believed ones included (a
        pending pair's row as evidence about each member, :func:`acbo.surrogate.world.set_rows`).
        The network's prior and the observations' reading stay those of the measured rows, so a
        believed row, which the world model itself predicted, is evidence only about the
        variables it sets (a kriging believer per variable), and a later member costs a small
        solve, not a network pass."""
        if not buffer.believed:
            return kept.grid
        pending = buffer.intervened[buffer.n - buffer.believed:].any(0)                              # d: set by one
        slots = pending[kept.var].nonzero().flatten()                                               # R: their rows in Q
        if not len(slots):
            return kept.grid
        w = self._later_world(c, buffer, kept, slots, self._grid_at(len(slots), slots.device))      # 1 x R x K
        g = kept.grid
        put = lambda t, new: t.index_copy(1, slots, new.to(t.dtype))
        return WorldBelief(put(g.mean, w.mean), put(g.var_f, w.var_f), put(g.var_y, w.var_y), put(g.parent, w.parent))

    def _later_world(self, c: CampaignBatch, buffer: Buffer, kept: MeasuredWorld, slots: torch.Tensor,
                     us: torch.Tensor) -> WorldBelief:
        """For a batch's later member, the settable variables ``slots`` (rows in Q) conditioned on
        the buffer's rows, believed ones included, on the measured rows' prior (``kept``), at
        positions us (R x K): the rows that set each alone and those that set it with others
        (:meth:`_later_shared`)."""
        xm, ym, mm = measurements(c.standardised(), kept.var[slots][None])                         # R x M each
        return world_given(kept.prior, slots, xm, ym, mm, us, self._later_shared(c, buffer, kept, slots))[0]

    def _later_shared(self, c: CampaignBatch, buffer: Buffer, kept: MeasuredWorld, slots: torch.Tensor
                      ) -> SetRows | None:
        """For a batch's later member, the rows that set several variables as evidence about each
        member (:class:`acbo.surrogate.world.SetRows`) of the settable variables ``slots`` (rows in
        Q): the measured ones' (``kept``) and the pending experiments' believed ones, the other
        members' effects read off the measured rows' world model."""
        since = buffer.n - buffer.believed
        memo = self._believed_sets
        values, intervened = buffer.values[since:], buffer.intervened[since:]
        if memo is None or memo[0] is not kept or not (torch.equal(memo[1], values) and torch.equal(memo[2], intervened)):
            several = bool((intervened.sum(1) >= 2).any())
            rows = set_rows(kept.prior, kept.fit, c.standardised(), kept.var[None], since) if several else None
            memo = self._believed_sets = (kept, values.clone(), intervened.clone(), rows)  # a decision reads it twice
        believed = memo[3]
        return SetRows.joined(kept.shared_of(slots), None if believed is None else believed.select(slots))

    def propose_batch(self, buffer: Buffer, generator: torch.Generator, pending: list[dict[int, float]]
                      ) -> dict[int, float]:
        """With ``batch="believer"`` (the default) :meth:`Method.propose_batch`: each member decided
        anew on the data with the pending ones believed. With ``batch="distinct"`` the first
        member's decision serves the whole batch: each later member is drawn from it with the
        pending experiments' (variable, cell) pairs excluded (one decision per batch); where an
        experiment may set two variables, the first member's set action serves the batch
        (:meth:`ask_set`), its first members away from the pending experiments' cells (with
        costs, each member is decided as with the believer)."""
        p = self.problem
        if not pending or self.batch == "believer" or (p.costs is not None and (p.max_set > 1 or p.sets is not None)):
            return super().propose_batch(buffer, generator, pending)  # with costs, pairs as the believer: the
            # allowance shrinks with each pending member, and the first decision's partners would not know it
        if p.max_set > 1 or p.sets is not None:  # on the measured rows: ask_set keeps the first decision
            self.pending = pending
            try:
                return self.propose_set(buffer, generator)
            finally:
                self.pending = []
        with torch.inference_mode():
            if self._first is None or self._first[0] != buffer.n:  # e.g. resumed with a batch pending
                c = self._campaign(buffer)
                self._first = (buffer.n, *self._decide(c, buffer))
            _, x, dist = self._first
            j, v = self._choose(x, dist, buffer, pending, generator)
        return {j: min(max(v, float(self.problem.low[j])), float(self.problem.high[j]))}

    def _choose(self, x, dist, buffer: Buffer, pending: list[dict[int, float]], generator: torch.Generator
                ) -> tuple[int, float]:
        """The action drawn from ``dist`` (the policy's, on input ``x``), as :meth:`_restricted` leaves it."""
        dist = self._restricted(x, dist, buffer, pending)
        var, u = dist.mode() if self.greedy else (t[:, 0] for t in dist.sample(generator, 1))
        j = int(var[0])
        lo, hi = float(self.problem.low[j]), float(self.problem.high[j])
        return j, lo + float(u[0]) * (hi - lo)

    def _restricted(self, x, dist, buffer: Buffer, pending: list[dict[int, float]], first: torch.Tensor | None = None):
        """``dist`` away from the cells of the ``pending`` experiments' members, on the variables
        ``first`` (D bool, optional: those that may lead an experiment) and, with costs, on the
        variable of most expected improvement per unit cost among them, or reweighted by cost, or
        (a policy that read the costs) within the allowance (see :meth:`ask`)."""
        p = self.problem
        if first is not None:
            dist = dist.restricted(first[None, :, None].expand_as(dist.logits))
            x = dataclasses.replace(x, valid=x.valid & first[None])
        if pending and isinstance(dist, GridActionDist):
            members = [(j, v) for q in pending for j, v in q.items()]
            var = torch.tensor([j for j, _ in members])                                             # P
            val = torch.tensor([v for _, v in members], dtype=torch.float64)                        # P
            u = (val - p.low[var].double()) / (p.high[var] - p.low[var]).double().clamp_min(1e-12)
            dist = dist.excluding(var[None], u[None])
        if p.costs is not None and isinstance(dist, GridActionDist):
            cost = self._cell_costs(dist.low, dist.high, dist.logits.shape[2], buffer)
            if self.cost_rule == "ei":
                dist = dist.restricted(per_unit_cost(x, cost, self.allowance))
            elif self.policy.cfg.cost_head:  # the policy read the costs (_cost_input): only the allowance
                dist = dist.restricted(pays(cost, self.allowance))
            else:  # the policy's own probabilities per unit cost
                dist = dist.reweighted(torch.where(pays(cost, self.allowance), -torch.log(cost.clamp_min(1e-300)),
                                                   float("-inf")))  # cost 0: a variable that cannot be set
        return dist

    @torch.inference_mode()
    def ask_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        """An experiment of one or two variables (:mod:`acbo.policy.sets`): the policy's action as
        the first member (as :meth:`ask` draws it, among the variables of some allowed set), then
        stop or a partner by the world model's expected improvement of the pair, per unit cost with
        costs (:meth:`_partner_logits`). In a batch with ``batch="distinct"`` the later members are
        drawn from the first member's decision (:meth:`propose_batch`)."""
        first = self._first_set
        if (self.batch == "distinct" and self.pending and first is not None and torch.equal(first[0], buffer.values)
                and torch.equal(first[1], buffer.intervened)):
            x, dist, logits = first[2:]
        else:
            c = self._campaign(buffer)
            x, dist = self._decide(c, buffer)
            logits = self._partner_logits(c, buffer, x, dist)
            if self.batch == "distinct" and not buffer.believed:
                self._first_set = (buffer.values.clone(), buffer.intervened.clone(), x, dist, logits)
        return self._draw_set(x, dist, logits, buffer, generator)

    def _partner_logits(self, c: CampaignBatch, buffer: Buffer, x, dist: GridActionDist) -> torch.Tensor:
        """The partner logits (1 x DK x (DK + 1), :func:`acbo.policy.sets.pair_logits`) of a
        decision on ``buffer`` (``c`` its campaign; the policy's input ``x`` and distribution
        ``dist``): pairs already measured scored by the world model conditioned on them
        (:meth:`_measured_pairs`, as :meth:`predict_set`), per unit cost with costs (in mean costs
        of a valid cell, as in training: the same choice whatever the units), a pair beyond the
        allowance left out."""
        p = self.problem
        pair_ok, single_ok = self._allowed_pairs
        cost = self._cell_costs(dist.low, dist.high, dist.logits.shape[2], buffer) if p.costs is not None else None
        mean, std, pair_mean, pair_var, best = world_pairs(x)
        best = self._measured_pairs(c, buffer, pair_mean, pair_var, best)
        relative = None if cost is None else cost / cost[x.valid[..., None].expand_as(cost)].mean().clamp_min(1e-300)
        logits = pair_logits(mean, std, pair_mean, pair_var, best, pair_ok[None], single_ok[None], cost=relative)
        if cost is not None:  # a pair beyond the allowance is not drawn
            too_dear = ~pays(cost.reshape(1, -1, 1) + cost.reshape(1, 1, -1), self.allowance)              # 1 x DK x DK
            logits[..., :-1] = logits[..., :-1].masked_fill(too_dear, float("-inf"))
        return logits

    def _draw_set(self, x, dist: GridActionDist, logits: torch.Tensor, buffer: Buffer, generator: torch.Generator
                  ) -> dict[int, float]:
        """An experiment drawn from the set action of the policy's ``dist`` (on input ``x``) and the
        partner ``logits``, its first member away from the pending experiments' cells and among the
        variables of some allowed set (:meth:`_restricted`); a random allowed set where nothing is left."""
        p = self.problem
        pair_ok, single_ok = self._allowed_pairs
        dist = self._restricted(x, dist, buffer, self.pending, (pair_ok.any(1) | single_ok) & p.intervenable)
        options = torch.isfinite(logits).any(2).reshape(dist.logits.shape)                        # 1 x D x K
        if not bool((options & torch.isfinite(dist.logits)).any()):  # no first member with a partner or stop left
            return self.random_set(generator)
        act = SetActionDist(dist.restricted(options), logits)
        var, u, n = act.mode() if self.greedy else act.sample(generator)
        out = {}
        for j, uj in zip(var[0, :int(n[0])].tolist(), u[0, :int(n[0])].tolist()):
            lo, hi = float(p.low[j]), float(p.high[j])
            out[j] = lo + uj * (hi - lo)
        return out

    @functools.cached_property
    def _allowed_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(pair_ok D x D, single_ok D) of the problem's allowed sets (fixed over a campaign: built once)."""
        return allowed_pairs(self.problem.allowed_sets, self.problem.d)

    def _measured_pairs(self, c: CampaignBatch, buffer: Buffer, pair_mean: torch.Tensor, pair_var: torch.Tensor,
                        best: torch.Tensor) -> torch.Tensor:
        """For each pair of variables some measured rows set exactly, its blocks of ``pair_mean``
        and ``pair_var`` (1 x DK x DK, Y's standard units, minimised; changed in place) corrected
        by those rows (:func:`_pair_block`: the additive prior the blocks hold, the members' world
        models read at the measured settings on the campaign's own encoding); returns ``best`` (1)
        lowered to the lowest posterior E[Y | do] at a pair's measured settings. As
        :meth:`predict_set`, without re-encoding the rows. In a batch the pending pairs' believed
        rows (the last of ``buffer``) count as measured, as the policy's own input reads them; a
        later member reads the members on the measured rows' prior (as :meth:`_grid_world` does),
        without a network pass, and keeps the batch's first member's blocks of the pairs whose rows
        and members the pending experiments leave as they were (:meth:`_kept_pair_blocks`)."""
        p = self.problem
        K = pair_mean.shape[1] // p.d
        two = buffer.intervened.sum(1) == 2
        if not bool(two.any()):
            return best
        set2, values2 = buffer.intervened[two], buffer.values[two]                                    # M2 x D each
        kept = self._measured_world(buffer.told)
        settable = set(kept.var.tolist())  # a pair told with a variable the policy cannot set is not scored
        pairs = sorted({pair for r in set2 if set(pair := tuple(torch.nonzero(r).flatten().tolist())) <= settable})
        if not pairs:
            return best
        blocks = self._kept_pair_blocks(buffer, kept, pairs)
        todo = [pair for pair in pairs if pair not in blocks]
        if todo:
            members = sorted({v for pair in todo for v in pair})
            low, high = p.low.double(), p.high.double()
            u_all = (values2.double() - low) / (high - low).clamp_min(1e-12)                      # M2 x D, rows that set two
            mean, std = (t[0] for t in c.observational_stats())                                   # D each
            var = torch.tensor(members)
            slots = kept.slots(var)
            if buffer.believed:  # a batch's later member: as :meth:`_grid_world` conditions them
                w = self._later_world(c, buffer, kept, slots, u_all[:, var].T)
            else:
                w = world_at(kept.prior, kept.fit.select(slots), u_all[:, var].T)               # 1 x |members| x M2
            ys = (c.values[0, :buffer.n][two, p.target].double() - mean[p.target]) / std[p.target]  # M2, as the policy reads Y
            for i, j in todo:
                rows = set2[:, i] & set2[:, j]                                                    # M2 (bool): this pair's
                ab = [members.index(i), members.index(j)]
                block = (slice(i * K, (i + 1) * K), slice(j * K, (j + 1) * K))
                blocks[(i, j)] = _pair_block(pair_mean[0][block], pair_var[0][block], w.mean[0, ab][:, rows],
                                             w.var_f[0, ab][:, rows], w.var_y[0, ab][:, rows], u_all[rows][:, [i, j]],
                                             ys[rows], values2[rows][:, [i, j]].double())
        if not buffer.believed:
            self._pair_blocks = (kept, dict(blocks))
        for (i, j), (m, v, low_at_rows) in blocks.items():
            block = (slice(i * K, (i + 1) * K), slice(j * K, (j + 1) * K))
            pair_mean[0][block], pair_var[0][block] = m.to(pair_mean.dtype), v.to(pair_var.dtype)
            flip = (block[1], block[0])
            pair_mean[0][flip], pair_var[0][flip] = m.T.to(pair_mean.dtype), v.T.to(pair_var.dtype)
            best = torch.minimum(best, low_at_rows.to(best.dtype).reshape(1))
        return best

    def _kept_pair_blocks(self, buffer: Buffer, kept: MeasuredWorld, pairs: list[tuple[int, int]]) -> dict:
        """For a batch's later member, the blocks the first member computed (:meth:`_measured_pairs`,
        on the same measured rows ``kept``) of the ``pairs`` none of whose members a pending
        experiment sets (whose world model the believed rows leave as it was); empty otherwise."""
        if not buffer.believed or self._pair_blocks is None or self._pair_blocks[0] is not kept:
            return {}
        touched = set(buffer.intervened[buffer.n - buffer.believed:].any(0).nonzero().flatten().tolist())
        return {pair: blk for pair, blk in self._pair_blocks[1].items() if pair in pairs and not touched & set(pair)}
