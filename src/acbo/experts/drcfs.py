"""Doubly robust causal feature selection (DRCFS) on bootstrap resamples: PARENT_SCALE's prior
over parent sets (docs/parent_scale.md §1).

On each of B bootstrap resamples of the observational data, every non-target X_i is tested for
relevance to Y given all other variables, with K-fold cross-fitting:

- r: out-of-fold prediction of Y from all features; a_i: the prediction without X_i, from a
  network trained without it ("dr2", as published) or from the full network with X_i set to its
  mean at test time ("dr1", one network per fold: far cheaper);
- per held-out row the two doubly robust scores z_full = y² − (y − a)(y − r) and
  z_drop = y² − (y − a)²; their difference (y − a)(r − a) has mean E[(E[y|X] − E[y|X_−i])²] ≥ 0,
  zero iff X_i is irrelevant; a paired one-sided t-test (z_full > z_drop) over the n rows;
- Benjamini–Yekutieli correction over the features of a resample; X_i selected at p < alpha.

P(S) = the fraction of resamples whose selected set is exactly S (the empty set dropped; if no
resample selects anything, a uniform prior over singletons).

Caveat, measured (tests/test_experts.py, BENCHMARKS.md): (y − a)(r − a) keeps a positive
second-order bias of the size of the regressors' estimation error, so at n = 200 the MLP
variants often select irrelevant variables; dr2 with ridge is well calibrated on linear data.

All B x K x (models per fold) regressors are trained together as one batched network (``mlp``:
3 x 200 ReLU, full-batch Adam, early stopping on a validation split, keeping each network's
out-of-fold predictions from its best validation epoch), or solved in closed form (``ridge``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

VARIANTS = ("dr1", "dr2")
REGRESSORS = ("mlp", "ridge")


@dataclass(frozen=True)
class DRConfig:
    """Settings of the doubly robust prior."""

    variant: str = "dr1"
    """dr2: one network per dropped feature (published); dr1: one network, feature mean-imputed."""
    regressor: str = "mlp"
    """mlp: 3 x 200 ReLU networks (published); ridge: closed-form ridge regression (fast, linear)."""
    n_bootstrap: int = 10
    """Bootstrap resamples B (10 in the scalable version, 30 for small graphs)."""
    folds: int = 5
    """Cross-fitting folds K."""
    alpha: float = 0.05
    """Level of the Benjamini-Yekutieli-corrected test."""
    hidden: int = 200
    """Width of the three hidden layers."""
    lr: float = 1e-3
    """Adam learning rate."""
    max_epochs: int = 300
    """Full-batch epochs at most."""
    patience: int = 20
    """Stop a network's clock after this many epochs without a better validation loss."""
    val_fraction: float = 0.15
    """Share of each training fold held out for early stopping."""
    ridge: float = 1.0
    """Ridge penalty (standardised units) for the ridge regressor."""
    max_networks: int = 600
    """Networks trained at once (bounds memory; more are trained in chunks)."""

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"DR variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.regressor not in REGRESSORS:
            raise ValueError(f"DR regressor must be one of {REGRESSORS}, got {self.regressor!r}")
        if self.n_bootstrap < 1 or self.folds < 2 or not 0 < self.alpha < 1:
            raise ValueError(f"need n_bootstrap >= 1, folds >= 2, 0 < alpha < 1; got {self.n_bootstrap}, {self.folds}, {self.alpha}")

    @property
    def label(self) -> str:
        return f"{self.variant}-{self.regressor}-B{self.n_bootstrap}"


@dataclass(frozen=True)
class DRPrior:
    """The prior: candidate sets (S x d bool), their probabilities (S), per-resample selections
    (B x d bool), the corrected p-values (B x d, NaN for Y) and the wall time of the fit."""

    sets: torch.Tensor
    probs: torch.Tensor
    selected: torch.Tensor
    p_values: torch.Tensor
    seconds: float
    config: DRConfig


# ----------------------------------------------------------------------------- regressors
def _batched_mlp_predict(
    X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, val: torch.Tensor, test_X: torch.Tensor,
    cfg: DRConfig, generator: torch.Generator,
) -> torch.Tensor:
    """Train M networks at once and return their test predictions from the best validation epoch.

    X: M x n x p inputs (masked features already zeroed), y: M x n, train/val: M x n bool row
    masks, test_X: M x m x p extra inputs to predict (e.g. the full network on mean-imputed
    rows). Returns M x m.
    """
    M, n, p = X.shape
    H = cfg.hidden
    dims = [p, H, H, H, 1]
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):  # nn.Linear's default (Kaiming-uniform) init
        bound = 1 / math.sqrt(fan_in)
        W = (torch.rand(M, fan_in, fan_out, generator=generator) * 2 - 1) * bound
        b = (torch.rand(M, 1, fan_out, generator=generator) * 2 - 1) * bound
        params += [W.requires_grad_(), b.requires_grad_()]
    opt = torch.optim.Adam(params, lr=cfg.lr)

    def forward(inp: torch.Tensor) -> torch.Tensor:                                     # M x r x p -> M x r
        h = inp
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i < len(params) - 2:
                h = torch.relu(h)
        return h.squeeze(-1)

    trn, vl = train.float(), val.float()
    n_trn, n_val = trn.sum(1).clamp_min(1), vl.sum(1).clamp_min(1)
    best = torch.full((M,), float("inf"))
    best_params = [q.detach().clone() for q in params]
    stale = torch.zeros(M, dtype=torch.long)
    for epoch in range(cfg.max_epochs):
        opt.zero_grad(set_to_none=True)
        err = (forward(X) - y) ** 2                                                      # M x n
        with torch.no_grad():  # validation loss of the parameters before this step
            val_loss = (err.detach() * vl).sum(1) / n_val
            better = val_loss < best - 1e-6
            best = torch.where(better, val_loss, best)
            for q, bq in zip(params, best_params):
                bq[better] = q.detach()[better]
            stale = torch.where(better, torch.zeros_like(stale), stale + 1)
            if (stale >= cfg.patience).all():
                break
        loss = ((err * trn).sum(1) / n_trn).sum()                                        # networks are independent
        loss.backward()
        opt.step()
    with torch.no_grad():
        for q, bq in zip(params, best_params):
            q.copy_(bq)
        return forward(test_X)


def _ridge_predict(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test_X: torch.Tensor, lam: float) -> torch.Tensor:
    """Closed-form ridge with intercept per network. X: M x n x p, y: M x n, train: M x n,
    test_X: M x m x p. Returns M x m."""
    M, n, p = X.shape
    w = train.to(X.dtype)
    ones = torch.ones(M, n, 1, dtype=X.dtype)
    Xa = torch.cat([X, ones], dim=2)                                                      # M x n x (p+1)
    G = torch.einsum("mnp,mn,mnq->mpq", Xa, w, Xa)
    reg = lam * torch.eye(p + 1, dtype=X.dtype)
    reg[p, p] = 0.0                                                                        # no penalty on the intercept
    beta = torch.linalg.solve(G + reg + 1e-9 * torch.eye(p + 1, dtype=X.dtype), torch.einsum("mnp,mn,mn->mp", Xa, w, y))
    Ta = torch.cat([test_X, torch.ones(M, test_X.shape[1], 1, dtype=X.dtype)], dim=2)
    return torch.einsum("mrp,mp->mr", Ta, beta)


# ----------------------------------------------------------------------------- the test
def one_sided_paired_t(diff: torch.Tensor) -> np.ndarray:
    """p-values of H0: mean(diff) <= 0 along the last axis (rows). diff: ... x n."""
    d = diff.double().numpy()
    n = d.shape[-1]
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(sd > 0, mean / (sd / math.sqrt(n)), np.where(mean > 0, np.inf, 0.0))
    return stats.t.sf(t, n - 1)


def by_correct(p: np.ndarray) -> np.ndarray:
    """Benjamini-Yekutieli adjusted p-values along the last axis."""
    return np.apply_along_axis(lambda row: stats.false_discovery_control(row, method="by"), -1, p)


def fit_dr_prior(values: torch.Tensor, target: int, generator: torch.Generator, cfg: DRConfig = DRConfig()) -> DRPrior:
    """The DRCFS prior over pa(Y) from n x d observational values."""
    t0 = time.perf_counter()
    x = torch.as_tensor(values, dtype=torch.float64)
    n, d = x.shape
    if n < 2 * cfg.folds:
        raise ValueError(f"the DR prior needs at least {2 * cfg.folds} observational rows, got {n}")
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-12)
    feats = [j for j in range(d) if j != target]
    p, B, K = len(feats), cfg.n_bootstrap, cfg.folds
    dtype = torch.float32 if cfg.regressor == "mlp" else torch.float64

    # resamples and folds: B x n row indices, fold of each position
    boot = torch.randint(n, (B, n), generator=generator)
    Xb = x[boot][:, :, feats].to(dtype)                                                   # B x n x p
    yb = x[boot][:, :, target].to(dtype)                                                  # B x n
    # folds over the original rows, so that a row's bootstrap copies never straddle train and test
    fold_of_row = torch.stack([torch.randperm(n, generator=generator) % K for _ in range(B)])  # B x n
    fold = fold_of_row.gather(1, boot)                                                    # B x n
    test_mask = fold[:, None, :] == torch.arange(K)[None, :, None]                        # B x K x n
    u = torch.rand(B, K, n, generator=generator).gather(2, boot[:, None, :].expand(B, K, n))  # per original row
    val_mask = ~test_mask & (u < cfg.val_fraction)
    train_mask = ~test_mask & ~val_mask
    if cfg.regressor == "ridge":  # no early stopping: train on the whole training fold
        train_mask, val_mask = ~test_mask, torch.zeros_like(test_mask)

    # models per fold: 0 = all features; dr2 adds one network per dropped feature
    Mf = 1 + (p if cfg.variant == "dr2" else 0)
    in_mask = torch.ones(Mf, p, dtype=dtype)
    if cfg.variant == "dr2":
        in_mask[1:] -= torch.eye(p, dtype=dtype)
    # test inputs: dr2 predicts the rows as they are; dr1 also predicts them with each X_i zeroed (= its mean)
    Xm = (Xb[:, None, None] * in_mask[None, None, :, None, :]).expand(B, K, Mf, n, p)     # B x K x Mf x n x p
    if cfg.variant == "dr1":
        drop = (1 - torch.eye(p, dtype=dtype))[:, None, :]                                 # p x 1 x p
        Xt = torch.cat([Xb[:, :, None, :].expand(B, n, 1, p).transpose(1, 2),               # B x 1 x n x p
                        (Xb[:, None] * drop[None])], dim=1).reshape(B, (p + 1) * n, p)      # B x (p+1)n x p
        test_X = Xt[:, None, None].expand(B, K, 1, (p + 1) * n, p)
    else:
        test_X = Xm
    M = B * K * Mf
    Xm = Xm.reshape(M, n, p)
    test_X = test_X.reshape(M, -1, p)
    ym = yb[:, None, None, :].expand(B, K, Mf, n).reshape(M, n)
    trm = train_mask[:, :, None, :].expand(B, K, Mf, n).reshape(M, n)
    vam = val_mask[:, :, None, :].expand(B, K, Mf, n).reshape(M, n)

    preds = []
    for s in range(0, M, cfg.max_networks):
        sl = slice(s, min(M, s + cfg.max_networks))
        if cfg.regressor == "mlp":
            preds.append(_batched_mlp_predict(Xm[sl], ym[sl], trm[sl], vam[sl], test_X[sl], cfg, generator))
        else:
            preds.append(_ridge_predict(Xm[sl], ym[sl], trm[sl], test_X[sl], cfg.ridge))
    pred = torch.cat(preds).reshape(B, K, -1)                                             # B x K x (models x n)

    # out-of-fold predictions: each row is in exactly one test fold
    if cfg.variant == "dr1":
        pred = pred.reshape(B, K, p + 1, n)
    else:
        pred = pred.reshape(B, K, Mf, n)
    oof = (pred * test_mask[:, :, None, :].to(pred.dtype)).sum(dim=1)                    # B x (p+1) x n
    r, a = oof[:, 0], oof[:, 1:]                                                          # B x n, B x p x n
    y = yb[:, None, :]
    diff = (y - a) * (r[:, None, :] - a)                                                  # z_full - z_drop
    p_adj = by_correct(one_sided_paired_t(diff))                                          # B x p
    sel_f = torch.from_numpy(p_adj < cfg.alpha)
    selected = torch.zeros(B, d, dtype=torch.bool)
    selected[:, feats] = sel_f
    p_full = torch.full((B, d), float("nan"), dtype=torch.float64)
    p_full[:, feats] = torch.from_numpy(p_adj)

    sets, probs = prior_from_selections(selected, feats)
    return DRPrior(sets, probs, selected, p_full, time.perf_counter() - t0, cfg)


def prior_from_selections(selected: torch.Tensor, feats: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """P(S) = the fraction of resamples whose selection is exactly S, empty selections dropped;
    uniform over the singletons of ``feats`` if every selection is empty. selected: B x d bool.
    Returns (sets S x d, probabilities S)."""
    B, d = selected.shape
    nonempty = selected[selected.any(dim=1)]
    if len(nonempty):
        sets, counts = torch.unique(nonempty, dim=0, return_counts=True)
        return sets, counts.double() / counts.sum()
    p = len(feats)
    sets = torch.zeros(p, d, dtype=torch.bool)
    sets[torch.arange(p), torch.tensor(feats)] = True
    return sets, torch.full((p,), 1.0 / p, dtype=torch.float64)
