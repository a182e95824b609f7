"""The causal GP machinery of CBO / PARENT_SCALE (docs/parent_scale.md §3-§4).

- a GP of Y on each candidate set S, fitted on the observational data (RBF-ARD, fitted
  hyperparameters, lengthscales in [0.05, 20], noise in [1e-5, 2]; inputs and Y standardised);
- do-calculus in the graph "S -> Y only": for X_i in S, E[Y | do(X_i = x)] = the GP mean
  averaged over the observed values of the other members of S (and the same for the variance);
  for X_i not in S the effect is constant: Y's observational mean, with no variance;
- model averaging over sets with weights w_S (mean, and the law of total variance);
- per exploration variable, a GP on the interventions made on it, with the averaged causal
  effect as prior mean and the causal kernel k(x, x') = sigma_f^2 RBF(x, x') + s(x) s(x'),
  s = sqrt(causal variance);
- expected improvement (minimisation), maximised over the variable's domain with BoTorch.

The causal prior mean and variance are computed on a grid over each domain (``GRID`` points)
and linearly interpolated; the GPs see the intervened value rescaled to [0, 1] over its domain.
An exploration set of k variables set together (do(X_E = x_E)) is handled the same way over
[0, 1]^k: the do-calculus average with every member of E that is in S set, a grid of
``SET_GRID[k]`` points per axis interpolated multilinearly, an ARD kernel and EI over the box.
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.exceptions import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.optim import optimize_acqf
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.mlls import ExactMarginalLogLikelihood

GRID = 101
SET_GRID = {1: GRID, 2: 21, 3: 9}
"""Grid points per axis of the causal prior of a set of k variables (k -> points): the grid has
``SET_GRID[k] ** k`` points, each a do-calculus average over the observational rows."""


# ----------------------------------------------------------------------------- pure maths
def expected_improvement(mean: torch.Tensor, std: torch.Tensor, best: float) -> torch.Tensor:
    """EI for minimisation: sigma (u Phi(u) + phi(u)), u = (best - mean) / sigma."""
    std = std.clamp_min(1e-12)
    u = (best - mean) / std
    normal = torch.distributions.Normal(torch.zeros_like(u), torch.ones_like(u))
    return std * (u * normal.cdf(u) + normal.log_prob(u).exp())


def average_models(weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bayesian model averaging. weights: S, means/variances: S x G. Returns (G, G):
    m = sum_S w mu_S, v = sum_S w v_S + sum_S w mu_S^2 - m^2 (law of total variance)."""
    w = (weights / weights.sum())[:, None]
    m = (w * means).sum(0)
    v = (w * variances).sum(0) + (w * means**2).sum(0) - m**2
    return m, v.clamp_min(0.0)


def interpolate(x: torch.Tensor, grid_values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of values on a uniform grid over [0, 1]; x in [0, 1]."""
    G = grid_values.shape[0]
    pos = x.clamp(0, 1) * (G - 1)
    lo = pos.floor().clamp(max=G - 2).long()
    frac = pos - lo.to(pos.dtype)
    return grid_values[lo] * (1 - frac) + grid_values[lo + 1] * frac


def grid_points(k: int, G: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The G^k points of a uniform grid over [0, 1]^k (G^k x k; the first axis slowest)."""
    g = torch.linspace(0, 1, G, dtype=dtype)
    return torch.cartesian_prod(*[g] * k).reshape(-1, k)


def interpolate_grid(x: torch.Tensor, grid_values: torch.Tensor) -> torch.Tensor:
    """Multilinear interpolation of values on a uniform grid over [0, 1]^k (G^k of them, in the
    order of :func:`grid_points`) at x (... x k, in [0, 1]); k = 1 is :func:`interpolate`."""
    k = x.shape[-1]
    if k == 1:
        return interpolate(x[..., 0], grid_values)
    G = round(grid_values.shape[0] ** (1.0 / k))
    assert G ** k == grid_values.shape[0], (G, k, grid_values.shape)
    pos = x.clamp(0, 1) * (G - 1)                                                           # ... x k
    lo = pos.floor().clamp(max=G - 2).long()
    frac = pos - lo.to(pos.dtype)
    strides = torch.tensor([G ** (k - 1 - a) for a in range(k)])
    out = torch.zeros(x.shape[:-1], dtype=grid_values.dtype)
    for corner in range(2 ** k):  # each corner of the cell around x, weighted by the opposite volume
        bits = torch.tensor([(corner >> (k - 1 - a)) & 1 for a in range(k)])
        weight = torch.where(bits.bool(), frac, 1 - frac).prod(-1)
        out = out + weight * grid_values[((lo + bits) * strides).sum(-1)]
    return out


# ----------------------------------------------------------------------------- per-set GPs
def fit_set_gp(X: torch.Tensor, y: torch.Tensor) -> SingleTaskGP:
    """GP of standardised Y (n) on standardised X_S (n x p), hyperparameters by marginal likelihood."""
    n, p = X.shape
    covar = gpytorch.kernels.ScaleKernel(
        gpytorch.kernels.RBFKernel(ard_num_dims=p, lengthscale_constraint=Interval(0.05, 20.0)))
    lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=Interval(1e-5, 2.0))
    gp = SingleTaskGP(X, y[:, None], covar_module=covar, likelihood=lik, outcome_transform=None)
    _fit(gp)
    return gp


def _fit(gp: SingleTaskGP) -> None:
    """Marginal-likelihood fit. BoTorch retries a failed fit from hyperparameters drawn with
    torch's global generator; a fixed seed inside a forked RNG keeps fits reproducible without
    touching the caller's global state."""
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    with warnings.catch_warnings(), torch.random.fork_rng():
        torch.manual_seed(0)
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(mll)
        except ModelFittingError:  # keep the initial hyperparameters (recorded as a warning-free fallback)
            pass
    gp.eval()


DO_CHUNK = 4_000_000
"""do_effect evaluates at most this many (query point x training row) kernel entries at once."""


def marginal_posterior(gp: SingleTaskGP, X: torch.Tensor, chol: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance of the latent function at every row of X (m x p) separately
    (no observation noise), from one Cholesky factor of the training covariance — what
    ``gp.posterior`` gives for a batch of single points, without building a joint covariance per
    point. ``chol``: that factor, when already known (:func:`train_cholesky`). Returns (m, m)."""
    X_tr = gp.train_inputs[0]
    L = train_cholesky(gp) if chol is None else chol
    with torch.no_grad():
        resid = (gp.train_targets - gp.mean_module(X_tr))[:, None]
        alpha = torch.cholesky_solve(resid, L)                                              # n x 1
        Ks = gp.covar_module(X, X_tr).to_dense()                                            # m x n
        mean = gp.mean_module(X) + (Ks @ alpha)[:, 0]
        v = torch.linalg.solve_triangular(L, Ks.T, upper=False)                             # n x m
        var = gp.covar_module(X, diag=True) - (v * v).sum(0)
    return mean, var.clamp_min(0.0)


def train_cholesky(gp: SingleTaskGP) -> torch.Tensor:
    """Lower Cholesky factor of K(X, X) + noise I over the GP's training inputs."""
    X_tr = gp.train_inputs[0]
    with torch.no_grad():
        K = gp.covar_module(X_tr).to_dense() + gp.likelihood.noise * torch.eye(X_tr.shape[0], dtype=X_tr.dtype)
        return torch.linalg.cholesky(K)


def do_effect(gp: SingleTaskGP, X_obs: torch.Tensor, member: int | list[int], grid: torch.Tensor,
              chol: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """E[y | do(X_member = g)] and its variance for every grid value g (standardised units):
    the GP mean/variance averaged over the observed rows of the other members.
    X_obs: n x p, grid: G (one member) or G x m (``member`` a list of m columns set together).
    Returns (mean G, variance G). Grid values are processed in chunks, so memory stays bounded whatever n is;
    ``chol``: :func:`train_cholesky` of the GP, when already known."""
    n, p = X_obs.shape
    G = grid.shape[0]
    cols = [member] if isinstance(member, int) else list(member)
    points = grid[:, None] if grid.dim() == 1 else grid                                        # G x m
    L = train_cholesky(gp) if chol is None else chol
    step = max(1, DO_CHUNK // max(1, n * L.shape[0]))
    means, variances = [], []
    for s in range(0, G, step):
        g = points[s:s + step]                                                                # g x m
        X = X_obs[None].expand(len(g), n, p).clone()                                          # g x n x p
        X[:, :, cols] = g[:, None, :]
        m, v = marginal_posterior(gp, X.reshape(len(g) * n, p), L)
        means.append(m.reshape(len(g), n).mean(1))
        variances.append(v.reshape(len(g), n).mean(1))
    return torch.cat(means), torch.cat(variances)


# ----------------------------------------------------------------------------- causal GP
class GridMean(gpytorch.means.Mean):
    """A prior mean given on a uniform grid over [0, 1]^k (inputs: ... x k; :func:`grid_points` order)."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.register_buffer("values", values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return interpolate_grid(x, self.values)


class CausalKernel(gpytorch.kernels.Kernel):
    """k(x, x') = s(x) s(x') with s on a uniform grid over [0, 1]^k."""

    def __init__(self, std_values: torch.Tensor):
        super().__init__()
        self.register_buffer("std_values", std_values)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        s1 = interpolate_grid(x1, self.std_values)
        s2 = interpolate_grid(x2, self.std_values)
        if diag:
            return s1 * s2
        return s1[..., :, None] * s2[..., None, :]


def causal_gp(x: torch.Tensor, y: torch.Tensor, prior_mean: torch.Tensor, prior_var: torch.Tensor,
              min_outputscale: float = 0.0) -> SingleTaskGP:
    """The GP of one exploration set: data x (n, one variable, or n x k, in [0, 1]) and y (n,
    standardised), prior mean and variance on the grid (G^k). Fitted (sigma_f, length scales,
    noise) when n >= 1; ``min_outputscale`` > 0 bounds sigma_f^2 below (0: any positive value,
    which the marginal likelihood may drive towards 0 when the causal prior's mean explains the
    rows, leaving only the causal prior's variance: see :class:`acbo.experts.parent_scale.CausalGPMethod`)."""
    X = x[:, None] if x.dim() == 1 else x                                                    # n x k
    ard = None if X.shape[1] == 1 else X.shape[1]
    rbf = gpytorch.kernels.RBFKernel(ard_num_dims=ard, lengthscale_constraint=Interval(0.01, 5.0))
    scaled = (gpytorch.kernels.ScaleKernel(rbf, outputscale_constraint=GreaterThan(min_outputscale))
              if min_outputscale > 0 else gpytorch.kernels.ScaleKernel(rbf))
    covar = scaled + CausalKernel(prior_var.sqrt())
    lik = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=Interval(1e-5, 2.0))
    gp = SingleTaskGP(X, y[:, None], covar_module=covar, mean_module=GridMean(prior_mean),
                      likelihood=lik, outcome_transform=None)
    _fit(gp)
    return gp


def maximise_ei(prior_mean: torch.Tensor, prior_var: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                best: float, seed: int, min_outputscale: float = 0.0) -> tuple[torch.Tensor, float]:
    """Maximise EI for one exploration set of k variables over [0, 1]^k; x: n x k (n may be 0),
    y: n, the prior on the grid (G^k). With no data yet, EI of the causal prior (prior std
    sqrt(1 + v)) on the grid; else BoTorch's optimize_acqf on the causal GP. Returns (argmax in
    [0, 1]^k, k; EI there). BoTorch maximises log EI (same argmax, stable numerics where EI
    underflows)."""
    n, k = x.shape
    if n == 0:
        grid = grid_points(k, round(prior_mean.shape[0] ** (1.0 / k)), prior_mean.dtype)          # G^k x k
        ei = expected_improvement(prior_mean, (1.0 + prior_var).sqrt(), best)
        i = int(ei.argmax())
        return grid[i], float(ei[i])
    gp = causal_gp(x, y, prior_mean, prior_var, min_outputscale)
    acq = LogExpectedImprovement(gp, best_f=best, maximize=False)
    bounds = torch.tensor([[0.0] * k, [1.0] * k], dtype=prior_mean.dtype)
    with warnings.catch_warnings(), torch.random.fork_rng():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore")
        cand, val = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=4, raw_samples=64, options={"seed": seed})
    return cand.reshape(k), math.exp(float(val))
