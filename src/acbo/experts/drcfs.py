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
out-of-fold predictions from its best validation epoch), or solved in closed form (``ridge``:
one Gram matrix per resample and fold, a dropped feature's row and column zeroed, so memory
grows as n x d rather than n x d²; the networks copy their inputs, and a size whose estimate
exceeds the memory available is refused before anything is allocated).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from acbo.buffer import clamped_stats

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


def _ridge_out_of_fold(Xb: torch.Tensor, yb: torch.Tensor, train: torch.Tensor, test: torch.Tensor, variant: str,
                       lam: float) -> torch.Tensor:
    """Out-of-fold predictions of closed-form ridge regressions (intercept unpenalised), from one
    Gram matrix per (resample, fold) instead of a copy of the data per model.

    Xb: B x n x p standardised features, yb: B x n, train/test: B x K x n bool row masks.
    Returns B x (p+1) x n: row 0 the model on all features, row 1 + i the prediction without
    feature i (dr2: the ridge fitted without it; dr1: the full model with X_i at its mean, 0).
    Fitting without feature i is the full system with row and column i of the Gram matrix zeroed:
    its coefficient then solves (lam + 1e-9) b_i = 0."""
    B, n, p = Xb.shape
    K = train.shape[1]
    P = p + 1
    Xa = torch.cat([Xb, torch.ones(B, n, 1, dtype=Xb.dtype)], dim=2)                       # B x n x P
    w = train.to(Xb.dtype)                                                                # B x K x n
    G = torch.stack([Xa.mT @ (Xa * w[:, k, :, None]) for k in range(K)], dim=1)           # B x K x P x P
    c = torch.bmm(w * yb[:, None, :], Xa)                                                 # B x K x P
    reg = (lam + 1e-9) * torch.eye(P, dtype=Xb.dtype)
    reg[p, p] = 1e-9                                                                       # no penalty on the intercept
    tm = test.to(Xb.dtype)                                                                # B x K x n
    if variant == "dr1":
        beta = torch.linalg.solve(G + reg, c)                                              # B x K x P
        row_beta = torch.bmm(tm.mT, beta)                                                  # B x n x P: its test fold's
        contrib = (Xb * row_beta[..., :p]).mT                                             # B x p x n: X_i b_i
        r = (Xa * row_beta).sum(-1)                                                        # B x n
        return torch.cat([r[:, None], r[:, None] - contrib], dim=1)
    out = torch.empty(B, P, n, dtype=Xb.dtype)
    chunk = max(1, 2 ** 25 // (B * K * P * P))                                             # models per solve: ~256 MB
    for s in range(0, P, chunk):
        models = torch.arange(s, min(P, s + chunk))                                       # 0: full, 1 + i: without i
        keep = torch.ones(len(models), P, dtype=Xb.dtype)                                  # C x P
        drop = models > 0
        keep[drop.nonzero().flatten(), models[drop] - 1] = 0.0
        Gm = G[:, :, None] * keep[:, None, :] * keep[:, :, None]                          # B x K x C x P x P
        beta = torch.linalg.solve(Gm + reg, c[:, :, None] * keep)                         # B x K x C x P
        out[:, models] = torch.einsum("bnp,bkcp,bkn->bcn", Xa, beta, tm)
    return out


def _mlp_out_of_fold(Xb: torch.Tensor, yb: torch.Tensor, train: torch.Tensor, val: torch.Tensor, test: torch.Tensor,
                     cfg: DRConfig, generator: torch.Generator) -> torch.Tensor:
    """Out-of-fold predictions of the batched networks, B x (p+1) x n as in :func:`_ridge_out_of_fold`.
    Xb: B x n x p, yb: B x n, train/val/test: B x K x n bool row masks."""
    B, n, p = Xb.shape
    K = train.shape[1]
    dtype = Xb.dtype
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
    trm = train[:, :, None, :].expand(B, K, Mf, n).reshape(M, n)
    vam = val[:, :, None, :].expand(B, K, Mf, n).reshape(M, n)
    preds = []
    for s in range(0, M, cfg.max_networks):
        sl = slice(s, min(M, s + cfg.max_networks))
        preds.append(_batched_mlp_predict(Xm[sl], ym[sl], trm[sl], vam[sl], test_X[sl], cfg, generator))
    pred = torch.cat(preds).reshape(B, K, p + 1, n)                                       # B x K x models x n
    # out-of-fold: each row is in exactly one test fold
    return (pred * test[:, :, None, :].to(pred.dtype)).sum(dim=1)                         # B x (p+1) x n


def prior_bytes(n: int, d: int, cfg: DRConfig) -> int:
    """Peak bytes the prior's tensors take for n rows of d variables (an upper estimate). ridge
    (float64): the resampled data, masks, the Gram matrices and one chunk of solves, the
    predictions; mlp (float32): every network's copy of its inputs and test inputs and one chunk's
    activations while training (forward, backward, Adam) and predicting."""
    B, K, p = cfg.n_bootstrap, cfg.folds, d - 1
    if cfg.regressor == "ridge":
        return 8 * (3 * B * n * d + 2 * B * n * (p + 1) + 4 * B * K * n + 2 * B * K * (p + 1) ** 2
                    + 3 * 2 ** 25 + 4 * B * (p + 1) * n)
    Mf = 1 + (p if cfg.variant == "dr2" else 0)
    m = n if cfg.variant == "dr2" else (p + 1) * n                                          # test rows per network
    M = B * K * Mf
    chunk = min(M, cfg.max_networks)
    return 8 * 3 * B * n * d + 4 * (M * n * p + M * m * p + chunk * n * cfg.hidden * 3 * 4 + chunk * m * cfg.hidden * 2)


def available_bytes() -> int | None:
    """Memory this process may still take: the smaller of the kernel's MemAvailable and the
    cgroup's limit less its usage; None where neither can be read."""
    found = []
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            found.append(int(limit) - int(open("/sys/fs/cgroup/memory.current").read()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


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
    need, have = prior_bytes(n, d, cfg), available_bytes()
    if have is not None and need > have:
        raise ValueError(
            f"the doubly robust prior ({cfg.label}) on {n} observational rows of {d} variables needs about "
            f"{need / 2 ** 30:.1f} GiB, and this machine has {have / 2 ** 30:.1f} GiB available; "
            + ("use the ridge regressor (dr_regressor='ridge'), " if cfg.regressor == "mlp" else "")
            + "fewer bootstrap resamples (n_bootstrap) or fewer observational rows")
    mean, std = clamped_stats(x)
    x = (x - mean) / std
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

    if cfg.regressor == "ridge":
        oof = _ridge_out_of_fold(Xb, yb, ~test_mask, test_mask, cfg.variant, cfg.ridge)   # B x (p+1) x n
    else:
        oof = _mlp_out_of_fold(Xb, yb, train_mask, val_mask, test_mask, cfg, generator)
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
