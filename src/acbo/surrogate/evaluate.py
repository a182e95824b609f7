"""Evaluation of parent posteriors on held-out buffers: the surrogate, the exact BLR posterior
and the PARENT_SCALE expert's set posterior, on the same buffers.

For each family and number of interventional rows, ``n_buffers`` buffers (n_obs observational
rows + the interventional ones, from the test stream) are scored by every posterior. Metrics,
per buffer then averaged: AUPRC and AUROC of the marginals over the non-target variables, F1 of
the most probable set, log-probability of the true set (factorised posteriors: the product of
marginals), mean binary cross-entropy of the marginals; and the expected calibration error of
all marginals pooled.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch

from acbo.metrics import auroc, average_precision, expected_calibration_error, f1_score
from acbo.experts import CandidateSetPosterior, DRConfig, fit_dr_prior
from acbo.posterior import ParentPosterior, exact_posterior
from acbo.seeding import generator
from acbo.surrogate.data import sample_buffers
from acbo.surrogate.model import Surrogate


def expert_posterior(raw: torch.Tensor, intervened: torch.Tensor, target: int, n_obs: int, seed: int,
                     dr: DRConfig = DRConfig(variant="dr2", regressor="ridge")) -> ParentPosterior:
    """PARENT_SCALE's posterior on a buffer: the DR prior from the observational rows, then one
    sequential update per interventional row."""
    x_obs = raw[:n_obs].double()
    prior = fit_dr_prior(x_obs, target, generator("eval-expert", seed), dr)
    post = CandidateSetPosterior(prior.sets, prior.probs, x_obs, target, generator("eval-expert-rff", seed))
    for i in range(n_obs, raw.shape[0]):
        post.update(raw[i].double(), y_intervened=bool(intervened[i, target]))
    return post.posterior([f"X{j}" for j in range(raw.shape[1])])


def _scores(name: str, post: ParentPosterior, truth: torch.Tensor) -> dict:
    keep = torch.ones_like(truth)
    keep[post.target] = False
    m, t = post.marginals[keep].double().numpy(), truth[keep].numpy()
    mc = np.clip(m, 1e-6, 1 - 1e-6)
    return {"posterior": name, "auprc": average_precision(m, t), "auroc": auroc(m, t),
            "f1": f1_score(post.map_set()[keep].numpy(), t), "log_p_true": math.log(max(post.prob_of(truth), 1e-300)),
            "bce": float(-(t * np.log(mc) + (1 - t) * np.log(1 - mc)).mean()), "_m": m, "_t": t}


def evaluate(model: Surrogate | None, family: str, n_buffers: int = 200, n_obs: int = 200, n_int: int = 0,
             d: int | None = None, expert: bool = True, chunk: int = 25) -> pd.DataFrame:
    """One row per buffer and posterior (surrogate, exact, expert), plus timing columns."""
    rows = []
    g = generator("test", "eval-surrogate", family, n_obs, n_int, d or 0)
    done = 0
    while done < n_buffers:
        B = min(chunk, n_buffers - done)
        data = sample_buffers(family, B, n_obs, n_int, g, d=d)
        truth = data.parents.cpu()
        targets = data.scm.target.tolist()
        if model is not None:
            t0 = time.perf_counter()
            with torch.no_grad():
                probs = torch.sigmoid(model(data.batch)).cpu().double()
            t_sur = (time.perf_counter() - t0) / B
        for b in range(B):
            raw, inter = data.raw[b].cpu(), data.batch.intervened[b].cpu()
            names = [f"X{j}" for j in range(raw.shape[1])]
            posts = {}
            if model is not None:
                posts["surrogate"] = (ParentPosterior.from_marginals(names, targets[b], probs[b]), t_sur)
            t0 = time.perf_counter()
            posts["exact"] = (exact_posterior(raw, inter, targets[b], names), time.perf_counter() - t0)
            if expert:
                t0 = time.perf_counter()
                posts["expert"] = (expert_posterior(raw, inter, targets[b], n_obs, done + b), time.perf_counter() - t0)
            for name, (post, secs) in posts.items():
                rows.append({"family": family, "d": raw.shape[1], "n_obs": n_obs, "n_int": n_int, "buffer": done + b,
                             "seconds": secs, **_scores(name, post, truth[b])})
        done += B
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean metrics per (family, d, n_int, posterior), with the pooled ECE."""
    out = []
    for key, g in df.groupby(["family", "d", "n_int", "posterior"], sort=False):
        ece = expected_calibration_error(np.concatenate(g["_m"].tolist()), np.concatenate(g["_t"].tolist()))
        out.append({"family": key[0], "d": key[1], "n_int": key[2], "posterior": key[3], "buffers": len(g),
                    "auprc": g["auprc"].mean(), "auroc": g["auroc"].mean(), "f1": g["f1"].mean(),
                    "log_p_true": g["log_p_true"].mean(), "bce": g["bce"].mean(), "ece": ece,
                    "ms_per_buffer": 1000 * g["seconds"].mean()})
    return pd.DataFrame(out)
