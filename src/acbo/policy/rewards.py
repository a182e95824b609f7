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
    """Intervening on a true parent (training only)."""
    mc: int = 256
    """Monte Carlo samples for E[Y | do] of nonlinear SCMs (exact for linear ones)."""

    def __post_init__(self):
        if isinstance(self.mc, bool) or not isinstance(self.mc, int) or self.mc < 1:
            raise ValueError(f"rewards.mc must be a positive integer, got {self.mc!r}")

    def weights(self) -> dict[str, float]:
        """The weights by component name, in the order :func:`combine` sums them."""
        return {"improvement": self.improvement, "outcome": self.outcome, "info_gain": self.info_gain,
                "parent": self.parent}


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
    variables: B x k indices, parents: B x D bool. Returns B x k float."""
    return parents.gather(1, variables).float()


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
