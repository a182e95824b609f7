"""The exact posterior over Y's parent sets under Bayesian linear regression (DESIGN.md 4.2).

For a candidate set S (p = |S|), on inputs standardised by the observational mean/std and Y
standardised the same way (so Y is centred: no intercept),

    y = Z_S theta + eps,  theta ~ N(0, sigma_theta^2 I),  eps ~ N(0, sigma^2)

and P(S | D) ∝ P(S) p(y | Z_S). Rows where Y itself was intervened are excluded; every other
row, observational or interventional, is evidence about Y's mechanism. Two noise models:

- ``noise_var`` given (known sigma^2): log N(y; 0, sigma_theta^2 Z Zᵀ + sigma^2 I);
- ``noise_var=None`` (default): sigma^2 ~ InvGamma(a0, b0) and theta | sigma^2 ~
  N(0, sigma^2 sigma_theta^2 I), integrated out (a multivariate Student-t evidence), so the
  posterior adapts to how noisy Y is.

Both reduce to the p x p matrix M = Z_Sᵀ Z_S + lam I (never the n x n one), batched over all
sets with one Cholesky call. Sets are enumerated up to ``max_parents`` over at most
``max_candidates`` variables; with more, candidates are screened by the magnitude of their
partial correlation with Y given all other variables (the Markov blanket test, which keeps
parents, children and co-parents).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from scipy.special import gammaincinv

from acbo.buffer import rows_stats
from acbo.posterior.types import ParentPosterior


@dataclass(frozen=True)
class ExactPosteriorConfig:
    """Settings of the exact BLR posterior."""

    max_parents: int = 3
    """Largest set size enumerated."""
    max_candidates: int = 20
    """At most this many candidate variables; more are screened by partial correlation."""
    sigma_theta: float = 1.0
    """Prior std of the standardised regression weights."""
    noise_var: float | None = None
    """Known noise variance of standardised Y; None integrates it out (inverse-gamma prior)."""
    a0: float = 2.0
    """Inverse-gamma shape of the noise variance (unknown-noise model)."""
    b0: float = 1.0
    """Inverse-gamma scale of the noise variance (prior mean b0 / (a0 - 1) = 1 = var of std. Y)."""

    def __post_init__(self):
        if self.max_parents < 0 or self.max_candidates < 1:
            raise ValueError(f"max_parents >= 0 and max_candidates >= 1 required, got {self.max_parents}, {self.max_candidates}")
        if not self.sigma_theta > 0 or (self.noise_var is not None and not self.noise_var > 0):
            raise ValueError(f"sigma_theta and noise_var must be > 0, got {self.sigma_theta}, {self.noise_var}")
        if not (self.a0 > 0 and self.b0 > 0):
            raise ValueError(f"a0 and b0 must be > 0, got {self.a0}, {self.b0}")


def enumerate_sets(m: int, k: int) -> torch.Tensor:
    """All subsets of {0..m-1} of size <= k, as K x k long indices padded with -1 (empty set first)."""
    rows = [list(c) + [-1] * (k - len(c)) for size in range(min(k, m) + 1) for c in itertools.combinations(range(m), size)]
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), k)


def log_size_uniform_prior(sizes: torch.Tensor, m: int, k: int) -> torch.Tensor:
    """log P(S) uniform over set sizes 0..min(k, m), then uniform among sets of that size."""
    kk = min(k, m)
    log_binom = torch.lgamma(torch.tensor(m + 1.0)) - torch.lgamma(sizes + 1.0) - torch.lgamma(m - sizes + 1.0)
    return -math.log(kk + 1) - log_binom.to(torch.float64)


def log_evidence(
    G: torch.Tensor, b: torch.Tensor, yy: float, n: int, sizes: torch.Tensor, cfg: ExactPosteriorConfig
) -> torch.Tensor:
    """log p(y | Z_S) for K sets at once.

    G: K x k x k Gram blocks Z_Sᵀ Z_S (padding slots: identity rows/cols), b: K x k Z_Sᵀ y
    (padding: 0), yy = yᵀ y, n rows, sizes: K set sizes. Returns K.
    """
    K, k, _ = G.shape
    real = (torch.arange(k, device=G.device)[None, :] < sizes[:, None]).to(G.dtype)     # K x k
    st2 = cfg.sigma_theta**2
    lam = (cfg.noise_var / st2) if cfg.noise_var is not None else 1.0 / st2
    M = G + torch.diag_embed(real * lam)                                                  # padding slots: 1 + 0
    L = torch.linalg.cholesky(M)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(dim=1)                  # K
    quad = (torch.cholesky_solve(b[..., None], L).squeeze(-1) * b).sum(dim=1)            # bᵀ M⁻¹ b
    p = sizes.to(G.dtype)
    if cfg.noise_var is not None:
        s2 = cfg.noise_var
        return (-0.5 * n * math.log(2 * math.pi * s2) - 0.5 * (logdet + p * math.log(st2 / s2))
                - 0.5 * (yy - quad) / s2)
    a_n = cfg.a0 + 0.5 * n
    b_n = cfg.b0 + 0.5 * (yy - quad)
    return (-0.5 * n * math.log(2 * math.pi) - 0.5 * (logdet + p * math.log(st2))
            + cfg.a0 * math.log(cfg.b0) - a_n * torch.log(b_n) + math.lgamma(a_n) - math.lgamma(cfg.a0))


def standardised_regression_data(values: torch.Tensor, intervened: torch.Tensor, target: int):
    """Z (rows usable for Y's mechanism x d, standardised by observational stats, float64),
    and the observational mean/std (d each)."""
    x = values.to(torch.float64)
    mean, std = rows_stats(x, intervened)
    keep = ~intervened[:, target]
    return (x[keep] - mean) / std, mean, std


def screen_candidates(Z: torch.Tensor, target: int, m: int) -> torch.Tensor:
    """Indices of the m non-target variables with the largest |partial correlation| with Y given
    all others (ridge-regularised precision of the standardised data). Z: n x d."""
    n, d = Z.shape
    C = Z.T @ Z / max(n - 1, 1) + 1e-3 * torch.eye(d, dtype=Z.dtype)
    P = torch.linalg.inv(C)
    pc = (-P[target] / torch.sqrt(P.diagonal() * P[target, target])).abs()
    pc[target] = -1.0
    return torch.topk(pc, m).indices.sort().values


def exact_posterior(
    values: torch.Tensor,
    intervened: torch.Tensor,
    target: int,
    names: list[str] | tuple[str, ...] | None = None,
    cfg: ExactPosteriorConfig = ExactPosteriorConfig(),
) -> ParentPosterior:
    """The BLR posterior over pa(Y) from N x d rows with their N x d intervention mask."""
    N, d = values.shape
    if not 0 <= target < d:
        raise ValueError(f"target index {target} out of range for d = {d}")
    names = tuple(names) if names is not None else tuple(f"X{j}" for j in range(d))
    Z, _, _ = standardised_regression_data(values, intervened, target)
    n = Z.shape[0]
    y = Z[:, target]
    others = torch.tensor([j for j in range(d) if j != target], dtype=torch.long)
    if len(others) > cfg.max_candidates and n > 1:
        cand = screen_candidates(Z, target, cfg.max_candidates)
    else:
        cand = others
    m, k = len(cand), min(cfg.max_parents, len(cand))
    idx = enumerate_sets(m, k)                                                            # K x k, -1 padded
    K = idx.shape[0]
    sizes = (idx >= 0).sum(dim=1)
    Xc = Z[:, cand]                                                                       # n x m
    Gfull = Xc.T @ Xc                                                                     # m x m
    bfull = Xc.T @ y                                                                      # m
    safe = idx.clamp_min(0)
    real = idx >= 0
    G = Gfull[safe[:, :, None], safe[:, None, :]]                                         # K x k x k
    pair = real[:, :, None] & real[:, None, :]
    G = torch.where(pair, G, torch.eye(k, dtype=G.dtype).expand(K, k, k))
    b = torch.where(real, bfull[safe], torch.zeros((), dtype=bfull.dtype))
    logw = log_evidence(G, b, float(y @ y), n, sizes, cfg) + log_size_uniform_prior(sizes, m, k)
    sets = torch.zeros(K, d, dtype=torch.bool)
    rows = torch.arange(K)[:, None].expand(K, k)[real]
    sets[rows, cand[safe][real]] = True
    return ParentPosterior.from_sets(names, target, sets, logw)


def sample_weights(
    values: torch.Tensor,
    intervened: torch.Tensor,
    target: int,
    parents: torch.Tensor,
    generator: torch.Generator,
    cfg: ExactPosteriorConfig = ExactPosteriorConfig(),
) -> torch.Tensor:
    """One draw of the standardised weights theta (p) of Y on the set ``parents`` (d bool, in
    index order) from the BLR posterior (sampling sigma^2 first under the unknown-noise model)."""
    Z, _, _ = standardised_regression_data(values, intervened, target)
    return sample_weights_standardised(Z, target, parents, generator, cfg)


def sample_weights_standardised(
    Z: torch.Tensor,
    target: int,
    parents: torch.Tensor,
    generator: torch.Generator,
    cfg: ExactPosteriorConfig = ExactPosteriorConfig(),
) -> torch.Tensor:
    """:func:`sample_weights` on rows already standardised by :func:`standardised_regression_data`."""
    S = torch.nonzero(parents).flatten()
    p = len(S)
    if p == 0:
        return torch.zeros(0, dtype=torch.float64)
    X, y = Z[:, S], Z[:, target]
    st2 = cfg.sigma_theta**2
    lam = (cfg.noise_var / st2) if cfg.noise_var is not None else 1.0 / st2
    M = X.T @ X + lam * torch.eye(p, dtype=X.dtype)
    L = torch.linalg.cholesky(M)
    mu = torch.cholesky_solve((X.T @ y)[:, None], L).squeeze(1)
    if cfg.noise_var is not None:
        s2 = torch.tensor(cfg.noise_var, dtype=X.dtype)
    else:
        # sigma^2 ~ InvGamma(a_n, b_n), by the inverse CDF of a generator-drawn uniform
        a_n = cfg.a0 + 0.5 * X.shape[0]
        b_n = cfg.b0 + 0.5 * float(y @ y - mu @ (M @ mu))
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        s2 = torch.tensor(b_n / gammaincinv(a_n, u), dtype=X.dtype)
    eps = torch.randn(p, generator=generator, dtype=X.dtype)
    # theta ~ N(mu, s2 M^-1): solve Lᵀ z = eps  =>  z ~ N(0, M^-1)
    z = torch.linalg.solve_triangular(L.T, eps[:, None], upper=True).squeeze(1)
    return mu + s2.sqrt() * z


def exact_predictive(
    values: torch.Tensor,
    intervened: torch.Tensor,
    target: int,
    variable: int,
    x: torch.Tensor,
    cfg: ExactPosteriorConfig = ExactPosteriorConfig(),
    draw: bool = True,
):
    """The exact posterior's model-averaged predictive of Y under do(X_variable = x) (observed
    units): :func:`blr_mixture_predictive` over the enumerated parent sets, weighted by P(S | D)."""
    post = exact_posterior(values, intervened, target, None, cfg)
    return blr_mixture_predictive(values, intervened, target, variable, x, post.sets, post.log_probs.exp(), cfg, draw)


def blr_mixture_predictive(
    values: torch.Tensor,
    intervened: torch.Tensor,
    target: int,
    variable: int,
    x: torch.Tensor,
    sets: torch.Tensor,
    weights: torch.Tensor,
    cfg: ExactPosteriorConfig = ExactPosteriorConfig(),
    draw: bool = True,
):
    """A Gaussian mixture over parent sets S (K x d bool, weights K) of Y under do(X_variable = x)
    (observed units). Under S, Y = Z_S theta + eps with the other members of S at their
    observational means (the model ``exact-ts`` acts on), so E[Y | do] moves by theta_j z for j in
    S and not at all otherwise; theta's BLR posterior is N(mu_S, sigma_S^2 M_S^-1) with sigma_S^2
    its posterior-mean noise variance. ``draw``: the predictive of a fresh measurement (adds
    sigma_S^2); else the posterior of E[Y | do]. values/intervened: N x d rows; x: Q values.
    Returns a GaussianMixture over Q."""
    from acbo.predictive import GaussianMixture

    Z, mean, std = standardised_regression_data(values, intervened, target)
    y = Z[:, target]
    z = (x.to(torch.float64) - mean[variable]) / std[variable]                                  # Q
    w = weights.to(torch.float64) / weights.sum()
    K, Q = sets.shape[0], z.shape[0]
    st2 = cfg.sigma_theta ** 2
    lam = (cfg.noise_var / st2) if cfg.noise_var is not None else 1.0 / st2
    f_mean = torch.zeros(K, Q, dtype=torch.float64)
    f_var = torch.zeros(K, Q, dtype=torch.float64)
    noise = torch.empty(K, dtype=torch.float64)
    for k in range(K):  # at most a few thousand sets of <= max_parents members: small solves
        S = torch.nonzero(sets[k]).flatten().tolist()
        X = Z[:, S]
        M = X.T @ X + lam * torch.eye(len(S), dtype=torch.float64)
        L = torch.linalg.cholesky(M)
        mu = torch.cholesky_solve((X.T @ y)[:, None], L)[:, 0]
        if cfg.noise_var is not None:
            s2 = cfg.noise_var
        else:  # the inverse-gamma posterior's mean noise variance
            a_n, b_n = cfg.a0 + 0.5 * X.shape[0], cfg.b0 + 0.5 * float(y @ y - mu @ (M @ mu))
            s2 = b_n / max(a_n - 1, 1e-6)
        noise[k] = s2
        if variable in S:
            i = S.index(variable)
            f_mean[k] = mu[i] * z
            f_var[k] = s2 * torch.cholesky_inverse(L)[i, i] * z * z
    var = f_var + (noise[:, None] if draw else 0.0)
    mix = GaussianMixture(w[None, :].expand(Q, K), f_mean.T, var.T.clamp_min(1e-12).sqrt())        # Q x K
    return mix.affine(mean[target].expand(Q), std[target].expand(Q))
