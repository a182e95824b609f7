"""The deployed decision: a campaign and the surrogate's belief in, the policy's input and its
action distribution out.

Deployment (``amortized``), behaviour cloning and training (:mod:`acbo.policy.rollout`) all
decide here, so the policy reads the same input wherever it acts.
"""

from __future__ import annotations

import math

import torch

from acbo.buffer import CampaignBatch
from acbo.costs import pays
from acbo.policy.features import LOG_EI, N_COST_FEATURES, N_GRID_FEATURES, campaign_features, grid_features, world_domains
from acbo.policy.model import ActionDist, GridActionDist, Policy, PolicyInput
from acbo.surrogate import Belief, Surrogate
from acbo.surrogate.model import ContextMemo
from acbo.surrogate.world import WorldBelief, conditioned_world


def policy_input(c: CampaignBatch, belief: Belief, surrogate: Surrogate | None = None, grid: int = 0,
                 memo: ContextMemo | None = None, world: str = "network", known: WorldBelief | None = None,
                 cost: torch.Tensor | None = None) -> PolicyInput:
    """Assemble what the policy reads for B campaigns; with ``grid = K > 0`` also the world model's
    features on K points per variable (the surrogate's world-model head; ``memo`` kept over one
    campaign's decisions spares it re-encoding the rows it has seen, see :meth:`Surrogate.query`;
    ``world``: which world model, :attr:`PolicyConfig.world`; ``known``: the conditioned world
    model on the grid, already computed, see :func:`grid_features`); ``cost``: what each grid cell
    costs, B x D x K x 3 (:func:`acbo.policy.features.cost_features`), None without costs."""
    var, glob = campaign_features(c, belief.marginals)
    valid = c.intervenable & c.var_mask & ~c.target
    B, _, D = c.values.shape
    if grid:
        if surrogate is None:
            raise ValueError("world-model features need the surrogate")
        g = grid_features(surrogate, c, belief.tokens, grid, memo, world, belief.marginals, known)
    else:
        g = torch.zeros(B, D, 0, N_GRID_FEATURES, device=c.values.device)
    if cost is None:
        cost = torch.zeros(B, D, 0, N_COST_FEATURES, device=c.values.device)
    elif cost.shape != (B, D, grid, N_COST_FEATURES):
        raise ValueError(f"cost features must be {(B, D, grid, N_COST_FEATURES)} (B x D x grid x features), "
                         f"got {tuple(cost.shape)}")
    return PolicyInput(belief.tokens.float(), var, glob, valid, c.var_mask, c.low.float(), c.high.float(), g, cost)


def decide(policy: Policy, c: CampaignBatch, belief: Belief, surrogate: Surrogate, memo: ContextMemo | None = None,
           known: WorldBelief | None = None, cost: torch.Tensor | None = None
           ) -> tuple[PolicyInput, ActionDist | GridActionDist]:
    """The policy's input and its distribution over (variable, value) for B campaigns (``known``,
    ``cost``: see :func:`policy_input`)."""
    x = policy_input(c, belief, surrogate, policy.cfg.grid, memo, policy.cfg.world, known, cost)
    return x, policy(x)



def per_unit_cost(x: PolicyInput, cost: torch.Tensor, allowance: float = math.inf) -> torch.Tensor:
    """Where a decision with costs may go (B x D x K bool): the cells of the one variable whose
    expected improvement per unit cost is the highest anywhere on its grid (the world model's EI,
    :data:`acbo.policy.features.LOG_EI`, plus EI_FLOOR, divided by each cell's cost, B x D x K),
    among the valid cells that ``allowance`` pays for; the policy then chooses the value among
    them (:meth:`GridActionDist.restricted`). Expected improvement per unit cost is Snoek et al.'s
    (2012) rule for an acquisition trained without costs."""
    B, D, K = cost.shape
    ei = x.grid[..., LOG_EI].double().exp()                                                      # B x D x K: EI + floor
    ok = x.valid[..., None] & pays(cost, allowance)
    score = torch.where(ok, ei / cost, torch.full_like(ei, float("-inf")))
    best = score.amax(2).argmax(1)                                                               # B
    return ok & (torch.arange(D, device=cost.device)[None, :, None] == best[:, None, None])


def after_experiments(surrogate: Surrogate, c: CampaignBatch, belief: Belief) -> torch.Tensor:
    """P(j in pa(Y)) for B campaigns (B x D, float64) after the experiments on each settable
    variable (:func:`acbo.surrogate.conditioning.no_effect_update`; the others as the surrogate
    says)."""
    B, _, D = c.values.shape
    dev = c.values.device
    marginals = belief.marginals.double().clone()
    var, real, lo, hi = world_domains(c)                                                         # B x Q each
    if not bool(real.any()):
        return marginals
    Q = var.shape[1]
    w = conditioned_world(surrogate, c.standardised(), belief.tokens, belief.marginals, var, lo, hi,
                          torch.full((B, Q, 1), 0.5, dtype=torch.float64, device=dev))
    slot = torch.where(real, var, torch.full_like(var, D))                                       # padding -> a spare column
    out = torch.cat([marginals, marginals.new_zeros(B, 1)], 1)
    out.scatter_(1, slot, torch.where(real, w.parent, out.gather(1, slot)))
    return out[:, :D]
