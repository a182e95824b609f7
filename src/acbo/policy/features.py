"""What the policy reads: a batch of campaigns in, per-variable and global features out.

Everything is computed from the buffer itself (values standardised by the observational rows'
mean and std, per variable) and the problem's domains, never from the simulator's private
parameters, so the same code serves training (B simulated campaigns) and deployment (B = 1).
"""

from __future__ import annotations

import torch

from acbo.buffer import Campaign
from acbo.posterior.types import bernoulli_entropy

N_VAR_FEATURES = 17
"""Per-variable features (see :func:`campaign_features`)."""
N_GLOBAL_FEATURES = 5
"""Global features, broadcast to every variable."""


def campaign_features(c: Campaign, marginals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
