"""The deployed decision: a campaign and the surrogate's belief in, the policy's input and its
action distribution out.

Deployment (``amortized``), behaviour cloning and training (:mod:`acbo.policy.rollout`) all
decide here, so the policy reads the same input wherever it acts.
"""

from __future__ import annotations

import torch

from acbo.buffer import CampaignBatch
from acbo.policy.features import N_GRID_FEATURES, campaign_features, grid_features
from acbo.policy.model import ActionDist, GridActionDist, Policy, PolicyInput
from acbo.surrogate import Belief, Surrogate
from acbo.surrogate.model import ContextMemo


def policy_input(c: CampaignBatch, belief: Belief, surrogate: Surrogate | None = None, grid: int = 0,
                 memo: ContextMemo | None = None) -> PolicyInput:
    """Assemble what the policy reads for B campaigns; with ``grid = K > 0`` also the world model's
    features on K points per variable (the surrogate's world-model head; ``memo`` kept over one
    campaign's decisions spares it re-encoding the rows it has seen, see :meth:`Surrogate.query`)."""
    var, glob = campaign_features(c, belief.marginals)
    valid = c.intervenable & c.var_mask & ~c.target
    B, _, D = c.values.shape
    if grid:
        if surrogate is None:
            raise ValueError("world-model features need the surrogate")
        g = grid_features(surrogate, c, belief.tokens, grid, memo)
    else:
        g = torch.zeros(B, D, 0, N_GRID_FEATURES, device=c.values.device)
    return PolicyInput(belief.tokens.float(), var, glob, valid, c.var_mask, c.low.float(), c.high.float(), g)


def decide(policy: Policy, c: CampaignBatch, belief: Belief, surrogate: Surrogate, memo: ContextMemo | None = None
           ) -> tuple[PolicyInput, ActionDist | GridActionDist]:
    """The policy's input and its distribution over (variable, value) for B campaigns."""
    x = policy_input(c, belief, surrogate, policy.cfg.grid, memo)
    return x, policy(x)

