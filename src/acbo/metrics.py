"""Benchmark metrics: pure functions, each tested against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from acbo.posterior import ParentPosterior


def average_precision(scores, labels) -> float:
    """Area under the precision-recall curve as average precision: the mean, over the positives,
    of the precision at the threshold where each is recalled (tied scores share a threshold).
    NaN when there is no positive."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    thresholds = np.unique(s)[::-1]
    ap, prev_recall = 0.0, 0.0
    for th in thresholds:
        pred = s >= th
        tp = int((pred & y).sum())
        precision = tp / int(pred.sum())
        recall = tp / n_pos
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def auroc(scores, labels) -> float:
    """Area under the ROC curve (probability that a positive outscores a negative, ties count
    1/2). NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def expected_calibration_error(probs, labels, bins: int = 10) -> float:
    """ECE of probabilities against binary outcomes: sum over equal-width bins of
    (share of items in the bin) x |mean probability - frequency of positives|."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(ece)


def f1_score(pred, truth) -> float:
    """F1 of a predicted set against the true set (both bool vectors); 1 when both are empty."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    tp = int((p & t).sum())
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2 * tp / denom


def normalised_regret(best: float, y_star: float, e_obs: float) -> float:
    """(best - y*) / (E[Y]_obs - y*): 1 = no better than not intervening, 0 = the optimum."""
    gap = e_obs - y_star
    if not gap > 0:
        return float("nan")
    return (best - y_star) / gap


def posterior_metrics(post: ParentPosterior, truth: torch.Tensor) -> dict[str, float]:
    """AUPRC of the marginals over the non-target variables, F1 of the MAP set, probability of
    the true set, entropy."""
    keep = torch.ones_like(truth, dtype=torch.bool)
    keep[post.target] = False
    return {
        "auprc": average_precision(post.marginals[keep].numpy(), truth[keep].numpy()),
        "f1": f1_score(post.map_set()[keep].numpy(), truth[keep].numpy()),
        "mass_true": post.prob_of(truth),
        "entropy": post.entropy(),
    }


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)
