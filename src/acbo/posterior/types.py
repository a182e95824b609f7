"""ParentPosterior: the one type every posterior over the target's parents returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-12, 1 - 1e-12)
    return -(p * p.log() + (1 - p) * (1 - p).log())


@dataclass(frozen=True, eq=False)
class ParentPosterior:
    """A posterior over pa(Y).

    variables: the d variable names (label order); target: index of Y.
    marginals: d, P(j in pa(Y)) (0 for Y itself).
    sets: K x d bool, the sets with explicit probabilities, most probable first; None for a
    factorised posterior (independent per-variable marginals).
    log_probs: K, normalised log-probabilities of ``sets`` (None iff sets is None).
    """

    variables: tuple[str, ...]
    target: int
    marginals: torch.Tensor
    sets: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None

    def __post_init__(self):
        d = len(self.variables)
        assert self.marginals.shape == (d,)
        assert (self.sets is None) == (self.log_probs is None)
        if self.sets is not None:
            assert self.sets.shape[1] == d and self.log_probs.shape == (self.sets.shape[0],)

    @classmethod
    def from_sets(cls, variables, target: int, sets: torch.Tensor, log_weights: torch.Tensor) -> "ParentPosterior":
        """From K candidate sets (K x d bool) and unnormalised log-weights (K)."""
        logp = log_weights - torch.logsumexp(log_weights, dim=0)
        order = torch.argsort(logp, descending=True)
        sets, logp = sets[order], logp[order]
        marg = (logp.exp()[:, None] * sets.to(logp.dtype)).sum(dim=0).clamp(0, 1)
        return cls(tuple(variables), target, marg, sets, logp)

    @classmethod
    def from_marginals(cls, variables, target: int, marginals: torch.Tensor) -> "ParentPosterior":
        """A factorised posterior: each variable a parent independently."""
        m = marginals.clone()
        m[target] = 0
        return cls(tuple(variables), target, m)

    @property
    def probs(self) -> torch.Tensor | None:
        return None if self.log_probs is None else self.log_probs.exp()

    def entropy(self) -> float:
        """Entropy (nats) of the distribution over sets; for a factorised posterior, the sum of
        the per-variable Bernoulli entropies (which is the entropy of that product)."""
        if self.log_probs is None:
            keep = torch.ones_like(self.marginals, dtype=torch.bool)
            keep[self.target] = False
            return float(bernoulli_entropy(self.marginals[keep]).sum())
        p = self.log_probs.exp()
        return float(-(p * self.log_probs).sum())

    def map_set(self) -> torch.Tensor:
        """d bool: the most probable set (marginal > 0.5 for a factorised posterior)."""
        if self.sets is None:
            return self.marginals > 0.5
        return self.sets[0].clone()

    def prob_of(self, parents: torch.Tensor) -> float:
        """Probability of exactly the set ``parents`` (d bool)."""
        parents = parents.to(torch.bool)
        if self.sets is None:
            keep = torch.ones_like(parents)
            keep[self.target] = False
            p = torch.where(parents, self.marginals, 1 - self.marginals)[keep]
            return float(p.clamp_min(0).prod())
        hit = (self.sets == parents[None]).all(dim=1)
        return float(self.log_probs[hit].exp().sum())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n x d bool: sets drawn from the posterior."""
        if self.sets is None:
            u = torch.rand(n, len(self.variables), generator=generator, dtype=self.marginals.dtype)
            out = u < self.marginals[None]
            out[:, self.target] = False
            return out
        idx = torch.multinomial(self.log_probs.exp().float(), n, replacement=True, generator=generator)
        return self.sets[idx]

    def top(self, k: int = 5) -> list[tuple[tuple[str, ...], float]]:
        """The k most probable sets as (names, probability)."""
        if self.sets is None:
            raise ValueError("a factorised posterior has no explicit sets; use marginals")
        out = []
        for s, lp in zip(self.sets[:k], self.log_probs[:k]):
            out.append((tuple(self.variables[j] for j in torch.nonzero(s).flatten().tolist()), float(lp.exp())))
        return out

    def __repr__(self) -> str:
        marg = ", ".join(f"{v}={float(p):.2f}" for v, p in zip(self.variables, self.marginals) if float(p) >= 0.05)
        return f"ParentPosterior(target={self.variables[self.target]!r}, marginals >= 0.05: {{{marg}}}, entropy={self.entropy():.3f})"
