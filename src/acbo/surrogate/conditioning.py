"""Conditioning a prior for E[Y | do(X_j = x)] on the data of the problem at hand: the maths.

The learned network (:meth:`acbo.surrogate.Surrogate.query`) reads everything in a buffer and
returns, per settable variable j, a *prior* for f_j(u) = E[Y | do(X_j = x)] over j's domain
(u = (x - low) / (high - low) in [0, 1]): a mean m0(u), a std s0(u) and the variance of a
measurement around f_j. It cannot be trusted to follow the measurements (it was trained to
predict, not to condition), so the world model updates that prior in closed form, as a Bayesian
model does (:mod:`acbo.surrogate.world` applies it):

- **Measurements.** Rows where X_j alone was set are draws f_j(u_i) + noise.
- **Observations, read nonparametrically.** A local-linear regression of Y on X_j over the
  observational rows (:func:`local_linear`, at the bandwidth leave-one-out cross-validation picks
  among several, :func:`cv_bandwidth`) estimates E[Y | X_j = x], which is E[Y | do(X_j = x)]
  when j is an unconfounded cause of Y. A second reading first removes the linear effect of the
  other variables believed to be parents of Y (:func:`adjusted`): right when they confound X_j
  and Y, wrong when they mediate X_j's effect, so the two are averaged by how well each agrees
  with the network's prior. The estimates enter as pseudo-measurements whose variance
  is their sampling error (from the local residual spread and the effective sample size),
  inflated for the overlap of neighbouring windows and divided by the belief that j is a parent
  (tempering: P -> 0 ignores them). What confounding may still add is a smooth offset b(u) shared
  by them, a GP of amplitude tau (:data:`BIAS_SDS`), so that measurements can move the whole curve.
- **A Gaussian process per hyperparameter setting.** Prior covariance
  k(u, u') = A(u) A(u') exp(-(u - u')^2 / (2 l^2)) with A(u)^2 = s0(u)^2 + beta^2: the network's
  uncertainty plus a discrepancy beta that lets the data overrule the network where it is wrong.
  Over a grid of length scales l, discrepancies beta and bias amplitudes tau, each setting is
  conditioned exactly (one Cholesky solve of the rows of j) and weighted by its prior weight times
  its marginal likelihood (:func:`gp_average`). The result is moment-matched to one Gaussian per
  point, so a measurement's predictive (the same Gaussian plus the noise) is never narrower than
  the expectation's.
- **Experiments that show no effect.** Under "j is not a cause of Y" a measurement after setting
  X_j is a draw of Y's observational distribution (N(0, 1) in Y's standard units); under "X_j
  acts as the network and the observations say" it follows the GP above, given the
  observational estimates. Their Bayes factor lowers P(j in pa(Y)) (:func:`no_effect_update`),
  never raises it (Y responding to X_j is also what a non-parent ancestor does), and the world
  model becomes the mixture of that GP and a flat response at Y's observational mean, the GP
  weighted by the ratio by which P(j in pa(Y)) fell.
- **The noise of a measurement** is Y's spread about the local-linear fit in the observations
  (what the other causes add when X_j is set, for an unconfounded cause), else the network's;
  replicated measurements update it (:func:`replicate_noise`).

Everything is batched over V variable instances (campaigns x variables) in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch

from acbo.buffer import rows_in_order

LENGTHSCALES = (0.06, 0.2, 0.7)
"""GP length scales (fractions of the variable's domain) averaged over."""
DISCREPANCIES = (0.05, 0.3, 1.0)
"""beta: how far (Y's standard units) the data may take f_j from the network's mean beyond its own std."""
DISCREPANCY_PRIOR = (0.5, 0.3, 0.2)
"""Prior weights of :data:`DISCREPANCIES`."""
BIAS_SDS = (0.15, 2.0)
"""tau: how far (Y's standard units) the observations' estimates of E[Y | X_j = x] may sit from
E[Y | do(X_j = x)] (confounding), a smooth offset over the domain."""
BIAS_PRIOR = (0.5, 0.5)
"""Prior weights of :data:`BIAS_SDS`."""
BIAS_LENGTHSCALE = 0.5
"""Length scale (fraction of the domain) of that offset."""
NOISE_PRIOR_ROWS = 2.0
"""How many replicated rows' worth the prior noise variance counts for (:func:`replicate_noise`)."""
NOISE_FLOOR = 1e-4
"""Smallest measurement-noise variance (Y's standard units squared): a network's noiseless belief
must not make a measurement an exact constraint."""
OBS_POINTS = 12
"""Points over the domain where the observational regression is read."""
MIN_PARENT = 0.02
"""Belief below which the observational estimates are dropped (their variance would be > 50 x)."""
ADJUST_BELIEF = 0.5
"""The observations' estimates for X_j are adjusted for the other variables believed (at least
this probable) to be parents of Y (:func:`adjusted`)."""
OBS_BANDWIDTHS = (0.5, 1.0, 2.0)
"""Candidate bandwidths of the observational regression, multiples of :func:`bandwidth`'s;
leave-one-out cross-validation picks one per variable (:func:`cv_bandwidth`)."""
FAR = 1e6
"""Variance that marks a pseudo-measurement as absent."""
OBS_FLOOR = 1e-10
"""Smallest variance of an observational estimate (an exactly linear or constant Y gives 0)."""


def interpolate(values: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of values on G evenly spaced points of [0, 1] (V x G) at u (V x M),
    flat beyond the ends."""
    V, G = values.shape
    pos = (u.clamp(0, 1) * (G - 1))                                                     # V x M, fractional index
    k0 = pos.floor().long().clamp(0, G - 2) if G > 1 else torch.zeros_like(pos, dtype=torch.long)
    w = (pos - k0).to(values.dtype)
    if G == 1:
        return values.expand(V, u.shape[1])
    return (1 - w) * values.gather(1, k0) + w * values.gather(1, k0 + 1)


def local_linear(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, at: torch.Tensor, h: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local-linear regression of y on x with a Gaussian kernel of bandwidth h.

    x, y, mask: V x N (mask: rows used), at: V x L, h: V. Returns (estimate, variance, spread),
    V x L each: the local intercept at each point, its sampling variance sigma^2 sum_i l_i^2 (l:
    the equivalent kernel), and sigma^2, the kernel-weighted residual variance about the local
    line corrected for the two fitted parameters by the effective sample size. Where fewer than
    three effective rows support a point: estimate 0, variance :data:`FAR`, spread 0."""
    dx = x[:, None, :] - at[..., None]                                                  # V x L x N
    w = torch.exp(-0.5 * (dx / h[:, None, None]) ** 2) * mask[:, None, :].to(x.dtype)
    s0, s1, s2 = w.sum(2), (w * dx).sum(2), (w * dx * dx).sum(2)                        # V x L each
    det = s0 * s2 - s1 * s1
    ok = det > 1e-12 * (s0 * s0).clamp_min(1e-300)
    det = torch.where(ok, det, torch.ones_like(det))
    l = w * (s2[..., None] - dx * s1[..., None]) / det[..., None]                      # V x L x N: equivalent kernel
    est = (l * y[:, None, :]).sum(2)
    slope = (w * (s0[..., None] * dx - s1[..., None]) * y[:, None, :]).sum(2) / det
    resid = y[:, None, :] - est[..., None] - slope[..., None] * dx
    n_eff = s0 * s0 / (w * w).sum(2).clamp_min(1e-300)                                  # V x L
    sigma2 = (w * resid * resid).sum(2) / s0.clamp_min(1e-300) * n_eff / (n_eff - 2).clamp_min(1e-3)
    var = sigma2 * (l * l).sum(2)
    good = ok & (n_eff >= 3)
    return (torch.where(good, est, torch.zeros_like(est)), torch.where(good, var, torch.full_like(var, FAR)),
            torch.where(good, sigma2, torch.zeros_like(sigma2)))


def adjusted(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, mask: torch.Tensor, basis: int = 8,
             ridge: float = 1e-3) -> torch.Tensor:
    """y with the linear effect of covariates z removed, by a partially linear fit
    y ~ g(x) + z gamma (g: an intercept, a slope and ``basis`` Gaussian bumps evenly spaced over
    x's range, as wide as their spacing; z centred). x, y, mask: V x N, z: V x N x A (A >= 0;
    a column of zeros adjusts for nothing). Returns y - (z - mean z) gamma, V x N: read against
    x, it estimates E_z[E[Y | x, z]], which is E[Y | do(x)] when z blocks every back-door path
    from x to Y and holds no descendant of x (the back-door criterion), and its effect is linear.
    ``ridge`` (times the rows' count) keeps the solve well posed for collinear columns; the
    intercept is not penalised."""
    V, N, A = z.shape
    m = mask.to(y.dtype)
    n = m.sum(1).clamp_min(1)                                                           # V
    zc = (z - (z * m[..., None]).sum(1, keepdim=True) / n[:, None, None]) * m[..., None]  # V x N x A
    big = torch.finfo(x.dtype).max
    lo = torch.where(mask, x, torch.full_like(x, big)).amin(1)
    hi = torch.where(mask, x, torch.full_like(x, -big)).amax(1)
    span = (hi - lo).clamp_min(1e-9)                                                    # V
    centres = lo[:, None] + span[:, None] * torch.linspace(0, 1, basis, dtype=x.dtype, device=x.device)  # V x K
    width = span / max(1, basis - 1)
    bumps = torch.exp(-0.5 * ((x[..., None] - centres[:, None, :]) / width[:, None, None]) ** 2)  # V x N x K
    phi = torch.cat([torch.ones_like(x)[..., None], ((x - lo[:, None]) / span[:, None])[..., None], bumps, zc], 2)
    phi = phi * m[..., None]                                                            # V x N x P
    P = phi.shape[2]
    pen = torch.full((P,), ridge, dtype=y.dtype, device=y.device)
    pen[0] = 0.0
    gram = phi.transpose(1, 2) @ phi + torch.diag(pen)[None] * n[:, None, None]         # V x P x P
    beta = torch.linalg.solve(gram + 1e-9 * torch.eye(P, dtype=y.dtype, device=y.device), phi.transpose(1, 2) @ (y * m)[..., None])
    gamma = beta[:, P - A:, 0]                                                          # V x A
    return y - (zc * gamma[:, None, :]).sum(2)


def _spread(mask: torch.Tensor, k: int) -> torch.Tensor:
    """V x S indices of at most k of the rows where ``mask`` (V x N) holds, evenly spread over
    them in their order (all of them when there are at most k); S the most of any row, the
    shorter filled with rows outside the mask."""
    rank = mask.cumsum(1) - 1                                                           # V x N: among the rows used
    n = mask.sum(1, keepdim=True).clamp_min(1)
    return rows_in_order(mask & ((rank * k) // n != ((rank - 1) * k) // n))


def cv_bandwidth(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, scale: tuple[float, ...] = OBS_BANDWIDTHS,
                 points: int = 64, fit_rows: int = 256) -> torch.Tensor:
    """Which multiple of :func:`bandwidth` (``scale``) gives the local-linear fit of y on x the least
    leave-one-out error, per row of x (V x N, with y and mask). The fit at row i uses all the
    rows and is corrected by the weight it gives row i itself, (y_i - yhat_i) / (1 - l_ii);
    ``points`` rows are scored, the fits use at most ``fit_rows`` rows (both spread evenly over
    the rows in their order; the bandwidth follows their count, n^(-1/5)), so that the choice
    costs V x points x fit_rows whatever n. Returns V indices into ``scale``."""
    V, N = x.shape
    keep = _spread(mask, fit_rows)                                                      # V x F
    x, y, mask = x.gather(1, keep), y.gather(1, keep), mask.gather(1, keep)
    at_rows = _spread(mask, points)                                                     # V x S, among those
    xs, ys, ms = x.gather(1, at_rows), y.gather(1, at_rows), mask.gather(1, at_rows)
    h0 = bandwidth(torch.ones(V, dtype=x.dtype, device=x.device), mask.sum(1))          # V
    dx = x[:, None, :] - xs[..., None]                                                  # V x S x F
    dx2 = dx * dx
    m = mask[:, None, :].to(x.dtype)
    score = []
    for k in scale:  # a handful of candidates: one local-linear pass each
        w = torch.exp(-0.5 * dx2 / (k * h0[:, None, None]) ** 2) * m
        s0, s1, s2 = w.sum(2), (w * dx).sum(2), (w * dx2).sum(2)
        det = (s0 * s2 - s1 * s1).clamp_min(1e-300)
        fit = (w * (s2[..., None] - dx * s1[..., None]) * y[:, None, :]).sum(2) / det
        self_weight = s2 / det                                                          # l_ii: the row's own weight (dx = 0, w = 1)
        loo = (ys - fit) / (1 - self_weight).clamp_min(0.05)
        score.append(torch.where(ms, loo * loo, torch.zeros_like(loo)).sum(1))
    return torch.stack(score, 1).argmin(1)


def bandwidth(std_x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """A local bandwidth of 0.7 sd n^(-1/5), two thirds of the normal-reference rule's 1.06 sd
    n^(-1/5): the GP smooths further, it cannot unsmooth."""
    return 0.7 * std_x * n.clamp_min(2).to(std_x.dtype) ** -0.2


def overlap(at: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """How many neighbouring windows share each point's rows: sum over points l' of
    exp(-(a_l - a_l')^2 / (4 h^2)) (the overlap of two Gaussian windows; 1 for isolated points).
    at: V x L, h: V. The variances of the estimates are multiplied by it, so that L correlated
    estimates do not count as L independent ones."""
    d = at[:, :, None] - at[:, None, :]
    return torch.exp(-d * d / (4 * h[:, None, None] ** 2)).sum(2)


@functools.lru_cache(maxsize=None)
def components(dtype=torch.float64, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hyperparameter grid, C settings with the length scale slowest, then beta, then tau:
    (length scale, beta, tau, log prior weight), each C (made once per dtype and device: do not
    write to them)."""
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, whichever mode first asks
        t = lambda v: torch.tensor(v, dtype=dtype, device=device)
        ls, beta, tau = torch.meshgrid(t(LENGTHSCALES), t(DISCREPANCIES), t(BIAS_SDS), indexing="ij")
        w = t(DISCREPANCY_PRIOR)[:, None] * t(BIAS_PRIOR)[None, :]
        logw = torch.log(w / len(LENGTHSCALES))[None].expand(len(LENGTHSCALES), -1, -1)
        return ls.reshape(-1), beta.reshape(-1), tau.reshape(-1), logw.reshape(-1)


@dataclass(frozen=True)
class GPFit:
    """The rows of V variable instances conditioned on, for every hyperparameter setting of
    :func:`components` (:func:`gp_components`): their positions u (V x M), amplitudes A (V x b x M,
    0 for padding), Cholesky factors L of their covariance (V x C x M x M), L^-1 r (a: V x C x M x 1),
    the log marginal likelihood of the rows (logml: V x C) and, after :func:`gp_average`, each
    setting's posterior weight (weights: V x C; None before)."""

    u: torch.Tensor
    A: torch.Tensor
    L: torch.Tensor
    a: torch.Tensor
    logml: torch.Tensor
    weights: torch.Tensor | None = None

    def select(self, i: torch.Tensor) -> "GPFit":
        """The instances ``i`` (indices into V)."""
        return GPFit(self.u[i], self.A[i], self.L[i], self.a[i], self.logml[i],
                     None if self.weights is None else self.weights[i])


@functools.lru_cache(maxsize=None)
def _grid(dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(length scales 1 x l x 1 x 1, discrepancies squared 1 x b x 1, bias variances t), shaped as
    the covariances of :func:`gp_components` broadcast them (made once per dtype and device)."""
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, whichever mode first asks
        ls = torch.tensor(LENGTHSCALES, dtype=dtype, device=device)[None, :, None, None]
        beta2 = torch.tensor(DISCREPANCIES, dtype=dtype, device=device)[None, :, None] ** 2
        tau2 = torch.tensor(BIAS_SDS, dtype=dtype, device=device) ** 2
    return ls, beta2, tau2


def _row_covariance(u: torch.Tensor, noise: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor, amp: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, K): the rows' amplitudes (V x b x M, 0 for padding) and covariance for every
    hyperparameter setting (V x C x M x M); see :func:`gp_components`."""
    V, M = u.shape
    C = len(LENGTHSCALES) * len(DISCREPANCIES) * len(BIAS_SDS)
    ls, beta2, tau2 = _grid(u.dtype, u.device)
    m = mask.to(u.dtype)
    d = u[:, :, None] - u[:, None, :]                                                   # V x M x M
    rho_mm = torch.exp(-0.5 * (d[:, None] / ls) ** 2)                                   # V x l x M x M
    A = (amp[:, None, :] ** 2 + beta2).sqrt() * m[:, None, :]                           # V x b x M (padding: 0)
    cov_mm = A[:, None, :, :, None] * A[:, None, :, None, :] * rho_mm[:, :, None]       # V x l x b x M x M
    o = (observed & mask).to(u.dtype)
    bias = torch.exp(-0.5 * (d / BIAS_LENGTHSCALE) ** 2) * o[:, :, None] * o[:, None, :]  # V x M x M
    sig = torch.where(mask, noise, torch.ones_like(noise))                              # V x M
    Kmm = (cov_mm[:, :, :, None] + tau2[:, None, None] * bias[:, None, None, None]
           + torch.diag_embed(sig)[:, None, None, None])                               # V x l x b x t x M x M
    return A, Kmm.reshape(V, C, M, M)


def _cross_covariance(u: torch.Tensor, A: torch.Tensor, u_star: torch.Tensor, amp_star: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(K_ms, prior): the covariance of the rows (u, amplitudes A: V x b x M) with f at u_star
    (V x C x M x K) and f's prior variance there (V x C x K), for every hyperparameter setting."""
    V, M = u.shape
    K = u_star.shape[1]
    n_l, n_b, n_t = len(LENGTHSCALES), len(DISCREPANCIES), len(BIAS_SDS)
    ls, beta2, _ = _grid(u.dtype, u.device)
    rho_ms = torch.exp(-0.5 * ((u[:, None, :, None] - u_star[:, None, None, :]) / ls) ** 2)    # V x l x M x K
    A_s = (amp_star[:, None, :] ** 2 + beta2).sqrt()                                    # V x b x K
    cov_ms = A[:, None, :, :, None] * A_s[:, None, :, None, :] * rho_ms[:, :, None]     # V x l x b x M x K
    prior = (A_s ** 2)[:, None, :, None, :].expand(V, n_l, n_b, n_t, K).reshape(V, n_l * n_b * n_t, K)
    return cov_ms[:, :, :, None].expand(V, n_l, n_b, n_t, M, K).reshape(V, n_l * n_b * n_t, M, K), prior


def gp_components(u: torch.Tensor, r: torch.Tensor, noise: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor,
                  amp: torch.Tensor, u_star: torch.Tensor, amp_star: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, GPFit]:
    """Exact GP conditioning for every hyperparameter setting of :func:`components`.

    u, r, noise, observed, mask, amp: V x M — the rows' positions, residuals (value - prior mean),
    noise variances, which are observational estimates (they share the offset of amplitude tau),
    which are real, and the network's prior std s0 there; u_star, amp_star: V x K. Returns the
    posterior mean residual and variance of f at u_star (V x C x K each) and the fit (its
    ``logml``: the log marginal likelihood of the rows, V x C; :func:`gp_average` adds the
    settings' weights, after which :func:`gp_predict` reads it at other points). Padding rows
    are decoupled unit-variance rows with residual 0: they change nothing."""
    V, M = u.shape
    m = mask.to(u.dtype)
    A, Kmm = _row_covariance(u, noise, observed, mask, amp)
    L = _cholesky(Kmm)                                                                  # V x C x M x M
    C = L.shape[1]
    cov_ms, prior = _cross_covariance(u, A, u_star, amp_star)                           # V x C x M x K, V x C x K
    rhs = torch.cat([(r * m)[:, None, :, None].expand(V, C, M, 1), cov_ms], -1)         # V x C x M x (1 + K)
    w = torch.linalg.solve_triangular(L, rhs, upper=False)
    a, v = w[..., :1], w[..., 1:]                                                       # L^-1 r, L^-1 K_ms
    mean = (v * a).sum(-2)                                                              # V x C x K
    var = (prior - (v * v).sum(-2)).clamp_min(1e-12)
    logdet = 2 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)                        # V x C
    n = m.sum(1)[:, None]
    logml = -0.5 * (a * a).sum((-2, -1)) - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)
    return mean, var, GPFit(u, A, L, a, logml)


def gp_predict(fit: GPFit, u_star: torch.Tensor, amp_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior mean residual and variance of f at u_star (V x K each; amp_star: the
    network's prior std there), moment-matched over the hyperparameter settings by the fit's
    weights (:func:`gp_average`): what :func:`gp_average` gives at those points, without solving
    the rows again."""
    if fit.weights is None:
        raise ValueError("gp_predict reads a fit with the settings' weights: the one gp_average returns")
    cov_ms, prior = _cross_covariance(fit.u, fit.A, u_star, amp_star)                  # V x C x M x K, V x C x K
    v = torch.linalg.solve_triangular(fit.L, cov_ms, upper=False)                       # L^-1 K_ms
    mean_c = (v * fit.a).sum(-2)                                                        # V x C x K
    var_c = (prior - (v * v).sum(-2)).clamp_min(1e-12)
    return _moment_matched(fit.weights[..., None], mean_c, var_c)


def _moment_matched(w: torch.Tensor, mean_c: torch.Tensor, var_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and variance (V x K each) of the mixture of the settings' Gaussians (mean_c,
    var_c: V x C x K) with weights w (V x C x 1)."""
    mean = (w * mean_c).sum(1)
    second = (w * (var_c + mean_c ** 2)).sum(1)
    return mean, (second - mean ** 2).clamp_min(1e-12)


def _cholesky(K: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of a batch of covariance matrices (... x M x M); a matrix that does not
    factor in floating point (near-exact rows at long length scales) is retried with a jitter of
    1e-8, then 1e-6 times its largest diagonal entry on the diagonal."""
    L, info = torch.linalg.cholesky_ex(K)
    for rel in (1e-8, 1e-6):
        bad = info > 0
        if not bool(bad.any()):
            break
        scale = K.diagonal(dim1=-2, dim2=-1).amax(-1, keepdim=True).clamp_min(1e-12)   # ... x 1
        jittered = K + torch.diag_embed((rel * scale).expand(K.shape[:-1]))
        L2, info2 = torch.linalg.cholesky_ex(jittered)
        L = torch.where(bad[..., None, None], L2, L)
        info = torch.where(bad, info2, info)
    if bool((info > 0).any()):
        raise ValueError("the world model's covariance does not factor even with jitter: the data hold rows that "
                         "contradict each other exactly")
    return L


def gp_average(u, r, noise, observed, mask, amp, u_star, amp_star, noise_star: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, GPFit]:
    """The Bayesian average of :func:`gp_components` over the hyperparameter grid, moment-matched:
    (mean residual, variance of f, variance of a measurement, log marginal likelihood of the rows
    averaged over the grid; V x K, V x K, V x K, V) and the fit with each setting's posterior
    weight (:func:`gp_predict` reads the mean and variance at other points). ``noise_star``: V, the
    variance of a measurement around f."""
    mean_c, var_c, fit = gp_components(u, r, noise, observed, mask, amp, u_star, amp_star)
    logw = components(u.dtype, u.device)[3]
    post = fit.logml + logw[None]                                                       # V x C
    lml = torch.logsumexp(post, dim=1)                                                  # V
    w = torch.softmax(post, dim=1)[..., None]                                           # V x C x 1
    mean, var_f = _moment_matched(w, mean_c, var_c)
    return mean, var_f, var_f + noise_star[:, None], lml, replace(fit, weights=w[..., 0])


def replicate_noise(u: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """The measurement-noise variance after the replicates (V): rows set to the same value (u,
    y, mask: V x M) show the noise directly. The prior variance (V, the network's) counts as
    :data:`NOISE_PRIOR_ROWS` rows' worth; each group of r replicates adds r - 1 degrees of freedom
    and its sum of squares about its mean (the mean of an inverse-gamma posterior, to first order)."""
    m = mask.to(y.dtype)
    same = ((u[:, :, None] - u[:, None, :]).abs() < 1e-9).to(y.dtype) * m[:, :, None] * m[:, None, :]  # V x M x M
    size = same.sum(2).clamp_min(1)                                                       # V x M
    group_mean = (same * y[:, None, :]).sum(2) / size
    ss = (m * (y - group_mean) ** 2).sum(1)                                               # V
    df = (m * (1 - 1 / size)).sum(1)
    return (NOISE_PRIOR_ROWS * prior + ss) / (NOISE_PRIOR_ROWS + df)


def null_log_likelihood(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log-likelihood (V) of the rows y (V x M) under "no effect": each a draw of Y's observational
    distribution, N(0, 1) in Y's standard units."""
    z = y * mask.to(y.dtype)
    return (-0.5 * z * z - 0.5 * math.log(2 * math.pi) * mask.to(y.dtype)).sum(1)


def no_effect_update(p: torch.Tensor, log_effect: torch.Tensor, log_null: torch.Tensor) -> torch.Tensor:
    """P(j in pa(Y)) after experiments on X_j: p (V) times min(1, Bayes factor of an effect over no
    effect), renormalised against 1 - p. Never raised: an effect is also what a non-parent ancestor
    shows, so only its absence is evidence about parenthood here."""
    log_bf = (log_effect - log_null).clamp_max(0.0)
    p = p.clamp(1e-6, 1 - 1e-6).to(log_bf.dtype)
    return torch.sigmoid(torch.logit(p) + log_bf)


def set_residual(u: torch.Tensor, r: torch.Tensor, amp: torch.Tensor, noise: float, u_star: torch.Tensor,
                 amp_star: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A GP over the positions of several variables set together, on what the rows where exactly
    that set was set say beyond a prior: the posterior mean residual and variance of f at u_star
    (Q each), averaged over a grid of :data:`LENGTHSCALES` (one isotropic length scale in
    fractions of each domain) and :data:`DISCREPANCIES` (how far the prior may be wrong, beyond
    its own std; prior weights :data:`DISCREPANCY_PRIOR`) by the rows' marginal likelihood,
    moment-matched, as the single-variable world model does.

    u: M x k positions, r: M residuals (value - prior mean), amp: M prior stds there, noise: the
    variance of a measurement about f; u_star: Q x k, amp_star: Q. The covariance is
    A(a) A(b) exp(-|a - b|^2 / (2 l^2)) with A = sqrt(amp^2 + beta^2)."""
    M, Q = u.shape[0], u_star.shape[0]
    if M == 0:  # the prior: its own std and the discrepancy it may have, by their prior weights
        beta2 = (torch.tensor(DISCREPANCY_PRIOR, dtype=u_star.dtype) * torch.tensor(DISCREPANCIES, dtype=u_star.dtype) ** 2).sum()
        return torch.zeros(Q, dtype=u_star.dtype), amp_star ** 2 + beta2
    dt = u.dtype
    ls = torch.tensor(LENGTHSCALES, dtype=dt)[:, None, None, None]                                  # l x 1 x 1 x 1
    beta2 = torch.tensor(DISCREPANCIES, dtype=dt)[None, :, None] ** 2                                # 1 x b x 1
    A, A_s = (amp[None, None] ** 2 + beta2).sqrt(), (amp_star[None, None] ** 2 + beta2).sqrt()      # 1 x b x M, 1 x b x Q
    d_mm = ((u[:, None] - u[None]) ** 2).sum(-1)                                                     # M x M
    d_ms = ((u[:, None] - u_star[None]) ** 2).sum(-1)                                                # M x Q
    K = A[..., :, None] * A[..., None, :] * torch.exp(-0.5 * d_mm / ls ** 2) + noise * torch.eye(M, dtype=dt)  # l x b x M x M
    K_s = A[..., :, None] * A_s[..., None, :] * torch.exp(-0.5 * d_ms / ls ** 2)                     # l x b x M x Q
    L = _cholesky(K)
    a = torch.cholesky_solve(r[:, None].expand(*K.shape[:2], M, 1), L)                              # l x b x M x 1
    v = torch.linalg.solve_triangular(L, K_s, upper=False)                                          # l x b x M x Q
    mean_c = (K_s * a).sum(-2)                                                                       # l x b x Q
    var_c = (A_s[0] ** 2 - (v * v).sum(-2)).clamp_min(1e-12)                                        # l x b x Q
    logml = -0.5 * (r[:, None] * a).sum((-2, -1)) - torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1)  # l x b
    logw = torch.log(torch.tensor(DISCREPANCY_PRIOR, dtype=dt))[None]                                # 1 x b
    w = torch.softmax((logml + logw).flatten(), 0).reshape(logml.shape)[..., None]                   # l x b x 1
    mean = (w * mean_c).sum((0, 1))
    return mean, ((w * (var_c + mean_c ** 2)).sum((0, 1)) - mean ** 2).clamp_min(1e-12)


def set_posterior(prior_mean: torch.Tensor, prior_var: torch.Tensor, u: torch.Tensor, ys: torch.Tensor,
                  settings: torch.Tensor, noise: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """E[Y | do(X_S = x)] for a set S of variables set together, given the M rows that set exactly
    S: the prior (the members' effects added) corrected by :func:`set_residual` on those rows.

    prior_mean, prior_var: Q + M (the Q queries first, then the M measured settings), u: (Q + M) x k
    positions in [0, 1] of the domains, ys: M measured values, settings: M x k the values set (to
    find replicates), noise: a measurement's variance by the world model (replicates of one setting
    replace it, with a floor). Standardised units of Y throughout. Returns the Q posterior means and
    variances of E[Y | do], and the measurement noise used."""
    Q = prior_mean.shape[0] - ys.shape[0]
    if len(ys):  # replicates of one setting show the noise directly
        code = torch.unique(settings, dim=0, return_inverse=True)[1].to(torch.float64)               # M
        noise = float(replicate_noise(code[None], ys[None], torch.ones(1, len(ys), dtype=torch.bool),
                                      torch.tensor([noise], dtype=torch.float64)).clamp_min(NOISE_FLOOR)[0])
    res, var_f = set_residual(u[Q:], ys - prior_mean[Q:], prior_var[Q:].sqrt(), noise, u[:Q], prior_var[:Q].sqrt())
    return prior_mean[:Q] + res, var_f, noise
