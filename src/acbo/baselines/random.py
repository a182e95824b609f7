"""Uniform random search: a uniform intervenable variable at a uniform value in its domain."""

from __future__ import annotations

import torch

from acbo.buffer import Buffer
from acbo.method import Method, register_method


@register_method
class RandomSearch(Method):
    name = "random"

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        return self.random_proposal(generator)
