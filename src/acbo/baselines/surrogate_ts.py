"""Thompson sampling with parent sets drawn from the learned surrogate's posterior.

As ``exact-ts``, but the parent set comes from the amortized surrogate (one forward pass)
instead of the enumerated exact posterior; weights are then drawn from the BLR posterior of
that set and the model's best domain end is chosen. The learned posterior in use before the
policy exists.
"""

from __future__ import annotations

import torch

from acbo.baselines.exact_ts import ExactThompsonSampling
from acbo.buffer import Buffer
from acbo.method import Problem, register_method
from acbo.posterior import ParentPosterior
from acbo.surrogate.checkpoint import shared_surrogate


PREDICT_SETS = 32
"""Parent sets the predictive of surrogate-ts averages over."""


@register_method
class SurrogateThompsonSampling(ExactThompsonSampling):
    name = "surrogate-ts"
    chooses_sets = False  # the surrogate was trained on rows that set one variable: set rows are outside what it read

    def __init__(self, problem: Problem, checkpoint: str | None = None, max_parents: int = 3, max_candidates: int = 20):
        super().__init__(problem, max_parents=max_parents, max_candidates=max_candidates)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.model = shared_surrogate(self.checkpoint)

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, **super().options()}

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        from acbo.surrogate.inference import surrogate_posterior

        return surrogate_posterior(self.model, buffer, self.problem.target, self.problem.names)

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The BLR model averaged over the surrogate's PREDICT_SETS most probable parent sets
        (their probabilities renormalised; the empty set included if it is among them)."""
        from acbo.posterior.exact import blr_mixture_predictive

        post = self.posterior(buffer)
        top = post.top(min(PREDICT_SETS, 2 ** min(post.marginals.numel() - 1, 12)))
        names = self.problem.names
        sets = torch.zeros(len(top), len(names), dtype=torch.bool)
        for k, (members, _) in enumerate(top):
            sets[k, [names.index(n) for n in members]] = True
        weights = torch.tensor([pr for _, pr in top], dtype=torch.float64)
        return blr_mixture_predictive(buffer.values, buffer.intervened, self.problem.target, variable, x, sets, weights,
                                      self.cfg, draw)
