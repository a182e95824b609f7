"""Acting in simulated campaigns: one step, GRPO rollouts, validation (the decision itself:
:mod:`acbo.policy.decide`).

- :func:`policy_step` — one step of B simulated campaigns: decide, sample k candidate actions,
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
from acbo.policy.grpo import group_advantages
from acbo.policy.model import ActionDist, GridActionDist, Policy, PolicyInput
from acbo.policy.rewards import combine, improvement, information_gain, outcome_gain, parent_hit
from acbo.surrogate import Belief, Surrogate

MODES = ("candidates", "trajectory")
REGRET_GAP = 1e-3
"""A campaign's regret counts in :func:`play` when not intervening is this many of Y's observational
stds above the optimum (below, the normalised regret divides noise by noise)."""


@dataclass(frozen=True)
class Step:
    """One decision in B campaigns: what the policy saw and did, and what came of it.

    x: the policy's input; dist: its action distribution; var/u/value: B x k sampled actions
    (variable, position in the domain, value; the first was carried out); e_y: B x k E[Y | do]
    of each; rows/mask: B x k x d one simulated outcome of each; best: B, the best E[Y | do]
    before this step; belief: the surrogate's belief before this step."""

    x: PolicyInput
    dist: ActionDist | GridActionDist
    var: torch.Tensor
    u: torch.Tensor
    value: torch.Tensor
    e_y: torch.Tensor
    rows: torch.Tensor
    mask: torch.Tensor
    best: torch.Tensor
    belief: Belief


@torch.no_grad()
def policy_step(policy: Policy, surrogate: Surrogate, env: Env, belief: Belief, generator: torch.Generator,
                k: int = 1) -> tuple[Step, Belief]:
    """Decide in every campaign of ``env``, sample k actions, evaluate and simulate each, carry out
    the first (appended to ``env``). Returns the step and the belief after it."""
    x, dist = decide(policy, env.campaign(), belief, surrogate)
    var, u = dist.sample(generator, k)                                                       # B x k
    value = dist.value(var, u)
    e_y = env.expected(var, value)                                                           # B x k
    rows, mask = env.outcomes(var, value, generator)                                         # B x k x d
    step = Step(x, dist, var, u, value, e_y, rows, mask, env.best, belief)
    env.append(rows[:, :1], mask[:, :1], e_y[:, 0])
    return step, belief.add(surrogate, rows[:, :1], mask[:, :1])


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

    def __post_init__(self):
        if len(self.horizon) != 2 or not 1 <= self.horizon[0] <= self.horizon[1]:
            raise ValueError(f"horizon must be a range (low, high) with 1 <= low <= high, got {self.horizon}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.size}")


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
    """Decisions collected in one iteration: inputs (M states), actions var/u M x K, their
    logp under the rollout policy M x K, advantages M x K, informative M (non-degenerate group)."""

    x: PolicyInput
    var: torch.Tensor
    u: torch.Tensor
    logp: torch.Tensor
    adv: torch.Tensor
    informative: torch.Tensor


def step_rewards(step: Step, env: Env, parents: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reward components of a step's candidates (each B x k; information gain apart)."""
    return {"improvement": improvement(step.best, step.e_y, env.y_scale),
            "outcome": outcome_gain(env.y_obs, step.e_y, env.y_scale),
            "parent": parent_hit(step.var, parents)}


@torch.no_grad()
def collect(policy: Policy, surrogate: Surrogate, env: Env, design: GroupDesign, weights: dict[str, float],
            generator: torch.Generator) -> tuple[Rollout, dict[str, torch.Tensor]]:
    """Run the campaigns of ``env`` (already repeated G times for trajectory groups) for their
    T steps; returns the decisions with advantages and the reward components (T x B x K each)."""
    G, T = design.size, env.horizon
    K = G if design.mode == "candidates" else 1
    parents = env.scm.parents()
    belief = Belief.of(surrogate, env.campaign())
    steps, rewards, comps_log = [], [], {}
    for _ in range(T):
        step, after = policy_step(policy, surrogate, env, belief, generator, K)
        comps = step_rewards(step, env, parents)
        var_mask = step.x.var_mask
        if design.mode == "candidates":
            if weights.get("info_gain", 0) != 0:
                cand = belief.encoding.marginals_with(surrogate, step.rows, step.mask)               # B x K x d
                comps["info_gain"] = information_gain(belief.marginals[:, None], cand, var_mask[:, None])
        else:
            comps["info_gain"] = information_gain(belief.marginals, after.marginals, var_mask)[:, None]
        rewards.append(combine(comps, weights))
        for key, v in comps.items():
            comps_log.setdefault(key, []).append(v)
        steps.append(step)
        belief = after
    R = torch.stack(rewards)                                                                   # T x B x K
    if design.mode == "candidates":
        adv, informative = group_advantages(R.reshape(-1, G), design.scale_by_std)            # T*B x G
        adv, informative = adv.reshape(T, -1, G), informative.reshape(T, -1)                  # T x B x G, T x B
    else:
        ret = R.sum(0)[:, 0].reshape(-1, G)                                                    # B x G returns
        adv, informative = group_advantages(ret, design.scale_by_std)
        adv = adv.reshape(1, -1, 1).expand(T, -1, 1)                                           # T x BG x 1
        informative = informative.repeat_interleave(G).expand(T, -1)                           # T x BG
    out = Rollout(PolicyInput.cat([s.x for s in steps]), torch.cat([s.var for s in steps]),
                  torch.cat([s.u for s in steps]), torch.cat([s.dist.log_prob(s.var, s.u) for s in steps]),
                  adv.reshape(-1, adv.shape[-1]), informative.reshape(-1))
    return out, {key: torch.stack(v) for key, v in comps_log.items()}


@torch.no_grad()
def play(policy: Policy, surrogate: Surrogate, env: Env, y_star: torch.Tensor, generator: torch.Generator
         ) -> dict[str, float]:
    """Run copies of the campaigns for their T steps as deployed (sampled actions): mean
    normalised regret (best - y*) / (E[Y]_obs - y*) at T and averaged over steps, over the
    campaigns where intervening can help (E[Y]_obs - y* above a thousandth of Y's observational
    std: elsewhere the ratio is Monte Carlo noise over nothing; NaN if there is none), and the
    fraction of steps on true parents. ``env`` itself is left as it was."""
    env = copy.copy(env)
    parents = env.scm.parents()
    gap = env.y_obs - y_star                                                                   # B
    ok = gap > REGRET_GAP * env.y_scale
    belief = Belief.of(surrogate, env.campaign())
    regrets, hits = [], []
    for _ in range(env.horizon - env.step_count):
        step, belief = policy_step(policy, surrogate, env, belief, generator, 1)
        regrets.append((env.best - y_star) / gap.clamp_min(1e-12))
        hits.append(parent_hit(step.var, parents)[:, 0])
    r = torch.stack(regrets)[:, ok]                                                            # T x (campaigns that count)
    counted = int(ok.sum())
    return {"val_regret_T": float(r[-1].mean()) if counted else float("nan"),
            "val_regret_mean": float(r.mean()) if counted else float("nan"),
            "val_parent_frac": float(torch.stack(hits).mean()), "val_counted": counted}
