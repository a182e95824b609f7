"""The optimum of a batch of SCMs: y* = min over single-variable hard interventions within the
domains of E[Y | do], its argmin and its Monte Carlo standard error (:meth:`acbo.scm.SCM.optimum`).

Linear models: exact, at the ends of the domains. Otherwise: a grid over each domain, then
golden-section search around the best grid point on common random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from acbo.scm.scm import SCM


@dataclass(frozen=True)
class Optimum:
    """The best single-variable hard intervention of each model: ``value`` = min E[Y | do]
    (B), ``variable`` its label index (B, long), ``setting`` the value it sets (B), ``se`` the
    Monte Carlo standard error of ``value`` (B; 0 where it is exact)."""

    value: torch.Tensor
    variable: torch.Tensor
    setting: torch.Tensor
    se: torch.Tensor | None = None


def optimum(
    scm: SCM,
    low: torch.Tensor,
    high: torch.Tensor,
    intervenable: torch.Tensor | None,
    n_mc: int,
    grid: int | None,
    refine_iters: int,
) -> Optimum:
    """:meth:`acbo.scm.SCM.optimum` (its docstring says what each argument means)."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    low = torch.broadcast_to(torch.as_tensor(low, device=dev, dtype=scm.loc.dtype), (B, d))
    high = torch.broadcast_to(torch.as_tensor(high, device=dev, dtype=scm.loc.dtype), (B, d))
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()) or (low > high).any():
        raise ValueError("domains must be finite with low <= high")
    if intervenable is None:
        intervenable = torch.ones(B, d, dtype=torch.bool, device=dev)
        intervenable[torch.arange(B, device=dev), scm.target] = False
    intervenable = torch.broadcast_to(torch.as_tensor(intervenable, device=dev), (B, d))
    if not intervenable.any(dim=1).all():
        raise ValueError("every model needs at least one intervenable variable")
    grid = grid or (21 if scm._cache["classic"] else 64)
    lin = scm._cache["linear"]
    if all(lin):
        return _optimum_at_ends(scm, low, high, intervenable)
    if not any(lin):
        return _optimum_searched(scm, low, high, intervenable, n_mc, grid, refine_iters)
    il = torch.tensor([b for b in range(B) if lin[b]], device=dev)
    im = torch.tensor([b for b in range(B) if not lin[b]], device=dev)
    a = _optimum_at_ends(scm[il], low[il], high[il], intervenable[il])
    m = _optimum_searched(scm[im], low[im], high[im], intervenable[im], n_mc, grid, refine_iters)
    out = []
    for fa, fm in zip((a.value, a.variable, a.setting, a.se), (m.value, m.variable, m.setting, m.se)):
        t = torch.zeros(B, dtype=fa.dtype, device=dev)
        t[il], t[im] = fa, fm
        out.append(t)
    return Optimum(*out)


def _optimum_at_ends(scm: SCM, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor) -> Optimum:
    """Linear models: E[Y | do(X_i = v)] is affine in v, so the best ends of the domains (B x d each)."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    eye = torch.eye(d, dtype=torch.bool, device=dev)
    inf = torch.tensor(float("inf"), device=dev, dtype=scm.loc.dtype)
    mask = torch.cat([eye, eye])                                                     # 2d x d
    values = torch.cat([torch.diag_embed(low), torch.diag_embed(high)], dim=1)       # B x 2d x d
    e = scm.expected_target(mask, values).masked_fill(~intervenable.repeat(1, 2), inf)  # B x 2d
    best = e.argmin(dim=1)
    var = best % d
    setting = torch.where(best < d, low.gather(1, var[:, None])[:, 0], high.gather(1, var[:, None])[:, 0])  # B
    value = e.gather(1, best[:, None]).squeeze(1)
    return Optimum(value, var, setting, torch.zeros_like(value))


def _optimum_searched(scm: SCM, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor, n_mc: int,
                      grid: int, refine_iters: int) -> Optimum:
    """Nonlinear models: per intervenable ancestor of Y (one at a time, so that only its
    descendants are simulated again) a grid, then golden-section refinement around the best
    grid point, all models at once (B x d domains), on one set of common random numbers."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    inf = torch.tensor(float("inf"), device=dev, dtype=scm.loc.dtype)
    ctx = scm._mc_context(n_mc)
    anc = scm.ancestors() & intervenable                                             # B x d
    rel = torch.nonzero(anc.any(dim=0)).flatten().tolist()                            # union over the batch
    e_obs, se_obs = scm._expected_mc(torch.zeros(1, d, dtype=torch.bool, device=dev), torch.zeros(1, d, device=dev),
                                      1, n_mc, ctx)
    e_obs, se_obs = e_obs[:, 0], se_obs[:, 0]
    # a non-ancestor intervention keeps E[Y] at its observational value
    other = intervenable & ~anc
    best_val = torch.where(other.any(dim=1), e_obs, inf)
    best_var = other.float().argmax(dim=1)
    best_set = low.gather(1, best_var[:, None]).squeeze(1)
    if not rel:
        return Optimum(best_val, best_var, best_set, se_obs)
    cand_v = torch.zeros(B, len(rel), device=dev, dtype=scm.loc.dtype)
    cand_e = torch.full_like(cand_v, float("inf"))
    for r, j in enumerate(rel):
        cand_v[:, r], cand_e[:, r] = _search_one(scm, j, low[:, j], high[:, j], anc[:, j], ctx, grid, refine_iters)
    r = cand_e.argmin(dim=1)                                                          # B
    val = cand_e.gather(1, r[:, None]).squeeze(1)
    use = val < best_val
    rel_t = torch.tensor(rel, device=dev)
    var = torch.where(use, rel_t[r], best_var)
    setting = torch.where(use, cand_v.gather(1, r[:, None]).squeeze(1), best_set)
    # the standard error of the estimate at the optimum
    at = torch.zeros(B, 1, d, dtype=torch.bool, device=dev)
    at[torch.arange(B, device=dev), 0, var] = True
    _, se = scm._expected_mc(at, at * setting[:, None, None], 1, n_mc, ctx)
    return Optimum(torch.where(use, val, best_val), var, setting, se[:, 0])


def _search_one(scm: SCM, j: int, lo: torch.Tensor, hi: torch.Tensor, ok: torch.Tensor, ctx: dict, grid: int,
                refine_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """min over v in [lo, hi] (B each) of E[Y | do(X_j = v)] for variable label j: a grid of
    ``grid`` points, then golden-section search (one new point per iteration) in the bracket
    around the best of them. Models where j may not be set (``ok`` False) get +inf.
    Returns (argmin, value), B each."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    mask_j = torch.zeros(1, d, dtype=torch.bool, device=dev)
    mask_j[0, j] = True
    n_mc = ctx["eps"].shape[1]

    def f(v: torch.Tensor) -> torch.Tensor:  # v: B x m values of X_j -> B x m
        m = v.shape[1]
        vals = v[:, :, None] * mask_j.to(v.dtype)                                         # B x m x d
        out, _ = scm._expected_mc(mask_j.expand(m, d), vals, m, n_mc, ctx)
        return out.masked_fill(~ok[:, None], float("inf"))

    t = torch.linspace(0, 1, grid, device=dev, dtype=scm.loc.dtype)
    pts = lo[:, None] + (hi - lo)[:, None] * t                                             # B x G
    eg = f(pts)
    g = eg.argmin(dim=1, keepdim=True)                                                     # B x 1
    a = pts.gather(1, (g - 1).clamp_min(0))[:, 0]
    b = pts.gather(1, (g + 1).clamp_max(grid - 1))[:, 0]
    best_v, best_e = pts.gather(1, g)[:, 0], eg.gather(1, g)[:, 0]
    ratio = (math.sqrt(5) - 1) / 2
    x1, x2 = b - ratio * (b - a), a + ratio * (b - a)
    f1, f2 = f(torch.stack([x1, x2], dim=1)).unbind(1)
    for _ in range(refine_iters):  # the minimum lies in [a, x2] if f1 <= f2, else in [x1, b]
        left = f1 <= f2
        a, b = torch.where(left, a, x1), torch.where(left, x2, b)
        kept_x, kept_f = torch.where(left, x1, x2), torch.where(left, f1, f2)              # stays inside
        new = torch.where(left, b - ratio * (b - a), a + ratio * (b - a))
        fn = f(new[:, None])[:, 0]
        x1, f1 = torch.where(left, new, kept_x), torch.where(left, fn, kept_f)
        x2, f2 = torch.where(left, kept_x, new), torch.where(left, kept_f, fn)
    for xv, fv in ((x1, f1), (x2, f2)):
        better = fv < best_e
        best_v, best_e = torch.where(better, xv, best_v), torch.where(better, fv, best_e)
    return best_v, best_e
