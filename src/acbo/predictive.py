"""Predictive distributions of Y under an intervention, batched: one type per family, one interface.

Every model of the response (the learned world model, the exact BLR mixture, PARENT_SCALE's
causal-GP mixture) returns, for a batch of queries, a distribution over a scalar with

- ``mean``, ``std`` (tensors of the batch shape), ``quantile(q)``, ``cdf(y)``;
- ``nll(y)`` (negative log density), ``crps(y)`` (continuous ranked probability score);
- ``expected_improvement(best)`` = E[max(best - Y, 0)] (minimisation).

Two families:

- :class:`BarDistribution` — a piecewise-uniform density over fixed bins (the "Riemann"
  distribution of prior-data fitted networks): probabilities per bin, exact moments,
  quantiles, CRPS and EI. Mass outside the outermost edges is not representable: targets are
  clamped onto the edges for the loss.
- :class:`GaussianMixture` — K weighted Gaussians per query (a model average over parent sets,
  or one Gaussian with K = 1): exact moments, CDF, NLL, EI; quantiles by bisection; CRPS by
  quadrature.

Both work on any units: :meth:`affine` maps a distribution of z to one of loc + scale z.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

SQRT2 = math.sqrt(2.0)


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / SQRT2))


def asinh_edges(n_bins: int = 64, s_max: float = 4.5, dtype=torch.float32) -> torch.Tensor:
    """n_bins + 1 bin edges, uniform in asinh(z) on [-s_max, s_max]: fine near 0, covering
    z = +-sinh(s_max) (+-45 for the default)."""
    return torch.sinh(torch.linspace(-s_max, s_max, n_bins + 1, dtype=torch.float64)).to(dtype)


@dataclass(frozen=True)
class BarDistribution:
    """probs: ... x M (summing to 1 over the last axis), edges: M + 1 increasing bin edges (shared)."""

    probs: torch.Tensor
    edges: torch.Tensor

    @classmethod
    def from_logits(cls, logits: torch.Tensor, edges: torch.Tensor) -> "BarDistribution":
        return cls(torch.softmax(logits, dim=-1), edges.to(logits.dtype))

    @property
    def _lo(self) -> torch.Tensor:
        return self.edges[:-1]

    @property
    def _hi(self) -> torch.Tensor:
        return self.edges[1:]

    @functools.cached_property
    def mean(self) -> torch.Tensor:
        return (self.probs * (self._lo + self._hi) / 2).sum(-1)

    @functools.cached_property
    def std(self) -> torch.Tensor:
        lo, hi = self._lo, self._hi
        second = (self.probs * (lo * lo + lo * hi + hi * hi) / 3).sum(-1)
        return (second - self.mean ** 2).clamp_min(0).sqrt()

    def bin_index(self, y: torch.Tensor) -> torch.Tensor:
        """The bin of each y (clamped onto the outermost bins)."""
        M = self.probs.shape[-1]
        return (torch.searchsorted(self.edges.contiguous(), y.contiguous(), right=True) - 1).clamp(0, M - 1)

    def nll(self, y: torch.Tensor) -> torch.Tensor:
        """-log density at y (y clamped onto the support: the training loss of a clamped target)."""
        i = self.bin_index(y)
        width = (self._hi - self._lo)[i]
        p = self.probs.gather(-1, i[..., None])[..., 0]
        return -(p.clamp_min(1e-12).log() - width.log())

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        lo, hi = self._lo, self._hi
        frac = ((y[..., None] - lo) / (hi - lo)).clamp(0, 1)                                   # ... x M
        return (self.probs * frac).sum(-1)

    def quantile(self, q: float | torch.Tensor) -> torch.Tensor:
        """The q-quantile (linear inside the bin where the CDF crosses q)."""
        q = torch.as_tensor(q, dtype=self.probs.dtype, device=self.probs.device).expand(self.probs.shape[:-1])
        return self._quantiles(q[..., None])[..., 0]

    def quantiles(self, qs: tuple[float, ...]) -> torch.Tensor:
        """The qs-quantiles, ... x len(qs): :meth:`quantile` of each, from one CDF."""
        q = torch.tensor(qs, dtype=self.probs.dtype, device=self.probs.device)
        return self._quantiles(q.expand(*self.probs.shape[:-1], len(qs)))

    def _quantiles(self, q: torch.Tensor) -> torch.Tensor:
        """Quantiles q (... x S, the batch shape then S levels) -> ... x S."""
        c = self.probs.cumsum(-1)                                                              # ... x M
        i = torch.searchsorted(c.contiguous(), q.contiguous()).clamp_max(c.shape[-1] - 1)     # ... x S
        c_hi = c.gather(-1, i)
        p = self.probs.gather(-1, i)
        frac = ((q - (c_hi - p)) / p.clamp_min(1e-12)).clamp(0, 1)
        return self._lo[i] + frac * (self._hi - self._lo)[i]

    def crps(self, y: torch.Tensor) -> torch.Tensor:
        """CRPS(F, y) = int (F(t) - 1[t >= y])^2 dt, exactly (F is piecewise linear over bins)."""
        lo, hi = self._lo, self._hi
        F0 = self.probs.cumsum(-1) - self.probs                                              # CDF at each bin's low edge
        p = self.probs
        w = hi - lo
        # integral over a bin of (F0 + p u)^2 du (u in [0, 1]) scaled by w, minus the step's part
        sq = w * (F0 ** 2 + F0 * p + p ** 2 / 3)
        # the indicator: for t >= y subtract 2F(t) - 1 over the part of each bin above y
        a = ((y[..., None] - lo) / w).clamp(0, 1)                                              # fraction of the bin below y
        part = w * ((1 - a) * (2 * F0 - 1) + p * (1 - a * a))                                  # int_a^1 (2(F0 + p u) - 1) du * w
        tail = (lo[0] - y).clamp_min(0)                                                        # y below the support
        over = (y - hi[-1]).clamp_min(0)                                                       # y above it
        return (sq - part).sum(-1) + tail + over

    def expected_improvement(self, best: torch.Tensor) -> torch.Tensor:
        """E[max(best - Y, 0)], exactly (Y uniform inside each bin)."""
        lo, hi = self._lo, self._hi
        b = best[..., None]
        inside = (b - lo).clamp_min(0) ** 2 / (2 * (hi - lo))
        full = b - (lo + hi) / 2
        per_bin = torch.where(b >= hi, full, torch.where(b <= lo, torch.zeros_like(full), inside))
        return (self.probs * per_bin).sum(-1)

    def affine(self, loc: torch.Tensor, scale: torch.Tensor) -> "AffineBar":
        return AffineBar(self, loc, scale)


@dataclass(frozen=True)
class AffineBar:
    """The distribution of loc + scale Z for Z ~ ``base`` (scale > 0): predictions in observed units."""

    base: BarDistribution
    loc: torch.Tensor
    scale: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.loc + self.scale * self.base.mean

    @property
    def std(self) -> torch.Tensor:
        return self.scale * self.base.std

    def quantile(self, q) -> torch.Tensor:
        return self.loc + self.scale * self.base.quantile(q)

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.cdf((y - self.loc) / self.scale)

    def nll(self, y: torch.Tensor) -> torch.Tensor:
        return self.base.nll((y - self.loc) / self.scale) + torch.log(self.scale)

    def crps(self, y: torch.Tensor) -> torch.Tensor:
        return self.scale * self.base.crps((y - self.loc) / self.scale)

    def expected_improvement(self, best: torch.Tensor) -> torch.Tensor:
        return self.scale * self.base.expected_improvement((best - self.loc) / self.scale)


@dataclass(frozen=True)
class GaussianMixture:
    """weights/means/stds: ... x K (weights summing to 1 over K; stds > 0)."""

    weights: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor

    @classmethod
    def normal(cls, mean: torch.Tensor, std: torch.Tensor) -> "GaussianMixture":
        return cls(torch.ones_like(mean)[..., None], mean[..., None], std[..., None])

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights * self.means).sum(-1)

    @property
    def std(self) -> torch.Tensor:
        second = (self.weights * (self.stds ** 2 + self.means ** 2)).sum(-1)
        return (second - self.mean ** 2).clamp_min(0).sqrt()

    def cdf(self, y: torch.Tensor) -> torch.Tensor:
        return (self.weights * _Phi((y[..., None] - self.means) / self.stds)).sum(-1)

    def nll(self, y: torch.Tensor) -> torch.Tensor:
        z = (y[..., None] - self.means) / self.stds
        logp = torch.log(self.weights.clamp_min(1e-300)) - 0.5 * z * z - torch.log(self.stds) - 0.5 * math.log(2 * math.pi)
        return -torch.logsumexp(logp, dim=-1)

    def quantile(self, q: float | torch.Tensor, iters: int = 60) -> torch.Tensor:
        """By bisection on the CDF between the extreme components' 8-sigma points (one component:
        in closed form)."""
        q = torch.as_tensor(q, dtype=self.means.dtype, device=self.means.device).expand(self.means.shape[:-1])
        if self.means.shape[-1] == 1:
            return self.means[..., 0] + self.stds[..., 0] * SQRT2 * torch.erfinv(2 * q - 1)
        lo = (self.means - 8 * self.stds).amin(-1)
        hi = (self.means + 8 * self.stds).amax(-1)
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = self.cdf(mid) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def quantiles(self, qs: tuple[float, ...]) -> torch.Tensor:
        """The qs-quantiles, ... x len(qs)."""
        return torch.stack([self.quantile(q) for q in qs], -1)

    def expected_improvement(self, best: torch.Tensor) -> torch.Tensor:
        """Sum over components of w sigma (u Phi(u) + phi(u)), u = (best - mu) / sigma."""
        u = (best[..., None] - self.means) / self.stds
        return (self.weights * self.stds * (u * _Phi(u) + _phi(u))).sum(-1)

    def crps(self, y: torch.Tensor, points: int = 801) -> torch.Tensor:
        """By quadrature of int (F(t) - 1[t >= y])^2 dt over mean +- 10 std (and y)."""
        lo = torch.minimum((self.means - 10 * self.stds).amin(-1), y)
        hi = torch.maximum((self.means + 10 * self.stds).amax(-1), y)
        t = lo[..., None] + (hi - lo)[..., None] * torch.linspace(0, 1, points, dtype=y.dtype, device=y.device)  # ... x P
        F = (self.weights[..., None, :] * _Phi((t[..., None] - self.means[..., None, :]) / self.stds[..., None, :])).sum(-1)
        step = (t >= y[..., None]).to(F.dtype)
        return torch.trapezoid((F - step) ** 2, t, dim=-1)

    def affine(self, loc: torch.Tensor, scale: torch.Tensor) -> "GaussianMixture":
        """loc + scale Z (scale > 0)."""
        return GaussianMixture(self.weights, loc[..., None] + scale[..., None] * self.means,
                               scale[..., None] * self.stds)
