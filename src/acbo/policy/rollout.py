"""Acting in simulated campaigns: one step, GRPO rollouts, validation (the decision itself:
:mod:`acbo.policy.decide`).

- :func:`policy_step` — one step of B simulated campaigns: decide, sample k candidate actions
  (of one variable, or of one or two with ``max_set = 2``: :func:`acbo.policy.sets.set_action`),
  evaluate each (E[Y | do] and one simulated outcome), carry out the first, update the belief.
  The one loop body every rollout uses.
- :func:`collect` — a GRPO rollout: T policy steps, rewards per candidate or per trajectory,
  group-relative advantages. :func:`play` — campaigns run as deployed, scored by regret.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from acbo.env import Env
from acbo.policy.decide import decide
from acbo.policy.features import cost_features
from acbo.policy.grpo import group_advantages
from acbo.policy.model import ActionDist, GridActionDist, Policy, PolicyInput
from acbo.policy.rewards import combine, experiment_cost, improvement, information_gain, outcome_gain, parent_hit
from acbo.policy.sets import SetActionDist, set_action, set_log_prob
from acbo.surrogate import Belief, Surrogate
from acbo.surrogate.model import ContextMemo

MODES = ("candidates", "trajectory")
BUDGET_CAP = 3
"""A campaign with a budget in cost units (``design.budget``) makes at most this many times its
horizon T of experiments, however cheap they are."""
REGRET_GAP = 1e-3
"""A campaign's regret counts in :func:`play` when not intervening is this many of Y's observational
stds above the optimum (below, the normalised regret divides noise by noise)."""


@dataclass(frozen=True)
class Step:
    """One decision in B campaigns: what the policy saw and did, and what came of it.

    x: the policy's input; dist: its action distribution; var/u/value: B x k sampled actions
    (variable, position in the domain, value; the first was carried out), B x k x 2 for set
    actions; members: B x k variables each sets (set actions; None otherwise); e_y: B x k
    E[Y | do] of each; rows/mask: B x k x d one simulated outcome of each; best: B, the best
    E[Y | do] before this step; belief: the surrogate's belief before this step; with a budget in
    cost units (:attr:`Env.budget`): live, B, the campaigns whose budget paid for this step, and
    allowed, B x D x K, the cells the draw was restricted to (those the allowance pays for)."""

    x: PolicyInput
    dist: ActionDist | GridActionDist | SetActionDist
    var: torch.Tensor
    u: torch.Tensor
    value: torch.Tensor
    e_y: torch.Tensor
    rows: torch.Tensor
    mask: torch.Tensor
    best: torch.Tensor
    belief: Belief
    members: torch.Tensor | None = None
    live: torch.Tensor | None = None
    allowed: torch.Tensor | None = None

    def log_prob(self) -> torch.Tensor:
        """The log-probabilities of the sampled actions under the distribution they came from, B x k."""
        if self.members is None:
            return self.dist.log_prob(self.var, self.u)
        return self.dist.log_prob(self.var, self.u, self.members)


@torch.no_grad()
def policy_step(policy: Policy, surrogate: Surrogate, env: Env, belief: Belief, generator: torch.Generator,
                k: int = 1, max_set: int = 1, memo: ContextMemo | None = None) -> tuple[Step, Belief]:
    """Decide in every campaign of ``env``, sample k actions (experiments of up to ``max_set``
    variables: 1, or 2 with the set action), evaluate and simulate each, carry out the first
    (appended to ``env``). Returns the step and the belief after it. ``memo``: what the world
    model keeps between the steps of these campaigns (:class:`acbo.surrogate.model.ContextMemo`)."""
    x, dist = decide(policy, env.campaign(), belief, surrogate, memo, cost=training_cost_features(env, policy.cfg.grid))
    _check_finite(policy, x, dist.logits if isinstance(dist, GridActionDist) else dist.var_logits)
    members = live = allowed = None
    if env.budget is not None:  # the draw within the allowance, as deployed (a spent campaign's step counts for nothing)
        live = env.live()
        allowed = affordable(env, dist.logits.shape[2])
        dist = dist.restricted(allowed)
    if max_set == 2:
        dist = set_action(dist, x)
        var, u, members = dist.sample(generator, k)                                          # B x k x 2, B x k x 2, B x k
    else:
        var, u = dist.sample(generator, k)                                                   # B x k
    value = dist.value(var, u)
    e_y = env.expected(var, value)                                                           # B x k
    rows, mask = env.outcomes(var, value, generator)                                         # B x k x d
    step = Step(x, dist, var, u, value, e_y, rows, mask, env.best, belief, members, live, allowed)
    env.append(rows[:, :1], mask[:, :1], e_y[:, 0])
    return step, belief.add(surrogate, rows[:, :1], mask[:, :1])


def _check_finite(policy: Policy, x: PolicyInput, logits: torch.Tensor) -> None:
    """A NaN (or +inf) among the policy's logits stops the rollout with what it came from: the
    campaigns and input fields that hold non-finite values, and the parameters that do (a draw from
    it would fail in ``torch.multinomial`` without saying why)."""
    bad = torch.isnan(logits) | (logits == float("inf"))
    if not bool(bad.any()):
        return
    rows = bad.flatten(1).any(1).nonzero().flatten().tolist()
    fields = {f: int((~torch.isfinite(t)).sum()) for f in PolicyInput.__dataclass_fields__
              if (t := getattr(x, f)).is_floating_point() and not bool(torch.isfinite(t).all())}
    params = [n for n, p in policy.named_parameters() if not bool(torch.isfinite(p).all())]
    raise FloatingPointError(f"the policy's logits are NaN or +inf in campaigns {rows[:10]}: non-finite input fields "
                             f"(count) {fields or 'none'}, non-finite parameters {params or 'none'}")


def training_cost_features(env: Env, K: int) -> torch.Tensor | None:
    """What each grid cell costs in simulated campaigns with costs (:attr:`Env.costs`; None
    without): each variable's fixed cost in all K cells, against the allowance left with a budget
    in cost units (:attr:`Env.budget`), or without one what the campaign's remaining steps buy at
    the mean cost (:func:`acbo.policy.features.cost_features`)."""
    if env.costs is None:
        return None
    if not K:
        raise ValueError("costs are read on the world model's grid: the policy needs grid >= 2")
    B, d = env.costs.shape
    cell = env.costs[:, :, None].expand(B, d, K)                                              # B x d x K
    left = torch.full((B,), float(env.horizon - env.step_count), dtype=cell.dtype, device=cell.device)
    # a spent campaign's step counts for nothing: read its allowance as a mean cost, not as ~0
    allowance = torch.where(env.live(), env.allowance(), torch.maximum(env.allowance(), env.mean_cost())
                            ) if env.budget is not None else env.allowance()
    return cost_features(cell, env.settable, allowance, left)


def affordable(env: Env, K: int) -> torch.Tensor:
    """B x d x K: the grid cells each campaign's allowance pays for (every cell of a campaign whose
    budget is spent: its draw counts for nothing, and must not be empty; cells of variables that
    cannot be set have no probability anyway)."""
    ok = env.affordable() | ~env.settable | ~env.live()[:, None]                                  # B x d
    return ok[:, :, None].expand(-1, -1, K)


@dataclass(frozen=True)
class GroupDesign:
    """How GRPO forms its groups, and how long the campaigns they are drawn from run."""

    mode: str = "candidates"
    """'candidates': G interventions sampled from one state, each rewarded, the first carried
    out (they are i.i.d., so this stays on-policy); 'trajectory': each campaign copied G times,
    the copies rolled out independently, a trajectory's return (sum of step rewards) its reward."""
    size: int = 8
    """Group size G."""
    scale_by_std: bool = False
    """Divide advantages by the group std (GRPO) or not (Dr. GRPO)."""
    horizon: tuple[int, int] = (10, 20)
    """Steps per campaign T, uniform per step of training (the policy sees steps taken and left)."""
    max_set: int = 1
    """Variables one experiment may set: 1, or 2 for the set action (:mod:`acbo.policy.sets`:
    the policy's first member, then the world model's partner or *stop*, the policy's stop head
    biasing *stop*); needs a policy that reads the world model (``grid``)."""
    costs: tuple[float, float] | None = None
    """Unequal costs of the settable variables, log-uniform in [low, high], drawn per campaign from
    the train stream (:meth:`Env.with_costs`): the policy reads them (a cost head is added to a
    policy that has none, :meth:`Policy.with_cost_head`) and the reward's cost term is an
    experiment's cost over the campaign's mean cost (``rewards.cost``). Fixed costs only, and no
    budget in cost units: what a campaign may still spend is what its remaining steps buy at the
    mean cost (as a deployed budget reads, :meth:`acbo.policy.method.Amortized._campaign`) unless
    ``budget``; costs per unit moved are read in deployment by a head that never saw them vary
    between cells. None: no costs."""
    budget: bool = False
    """With costs, campaigns that end when their budget is spent: a campaign of horizon T may spend
    T times its settable variables' mean cost, draws only what its allowance pays for, reads that
    allowance (as deployed with ``budget_cost``), and runs until it pays for no settable variable,
    at most BUDGET_CAP x T experiments. A cheaper experiment buys more of them, which only the
    trajectory's return sees: needs ``mode = 'trajectory'`` (experiments of one variable)."""
    common_noise: bool = False
    """Trajectory groups whose copies measure with the same outcome noise at each step (common
    random numbers, :meth:`Env.repeat`): the spread of the returns within a group is then what the
    copies chose (and what their choices led the world model to believe), not the luck of their
    measurements. Needs ``mode = 'trajectory'``."""

    def __post_init__(self):
        if len(self.horizon) != 2 or not 1 <= self.horizon[0] <= self.horizon[1]:
            raise ValueError(f"horizon must be a range (low, high) with 1 <= low <= high, got {self.horizon}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.size}")
        if self.max_set not in (1, 2):
            raise ValueError(f"design.max_set must be 1 or 2 (experiments of one or two variables), got {self.max_set!r}")
        if self.costs is not None and not (isinstance(self.costs, tuple) and len(self.costs) == 2
                                           and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in self.costs)
                                           and 0 < self.costs[0] <= self.costs[1] < float("inf")):
            raise ValueError(f"design.costs must be (low, high) with 0 < low <= high, got {self.costs!r}")
        if self.budget and (self.costs is None or self.mode != "trajectory" or self.max_set != 1):
            raise ValueError("design.budget needs design.costs, design.mode 'trajectory' (what a cheaper experiment "
                             "buys shows only in a trajectory's return) and design.max_set 1, got "
                             f"costs={self.costs!r}, mode={self.mode!r}, max_set={self.max_set!r}")
        if self.common_noise and self.mode != "trajectory":
            raise ValueError(f"design.common_noise shares the outcome noise between a trajectory group's copies: it "
                             f"needs design.mode 'trajectory', got {self.mode!r}")


@dataclass(frozen=True)
class PlayValidation:
    """Validation campaigns played as deployed (:func:`play`): how many, and how long."""

    campaigns: int = 32
    """Validation campaigns (regret at T)."""
    horizon: int = 10
    """T of the validation campaigns."""

    def __post_init__(self):
        for name in ("campaigns", "horizon"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"val_{name} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class Rollout:
    """Decisions collected in one iteration: inputs (M states), actions var/u M x K (M x K x 2 for
    set actions), their logp under the rollout policy M x K, advantages M x K, informative M
    (non-degenerate group); for set actions the members M x K and the partner logits each
    action's members drew from, M x K x 2 x (DK + 1) (the world model's, fixed: only the policy's
    part, the first member and the stop bias, changes in an update); with a budget, only the
    decisions a budget paid for, and the cells each was restricted to, M x D x K."""

    x: PolicyInput
    var: torch.Tensor
    u: torch.Tensor
    logp: torch.Tensor
    adv: torch.Tensor
    informative: torch.Tensor
    members: torch.Tensor | None = None
    partner_rows: torch.Tensor | None = None
    allowed: torch.Tensor | None = None

    def index(self, idx: torch.Tensor) -> "Rollout":
        """The decisions ``idx`` (M')."""
        pick = lambda t: None if t is None else t[idx]
        return Rollout(self.x.index(idx), self.var[idx], self.u[idx], self.logp[idx], self.adv[idx],
                       self.informative[idx], pick(self.members), pick(self.partner_rows), pick(self.allowed))

    def drawn_from(self, dist: GridActionDist | ActionDist, idx: torch.Tensor) -> GridActionDist | ActionDist:
        """``dist`` (a policy's, on decisions ``idx``'s inputs) as decisions ``idx`` drew from it:
        with a budget, restricted to the cells the allowance paid for; else as it is."""
        return dist if self.allowed is None else dist.restricted(self.allowed[idx])

    def log_prob(self, dist: GridActionDist | ActionDist, idx: torch.Tensor) -> torch.Tensor:
        """The log-probabilities (|idx| x K) of decisions ``idx``'s actions under ``dist``, the
        distribution they were drawn from (:meth:`drawn_from`; for set actions, with their partner
        logits)."""
        if self.partner_rows is None:
            return dist.log_prob(self.var[idx], self.u[idx])
        return set_log_prob(dist, self.partner_rows[idx], self.var[idx], self.u[idx], self.members[idx])


def step_rewards(step: Step, env: Env, parents: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reward components of a step's candidates (each B x k; information gain apart)."""
    return {"improvement": improvement(step.best, step.e_y, env.y_scale),
            "outcome": outcome_gain(env.y_obs, step.e_y, env.y_scale),
            "parent": parent_hit(step.var, parents), "cost": experiment_cost(step.var, env.relative_costs(), step.members)}


@torch.no_grad()
def collect(policy: Policy, surrogate: Surrogate, env: Env, design: GroupDesign, weights: dict[str, float],
            generator: torch.Generator) -> tuple[Rollout, dict[str, torch.Tensor]]:
    """Run the campaigns of ``env`` (already repeated G times for trajectory groups) for their
    T steps (with a budget, until every campaign's budget is spent, at most its horizon: a step
    after a campaign's budget ran out has no reward and is not in the rollout); returns the
    decisions with advantages and the reward components (T x B x K each; with a budget also
    ``paid``, 1 where the step was paid for)."""
    G = design.size
    K = G if design.mode == "candidates" else 1
    parents = env.scm.parents()
    belief = Belief.of(surrogate, env.campaign())
    memo = ContextMemo()
    steps, rewards, comps_log = [], [], {}
    for _ in range(env.horizon - env.step_count):
        if not env.live().any():
            break
        step, after = policy_step(policy, surrogate, env, belief, generator, K, design.max_set, memo)
        comps = step_rewards(step, env, parents)
        var_mask = step.x.var_mask
        if design.mode == "candidates":
            if weights.get("info_gain", 0) != 0:
                cand = belief.encoding.marginals_with(surrogate, step.rows, step.mask)               # B x K x d
                comps["info_gain"] = information_gain(belief.marginals[:, None], cand, var_mask[:, None])
        else:
            comps["info_gain"] = information_gain(belief.marginals, after.marginals, var_mask)[:, None]
        if step.live is not None:  # a spent campaign's step: no reward (its draw counts for nothing)
            comps = {key: torch.where(step.live[:, None], v, torch.zeros_like(v)) for key, v in comps.items()}
        rewards.append(combine(comps, weights))
        if step.live is not None:
            comps["paid"] = step.live[:, None].float()
        for key, v in comps.items():
            comps_log.setdefault(key, []).append(v)
        steps.append(step)
        belief = after
    R = torch.stack(rewards)                                                                   # T x B x K
    T = R.shape[0]
    if design.mode == "candidates":
        adv, informative = group_advantages(R.reshape(-1, G), design.scale_by_std)            # T*B x G
        adv, informative = adv.reshape(T, -1, G), informative.reshape(T, -1)                  # T x B x G, T x B
    else:
        ret = R.sum(0)[:, 0].reshape(-1, G)                                                    # B x G returns
        adv, informative = group_advantages(ret, design.scale_by_std)
        adv = adv.reshape(1, -1, 1).expand(T, -1, 1)                                           # T x BG x 1
        informative = informative.repeat_interleave(G).expand(T, -1)                           # T x BG
    sets = design.max_set > 1
    out = Rollout(PolicyInput.cat([s.x for s in steps]), torch.cat([s.var for s in steps]),
                  torch.cat([s.u for s in steps]), torch.cat([s.log_prob() for s in steps]),
                  adv.reshape(-1, adv.shape[-1]), informative.reshape(-1),
                  torch.cat([s.members for s in steps]) if sets else None,
                  torch.cat([s.dist.rows(s.var, s.u) for s in steps]) if sets else None,
                  torch.cat([s.allowed for s in steps]) if env.budget is not None else None)
    if env.budget is not None:  # the decisions a budget paid for, the only ones an update reads
        out = out.index(torch.cat([s.live for s in steps]).nonzero().flatten())
    return out, {key: torch.stack(v) for key, v in comps_log.items()}


@torch.no_grad()
def play(policy: Policy, surrogate: Surrogate, env: Env, y_star: torch.Tensor, generator: torch.Generator,
         max_set: int = 1) -> dict[str, float]:
    """Run copies of the campaigns for their T steps as deployed (sampled actions; experiments of
    up to ``max_set`` variables, y* over such experiments, the pairs scored as in training, by
    :func:`acbo.policy.sets.set_action`, without deployment's correction of measured pairs): mean
    normalised regret (best - y*) / (E[Y]_obs - y*) at T and averaged over steps, over the
    campaigns where intervening can help (E[Y]_obs - y* above a thousandth of Y's observational
    std: elsewhere the ratio is Monte Carlo noise over nothing; NaN if there is none), and the
    fraction of steps on true parents (for sets, of the members; and the share of experiments
    that set two, ``val_pair_frac``; with costs, the mean cost of an experiment over the mean cost
    of a variable, ``val_spend``; with a budget, ``val_experiments``, how many it bought: the
    campaigns run until their budgets are spent, regret at T is at that end, and the step means
    are over the experiments paid for). ``env`` itself is left as it was."""
    env = copy.copy(env)
    parents = env.scm.parents()
    gap = env.y_obs - y_star                                                                   # B
    ok = gap > REGRET_GAP * env.y_scale
    belief = Belief.of(surrogate, env.campaign())
    memo = ContextMemo()
    regrets, hits, pairs, spend, paid = [], [], [], [], []
    for _ in range(env.horizon - env.step_count):
        if not env.live().any():
            break
        step, belief = policy_step(policy, surrogate, env, belief, generator, 1, max_set, memo)
        regrets.append((env.best - y_star) / gap.clamp_min(1e-12))
        hits.append(parent_hit(step.var, parents)[:, 0])
        pairs.append(torch.zeros_like(hits[-1]) if step.members is None else (step.members[:, 0] == 2).float())
        spend.append(-experiment_cost(step.var, env.relative_costs(), step.members)[:, 0])
        paid.append(torch.ones_like(hits[-1]) if step.live is None else step.live.float())
    r = torch.stack(regrets)[:, ok]                                                            # T x (campaigns that count)
    w = torch.stack(paid)                                                                      # T x B

    def mean(v: list[torch.Tensor] | torch.Tensor, weight: torch.Tensor = w) -> float:
        """The mean over the experiments paid for (all of them without a budget)."""
        v = torch.stack(v) if isinstance(v, list) else v
        return float(v.mean()) if env.budget is None else float((v * weight).sum() / weight.sum())

    counted = int(ok.sum())
    return {"val_regret_T": float(r[-1].mean()) if counted else float("nan"),
            "val_regret_mean": mean(r, w[:, ok]) if counted else float("nan"),
            "val_parent_frac": mean(hits), "val_counted": counted,
            **({"val_pair_frac": mean(pairs)} if max_set > 1 else {}),
            **({"val_spend": mean(spend)} if env.costs is not None else {}),
            **({"val_experiments": float(w.sum(0).mean())} if env.budget is not None else {})}
