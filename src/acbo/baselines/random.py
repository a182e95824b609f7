"""Uniform random search: a uniform intervenable variable (or, where experiments may set several
at once, a uniform allowed set) at uniform values in their domains."""

from __future__ import annotations

import torch

from acbo.buffer import Buffer
from acbo.method import Method, register_method


@register_method
class RandomSearch(Method):
    name = "random"
    chooses_sets = True

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        return self.random_proposal(generator)

    def ask_set(self, buffer: Buffer, generator: torch.Generator) -> dict[int, float]:
        return self.random_set(generator)
