"""Verifiable rewards: pure functions of what the simulator and the surrogate report.

Every component is computed, logged and weighted separately (weights in the training config).
Directions: the campaign minimises Y (a maximisation problem is handed over with Y negated).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.posterior.types import bernoulli_entropy


@dataclass(frozen=True)
class RewardSettings:
    """The weights of the reward components, and how E[Y | do] is computed for them."""

    improvement: float = 1.0
    """Lowering the best-so-far E[Y], in observational std of Y."""
    outcome: float = 0.1
    """E[Y | do] below the observational mean, in its std (dense)."""
    info_gain: float = 0.1
    """Information gain of the surrogate's parent posterior (nats)."""
    parent: float = 0.1
    """Intervening on a true parent (training only; for a set, the share of its members that are)."""
    cost: float = 0.0
    """What an experiment costs (:func:`experiment_cost`): each variable it sets its cost over the
    campaign's mean cost (``design.costs``), or one unit where the campaigns have no costs of their
    own, so that with set actions (``design.max_set = 2``) a second variable must earn its unit
    (then a constant, so without effect, one variable at a time)."""
    mc: int = 256
    """Monte Carlo samples for E[Y | do] of nonlinear SCMs (exact for linear ones)."""

    def __post_init__(self):
        if isinstance(self.mc, bool) or not isinstance(self.mc, int) or self.mc < 1:
            raise ValueError(f"rewards.mc must be a positive integer, got {self.mc!r}")

    def weights(self) -> dict[str, float]:
        """The weights by component name, in the order :func:`combine` sums them."""
        return {"improvement": self.improvement, "outcome": self.outcome, "info_gain": self.info_gain,
                "parent": self.parent, "cost": self.cost}


def posterior_entropy(marginals: torch.Tensor, var_mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the factorised parent posterior: sum over real non-target variables of
    the Bernoulli entropies of the marginals. marginals: ... x D (0 for the target), var_mask:
    ... x D. Returns ... ."""
    return (bernoulli_entropy(marginals) * var_mask.to(marginals.dtype)).sum(-1)


def information_gain(before: torch.Tensor, after: torch.Tensor, var_mask: torch.Tensor) -> torch.Tensor:
    """Structure discovery: entropy of the parent posterior before minus after adding the
    outcome. before/after: ... x D marginals. Returns ... (nats; negative if the outcome made
    the posterior less certain)."""
    return posterior_entropy(before, var_mask) - posterior_entropy(after, var_mask)


def improvement(best: torch.Tensor, outcome: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Optimisation: how far E[Y | do(a)] lowers the best-so-far, in units of the observational
    std of Y. best/scale: B, outcome: B x k. Returns B x k (>= 0)."""
    return (best[:, None] - outcome).clamp_min(0) / scale[:, None]


def outcome_gain(reference: torch.Tensor, outcome: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Optimisation, dense: how far E[Y | do(a)] lies below the observational mean of Y, in units
    of its std. reference/scale: B, outcome: B x k. Returns B x k (negative when Y went up)."""
    return (reference[:, None] - outcome) / scale[:, None]


def parent_hit(variables: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
    """Parent intervention (training only): 1 where the chosen variable is a true parent of Y.
    variables: B x k indices, or B x k x m for experiments on sets (the share of the members that
    are parents; a member repeated, as an experiment of fewer variables is written, counts as
    often as it is written, so a single counts as itself); parents: B x D bool. Returns B x k float."""
    if variables.dim() == 3:
        B, k, m = variables.shape
        return parents.gather(1, variables.reshape(B, k * m)).reshape(B, k, m).float().mean(2)
    return parents.gather(1, variables).float()


def experiment_cost(variables: torch.Tensor, relative: torch.Tensor, members: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """The cost term: minus what each experiment costs, the sum of its variables' ``relative``
    costs (B x D: cost over the campaign's mean cost, 1 each without costs). variables: B x k
    (one each), or B x k x 2 with ``members`` (B x k: 1 or 2, an experiment of one written with
    its variable twice). Returns B x k float (float32)."""
    if variables.dim() == 2:
        return -relative.gather(1, variables).float()
    B, k, _ = variables.shape
    c = relative.gather(1, variables.reshape(B, 2 * k)).reshape(B, k, 2)                        # B x k x 2
    return -(c[..., 0] + (members == 2).to(c.dtype) * c[..., 1]).float()


def combine(components: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Weighted sum of the named components (all the same shape); a component with weight 0 may
    be absent."""
    missing = [k for k, w in weights.items() if w != 0 and k not in components]
    if missing:
        raise ValueError(f"reward components {missing} have non-zero weight but were not computed")
    out = None
    for k, w in weights.items():
        if w != 0:
            out = w * components[k] if out is None else out + w * components[k]
    if out is None:
        raise ValueError(f"every reward weight is 0: {weights}")
    return out
