"""The surrogate as a posterior: buffers in, ParentPosterior out."""

from __future__ import annotations

import torch

from acbo.buffer import Buffer, PaddedBatch
from acbo.posterior import ParentPosterior
from acbo.surrogate.model import Surrogate


@torch.no_grad()
def surrogate_marginals(model: Surrogate, buffers: list[Buffer], targets: list[int]) -> list[torch.Tensor]:
    """P(j in pa(Y)) per buffer (a d-vector each; 0 for the target), one batched forward pass."""
    dev = next(model.parameters()).device
    batch = PaddedBatch.of_buffers(buffers, targets, standardise=True, device=dev)
    probs = torch.sigmoid(model(batch)).cpu().double()                                          # B x D
    return [probs[i, : b.d] for i, b in enumerate(buffers)]


def surrogate_posterior(model: Surrogate, buffer: Buffer, target: int, names) -> ParentPosterior:
    """The surrogate's (factorised) posterior over pa(Y) for one buffer."""
    return ParentPosterior.from_marginals(names, target, surrogate_marginals(model, [buffer], [target])[0])


def _encoded(model: Surrogate, buffer: Buffer, target: int):
    """One buffer read by the world model: (batch, parent logits, tokens, observational mean and
    std); ValueError for a surrogate without the world-model head."""
    if not model.cfg.queries:
        raise ValueError("this surrogate has no world-model head (trained without queries)")
    dev = next(model.parameters()).device
    batch = PaddedBatch.of_buffers([buffer], [target], standardise=True, device=dev)
    logits, tokens = model.encode(batch)
    mean, std = buffer.observational_stats()
    return batch, logits, tokens, mean, std


@torch.no_grad()
def world_predictive(model: Surrogate, buffer: Buffer, target: int, variable: int, x: torch.Tensor, draw: bool = True):
    """The world model's predictive (observed units, over the Q values x) of Y under
    do(X_variable = x) given the buffer: of a fresh measurement (``draw``) or of E[Y | do]."""
    batch, _, tokens, mean, std = _encoded(model, buffer, target)
    dev = tokens.device
    z = ((x.to(torch.float64) - mean[variable]) / std[variable]).float().to(dev)
    draw_logits, mean_logits = model.query(batch, tokens, torch.tensor([[variable]], device=dev), z[None, None])
    bar = model.predictive((draw_logits if draw else mean_logits)[0, 0].double().cpu())
    Q = x.shape[0]
    return bar.affine(mean[target].expand(Q), std[target].expand(Q))


@torch.no_grad()
def conditioned_grid(model: Surrogate, buffer: Buffer, target: int, variables: list[int], xs: torch.Tensor,
                     low: torch.Tensor, high: torch.Tensor, draw: bool = False) -> list:
    """The conditioned world model (:mod:`acbo.surrogate.world`) for several variables in one
    pass: xs Q x K values (observed units) of the Q ``variables``, low/high their domains (Q).
    Returns Q Gaussian predictives (:class:`acbo.predictive.GaussianMixture`, observed units) of
    E[Y | do] or, with ``draw``, of a fresh measurement."""
    from acbo.predictive import GaussianMixture
    from acbo.surrogate.world import conditioned_world

    batch, logits, tokens, mean, std = _encoded(model, buffer, target)
    dev = tokens.device
    var = torch.tensor(variables, dtype=torch.long)
    low, high = low.to(torch.float64), high.to(torch.float64)
    lo, hi = (low - mean[var]) / std[var], (high - mean[var]) / std[var]
    u = (xs.to(torch.float64) - low[:, None]) / (high - low)[:, None]
    w = conditioned_world(model, batch, tokens, torch.sigmoid(logits.double()), var[None].to(dev), lo[None].to(dev),
                          hi[None].to(dev), u[None].to(dev))
    v = (w.var_y if draw else w.var_f)[0].cpu()
    K = xs.shape[1]
    return [GaussianMixture.normal(w.mean[0, q].cpu(), v[q].sqrt()).affine(mean[target].expand(K), std[target].expand(K))
            for q in range(len(variables))]


def conditioned_predictive(model: Surrogate, buffer: Buffer, target: int, variable: int, x: torch.Tensor,
                           low: float, high: float, draw: bool = True):
    """The conditioned world model's predictive (:mod:`acbo.surrogate.world`; observed units,
    over the Q values x) of Y under do(X_variable = x): a Gaussian for a fresh measurement
    (``draw``) or for E[Y | do]. low, high: the variable's domain (observed units)."""
    return conditioned_grid(model, buffer, target, [variable], x.reshape(1, -1),
                            torch.tensor([low], dtype=torch.float64), torch.tensor([high], dtype=torch.float64), draw)[0]


@torch.no_grad()
def conditioned_set(model: Surrogate, buffer: Buffer, target: int, variables: list[int], xs: torch.Tensor,
                    low: torch.Tensor, high: torch.Tensor, draw: bool = False):
    """The conditioned world model (:mod:`acbo.surrogate.world`) for experiments that set the k
    ``variables`` together at xs (Q x k, observed units; low/high: their domains, k): a Gaussian
    over the Q settings (observed units) of E[Y | do(X_S = x)] or, with ``draw``, of a measurement.

    The prior adds the single-variable world models' effects (means and variances, each about Y's
    observational mean: right where the members act on Y separately, not where one acts through
    another); the rows where exactly this set was set correct it, through a GP over the members'
    positions on the residuals (:func:`acbo.surrogate.conditioning.set_residual`), with a
    measurement's noise the members' average, updated by any replicates of one setting."""
    from acbo.predictive import GaussianMixture
    from acbo.surrogate.conditioning import set_posterior
    from acbo.surrogate.world import conditioned_world

    if len(variables) < 2 or len(set(variables)) != len(variables):
        raise ValueError(f"a set query names at least two different variables, got {variables}")
    batch, logits, tokens, mean, std = _encoded(model, buffer, target)
    var = torch.tensor(variables, dtype=torch.long)
    k = len(variables)
    low, high = low.to(torch.float64), high.to(torch.float64)
    width = (high - low).clamp_min(1e-12)
    exact = (buffer.intervened[:, var].all(1) & (buffer.intervened.sum(1) == k))                     # N: rows that set S
    rows = buffer.values[exact][:, var].to(torch.float64)                                            # M x k
    ys = (buffer.values[exact, target].to(torch.float64) - mean[target]) / std[target]               # M
    at = torch.cat([xs.to(torch.float64), rows]) if len(rows) else xs.to(torch.float64)              # (Q + M) x k
    u = (at - low) / width                                                                           # (Q + M) x k
    w = conditioned_world(model, batch, tokens, torch.sigmoid(logits.double()), var[None], ((low - mean[var]) / std[var])[None],
                          ((high - mean[var]) / std[var])[None], u.T[None])                          # 1 x k x (Q + M)
    prior_mean, prior_var = w.mean[0].sum(0), w.var_f[0].sum(0)                                      # Q + M each
    noise = float((w.var_y - w.var_f)[0].mean())
    mean_f, var_f, noise = set_posterior(prior_mean, prior_var, u, ys, rows, noise)
    Q = xs.shape[0]
    var_out = var_f + (noise if draw else 0.0)
    return GaussianMixture.normal(mean_f, var_out.sqrt()).affine(mean[target].expand(Q), std[target].expand(Q))
