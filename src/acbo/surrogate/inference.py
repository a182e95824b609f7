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
