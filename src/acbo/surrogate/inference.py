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


@torch.no_grad()
def world_predictive(model: Surrogate, buffer: Buffer, target: int, variable: int, x: torch.Tensor, draw: bool = True):
    """The world model's predictive (observed units, over the Q values x) of Y under
    do(X_variable = x) given the buffer: of a fresh measurement (``draw``) or of E[Y | do]."""
    if not model.cfg.queries:
        raise ValueError("this surrogate has no world-model head (trained without queries)")
    dev = next(model.parameters()).device
    batch = PaddedBatch.of_buffers([buffer], [target], standardise=True, device=dev)
    _, tokens = model.encode(batch)
    mean, std = buffer.observational_stats()
    z = ((x.to(torch.float64) - mean[variable]) / std[variable]).float().to(dev)
    draw_logits, mean_logits = model.query(batch, tokens, torch.tensor([[variable]], device=dev), z[None, None])
    bar = model.predictive((draw_logits if draw else mean_logits)[0, 0].double().cpu())
    Q = x.shape[0]
    return bar.affine(mean[target].expand(Q), std[target].expand(Q))
