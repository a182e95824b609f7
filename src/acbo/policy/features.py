"""What the policy reads: a batch of campaigns in, per-variable and global features out.

Everything is computed from the buffer itself (values standardised by the observational rows'
mean and std, per variable) and the problem's domains, never from the simulator's private
parameters, so the same code serves training (B simulated campaigns) and deployment (B = 1).
"""

from __future__ import annotations

import torch

from acbo.buffer import CampaignBatch
from acbo.posterior.types import bernoulli_entropy
from acbo.predictive import GaussianMixture
from acbo.surrogate.world import WORLDS, WorldBelief, conditioned_world

N_VAR_FEATURES = 17
"""Per-variable features (see :func:`campaign_features`)."""
N_GLOBAL_FEATURES = 5
"""Global features, broadcast to every variable."""


def campaign_features(c: CampaignBatch, marginals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-variable features B x D x 17, global features B x 5).

    Per variable j (standardised units unless said): surrogate P(j in pa(Y)) and its entropy;
    is-target; intervenable; domain ends low_j, high_j; observational correlation with Y;
    log(1 + times j was set); whether j was ever set; the lowest, the mean and the last Y
    measured when j was set (0 if never); the position in [0, 1] of j's value at that lowest and
    at that last measurement (0.5 if never); the OLS slope of Y on j's set value over the domain
    (0 with fewer than two distinct settings); whether j's lowest Y is the campaign's best; and
    the domain's width (high_j - low_j).
    Global: best Y measured under any intervention (0 = the observational mean, if none yet is
    lower), steps taken / T, steps left / T, mean posterior entropy per variable, log(1 + T).
    """
    B, N, D = c.values.shape
    dt = torch.float32
    mean, std = c.observational_stats()
    z = ((c.values - mean[:, None]) / std[:, None]).to(dt)                                       # B x N x D
    tgt = c.target
    y = (z * tgt[:, None].to(dt)).sum(2)                                                         # B x N: Y per row
    row_int = c.intervened.any(2) & c.row_mask                                                   # B x N
    obs = (c.row_mask & ~row_int).to(dt)                                                         # B x N
    n_obs = obs.sum(1).clamp_min(1)
    corr = (z * y[..., None] * obs[..., None]).sum(1) / n_obs[:, None]                           # B x D
    lo_z = ((c.low - mean) / std).to(dt)
    hi_z = ((c.high - mean) / std).to(dt)
    width = (c.high - c.low).clamp_min(1e-12)
    u = ((c.values - c.low[:, None]) / width[:, None]).to(dt).clamp(0, 1)                        # B x N x D position
    S = (c.intervened & c.row_mask[..., None]).to(dt)                                            # B x N x D: j set in row
    count = S.sum(1)                                                                             # B x D
    seen = count > 0
    big = torch.finfo(dt).max
    y_set = torch.where(S > 0, y[..., None].expand(B, N, D), torch.full_like(S, big))
    y_min, arg_min = y_set.min(1)                                                                # B x D
    y_min = torch.where(seen, y_min, torch.zeros_like(y_min))
    u_min = torch.where(seen, u.gather(1, arg_min[:, None]).squeeze(1), torch.full_like(y_min, 0.5))
    y_mean = (S * y[..., None]).sum(1) / count.clamp_min(1)
    order = torch.arange(1, N + 1, device=c.values.device, dtype=dt)[None, :, None] * S          # last row index
    last = order.argmax(1)                                                                       # B x D
    y_last = torch.where(seen, y.gather(1, last), torch.zeros_like(y_min))
    u_last = torch.where(seen, u.gather(1, last[:, None]).squeeze(1), torch.full_like(y_min, 0.5))
    # OLS slope of Y on the set value's position (in units of the domain), per variable
    u_bar = (S * u).sum(1) / count.clamp_min(1)
    du = (u - u_bar[:, None]) * S
    sxx = (du ** 2).sum(1)
    slope = torch.where(sxx > 1e-6, (du * (y[..., None] - y_mean[:, None])).sum(1) / sxx.clamp_min(1e-6),
                        torch.zeros_like(sxx)).clamp(-10, 10)
    y_best = torch.where(row_int, y, torch.zeros_like(y)).amin(1)                                # B (<= 0)
    is_best = seen & (y_min <= y_best[:, None]) & (y_best[:, None] < 0)
    p = marginals.to(dt)
    H = bernoulli_entropy(p)
    var = torch.stack([p, H, tgt.to(dt), c.intervenable.to(dt), lo_z, hi_z, corr, torch.log1p(count),
                       seen.to(dt), y_min, y_mean, y_last, u_min, u_last, slope, is_best.to(dt),
                       (hi_z - lo_z)], dim=-1)                                                   # B x D x 17
    var = var * c.var_mask[..., None].to(dt)
    T = c.horizon.to(dt).clamp_min(1)
    t = c.step.to(dt)
    n_var = c.var_mask.to(dt).sum(1).clamp_min(1)
    glob = torch.stack([y_best, t / T, (T - t).clamp_min(0) / T, (H * c.var_mask.to(dt)).sum(1) / n_var,
                        torch.log1p(T)], dim=-1)                                                 # B x 5
    return var, glob


N_COST_FEATURES = 3
"""Features per grid cell of what setting it costs (see :func:`cost_features`)."""
COST_FLOOR = 1e-3
"""Relative costs are read from this many mean costs up (a free variable is not infinitely cheap;
the cost head's per-unit term reads the same floor, so a variable over a thousand times cheaper than
the mean weighs as a thousand times cheaper)."""


def cost_features(cost: torch.Tensor, valid: torch.Tensor, allowance: torch.Tensor, steps_left: torch.Tensor
                  ) -> torch.Tensor:
    """What each grid cell costs, as the policy reads it: B x D x K x 3.

    cost: B x D x K, the cost of setting variable j at cell k's centre (the user's units); valid:
    B x D, the variables that may be set; allowance: B, what the campaign may still spend (inf
    without a budget in cost units: then what its ``steps_left`` (B) experiments cost at the mean).
    With c_bar the mean cost of a valid cell, per cell: log(c / c_bar) (from COST_FLOOR up), the
    share c / allowance of what may still be spent, and log(1 + allowance / c_bar) (how many
    experiments of mean cost the rest buys, the same for every cell). Zero for invalid variables."""
    B, D, K = cost.shape
    v = valid[..., None].expand(B, D, K).to(cost.dtype)
    c_bar = ((cost * v).sum((1, 2)) / v.sum((1, 2)).clamp_min(1)).clamp_min(1e-12)                # B
    left = torch.where(torch.isfinite(allowance), allowance, steps_left.to(cost.dtype).clamp_min(1) * c_bar)
    rel = (cost / c_bar[:, None, None]).clamp_min(COST_FLOOR)                                     # B x D x K
    share = cost / left.clamp_min(1e-12)[:, None, None]
    buys = torch.log1p(left / c_bar)[:, None, None].expand(B, D, K)
    return torch.stack([torch.log(rel), share, buys], dim=-1).float() * v[..., None].float()


N_GRID_FEATURES = 8
"""Features per grid point of a variable's domain (see :func:`grid_features`)."""
EI_FLOOR = 1e-6
"""Added to the expected improvement before its log (Y's standard units)."""
GRID_QUANTILES = (0.1, 0.9)
"""Quantiles of a measurement's predictive, per grid point."""
LOG_EI = 6
"""Index of log(EI + EI_FLOOR) among the grid features."""
GRID_MEAN, GRID_STD, GRID_BEST = 1, 2, 7
"""Indices of the mean and std of E[Y | do] and of (incumbent - mean) among the grid features."""


def grid_positions(K: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The K cell centres (k + 1/2) / K of [0, 1]: grid point k stands for the cell [k/K, (k+1)/K)."""
    return (torch.arange(K, dtype=dtype, device=device) + 0.5) / K


def incumbent(c: CampaignBatch, mu: torch.Tensor) -> torch.Tensor:
    """The best E[Y | do] so far by the world model (Y's standard units, B): the lowest posterior
    mean at the interventions already made, read off each variable's grid of posterior means ``mu``
    (B x D x K, at the positions :func:`grid_positions`) by linear interpolation (flat beyond the
    outermost points), or 0 (doing nothing: Y's observational mean) if that is lower. Rows that set
    several variables or the target are not counted (:meth:`CampaignBatch.single_settings`, as in
    ``surrogate-ei``'s incumbent, which queries the model at the values set instead: it decides
    for one campaign, this reads the grid the policy's features already hold for B)."""
    B, N, D = c.values.shape
    K = mu.shape[2]
    single, var = c.single_settings()                                                            # B x N each
    if not bool(single.any()):
        return torch.zeros(B, dtype=mu.dtype, device=mu.device)
    lo, hi = c.low.gather(1, var), c.high.gather(1, var)                                         # B x N
    x = c.values.gather(2, var[..., None])[..., 0]
    u = ((x - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    pos = (u * K - 0.5).clamp(0, K - 1)                                                          # grid index, fractional
    k0 = pos.floor().long().clamp_max(K - 1)
    k1 = (k0 + 1).clamp_max(K - 1)
    w = (pos - k0).to(mu.dtype)
    m = mu.gather(1, var[..., None].expand(B, N, K))                                             # B x N x K
    at = (1 - w) * m.gather(2, k0[..., None])[..., 0] + w * m.gather(2, k1[..., None])[..., 0]   # B x N
    at = torch.where(single, at, torch.full_like(at, float("inf")))
    return at.amin(1).clamp_max(0.0)


def settable_variables(c: CampaignBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(var, real), B x Q each: every campaign's settable variables in index order, padded to the
    most of any campaign (at least 1) with variable 0 where ``real`` is False. Scatter results
    back with the slot ``torch.where(real, var, D)`` into a spare column D."""
    B, _, D = c.values.shape
    dev = c.values.device
    settable = c.intervenable & c.var_mask & ~c.target                                           # B x D
    Q = max(1, int(settable.sum(1).max()))
    order = torch.where(settable, torch.arange(D, device=dev)[None], torch.full((B, D), D, device=dev))
    var = order.sort(dim=1).values[:, :Q]                                                        # B x Q: settable first
    real = var < D
    return torch.where(real, var, torch.zeros_like(var)), real


def world_domains(c: CampaignBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(var, real, lo, hi): the settable variables (B x Q each, :func:`settable_variables`) and
    their domains in their observational standard units (B x Q each), as the world model reads them."""
    var, real = settable_variables(c)                                                            # B x Q each
    mean, std = c.observational_stats()                                                          # B x D
    m_j, s_j = mean.gather(1, var), std.gather(1, var)
    return var, real, (c.low.gather(1, var) - m_j) / s_j, (c.high.gather(1, var) - m_j) / s_j


@torch.no_grad()
def grid_features(surrogate, c: CampaignBatch, tokens: torch.Tensor, K: int, memo=None,
                  world: str = "network", marginals: torch.Tensor | None = None,
                  known: WorldBelief | None = None) -> torch.Tensor:
    """What the world model says about a K-point grid over every settable variable's domain:
    B x D x K x 8.

    Grid point k of variable j is the value low_j + (k + 1/2)/K (high_j - low_j). Per point, in Y's
    standard units (the observational mean and std of Y; the campaign's Y is what is minimised):
    the position (k + 1/2)/K; the posterior mean and std of E[Y | do(X_j = x)] (the mean head); the
    0.1 and 0.9 quantiles of a measurement of Y there (the draw head); the expected improvement
    E[max(best - E[Y | do], 0)] of the mean head over :func:`incumbent`; its log (+ EI_FLOOR); and
    the mean's distance below the incumbent. Zero for variables that cannot be set (the target,
    padding, non-intervenable ones): only the settable ones are queried. ``memo``: a
    :class:`acbo.surrogate.model.ContextMemo` kept over one campaign's decisions (see
    :meth:`Surrogate.query`). ``world``: ``network`` reads the network's bar distributions;
    ``conditioned`` the world model conditioned on the data (:mod:`acbo.surrogate.world`, which
    needs the surrogate's ``marginals``, B x D), whose predictives are Gaussian; ``known``: that
    world model on the grid already computed (B x Q x K over :func:`world_domains`' variables).
    """
    B, N, D = c.values.shape
    dev = c.values.device
    var, real = settable_variables(c)                                                            # B x Q each
    Q = var.shape[1]
    u = grid_positions(K, torch.float64, dev)                                                    # K
    if world == "conditioned":
        if known is not None:
            if known.mean.shape != (B, Q, K):
                raise ValueError(f"the known world model holds {tuple(known.mean.shape)} points, the grid needs {(B, Q, K)}")
            w = known
        elif marginals is None:
            raise ValueError("the conditioned world model needs the surrogate's marginals")
        else:
            _, _, lo_z, hi_z = world_domains(c)
            w = conditioned_world(surrogate, c.standardised(), tokens, marginals, var, lo_z, hi_z, u.expand(B, Q, K),
                                  memo)
        f = GaussianMixture.normal(w.mean.float(), w.var_f.sqrt().float())
        m = GaussianMixture.normal(w.mean.float(), w.var_y.sqrt().float())
    elif world == "network":
        mean, std = c.observational_stats()                                                      # B x D
        lo, hi = c.low.gather(1, var), c.high.gather(1, var)                                     # B x Q
        x = lo[..., None] + (hi - lo)[..., None] * u                                             # B x Q x K
        z = ((x - mean.gather(1, var)[..., None]) / std.gather(1, var)[..., None]).float()
        draw_logits, mean_logits = surrogate.query(c.standardised(), tokens, var, z, memo)      # B x Q x K x M
        f, m = surrogate.predictive(mean_logits), surrogate.predictive(draw_logits)
    else:
        raise ValueError(f"unknown world model {world!r}; known: {WORLDS}")
    slot = torch.where(real, var, torch.full_like(var, D))                                      # padding -> a spare row D
    mu = torch.full((B, D + 1, K), float("inf"), dtype=f.mean.dtype, device=dev)                 # inf: not settable
    mu.scatter_(1, slot[..., None].expand(B, Q, K), f.mean)
    best = incumbent(c, mu[:, :D])                                                               # B
    b = best[:, None, None].expand(B, Q, K)
    ei = f.expected_improvement(b)
    q_lo, q_hi = m.quantiles(GRID_QUANTILES).unbind(-1)                                        # B x Q x K each
    per_q = torch.stack([u.float().expand(B, Q, K), f.mean, f.std, q_lo, q_hi, ei, torch.log(ei + EI_FLOOR),
                         b - f.mean], dim=-1)                                                      # B x Q x K x 8
    feats = torch.zeros(B, D + 1, K, N_GRID_FEATURES, dtype=per_q.dtype, device=dev)
    feats.scatter_(1, slot[..., None, None].expand_as(per_q), per_q)
    return feats[:, :D]                                                                          # the spare row dropped
