"""PARENT_SCALE's posterior over its candidate parent sets (docs/parent_scale.md §2).

For each candidate set S, Bayesian linear regression of Y on features phi_S(x):
``linear``: phi_S(x) = x_S; ``rff``: D random Fourier features of x_S,
phi(x) = sqrt(2/D) cos(x_S omega + b), omega ~ N(0, 1/l^2), b ~ U(0, 2 pi), drawn once per set.
Inputs are standardised with the observational mean/std; Y is centred by its observational
mean (no intercept) and keeps its units, so that sigma_y = 1 is a noise level in Y's units as in
the authors' setting (standardising Y too would make sigma_y equal to Y's whole spread and leave
the posterior almost unmoved). theta ~ N(0, sigma_theta^2 I), eps ~ N(0, sigma_y^2).

The observational data initialise (mu_S, Sigma_S) and leave P(S) at the prior (the DR prior
carries the observational evidence). Each later sample (x, y) with Y not intervened first
reweights the sets by the exact predictive density

    P(S) <- P(S) N(y; mu_Sᵀ phi_S(x), sigma_y^2 + phi_S(x)ᵀ Sigma_S phi_S(x)),

then updates (mu_S, Sigma_S) with the point (rank-1). Both defects of the authors' code are
fixed here: the covariance (not the precision) enters the predictive, and a point is scored
before it is added. Sets below ``prune_start`` at the start and ``prune_loop`` during the loop
are dropped. All sets are updated at once (features padded to a common width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from acbo.buffer import clamped_stats
from acbo.posterior import ParentPosterior

SET_MODELS = ("linear", "rff")


@dataclass(frozen=True)
class SetPosteriorConfig:
    """Settings of the candidate-set posterior."""

    model: str = "linear"
    """linear: phi_S(x) = x_S; rff: random Fourier features of x_S."""
    n_features: int = 100
    """D, the number of random Fourier features per set (rff)."""
    lengthscale: float = 1.0
    """RBF lengthscale l of the random Fourier features (standardised units)."""
    sigma_theta: float = 1.0
    """Prior std of the weights."""
    sigma_y: float = 1.0
    """Noise std of Y (in Y's units; Y is centred, not scaled)."""
    prune_start: float = 1e-5
    """Sets below this prior probability are dropped at the start."""
    prune_loop: float = 1e-4
    """Sets below this posterior probability are dropped after each update."""

    def __post_init__(self):
        if self.model not in SET_MODELS:
            raise ValueError(f"set posterior model must be one of {SET_MODELS}, got {self.model!r}")
        if not (self.sigma_theta > 0 and self.sigma_y > 0 and self.lengthscale > 0 and self.n_features >= 1):
            raise ValueError("sigma_theta, sigma_y, lengthscale must be > 0 and n_features >= 1")


def blr_predictive(mu: torch.Tensor, Sigma: torch.Tensor, phi: torch.Tensor, sigma_y: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive mean and variance of y at features phi. mu: S x F, Sigma: S x F x F,
    phi: S x F. Returns (S, S)."""
    mean = (mu * phi).sum(-1)
    var = sigma_y**2 + torch.einsum("sf,sfg,sg->s", phi, Sigma, phi)
    return mean, var


def blr_rank1_update(mu, Sigma, phi, y, sigma_y: float):
    """Posterior after one more point (phi: S x F, y: scalar) by Sherman-Morrison."""
    Sp = torch.einsum("sfg,sg->sf", Sigma, phi)                                           # S x F
    denom = sigma_y**2 + (phi * Sp).sum(-1)                                               # S
    gain = Sp / denom[:, None]
    resid = y - (mu * phi).sum(-1)
    mu = mu + gain * resid[:, None]
    Sigma = Sigma - gain[:, :, None] * Sp[:, None, :]
    return mu, 0.5 * (Sigma + Sigma.transpose(1, 2))


class CandidateSetPosterior:
    """Sequential posterior over candidate sets (S x d bool) with prior probabilities (S)."""

    def __init__(self, sets: torch.Tensor, prior: torch.Tensor, x_obs: torch.Tensor, target: int,
                 generator: torch.Generator, cfg: SetPosteriorConfig = SetPosteriorConfig()):
        self.cfg = cfg
        self.target = target
        x_obs = torch.as_tensor(x_obs, dtype=torch.float64)
        self.mean, self.std = clamped_stats(x_obs)
        keep = prior >= cfg.prune_start
        self.sets = sets[keep].clone()
        self.log_w = torch.log(prior[keep].double() / prior[keep].sum())
        S, d = self.sets.shape
        if cfg.model == "rff":  # omega rows outside the set are zero: phi depends on x_S only
            F = cfg.n_features
            om = torch.randn(S, d, F, generator=generator, dtype=torch.float64) / cfg.lengthscale
            self.omega = om * self.sets[:, :, None]
            self.bias = 2 * math.pi * torch.rand(S, F, generator=generator, dtype=torch.float64)
        else:
            F = max(1, int(self.sets.sum(1).max()))
            # selection matrix: column f of set s picks its f-th member
            sel = torch.zeros(S, d, F, dtype=torch.float64)
            for s in range(S):
                members = torch.nonzero(self.sets[s]).flatten()
                sel[s, members, torch.arange(len(members))] = 1.0
            self.select = sel
        self.mu = torch.zeros(S, F, dtype=torch.float64)
        self.Sigma = cfg.sigma_theta**2 * torch.eye(F, dtype=torch.float64).expand(S, F, F).clone()
        # D_O initialises the weights (not P(S)): batch posterior from the prior
        Phi = self.features(x_obs)                                                        # S x n x F
        y = x_obs[:, target] - self.mean[target]
        prec = Phi.transpose(1, 2) @ Phi / cfg.sigma_y**2 + torch.eye(F, dtype=torch.float64) / cfg.sigma_theta**2
        self.Sigma = torch.linalg.inv(prec)
        self.Sigma = 0.5 * (self.Sigma + self.Sigma.transpose(1, 2))
        self.mu = torch.einsum("sfg,sng,n->sf", self.Sigma, Phi, y) / cfg.sigma_y**2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi_S for every set: x (n x d, raw units) -> S x n x F."""
        z = ((torch.as_tensor(x, dtype=torch.float64) - self.mean) / self.std)
        if self.cfg.model == "rff":
            F = self.cfg.n_features
            return math.sqrt(2.0 / F) * torch.cos(torch.einsum("nd,sdf->snf", z, self.omega) + self.bias[:, None, :])
        return torch.einsum("nd,sdf->snf", z, self.select)

    def update(self, x_row: torch.Tensor, y_intervened: bool = False) -> None:
        """Score one new sample (raw units, d) against every set, then add it."""
        if y_intervened:
            return
        phi = self.features(x_row[None])[:, 0]                                             # S x F
        y = float(x_row[self.target]) - float(self.mean[self.target])
        m, v = blr_predictive(self.mu, self.Sigma, phi, self.cfg.sigma_y)
        self.log_w = self.log_w - 0.5 * (math.log(2 * math.pi) + torch.log(v) + (y - m) ** 2 / v)
        self.log_w = self.log_w - torch.logsumexp(self.log_w, 0)
        self.mu, self.Sigma = blr_rank1_update(self.mu, self.Sigma, phi, y, self.cfg.sigma_y)
        self._prune(self.cfg.prune_loop)

    def _prune(self, threshold: float) -> None:
        keep = self.log_w.exp() >= threshold
        if keep.all() or not keep.any():
            return
        self.sets, self.log_w = self.sets[keep], self.log_w[keep] - torch.logsumexp(self.log_w[keep], 0)
        self.mu, self.Sigma = self.mu[keep], self.Sigma[keep]
        if self.cfg.model == "rff":
            self.omega, self.bias = self.omega[keep], self.bias[keep]
        else:
            self.select = self.select[keep]

    @property
    def probs(self) -> torch.Tensor:
        return self.log_w.exp()

    def posterior(self, names) -> ParentPosterior:
        return ParentPosterior.from_sets(names, self.target, self.sets, self.log_w)
