"""Mechanism and noise families, as batched parameter samplers and pure evaluators.

Every mechanism is a one-hidden-layer map of the (latent, standardised) parent values:

    g_k(u) = sum_h a[k, h] * act( sum_j W[k, h, j] u_j + c[k, h] )

with W masked to the parents of k. ``linear`` is H = 1 with the identity, ``mlp`` is a random
tanh network, ``gp`` is a random-Fourier-feature draw from a GP with an RBF kernel
(act = cos, a ~ N(0, 2/H), W ~ N(0, 1/l^2), c ~ U(0, 2 pi)).
"""

from __future__ import annotations

import math

import torch

MECHANISMS = ("linear", "mlp", "gp")
NOISES = ("gaussian", "laplace", "hetero")

HIDDEN = {"linear": 1, "mlp": 16, "gp": 32}


def activation(mechanism: str, z: torch.Tensor) -> torch.Tensor:
    if mechanism == "linear":
        return z
    if mechanism == "mlp":
        return torch.tanh(z)
    if mechanism == "gp":
        return torch.cos(z)
    raise ValueError(f"unknown mechanism {mechanism!r}; known: {MECHANISMS}")


def sample_parameters(
    mechanism: str, generator: torch.Generator, A: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random mechanism parameters for canonical DAGs A (B x d x d).

    Returns W: B x d x H x d (W[b, k, :, j] = 0 unless j -> k), c: B x d x H, a: B x d x H.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {mechanism!r}; known: {MECHANISMS}")
    B, d, _ = A.shape
    H = HIDDEN[mechanism]
    dev = generator.device
    mask = A.transpose(1, 2).unsqueeze(2).float()                                   # B x d(child) x 1 x d(parent)
    n_pa = A.sum(1).clamp_min(1).float()                                            # B x d
    if mechanism == "linear":
        sign = torch.randint(0, 2, (B, d, 1, d), generator=generator, device=dev).float() * 2 - 1
        mag = 0.5 + 1.5 * torch.rand(B, d, 1, d, generator=generator, device=dev)   # |w| ~ U(0.5, 2)
        W = sign * mag * mask
        c = torch.zeros(B, d, 1, device=dev)
        a = torch.ones(B, d, 1, device=dev)
    elif mechanism == "mlp":
        W = torch.randn(B, d, H, d, generator=generator, device=dev) * mask
        W = W * (1.5 / n_pa.sqrt())[:, :, None, None]
        c = torch.randn(B, d, H, generator=generator, device=dev)
        a = torch.randn(B, d, H, generator=generator, device=dev)
    else:  # gp: random Fourier features of an RBF kernel with lengthscale l ~ U(0.8, 1.6)
        ls = 0.8 + 0.8 * torch.rand(B, d, 1, 1, generator=generator, device=dev)
        W = torch.randn(B, d, H, d, generator=generator, device=dev) * mask / ls
        c = 2 * math.pi * torch.rand(B, d, H, generator=generator, device=dev)
        a = torch.randn(B, d, H, generator=generator, device=dev) * math.sqrt(2.0 / H)
    return W, c, a


def evaluate(mechanism: str, W_k: torch.Tensor, c_k: torch.Tensor, a_k: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g_k for one node, batched.

    W_k: B x H x p, c_k, a_k: B x H, u: B x n x p (the first p canonical latents). Returns B x n.
    """
    z = torch.einsum("bnp,bhp->bnh", u, W_k) + c_k[:, None, :]                       # B x n x H
    return torch.einsum("bnh,bh->bn", activation(mechanism, z), a_k)


def standard_noise(noise: str, generator: torch.Generator, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """Zero-mean, unit-variance noise of the given family (hetero uses Gaussian draws that are
    rescaled per sample by :func:`noise_multiplier`)."""
    dev = generator.device
    if noise in ("gaussian", "hetero"):
        return torch.randn(shape, generator=generator, device=dev, dtype=dtype)
    if noise == "laplace":  # inverse CDF; scale 1/sqrt(2) gives unit variance
        u = torch.rand(shape, generator=generator, device=dev, dtype=dtype) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs().clamp_max(0.5 - 1e-7)) / math.sqrt(2.0)
    raise ValueError(f"unknown noise {noise!r}; known: {NOISES}")


def noise_multiplier(noise: str, f: torch.Tensor, has_parent: torch.Tensor) -> torch.Tensor:
    """Per-sample noise-scale multiplier. Heteroskedastic noise grows with |f| (the node's
    standardised mechanism output): (0.5 + |f|) / 1.3, about 1 on average; 1 for roots and the
    homoskedastic families. f: B x n, has_parent: B -> B x n."""
    if noise != "hetero":
        return torch.ones_like(f)
    return torch.where(has_parent[:, None], (0.5 + f.abs()) / 1.3, torch.ones_like(f))
