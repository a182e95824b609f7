"""What an experiment costs: a fixed cost for each variable it sets, and optionally a cost per
unit each set variable is moved from where the last experiment left it.

    cost(do(X_S = x_S)) = sum over j in S of  fixed_j + per_unit_j |x_j - previous_j|

``previous`` is the state of the system the next experiment starts from: every variable's value
in the last experiment measured, or its observational mean before any (:func:`previous_settings`).
Costs are in the user's units (money, hours); a campaign's budget may be given in them
(``CausalOptimizer(budget_cost=)``). Methods that read costs choose per unit cost: the amortized
policy's probabilities and Thompson sampling's sampled gains are divided by each action's cost, as
expected improvement per unit cost divides EI (Snoek et al., 2012); a policy with a cost head
(:attr:`acbo.policy.model.PolicyConfig.cost_head`) reads the costs and the budget left itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.buffer import Buffer


def experiments_bought(allowance: torch.Tensor, mean_cost: torch.Tensor) -> torch.Tensor:
    """How many experiments a campaign with a budget in cost units plans for: what its
    ``allowance`` buys at the settable variables' ``mean_cost``, rounded (half to even), at least
    one (any shape, the same). The horizon the policy reads is the experiments made plus these, in
    simulated campaigns (:meth:`acbo.env.Env.campaign`) as in deployment
    (:meth:`acbo.policy.method.Amortized._campaign`)."""
    return torch.round(allowance / mean_cost.clamp_min(1e-12)).clamp_min(1)


PAY_TOLERANCE = 1e-9
"""The relative slack of :func:`pays`: a budget spent in equal steps is spent exactly, though its
running sum is rounded (10 x 0.1 less 4 x 0.1 is 0.09999999999999998)."""


def pays(cost, allowance):
    """Whether ``allowance`` pays for ``cost`` (floats or tensors, broadcast): cost <= allowance
    up to a relative :data:`PAY_TOLERANCE`. Every affordability test (the campaign's, the methods',
    the simulated campaigns') asks this, so that what a method may choose is what the campaign
    accepts."""
    return cost <= allowance * (1 + PAY_TOLERANCE)


class BudgetSpent(ValueError):
    """The campaign's budget in cost units cannot pay for another experiment."""


@dataclass(frozen=True, eq=False)
class Costs:
    """fixed: d (float64), the cost of setting X_j in an experiment (0 for variables that cannot be
    set); per_unit: d (float64), the cost per unit of |x_j - previous_j| moved (0: none)."""

    fixed: torch.Tensor
    per_unit: torch.Tensor

    def of(self, choice: dict[int, float], previous: torch.Tensor) -> float:
        """The cost of one experiment {variable index: value}, starting from ``previous`` (d)."""
        idx = torch.tensor(sorted(choice), dtype=torch.long)
        x = torch.tensor([choice[int(i)] for i in idx], dtype=torch.float64)
        return float((self.fixed[idx] + self.per_unit[idx] * (x - previous[idx].double()).abs()).sum())

    def of_settings(self, var: torch.Tensor, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The cost of do(X_var[q] = x[q, k]) for single-variable experiments: var Q, x Q x K -> Q x K."""
        return self.fixed[var, None] + self.per_unit[var, None] * (x.double() - previous[var, None].double()).abs()

    @property
    def moves(self) -> bool:
        """Whether moving a variable costs anything (else the cost does not depend on the value)."""
        return bool((self.per_unit > 0).any())


def previous_settings(buffer: Buffer) -> torch.Tensor:
    """Where the next experiment starts (d, float64): the last measured experiment's row, or the
    observational means before any experiment (believed rows of a batch not counted)."""
    told = buffer.told
    rows = ~told.observational_rows
    if not bool(rows.any()):
        return told.observational_stats()[0].double()
    return told.values[int(torch.nonzero(rows).flatten()[-1])].double()
