"""The optimum of a batch of SCMs: y* = min over hard interventions within the domains of E[Y | do],
its argmin and its Monte Carlo standard error — over single variables (:meth:`acbo.scm.SCM.optimum`)
or over sets of at most k variables set at once (:meth:`acbo.scm.SCM.set_optimum`).

Linear models: exact, at the corners of the domains. Otherwise: a grid over each domain (each
box of a set), then golden-section search around the best grid point (along each axis in turn
for a set) on common random numbers.
"""

from __future__ import annotations

import itertools
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
    for xv, fv in _golden(f, a, b, refine_iters):
        better = fv < best_e
        best_v, best_e = torch.where(better, xv, best_v), torch.where(better, fv, best_e)
    return best_v, best_e


def _golden(f, a: torch.Tensor, b: torch.Tensor, refine_iters: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Golden-section search of f (B x m values -> B x m) in the brackets [a, b] (B each), one new
    point per iteration: the two inner points last kept and their values, ((x1, f1), (x2, f2))."""
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
    return (x1, f1), (x2, f2)


@dataclass(frozen=True)
class SetOptimum:
    """The best hard intervention on a set of at most k variables of each model: ``value`` =
    min E[Y | do(X_S = x_S)] (B), ``mask`` the set S (B x d bool, label order), ``setting`` its
    values (B x d, 0 off the set), ``se`` the Monte Carlo standard error of ``value`` (B; 0
    where it is exact)."""

    value: torch.Tensor
    mask: torch.Tensor
    setting: torch.Tensor
    se: torch.Tensor


def candidate_sets(intervenable: torch.Tensor, max_set: int, sets: list[tuple[int, ...]] | None = None
                   ) -> list[tuple[int, ...]]:
    """The sets an experiment may set (label indices, sorted, sizes 1 … ``max_set``): ``sets`` as
    given (checked), else every subset of the variables intervenable in any model (d or B x d)."""
    if max_set < 1:
        raise ValueError(f"max_set must be >= 1, got {max_set}")
    can = intervenable.reshape(-1, intervenable.shape[-1]).any(0)
    d = can.shape[0]
    if sets is None:
        idx = torch.nonzero(can).flatten().tolist()
        return [s for k in range(1, max_set + 1) for s in itertools.combinations(idx, k)]
    out = []
    for s in sets:
        t = tuple(sorted(int(i) for i in s))
        if not 1 <= len(t) <= max_set or len(set(t)) != len(t) or not all(0 <= i < d for i in t):
            raise ValueError(f"an exploration set must hold 1 to {max_set} distinct variables of 0 … {d - 1}, got {s!r}")
        out.append(t)
    return list(dict.fromkeys(out))


def set_optimum(scm: SCM, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor | None, max_set: int,
                sets: list[tuple[int, ...]] | None = None, n_mc: int = 10_000, grid: int | None = None,
                refine_iters: int = 16, rounds: int = 2, single: Optimum | None = None,
                set_grid: int | None = None) -> SetOptimum:
    """y* over hard interventions on sets of at most ``max_set`` variables (or on the given
    ``sets``, label indices): the single-variable optimum of :func:`optimum` (the same numbers,
    ``grid`` as there), then every set of two or more. Linear models: exact (E[Y | do(X_S = x)]
    is affine in x, so its minimum over the box lies at one of its 2^|S| corners). Otherwise, per
    set: a grid of ``set_grid`` points per axis (default 9 for two variables, 5 for more), then
    ``rounds`` of golden-section search along each axis in turn, bracketed by the neighbouring
    grid points, on common random numbers (a coordinate search: tests bound its error against a
    fine grid). Without ``sets``, a set holding a variable that is not an ancestor of Y acts as
    the set without it, which is searched on its own, so it is skipped. ``single``: :func:`optimum`
    over the same domains and intervenable variables when already computed (used only without
    ``sets``, where it is exactly the single-variable part)."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    dt = scm.loc.dtype
    low = torch.broadcast_to(torch.as_tensor(low, device=dev, dtype=dt), (B, d))
    high = torch.broadcast_to(torch.as_tensor(high, device=dev, dtype=dt), (B, d))
    if intervenable is None:
        intervenable = torch.ones(B, d, dtype=torch.bool, device=dev)
        intervenable[torch.arange(B, device=dev), scm.target] = False
    intervenable = torch.broadcast_to(torch.as_tensor(intervenable, device=dev), (B, d))
    allowed = candidate_sets(intervenable, max_set, sets)
    multi = [s for s in allowed if len(s) > 1]
    lin = scm._cache["linear"]
    if multi and not (all(lin) or not any(lin)):  # a mixed batch: each kind on its own
        part = lambda i: None if single is None or sets is not None else Optimum(
            single.value[i], single.variable[i], single.setting[i], None if single.se is None else single.se[i])
        return _joined(scm, [set_optimum(scm[i], low[i], high[i], intervenable[i], max_set, sets, n_mc, grid,
                                         refine_iters, rounds, part(i), set_grid) for i in _kinds(scm)])
    singles = torch.zeros(d, dtype=torch.bool, device=dev)
    for s in allowed:
        if len(s) == 1:
            singles[s[0]] = True
    inf = torch.tensor(float("inf"), device=dev, dtype=dt)
    best_val = torch.full((B,), float("inf"), device=dev, dtype=dt)
    best_mask = torch.zeros(B, d, dtype=torch.bool, device=dev)
    best_set = torch.zeros(B, d, device=dev, dtype=dt)
    best_se = torch.zeros(B, device=dev, dtype=dt)
    one_ok = intervenable & singles
    if one_ok.any(1).all():  # every model has a single variable it may set: today's optimum, unchanged
        one = single if single is not None and sets is None else optimum(scm, low, high, one_ok, n_mc, grid,
                                                                           refine_iters)
        best_val, best_se = one.value.clone(), one.se.clone()
        rows = torch.arange(B, device=dev)
        best_mask[rows, one.variable] = True
        best_set[rows, one.variable] = one.setting
    elif one_ok.any():
        raise ValueError(f"the allowed single variables {torch.nonzero(singles).flatten().tolist()} leave models "
                         f"{torch.nonzero(~one_ok.any(1)).flatten().tolist()} of the batch without one they may set")
    anc = scm.ancestors()
    ctx = None if all(lin) or not multi else scm._mc_context(n_mc)
    for s in multi:
        S = list(s)
        ok = intervenable[:, S].all(1) & (anc[:, S].all(1) if sets is None else True)        # B: worth searching
        if not ok.any():
            continue
        if all(lin):
            val, at = _set_corners(scm, S, low, high)
            se = torch.zeros_like(val)
        else:
            val, at, se = _set_searched(scm, S, low, high, ctx, set_grid or (9 if len(S) == 2 else 5), refine_iters,
                                        rounds)
        val = torch.where(ok, val, inf)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_se = torch.where(better, se, best_se)
        mask = torch.zeros(B, d, dtype=torch.bool, device=dev)
        mask[:, S] = True
        best_mask = torch.where(better[:, None], mask, best_mask)
        setting = torch.zeros(B, d, device=dev, dtype=dt)
        setting[:, S] = at
        best_set = torch.where(better[:, None], setting, best_set)
    if not torch.isfinite(best_val).all():
        raise ValueError(f"models {torch.nonzero(~torch.isfinite(best_val)).flatten().tolist()} of the batch may set "
                         f"none of the allowed sets {allowed}")
    return SetOptimum(best_val, best_mask, best_set, best_se)


def _kinds(scm: SCM) -> list[torch.Tensor]:
    """The indices of the linear models of a batch, then of the others."""
    lin = scm._cache["linear"]
    return [torch.tensor([b for b in range(scm.batch_size) if lin[b] == k], device=scm.device) for k in (True, False)]


def _joined(scm: SCM, parts: list[SetOptimum]) -> SetOptimum:
    """The set optima of :func:`_kinds`' two sub-batches, back in the batch's order."""
    fields = []
    for name in ("value", "mask", "setting", "se"):
        first = getattr(parts[0], name)
        t = torch.zeros((scm.batch_size,) + first.shape[1:], dtype=first.dtype, device=scm.device)
        for i, o in zip(_kinds(scm), parts):
            t[i] = getattr(o, name)
        fields.append(t)
    return SetOptimum(*fields)


def _set_corners(scm: SCM, S: list[int], low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear models: the best of the 2^|S| corners of the box of S. Returns (value B, setting B x |S|)."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    k = len(S)
    corners = torch.tensor(list(itertools.product((0, 1), repeat=k)), device=dev, dtype=torch.bool)  # C x k
    lo, hi = low[:, S], high[:, S]                                                          # B x k
    at = torch.where(corners[None], hi[:, None, :], lo[:, None, :])                         # B x C x k
    C = corners.shape[0]
    mask = torch.zeros(C, d, dtype=torch.bool, device=dev)
    mask[:, S] = True
    values = torch.zeros(B, C, d, device=dev, dtype=low.dtype)
    values[:, :, S] = at
    e = scm.expected_target(mask, values)                                                   # B x C
    best = e.argmin(1)
    return e.gather(1, best[:, None])[:, 0], at[torch.arange(B, device=dev), best]


def _set_searched(scm: SCM, S: list[int], low: torch.Tensor, high: torch.Tensor, ctx: dict, grid: int,
                  refine_iters: int, rounds: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nonlinear models: min over the box of S of the common-random-number estimate of
    E[Y | do(X_S = x)]: a grid of ``grid`` points per axis, then ``rounds`` of golden-section
    search along each axis in turn, in the bracket of the neighbouring grid points around the
    best point so far. Returns (value B, setting B x |S|, standard error B)."""
    B, d, dev = scm.batch_size, scm.d, scm.device
    k = len(S)
    n_mc = ctx["eps"].shape[1]
    mask = torch.zeros(1, d, dtype=torch.bool, device=dev)
    mask[0, S] = True

    def f(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # x: B x m x k -> (B x m, B x m)
        m = x.shape[1]
        vals = torch.zeros(B, m, d, device=dev, dtype=x.dtype)
        vals[:, :, S] = x
        return scm._expected_mc(mask.expand(m, d), vals, m, n_mc, ctx)

    lo, hi = low[:, S], high[:, S]                                                          # B x k
    t = torch.linspace(0, 1, grid, device=dev, dtype=lo.dtype)
    ticks = torch.stack(torch.meshgrid(*([t] * k), indexing="ij"), -1).reshape(-1, k)       # G^k x k
    pts = lo[:, None, :] + (hi - lo)[:, None, :] * ticks                                    # B x G^k x k
    e, _ = f(pts)
    g = e.argmin(1)
    x = pts[torch.arange(B, device=dev), g]                                                 # B x k
    best = e.gather(1, g[:, None])[:, 0]
    cell = (hi - lo) / (grid - 1)                                                           # B x k
    for _ in range(rounds):
        for c in range(k):  # golden-section search along axis c, the others held
            def along(v: torch.Tensor) -> torch.Tensor:  # v: B x m values of axis c
                xs = x[:, None, :].expand(B, v.shape[1], k).clone()
                xs[:, :, c] = v
                return f(xs)[0]

            a = torch.maximum(x[:, c] - cell[:, c], lo[:, c])
            b = torch.minimum(x[:, c] + cell[:, c], hi[:, c])
            for xv, fv in _golden(along, a, b, refine_iters):
                better = fv < best
                best = torch.where(better, fv, best)
                x = x.clone()
                x[:, c] = torch.where(better, xv, x[:, c])
    _, se = f(x[:, None, :])
    return best, x, se[:, 0]
