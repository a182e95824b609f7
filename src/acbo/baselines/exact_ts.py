"""Thompson sampling from the exact BLR posterior.

Each step draws a parent set S from the exact posterior and weights theta from its BLR
posterior, and intervenes where that model predicts the best E[Y | do]. Under "S -> Y, linear"
with the other members of S left at their observational means, E[y | do(X_i = v)] moves by
theta_i (v - mean_i) / std_i (standardised units) for i in S and not at all otherwise, so the
best action is an end of some member's domain.
"""

from __future__ import annotations

import torch

from acbo.buffer import Buffer
from acbo.method import Method, Problem, register_method
from acbo.posterior import ExactPosteriorConfig, ParentPosterior
from acbo.posterior.exact import exact_predictive, sample_weights_standardised, standardised_regression_data


@register_method
class ExactThompsonSampling(Method):
    name = "exact-ts"

    def __init__(self, problem: Problem, max_parents: int = 3, max_candidates: int = 20):
        super().__init__(problem)
        self.cfg = ExactPosteriorConfig(max_parents=max_parents, max_candidates=max_candidates)

    def options(self) -> dict:
        return {"max_parents": self.cfg.max_parents, "max_candidates": self.cfg.max_candidates}

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        return self.exact_posterior(buffer, self.cfg)

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The exact posterior's model-averaged BLR predictive (a Gaussian mixture over parent sets)."""
        return exact_predictive(buffer.values, buffer.intervened, self.problem.target, variable, x, self.cfg, draw)

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        p = self.problem
        S = self.posterior(buffer).sample(1, generator)[0] & p.intervenable
        if not S.any():
            return self.random_proposal(generator)
        Z, mean, std = standardised_regression_data(buffer.values, buffer.intervened, p.target)
        theta = sample_weights_standardised(Z, p.target, S, generator, self.cfg)                     # |S|
        idx = torch.nonzero(S).flatten()
        ends = torch.stack([p.low[idx], p.high[idx]], dim=1).to(torch.float64)                     # |S| x 2
        effect = theta[:, None] * (ends - mean[idx, None]) / std[idx, None]                         # |S| x 2
        if not p.minimize:
            effect = -effect
        best = int(effect.flatten().argmin())
        return int(idx[best // 2]), float(ends.flatten()[best])
