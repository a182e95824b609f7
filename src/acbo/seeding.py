"""Reproducible, independent random streams.

Every random draw in acbo takes a ``torch.Generator``. Generators are derived from a tuple of
keys (integers or strings) through ``numpy.random.SeedSequence``, so that streams named by
different keys never collide: ``generator("test", family, seed)`` and ``generator("train", ...)``
are independent, and the same keys always give the same stream.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

def _key_to_int(key: int | str) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, np.integer, str)):
        raise ValueError(f"seed keys must be int or str, got {key!r}")
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8"))
    if key < 0:
        raise ValueError(f"seed keys must be non-negative, got {key}")
    return int(key)


def seed_from(*keys: int | str) -> int:
    """A 63-bit seed determined by ``keys`` (order matters)."""
    if not keys:
        raise ValueError("seed_from needs at least one key")
    ss = np.random.SeedSequence([_key_to_int(k) for k in keys])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def generator(*keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from ``keys``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed_from(*keys))
    return g


def standard_gamma(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(concentration, 1) draws from ``generator``: the one call of torch's private
    ``torch._standard_gamma``. Torch has no public gamma (or Beta, Dirichlet) sampler that takes a
    generator (``torch.distributions`` draws from the global stream), and no public draw gives the
    same numbers, so replacing it would change every sampled decision and every Student-t noise."""
    return torch._standard_gamma(concentration, generator=generator)


def sample_beta(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Beta(a, b) draws from ``generator``: Ga(a) / (Ga(a) + Ga(b))."""
    ga = standard_gamma(a, generator)
    gb = standard_gamma(b, generator)
    return ga / (ga + gb)
