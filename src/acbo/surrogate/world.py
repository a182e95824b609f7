"""The world model that learns from the data in front of it: the network's prior for
E[Y | do(X_j = x)], conditioned in closed form on the measurements of this problem and on a
nonparametric reading of its observations (:mod:`acbo.surrogate.conditioning` has the maths).

The evaluation, training and ``predict`` read it through :func:`conditioned_world`, batched over B
campaigns and Q variables each; ``amortized``'s decisions through its steps, :func:`world_prior`
and :func:`world_measured` (:func:`world_given` on the rows that set each variable alone, then on
those that set it with others, :func:`set_rows`), so that a batch's later members reuse the first
(see :meth:`acbo.policy.method.Amortized._grid_world`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.buffer import PaddedBatch, rows_in_order
from acbo.surrogate.conditioning import (ADJUST_BELIEF, MIN_PARENT, FAR, NOISE_FLOOR, OBS_BANDWIDTHS, OBS_FLOOR,
                                         OBS_POINTS, GPFit, adjusted, bandwidth, cv_bandwidth, gp_average, gp_predict,
                                         interpolate, local_linear, no_effect_update, null_log_likelihood, overlap,
                                         replicate_noise)
from acbo.surrogate.model import INPUT_CLAMP, ContextMemo, Surrogate

PRIOR_POINTS = 9
"""Points over each domain where the network's prior is read (linearly interpolated between)."""
WORLDS = ("network", "conditioned")
"""What a policy reads as its world model: the network's own answer, or that answer conditioned
on the data (this module)."""


@dataclass(frozen=True)
class WorldBelief:
    """The conditioned world model at K points of Q variables of B campaigns, in Y's observational
    standard units. mean, var_f (of E[Y | do]), var_y (of a measurement): B x Q x K; parent:
    B x Q, P(j in pa(Y)) after the experiments on j (:func:`acbo.surrogate.conditioning.no_effect_update`)."""

    mean: torch.Tensor
    var_f: torch.Tensor
    var_y: torch.Tensor
    parent: torch.Tensor


def _measurements(batch: PaddedBatch, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows where exactly X_var was set: (x, y, mask), B x Q x M each (standardised values;
    M the most such rows of any variable, rows in arrival order, padding masked)."""
    B, N, D = batch.values.shape
    Q = var.shape[1]
    iv = batch.intervened & batch.row_mask[..., None]
    single = (iv.sum(2) == 1) & ~(iv & batch.target[:, None]).any(2)                      # B x N
    rows = rows_in_order(single)                                                           # B x M
    M = rows.shape[1]
    x = batch.values.double().clamp(-INPUT_CLAMP, INPUT_CLAMP).gather(1, rows[..., None].expand(B, M, D))
    y = (x * batch.target.double()[:, None, :]).sum(2)                                     # B x M
    setj = (iv.gather(1, rows[..., None].expand(B, M, D)) & single.gather(1, rows)[..., None])  # B x M x D
    idx = var[:, None, :].expand(B, M, Q)
    xj = x.gather(2, idx).transpose(1, 2)                                                  # B x Q x M
    mask = setj.gather(2, idx).transpose(1, 2)
    return xj, y[:, None, :].expand(B, Q, M), mask


def _observations(batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The observational rows: (values B x R x D, y B x R, mask B x R), standardised; R the most
    observational rows of any campaign, in their order: rows added later do not change them."""
    B, N, D = batch.values.shape
    obs = batch.row_mask & ~batch.intervened.any(2)                                        # B x N
    rows = rows_in_order(obs)                                                              # B x R
    R = rows.shape[1]
    x = batch.values.double().gather(1, rows[..., None].expand(B, R, D))                   # B x R x D
    y = (x * batch.target.double()[:, None, :]).sum(2)
    return x, y, obs.gather(1, rows)


def _confounders(batch: PaddedBatch, marginals: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The variables each X_var is adjusted for: the others the surrogate believes to be parents
    of Y (P >= :data:`ADJUST_BELIEF`). Returns (indices B x Q x A, mask B x Q x A), A >= 1."""
    B, D = marginals.shape
    Q = var.shape[1]
    believed = (marginals >= ADJUST_BELIEF) & batch.var_mask & ~batch.target              # B x D
    sel = believed[:, None, :].expand(B, Q, D) & (torch.arange(D, device=var.device) != var[..., None])
    A = max(1, int(sel.sum(2).max()))
    idx = torch.sort(sel.to(torch.int8), dim=2, descending=True, stable=True).indices[..., :A]  # B x Q x A, in label order
    return idx, sel.gather(2, idx)


def _observed(batch: PaddedBatch, marginals: torch.Tensor, var: torch.Tensor, lo: torch.Tensor, width: torch.Tensor,
              ua: torch.Tensor, memo: ContextMemo | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The observations read nonparametrically at the points ua of each domain (V x L): local-
    linear estimates of E[Y | X_var = x] at the bandwidth leave-one-out cross-validation picks
    among :data:`OBS_BANDWIDTHS`, as they are and adjusted for the other believed parents of Y
    (:func:`_confounders`, :func:`acbo.surrogate.conditioning.adjusted`), with their variances as
    pseudo-measurements (the sampling variance times the windows' overlap; :data:`FAR` where the
    data do not reach): (est, var, est adjusted, var adjusted), V x L each, and the spread of Y
    about the unadjusted fit (V: what the other causes add when X_var is set, averaged over the
    points the data reach; NaN if none). Kept in the memo while the observational rows, the
    variables, the domains and the adjustment sets are the same; the bandwidth and the unadjusted
    reading, which do not read the adjustment sets, while the rest is (the same numbers as
    computed afresh: a campaign's believed parents change more often than its observations)."""
    x, y, mask = _observations(batch)                                                      # B x R x D, B x R, B x R
    B, R, D = x.shape
    Q = var.shape[1]
    V = B * Q
    conf, conf_mask = _confounders(batch, marginals, var)                                  # B x Q x A each
    same = lambda old, new: all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(old, new))
    key = (x, mask, batch.target, var, lo, width, ua)
    plain = None
    if memo is not None and memo.observed is not None:
        old, old_conf, kept, result = memo.observed
        if same(old, key):
            if same(old_conf, (conf, conf_mask)):
                return result
            plain = kept
    xo = x.gather(2, var[:, None, :].expand(B, R, Q)).transpose(1, 2).reshape(V, R)      # V x R
    yo = y[:, None, :].expand(B, Q, R).reshape(V, R)
    mo = mask[:, None, :].expand(B, Q, R).reshape(V, R)
    at = lo[:, None] + width[:, None] * ua                                                 # V x L
    if plain is None:  # what does not read the adjustment sets
        h0 = bandwidth(torch.ones_like(lo), mo.sum(1))
        h = h0 * torch.tensor(OBS_BANDWIDTHS, dtype=h0.dtype, device=h0.device)[cv_bandwidth(xo, yo, mo, OBS_BANDWIDTHS)]
        plain = (h, *local_linear(xo, yo, mo, at, h))
    h, est, var_o, sigma2 = plain
    A = conf.shape[2]
    z = x.gather(2, conf.reshape(B, 1, Q * A).expand(B, R, Q * A)).reshape(B, R, Q, A)    # B x R x Q x A
    z = (z * conf_mask[:, None].to(z.dtype)).permute(0, 2, 1, 3).reshape(V, R, A)        # V x R x A
    est_a, var_a, _ = local_linear(xo, adjusted(xo, yo, z, mo), mo, at, h)
    reached = var_o < FAR                                                                  # the same for both
    inflate = overlap(at, h)
    var_o, var_a = ((torch.where(reached, v * inflate, v)).clamp_min(OBS_FLOOR) for v in (var_o, var_a))
    spread = (sigma2 * reached).sum(1) / reached.sum(1)                                    # NaN where none
    result = (est, var_o, est_a, var_a, spread)
    if memo is not None:
        memo.observed = (key, (conf, conf_mask), plain, result)
    return result


def _evidence(est: torch.Tensor, var_o: torch.Tensor, reached: torch.Tensor, p: torch.Tensor, uo: torch.Tensor,
              m0: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """log marginal likelihood (V) of observational estimates (est, var_o: V x L at uo), as the
    world model uses them (tempered by p, V), under the network's prior (m0, s0: V x G)."""
    keep = reached & (p[:, None] >= MIN_PARENT)
    pseudo = torch.where(keep, var_o / p[:, None].clamp_min(MIN_PARENT), torch.ones_like(var_o))
    r = torch.where(keep, est - interpolate(m0, uo), torch.zeros_like(est))
    amp = interpolate(s0, uo)
    return gp_average(uo, r, pseudo, torch.ones_like(keep), keep, amp, uo[:, :1], amp[:, :1], torch.zeros_like(p))[3]


@torch.no_grad()
def network_prior(surrogate: Surrogate, batch: PaddedBatch, tokens: torch.Tensor, var: torch.Tensor,
                  lo: torch.Tensor, hi: torch.Tensor, memo: ContextMemo | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's answer on :data:`PRIOR_POINTS` evenly spaced points of each domain (lo, hi:
    B x Q, standardised units of X_var): the mean and std of E[Y | do] (B x Q x G each) and the
    variance of a measurement around it (B x Q: the draw head's variance beyond the mean head's,
    averaged over the domain, at least :data:`NOISE_FLOOR`)."""
    ug = torch.linspace(0, 1, PRIOR_POINTS, dtype=torch.float64, device=var.device)
    z = (lo[..., None] + (hi - lo)[..., None] * ug).float()                                # B x Q x G
    draw_logits, mean_logits = surrogate.query(batch, tokens, var, z, memo)
    f, m = surrogate.predictive(mean_logits.double()), surrogate.predictive(draw_logits.double())
    noise = (m.std ** 2 - f.std ** 2).clamp_min(NOISE_FLOOR).mean(-1)
    return f.mean, f.std, noise


@dataclass(frozen=True)
class WorldPrior:
    """What the conditioned world model holds about V = B x Q variable instances before their own
    measurements (:func:`world_prior`), flat over V: the network's prior on its
    :data:`PRIOR_POINTS` (m0, s0: V x G), the variance of a measurement around E[Y | do] (noise:
    V; the observations' spread where they show it), P(j in pa(Y)) (p: V), the observations'
    pseudo-measurements at the points uo (est, var_o, uo: V x L; found: V x L, where they reach),
    and each domain (lo, width: V, X_j's standardised units). Conditioning on the rows where X_j
    was set is :func:`world_given`: an instance's prior is kept while the rows it reads (the
    observational ones and the network's context) are the same, and conditioned anew on other
    measurements (a batch's believed rows) without the network."""

    m0: torch.Tensor
    s0: torch.Tensor
    noise: torch.Tensor
    p: torch.Tensor
    est: torch.Tensor
    var_o: torch.Tensor
    found: torch.Tensor
    uo: torch.Tensor
    lo: torch.Tensor
    width: torch.Tensor


@torch.no_grad()
def world_prior(surrogate: Surrogate, batch: PaddedBatch, tokens: torch.Tensor, marginals: torch.Tensor,
                var: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, memo: ContextMemo | None = None) -> WorldPrior:
    """The world model's prior for do(X_var = x) (see :func:`conditioned_world` for the arguments):
    the network's answer and the observations' reading, the two readings of the observations
    (adjusted or not) weighed by how well each agrees with the network."""
    B, Q = var.shape
    lo, hi = lo.double(), hi.double()
    width = (hi - lo).clamp_min(1e-9)
    m0, s0, noise = network_prior(surrogate, batch, tokens, var, lo, hi, memo)           # B x Q x G, ..., B x Q
    V = B * Q
    flat = lambda t: t.reshape(V, *t.shape[2:])
    m0, s0, noise = flat(m0), flat(s0), flat(noise)
    p = flat(marginals.gather(1, var).double())                                           # V: P(j in pa(Y))
    # the observations, read by local-linear regression at L points (pseudo-measurements)
    ua = (torch.arange(OBS_POINTS, dtype=torch.float64, device=var.device) + 0.5) / OBS_POINTS
    uo = ua[None].expand(V, OBS_POINTS)
    est, var_o, est_a, var_a, spread = _observed(batch, marginals, var, flat(lo), flat(width), ua, memo)
    found = var_o < FAR
    # the two readings (adjusting is right for a confounder, wrong for a mediator), moment-matched
    # in proportion to how well each agrees with the network's prior, which read the same data
    two = lambda t: torch.cat([t, t])                                                     # both readings in one solve
    lml = _evidence(torch.cat([est_a, est]), torch.cat([var_a, var_o]), two(found), two(p), two(uo), two(m0), two(s0))
    w = torch.sigmoid(lml[:V] - lml[V:])[:, None]                                          # V x 1: P(adjusted)
    var_o = torch.where(found, w * var_a + (1 - w) * var_o + w * (1 - w) * (est_a - est) ** 2, var_o)
    est = w * est_a + (1 - w) * est
    # the noise of a measurement: Y's spread about E[Y | X_j = x] in the observations (what the
    # other causes add when X_j is set, if j is an unconfounded cause), else the network's
    noise = torch.where(spread.isnan(), noise, spread).clamp_min(NOISE_FLOOR)
    return WorldPrior(m0, s0, noise, p, est, var_o, found, uo, flat(lo), flat(width))


@dataclass(frozen=True)
class WorldFit:
    """:func:`world_given`'s conditioning of R variable instances, kept to read the world model at
    other positions (:func:`world_at`): their indices into the prior's V (idx: R), the GP
    average's fit (R), how far the experiments lowered P(j in pa(Y)) (act: R, the weight of "X_j
    acts") and the variance of a measurement (noise: R, after the replicates)."""

    idx: torch.Tensor
    gp: GPFit
    act: torch.Tensor
    noise: torch.Tensor

    def select(self, pick: torch.Tensor) -> "WorldFit":
        """The instances ``pick`` (indices into R)."""
        return WorldFit(self.idx[pick], self.gp.select(pick), self.act[pick], self.noise[pick])


def _measured_first(prior: WorldPrior, idx: torch.Tensor, xm: torch.Tensor, mm: torch.Tensor, *per_row: torch.Tensor
                    ) -> tuple[torch.Tensor, ...]:
    """Rows (x, mask and any ``per_row`` values: R x M, standardised) with the measured ones first,
    their padding cut: (positions u in each domain, mask, *per_row), R x M' each."""
    M = max(1, int(mm.sum(1).max()))
    order = torch.sort(mm.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :M]
    u = ((xm - prior.lo[idx][:, None]) / prior.width[idx][:, None]).gather(1, order)
    return (u, mm.gather(1, order), *(t.gather(1, order) for t in per_row))


@torch.no_grad()
def world_given(prior: WorldPrior, idx: torch.Tensor, xm: torch.Tensor, ym: torch.Tensor, mm: torch.Tensor,
                us: torch.Tensor, shared: SetRows | None = None) -> tuple[WorldBelief, WorldFit]:
    """The world model of the variable instances ``idx`` (R indices into the prior's V)
    conditioned on the rows where X_j alone was set (xm, ym, mm: R x M, standardised values,
    padding masked; in arrival order) and on the rows that set it with others (``shared``, R
    instances, :func:`set_rows`: their y less the others' effects, their noise plus the others'
    variance), at positions us (R x K, fractions of each domain): a :class:`WorldBelief` with
    B = 1, Q = R, and the fit, which reads the mean at other positions. The replicates' noise and
    whether Y follows X_j at all (``parent``) read the rows that set X_j alone."""
    m0, s0, p, found, uo = prior.m0[idx], prior.s0[idx], prior.p[idx], prior.found[idx], prior.uo[idx]
    est, var_o = prior.est[idx], prior.var_o[idx]
    us = us.double()
    um, mm, ym = _measured_first(prior, idx, xm, mm, ym)                                  # R x M each
    noise = replicate_noise(um, ym, mm, prior.noise[idx]).clamp_min(NOISE_FLOOR)          # R: replicates show it
    alone, extra = mm, torch.zeros_like(um)
    if shared is not None:  # the set rows after the single ones, flagged apart
        us2, ms2, ys2, ex2 = _measured_first(prior, idx, shared.x, shared.mask, shared.y, shared.extra)
        um, ym, mm = torch.cat([um, us2], 1), torch.cat([ym, ys2], 1), torch.cat([mm, ms2], 1)
        alone, extra = torch.cat([alone, torch.zeros_like(ms2)], 1), torch.cat([extra, ex2], 1)

    def average(sel: torch.Tensor, u, y, measured, weight, at_u):
        """The GP average for the instances ``sel`` (indices into ``idx``) over their measurements
        (u, y where ``measured``: |sel| x M) and their pseudo-measurements, tempered by ``weight``."""
        keep = found[sel] & (weight[:, None] >= MIN_PARENT)
        pseudo = torch.where(keep, var_o[sel] / weight[:, None].clamp_min(MIN_PARENT), torch.ones_like(var_o[sel]))
        u_all = torch.cat([u, uo[sel]], 1)
        noise_m = noise[sel, None].expand_as(u) if shared is None else noise[sel, None] + extra[sel]
        noise_all = torch.cat([noise_m, pseudo], 1)
        observed = torch.cat([torch.zeros_like(measured), torch.ones_like(keep)], 1)
        res = torch.cat([y, est[sel]], 1) - interpolate(m0[sel], u_all)
        return gp_average(u_all, res, noise_all, observed, torch.cat([measured, keep], 1), interpolate(s0[sel], u_all),
                          at_u, interpolate(s0[sel], at_u), noise[sel])

    # in one batched solve: the world model for every instance, and for those with measurements
    # the marginal likelihood with and without them (the Bayes factor below)
    every = torch.arange(len(idx), device=idx.device)
    hit = alone.any(1).nonzero().flatten()
    H = len(hit)
    sel = torch.cat([hit, hit, every])
    measured = torch.cat([alone[hit], torch.zeros_like(mm[hit]), mm])
    res, var_effect, _, lml, gp = average(sel, um[sel], ym[sel], measured, p[sel], us[sel])
    res, var_effect, gp = res[2 * H:], var_effect[2 * H:], gp.select(every + 2 * H)
    parent, lowered = p.clone(), torch.ones_like(p)
    if H:  # did Y follow X_j as the observations and the network say, or not at all?
        parent[hit] = no_effect_update(p[hit], lml[:H] - lml[H:2 * H], null_log_likelihood(ym[hit], alone[hit]))
        lowered[hit] = (parent[hit] / p[hit].clamp(1e-6, 1)).clamp_max(1.0)
    mean, var_f, var_y = _acts_or_not(lowered, interpolate(m0, us) + res, var_effect, noise)
    return WorldBelief(mean[None], var_f[None], var_y[None], parent[None]), WorldFit(idx, gp, lowered, noise)


def _acts_or_not(act: torch.Tensor, effect: torch.Tensor, var_effect: torch.Tensor, noise: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The world model (mean, var_f, var_y: R x K) as the mixture of "X_j acts as the network and
    the observations say" (that GP conditioned on everything: effect, var_effect, R x K; a
    measurement's noise, R) and "X_j does nothing" (E[Y | do] = Y's observational mean, 0; a
    measurement a draw of Y, variance 1), weighted by how far the experiments lowered
    P(j in pa(Y)) (act, R), moment-matched."""
    act = act[:, None]                                                                    # R x 1
    mean = act * effect
    var_f = (act * (var_effect + effect ** 2) - mean ** 2).clamp_min(1e-12)
    return mean, var_f, var_f + act * noise[:, None] + (1 - act)


@torch.no_grad()
def world_at(prior: WorldPrior, fit: WorldFit, us: torch.Tensor) -> WorldBelief:
    """The world model of the fitted instances (R) at positions us (R x K): :func:`world_given`'s
    answer there, from its fit (no rows solved again); a :class:`WorldBelief` with B = 1, Q = R
    (``parent``: NaN, which the fit does not keep)."""
    us = us.double()
    res, var_effect = gp_predict(fit.gp, us, interpolate(prior.s0[fit.idx], us))
    mean, var_f, var_y = _acts_or_not(fit.act, interpolate(prior.m0[fit.idx], us) + res, var_effect, fit.noise)
    return WorldBelief(mean[None], var_f[None], var_y[None], torch.full_like(fit.act, float("nan"))[None])


def measurements(batch: PaddedBatch, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows where exactly X_var was set, flat over V = B x Q: (x, y, mask), V x M each
    (standardised values, rows in arrival order, padding masked): what :func:`world_given` reads."""
    return tuple(t.reshape(-1, t.shape[2]) for t in _measurements(batch, var))


@dataclass(frozen=True)
class SetRows:
    """The rows where X_j was set together with other variables, as evidence about X_j's own
    effect, flat over V variable instances (V x S each, padding masked): X_j's value (x,
    standardised), Y less the other members' effects (y: what the additive model of a set,
    E[Y | do(X_S = x)] = sum of the members' E[Y | do(X_j = x_j)], leaves to X_j), the other
    members' variance of E[Y | do] there (extra, added to a measurement's noise) and the mask."""

    x: torch.Tensor
    y: torch.Tensor
    extra: torch.Tensor
    mask: torch.Tensor

    def select(self, pick: torch.Tensor) -> "SetRows":
        """The instances ``pick`` (indices into V)."""
        return SetRows(self.x[pick], self.y[pick], self.extra[pick], self.mask[pick])

    @staticmethod
    def joined(a: "SetRows | None", b: "SetRows | None") -> "SetRows | None":
        """The rows of both (the same V instances; ``b``'s after ``a``'s), or the one that is not None."""
        if a is None or b is None:
            return b if a is None else a
        return SetRows(*(torch.cat([x, y], 1) for x, y in zip((a.x, a.y, a.extra, a.mask), (b.x, b.y, b.extra, b.mask))))


@torch.no_grad()
def set_rows(prior: WorldPrior, fit: WorldFit, batch: PaddedBatch, var: torch.Tensor, since: int = 0
             ) -> SetRows | None:
    """The rows of the batch (standardised) that set several variables, read as evidence about each
    member's own effect (:class:`SetRows`) for the instances var (B x Q, flat V = B x Q in
    ``prior``), with the other members' effects those of ``fit`` (every V in order) at the values
    they were set to: for the measured rows themselves, the instances conditioned on the rows that
    set them alone (:func:`world_measured`), so that no row explains itself; for a batch's believed
    rows, the measured rows' whole fit. Only the rows from index ``since`` on. A row that sets a variable outside the campaign's
    ``var`` is left out (its other members' effects are unknown here); None where no row is left."""
    B, N, D = batch.values.shape
    Q = var.shape[1]
    iv = batch.intervened & batch.row_mask[..., None]
    several = (iv.sum(2) >= 2) & ~(iv & batch.target[:, None]).any(2)                      # B x N
    several &= torch.arange(N, device=several.device)[None] >= since
    if not bool(several.any()):
        return None
    rows = rows_in_order(several)                                                          # B x S
    S = rows.shape[1]
    real = several.gather(1, rows)                                                         # B x S
    x = batch.values.double().clamp(-INPUT_CLAMP, INPUT_CLAMP).gather(1, rows[..., None].expand(B, S, D))
    y = (x * batch.target.double()[:, None, :]).sum(2)                                     # B x S
    setv = iv.gather(1, rows[..., None].expand(B, S, D)) & real[..., None]                 # B x S x D
    earlier = torch.ones(Q, Q, dtype=torch.bool, device=var.device).tril(-1)
    first = ~((var[:, :, None] == var[:, None, :]) & earlier).any(2)                      # B x Q: padding repeats a variable
    member = setv.gather(2, var[:, None, :].expand(B, S, Q)) & first[:, None, :]           # B x S x Q
    member = member & (member.sum(2) == setv.sum(2))[..., None]                            # rows whose members are all read
    if not bool(member.any()):
        return None
    xq = x.gather(2, var[:, None, :].expand(B, S, Q)).transpose(1, 2).reshape(B * Q, S)    # V x S
    u = (xq - prior.lo[:, None]) / prior.width[:, None]
    w = world_at(prior, fit, u)                                                            # 1 x V x S
    m = member.transpose(1, 2).reshape(B * Q, S).to(torch.float64)                        # V x S
    mean, var_f = ((t[0] * m).reshape(B, Q, S) for t in (w.mean, w.var_f))
    total_mean, total_var = mean.sum(1, keepdim=True), var_f.sum(1, keepdim=True)          # B x 1 x S
    flat = lambda t: t.reshape(B * Q, S)
    others_mean, others_var = flat(total_mean - mean), flat(total_var - var_f)
    y_own = y[:, None, :].expand(B, Q, S).reshape(B * Q, S) - others_mean
    return SetRows(xq, y_own, others_var, m.bool())


@torch.no_grad()
def world_measured(prior: WorldPrior, batch: PaddedBatch, var: torch.Tensor, us: torch.Tensor
                   ) -> tuple[WorldBelief, WorldFit, SetRows | None]:
    """The instances var (B x Q, every V of ``prior``) conditioned on the batch's measurements at
    positions us (V x K): on the rows that set X_j alone (:func:`world_given`) and, where rows set
    several variables, on those too, each member's with the others' effects taken out
    (:func:`set_rows`, read off the first conditioning). Returns the belief (B = 1, Q = V), the fit
    and the set rows used (None where there are none)."""
    every = torch.arange(prior.m0.shape[0], device=var.device)
    xm, ym, mm = measurements(batch, var)
    w, fit = world_given(prior, every, xm, ym, mm, us)
    shared = set_rows(prior, fit, batch, var)
    if shared is not None:
        w, fit = world_given(prior, every, xm, ym, mm, us, shared)
    return w, fit, shared


@torch.no_grad()
def conditioned_world(surrogate: Surrogate, batch: PaddedBatch, tokens: torch.Tensor, marginals: torch.Tensor,
                      var: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, u_star: torch.Tensor,
                      memo: ContextMemo | None = None) -> WorldBelief:
    """The world model for do(X_var = x) at positions u_star (B x Q x K, fractions of each domain;
    beyond [0, 1] the network's prior is held flat at its end value), given the batch
    (standardised), the surrogate's tokens (B x D x C) and marginals (B x D), var (B x Q) and the
    domains lo, hi (B x Q, in X_var's standardised units): :func:`world_prior` conditioned on the
    measurements (:func:`world_given`)."""
    B, Q, K = u_star.shape
    prior = world_prior(surrogate, batch, tokens, marginals, var, lo, hi, memo)
    w, _, _ = world_measured(prior, batch, var, u_star.reshape(B * Q, K))
    shape = (B, Q, K)
    return WorldBelief(w.mean.reshape(shape), w.var_f.reshape(shape), w.var_y.reshape(shape), w.parent.reshape(B, Q))
