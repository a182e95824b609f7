"""ParentPosterior: the one type every posterior over the target's parents returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """Elementwise entropy (nats) of Bernoulli(p); exactly 0 at p in {0, 1}."""
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))


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
        """The k most probable sets as (names, probability). For a factorised posterior they are
        enumerated exactly: the MAP set, then sets that flip the cheapest memberships (a flip of j
        costs |log(p_j / (1 - p_j))|); any set among the k best flips only among the k - 1
        cheapest, so enumerating the subsets of the m = max(12, k - 1) cheapest is exact."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        sets, log_probs = self.sets, self.log_probs
        if sets is None:
            sets, log_probs = self._top_factorised(k)
        out = []
        for s, lp in zip(sets[:k], log_probs[:k]):
            out.append((tuple(self.variables[j] for j in torch.nonzero(s).flatten().tolist()), float(lp.exp())))
        return out

    def _top_factorised(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sets K x d, log-probabilities K), the K = min(k, 2^m) most probable, best first."""
        d = len(self.variables)
        idx = torch.tensor([j for j in range(d) if j != self.target], dtype=torch.long)
        p = self.marginals[idx].double().clamp(1e-12, 1 - 1e-12)
        map_set = p > 0.5
        log_map = torch.where(map_set, p.log(), (1 - p).log()).sum()
        cost = (p.log() - (1 - p).log()).abs()                                                # flip costs
        m = min(len(idx), max(12, k - 1))
        if m > 20:
            raise ValueError(f"k = {k} is too many sets to enumerate for a factorised posterior (at most 21)")
        cheap = torch.argsort(cost)[:m]
        flips = (torch.arange(2 ** m)[:, None] >> torch.arange(m)[None, :]) & 1                  # 2^m x m
        total = (flips.double() * cost[cheap][None]).sum(1)
        order = torch.argsort(total)[:k]
        member = map_set[None].repeat(len(order), 1)                                            # K x (d-1)
        member[:, cheap] ^= flips[order].bool()
        sets = torch.zeros(len(order), d, dtype=torch.bool)
        sets[:, idx] = member
        return sets, log_map - total[order]

    def __repr__(self) -> str:
        marg = ", ".join(f"{v}={float(p):.2f}" for v, p in zip(self.variables, self.marginals) if float(p) >= 0.05)
        return f"ParentPosterior(target={self.variables[self.target]!r}, marginals >= 0.05: {{{marg}}}, entropy={self.entropy():.3f})"
