"""Thompson sampling from the exact BLR posterior.

Each step draws a parent set S from the exact posterior and weights theta from its BLR
posterior, and intervenes where that model predicts the best E[Y | do]. Under "S -> Y, linear"
with the other members of S left at their observational means, E[y | do(X_i = v)] moves by
theta_i (v - mean_i) / std_i (standardised units) for i in S and not at all otherwise, so the
best action is an end of some member's domain. Where an experiment may set several variables
(``max_set`` > 1 or exploration sets), the effects of the members add, so the best allowed set
is the one whose members' best ends add up to the largest improvement.
"""

from __future__ import annotations

import torch

from acbo.buffer import Buffer
from acbo.costs import pays
from acbo.method import Method, Problem, register_method
from acbo.posterior import ExactPosteriorConfig, ParentPosterior
from acbo.posterior.exact import exact_predictive, sample_weights_standardised, standardised_regression_data


@register_method
class ExactThompsonSampling(Method):
    name = "exact-ts"
    chooses_sets = True
    reads_costs = True

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

    def _sampled_ends(self, buffer: Buffer, generator: torch.Generator):
        """One Thompson draw: the sampled parent set's members (indices, |S|), both ends of their
        domains (|S| x 2) and each end's effect on E[Y] in standardised units, signed so that lower
        is better (|S| x 2); None when the draw holds no settable variable."""
        p = self.problem
        S = self.posterior(buffer).sample(1, generator)[0] & p.intervenable
        if not S.any():
            return None
        Z, mean, std = standardised_regression_data(buffer.values, buffer.intervened, p.target)
        theta = sample_weights_standardised(Z, p.target, S, generator, self.cfg)                     # |S|
        idx = torch.nonzero(S).flatten()
        ends = torch.stack([p.low[idx], p.high[idx]], dim=1).to(torch.float64)                     # |S| x 2
        effect = theta[:, None] * (ends - mean[idx, None]) / std[idx, None]                         # |S| x 2
        return idx, ends, effect if p.minimize else -effect

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """The sampled model's best end; with costs (``problem.costs``) the affordable end with the
        most improvement per unit cost; in a batch, not an end a pending experiment sets already
        while another end improves."""
        draw = self._sampled_ends(buffer, generator)
        if draw is None:
            return self.random_proposal(generator)
        idx, ends, effect = draw
        p = self.problem
        if p.costs is not None:
            cost = p.costs.of_settings(idx, ends, self.previous(buffer))                       # |S| x 2
            per_cost = torch.where(effect < 0, effect / cost, effect)  # a gain per unit cost; a loss as it is
            effect = torch.where(pays(cost, self.allowance), per_cost, torch.full_like(effect, float("inf")))
        taken = torch.zeros_like(effect, dtype=torch.bool)                                          # |S| x 2
        for q in self.pending:
            if len(q) == 1:
                (j, v), = q.items()
                taken |= (idx[:, None] == j) & (ends == v)
        if bool((taken.any() & (~taken & (effect < 0)).any())):  # another end still improves
            effect = torch.where(taken, torch.full_like(effect, float("inf")), effect)
        best = int(effect.flatten().argmin())
        return int(idx[best // 2]), float(ends.flatten()[best])

    def ask_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        """The allowed set whose members' best ends add up to the most improvement (per unit cost,
        with costs, among the sets the allowance pays for) under the sampled model (members
        outside the sampled parent set add nothing and are set to the point of their domain nearest
        their observational mean; ties go to the first set; in a batch, not an experiment already
        pending while another set improves); a random allowed set when no allowed set improves on
        the draw."""
        draw = self._sampled_ends(buffer, generator)
        if draw is None:
            return self.random_set(generator)
        idx, ends, effect = draw
        p = self.problem
        gain = torch.zeros(p.d, dtype=torch.float64)
        at = buffer.observational_stats()[0].double().clamp(p.low.double(), p.high.double())        # d
        k = effect.argmin(1)                                                                        # |S|
        gain[idx] = effect.gather(1, k[:, None])[:, 0].clamp_max(0.0)                               # only what helps
        at[idx] = torch.where(gain[idx] < 0, ends.gather(1, k[:, None])[:, 0], at[idx])
        score = self._members() @ gain                                                              # one per allowed set
        if p.costs is not None:  # improvement per unit cost, among the sets the allowance pays for
            prev = self.previous(buffer)
            cost = self._members() @ (p.costs.fixed + p.costs.per_unit * (at - prev).abs())
            score = torch.where(pays(cost, self.allowance), score / cost, torch.zeros_like(score))
        if not bool((score < 0).any()):  # the draw's parents are in no allowed set, or nothing helps: explore
            return self.random_set(generator)
        repeats = [r for r, s_ in enumerate(p.allowed_sets) for q in self.pending
                   if tuple(sorted(q)) == s_ and all(q[i] == float(at[i]) for i in s_)]
        others = score.clone()
        others[repeats] = 0.0
        if bool((others < 0).any()):
            score = others
        best = p.allowed_sets[int(score.argmin())]
        return {i: float(at[i]) for i in best}

    def _members(self) -> torch.Tensor:
        """sets x d: which variables each allowed set holds (built once per method)."""
        if getattr(self, "_member_matrix", None) is None:
            sets = self.problem.allowed_sets
            m = torch.zeros(len(sets), self.problem.d, dtype=torch.float64)
            for r, s in enumerate(sets):
                m[r, list(s)] = 1.0
            self._member_matrix = m
        return self._member_matrix
