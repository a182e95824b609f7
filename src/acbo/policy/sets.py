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

from acbo.policy.features import EI_FLOOR, GRID_BEST, GRID_MEAN, GRID_STD
from acbo.policy.model import U_EPS, GridActionDist, PolicyInput, _beta_mode
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
    (DK + 1) logits of the partner (variable, cell) given the first's, last column *stop*. A
    policy with a stop head (``first.stop``) adds its bias for the first member's cell to the
    *stop* logit."""

    first: GridActionDist
    partner: torch.Tensor

    def _partner_logp(self, row: torch.Tensor) -> torch.Tensor:
        """log_softmax of the partner logits (the stop head's bias added) at the flat first-member
        cells ``row`` (B x k), B x k x (DK + 1)."""
        B, R, C = self.partner.shape
        rows = self.partner.gather(1, row[..., None].expand(B, row.shape[1], C))                    # B x k x C
        return _with_stop_bias(rows, self.first, row).log_softmax(2)

    def _position(self, idx: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Positions u in [0, 1] inside flat cells idx (B x k): Beta draws, or their modes without a generator."""
        K = self.first.logits.shape[2]
        a, b = self.first._at(self.first.alpha, idx), self.first._at(self.first.beta, idx)
        r = _beta_mode(a, b) if generator is None else sample_beta(a.double(), b.double(), generator).to(a.dtype)
        return ((idx % K + r.clamp(U_EPS, 1 - U_EPS)) / K).clamp(U_EPS, 1 - U_EPS)

    def _draw(self, generator: torch.Generator | None, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """k experiments per decision (the mode, k = 1, without a generator): B x k x 2, B x k x 2, B x k."""
        B, D, K = self.first.logits.shape
        if generator is None:
            v1, u1 = (t[:, None] for t in self.first.mode())                                        # B x 1 each
        else:
            v1, u1 = self.first.sample(generator, k)                                                # B x k each
        logp = self._partner_logp(self.first.flat_cell(v1, u1))                                     # B x k x (DK + 1)
        if generator is None:
            pick = logp.argmax(2)
        else:
            pick = torch.multinomial(logp.double().exp().reshape(B * k, -1), 1, generator=generator).reshape(B, k)
        two = pick < D * K
        idx = torch.where(two, pick, torch.zeros_like(pick))
        u2 = self._position(idx, generator)
        var = torch.stack([v1, torch.where(two, idx // K, v1)], 2)                                  # B x k x 2
        u = torch.stack([u1, torch.where(two, u2.to(u1.dtype), u1)], 2)
        return var, u, 1 + two.long()

    def sample(self, generator: torch.Generator, k: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One experiment per decision: (variables B x 2, positions u B x 2, members n B); where
        n = 1 the second column repeats the first. With ``k``, k i.i.d. experiments per decision
        (B x k x 2, B x k x 2, B x k)."""
        var, u, n = self._draw(generator, k or 1)
        return (var, u, n) if k is not None else (var[:, 0], u[:, 0], n[:, 0])

    def mode(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first member's mode, then the most probable partner (or stop) at its Beta's mode."""
        var, u, n = self._draw(None, 1)
        return var[:, 0], u[:, 0], n[:, 0]

    def value(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Positions -> values on the data's scale (B x k x 2 or B x 2, as var)."""
        B = var.shape[0]
        return self.first.value(var.reshape(B, -1), u.reshape(B, -1)).reshape(var.shape)

    def rows(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The partner logits at both members' cells (var, u: B x k x 2), B x k x 2 x (DK + 1),
        without the stop head's bias: all :func:`set_log_prob` needs of the partner table (what a
        rollout keeps of it)."""
        B, R, C = self.partner.shape
        k = var.shape[1]
        cell = self.first.flat_cell(var, u).reshape(B, 2 * k)
        return self.partner.gather(1, cell[..., None].expand(B, 2 * k, C)).reshape(B, k, 2, C)

    def log_prob(self, var: torch.Tensor, u: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Exact log-density (B, or B x k) of experiments (var, u: B x 2 or B x k x 2, n: B or B x k
        members; positions in [0, 1] of the domains, as :meth:`sample` returns them), summed over
        both orders for a pair (:func:`set_log_prob`)."""
        one = var.dim() == 2
        if one:
            var, u, n = var[:, None], u[:, None], n[:, None]
        out = set_log_prob(self.first, self.rows(var, u), var, u, n)
        return out[:, 0] if one else out

    def entropy(self) -> torch.Tensor:
        """The first member's entropy (B): the policy's part of the action (the partner's
        categorical is the world model's, apart from the stop head's bias)."""
        return self.first.entropy()


def _with_stop_bias(rows: torch.Tensor, first: GridActionDist, cell: torch.Tensor) -> torch.Tensor:
    """Partner logits ``rows`` (B x ... x (DK + 1)) at flat first-member cells ``cell`` (B x ...)
    with the policy's stop bias for those cells added to the last column (as they are without a
    stop head)."""
    if first.stop is None:
        return rows
    B = rows.shape[0]
    bias = first.stop.reshape(B, -1).gather(1, cell.reshape(B, -1)).reshape(cell.shape).to(rows.dtype)
    return torch.cat([rows[..., :-1], rows[..., -1:] + bias[..., None]], -1)


def set_log_prob(first: GridActionDist, rows: torch.Tensor, var: torch.Tensor, u: torch.Tensor, n: torch.Tensor
                 ) -> torch.Tensor:
    """Exact log-density (B x k) of experiments (var, u: B x k x 2, n: B x k members) under the
    first member's distribution ``first`` and the partner logits at the members' cells, ``rows``
    (B x k x 2 x (DK + 1), :meth:`SetActionDist.rows`); the two orders of a pair summed:
    log(pi(a) q(b | a) w(b) + pi(b) q(a | b) w(a)), a single log(pi(a) q(stop | a))."""
    B, k, _ = var.shape
    D, K = first.logits.shape[1:]
    flat = lambda t: t.reshape(B, 2 * k)
    lp_first = first.log_prob(flat(var), flat(u)).reshape(B, k, 2)
    within = first.within(flat(var), flat(u)).reshape(B, k, 2)
    cell = first.flat_cell(var, u)                                                                    # B x k x 2
    logq = _with_stop_bias(rows, first, cell).log_softmax(3)                                          # B x k x 2 x (DK + 1)
    ab = lp_first[..., 0] + logq[..., 0, :].gather(2, cell[..., 1:])[..., 0] + within[..., 1]
    ba = lp_first[..., 1] + logq[..., 1, :].gather(2, cell[..., :1])[..., 0] + within[..., 0]
    single = n == 1  # a single's orders are -inf: kept out of logaddexp, whose gradient there is NaN
    pair = torch.logaddexp(ab.masked_fill(single, 0.0), ba.masked_fill(single, 0.0))
    return torch.where(single, lp_first[..., 0] + logq[..., 0, D * K], pair)


def world_pairs(x: PolicyInput) -> tuple[torch.Tensor, ...]:
    """What the world model's grid features (the policy's input ``x``) say of single settings and
    of pairs before any experiment on the pair: (mean, std B x D x K, pair_mean, pair_var B x DK x
    DK (:func:`additive_pairs`), best B, the incumbent); Y's standard units, minimised."""
    mean, std = x.grid[..., GRID_MEAN].double(), x.grid[..., GRID_STD].double()                  # B x D x K each
    incumbent = (x.grid[..., GRID_BEST] + x.grid[..., GRID_MEAN]).double()                        # B x D x K: the same everywhere
    best = torch.where(x.valid[..., None], incumbent, torch.inf).flatten(1).amin(1)               # B, read off a settable cell
    return (mean, std, *additive_pairs(mean, std), best)


def set_action(first: GridActionDist, x: PolicyInput) -> SetActionDist:
    """The set action of simulated campaigns (training): any two valid variables may be set
    together, any one alone; the partner logits of the world model's additive pair prior
    (:func:`world_pairs`; unlike :meth:`acbo.policy.method.Amortized.ask_set`, pairs already
    measured are not corrected); with costs in the input (``x.cost``), expected improvement per
    unit of each cell's relative cost."""
    B, D = x.valid.shape
    mean, std, pair_mean, pair_var, best = world_pairs(x)
    pair_ok = x.valid[:, :, None] & x.valid[:, None, :] & ~torch.eye(D, dtype=torch.bool, device=x.valid.device)
    cost = x.cost[..., 0].exp().to(mean.dtype) if x.cost.shape[2] else None                         # B x D x K: c / c_bar
    logits = pair_logits(mean, std, pair_mean, pair_var, best, pair_ok, x.valid, cost=cost)
    return SetActionDist(first, logits.to(first.logits.dtype))


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

