"""The amortized action for experiments that may set two variables at once.

An experiment is drawn in two parts:

1. its first member, a (variable, value) from the policy's own distribution
   (:class:`acbo.policy.model.GridActionDist`, restricted to the variables of some allowed set);
2. given the first member's (variable, grid cell), either *stop* (set that one alone) or a partner
   (variable, grid cell) from a categorical whose logits are the world model's log expected
   improvement of the pair (or of the single for *stop*) over a temperature
   (:func:`pair_logits`); the partner's position inside its cell follows the policy's Beta for
   that cell.

The probability of a pair {a, b} sums the two orders in which it can be drawn:
    p({a, b}) = pi(a) q(b | a) w(b) + pi(b) q(a | b) w(a),
with pi the policy's density of a first member, q the partner categorical and w the position
density inside the partner's cell; a single a has pi(a) q(stop | a). Both are exact
(:meth:`SetActionDist.log_prob`), so the action can be trained with policy gradients. The world
model's pair prediction before any experiment on the pair adds the single effects (the prior of
:func:`acbo.surrogate.inference.conditioned_set`); pairs already measured are corrected by the
caller (:meth:`acbo.policy.method.Amortized.ask_set`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.policy.features import EI_FLOOR
from acbo.policy.model import U_EPS, GridActionDist, _beta_mode
from acbo.predictive import GaussianMixture
from acbo.seeding import sample_beta

PAIR_TEMPERATURE = 0.1
"""Temperature of the partner categorical: logits are log(EI + EI_FLOOR) / temperature, so a pair
(or stop) with e times the expected improvement of another is e^10 times as likely."""


def additive_pairs(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[Y | do] of every pair of grid cells as the world model predicts it before any experiment
    on the pair: the members' effects added (means summed, variances summed; Y's standard units,
    about its observational mean). mean, std: B x D x K. Returns (mean, variance), B x DK x DK."""
    B, D, K = mean.shape
    m = (mean[:, :, :, None, None] + mean[:, None, None, :, :]).reshape(B, D * K, D * K)
    v = (std[:, :, :, None, None] ** 2 + std[:, None, None, :, :] ** 2).reshape(B, D * K, D * K)
    return m, v


def pair_logits(mean: torch.Tensor, std: torch.Tensor, pair_mean: torch.Tensor, pair_var: torch.Tensor, best: torch.Tensor,
                pair_ok: torch.Tensor, single_ok: torch.Tensor, temperature: float = PAIR_TEMPERATURE,
                cost: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of the partner categorical, B x DK x (DK + 1): row (j, k) is a first member in
    variable j's cell k; column (j', k') a partner there, the last column *stop*.

    mean, std: B x D x K, the world model's E[Y | do(X_j = cell k)] and its std (Y's standard
    units, minimised); pair_mean, pair_var: B x DK x DK, the same for each pair of cells
    (:func:`additive_pairs`, or better where the pair was measured); best: B, the incumbent. The
    logit is log(EI + EI_FLOOR) / temperature. pair_ok: B x D x D, the pairs that may be set
    together; single_ok: B x D, the variables that may be set alone. cost (B x D x K, optional):
    each cell's cost; expected improvement is then per unit cost (a pair's cost the sum of its
    members'). -inf where not allowed."""
    B, D, K = mean.shape
    gauss = lambda m, v: GaussianMixture.normal(m, v.clamp_min(1e-18).sqrt())  # v = 0 where a variable cannot be set
    pair = gauss(pair_mean, pair_var).expected_improvement(best[:, None, None].expand_as(pair_mean))      # B x DK x DK
    alone = gauss(mean, std ** 2).expected_improvement(best[:, None, None].expand_as(mean)).reshape(B, D * K)
    if cost is not None:
        c = cost.reshape(B, D * K)
        pair = pair / (c[:, :, None] + c[:, None, :])
        alone = alone / c
    logits = torch.cat([torch.log(pair + EI_FLOOR), torch.log(alone + EI_FLOOR)[..., None]], 2) / temperature
    ok_pair = pair_ok[:, :, None, :, None].expand(B, D, K, D, K).reshape(B, D * K, D * K)
    ok = torch.cat([ok_pair, single_ok[:, :, None].expand(B, D, K).reshape(B, D * K, 1)], 2)
    return logits.masked_fill(~ok, float("-inf"))


@dataclass(frozen=True)
class SetActionDist:
    """The distribution of experiments of one or two variables for B decisions (see the module
    docstring). first: the policy's distribution of the first member (B x D x K); partner: B x DK x
    (DK + 1) logits of the partner (variable, cell) given the first's, last column *stop*."""

    first: GridActionDist
    partner: torch.Tensor

    def _cell(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Flat (variable, cell) index j K + floor(u K), B x k."""
        K = self.first.logits.shape[2]
        return var * K + torch.floor(u.double() * K).long().clamp(0, K - 1)

    def _partner_logp(self, row: torch.Tensor) -> torch.Tensor:
        """log_softmax of the partner logits at the flat first-member cells ``row`` (B), B x (DK + 1)."""
        B, R, C = self.partner.shape
        return torch.log_softmax(self.partner.gather(1, row[:, None, None].expand(B, 1, C))[:, 0], dim=1)

    def _position(self, idx: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A position u in [0, 1] inside flat cells idx (B): a Beta draw, or its mode without a generator."""
        K = self.first.logits.shape[2]
        a, b = self.first._at(self.first.alpha, idx[:, None])[:, 0], self.first._at(self.first.beta, idx[:, None])[:, 0]
        r = _beta_mode(a, b) if generator is None else sample_beta(a.double(), b.double(), generator).to(a.dtype)
        return ((idx % K + r.clamp(U_EPS, 1 - U_EPS)) / K).clamp(U_EPS, 1 - U_EPS)

    def _draw(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, D, K = self.first.logits.shape
        if generator is None:
            v1, u1 = self.first.mode()
        else:
            v1, u1 = (t[:, 0] for t in self.first.sample(generator, 1))
        logp = self._partner_logp(self._cell(v1[:, None], u1[:, None])[:, 0])                     # B x (DK + 1)
        if generator is None:
            pick = logp.argmax(1)
        else:
            pick = torch.multinomial(logp.double().exp(), 1, generator=generator)[:, 0]
        two = pick < D * K
        idx = torch.where(two, pick, torch.zeros_like(pick))
        u2 = self._position(idx, generator)
        var = torch.stack([v1, torch.where(two, idx // K, v1)], 1)                                  # B x 2
        u = torch.stack([u1, torch.where(two, u2.to(u1.dtype), u1)], 1)
        return var, u, 1 + two.long()

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One experiment per decision: (variables B x 2, positions u B x 2, members n B); where
        n = 1 the second column repeats the first."""
        return self._draw(generator)

    def mode(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first member's mode, then the most probable partner (or stop) at its Beta's mode."""
        return self._draw(None)

    def log_prob(self, var: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Exact log-density (B) of experiments (var, u: B x 2, n: B members; positions in [0, 1]
        of the domains, as :meth:`sample` returns them), summed over both orders for a pair."""
        B, D, K = self.first.logits.shape
        first = self.first.log_prob(var, u)                                                         # B x 2
        within = self.first.within(var, u)                                                          # B x 2
        cell = self._cell(var, u)                                                                   # B x 2
        stop = self._partner_logp(cell[:, 0])[:, D * K]
        ab = first[:, 0] + self._partner_logp(cell[:, 0]).gather(1, cell[:, 1:])[:, 0] + within[:, 1]
        ba = first[:, 1] + self._partner_logp(cell[:, 1]).gather(1, cell[:, :1])[:, 0] + within[:, 0]
        return torch.where(n == 1, first[:, 0] + stop, torch.logaddexp(ab, ba))


def allowed_pairs(sets: list[tuple[int, ...]], D: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(pair_ok D x D, single_ok D) of a problem's allowed sets (label indices, sizes 1 or 2)."""
    pair_ok = torch.zeros(D, D, dtype=torch.bool)
    single_ok = torch.zeros(D, dtype=torch.bool)
    for s in sets:
        if len(s) == 1:
            single_ok[s[0]] = True
        else:
            i, j = s
            pair_ok[i, j] = pair_ok[j, i] = True
    return pair_ok, single_ok

