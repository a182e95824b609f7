"""Neural-network layers shared by the surrogate and the policy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def unless_full(mask: torch.Tensor) -> torch.Tensor | None:
    """A boolean attention mask (True = attend), or None where every entry is True on a CPU (one
    campaign, no padding): attention without a mask is the same and costs half as much for a few
    tokens. On an accelerator the check would stall the stream, so the mask stays."""
    return None if mask.device.type == "cpu" and bool(mask.all()) else mask


class Block(nn.Module):
    """Pre-norm transformer block over the second-to-last axis (tokens), with a key mask."""

    def __init__(self, dim: int, heads: int, ff_mult: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: M x T x C tokens, key_mask: M x T (True = real token), bias: None or M x H x T x T
        added to the attention logits. Returns M x T x C."""
        M, T, C = x.shape
        H = self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(M, T, 3, H, C // H).permute(2, 0, 3, 1, 4)   # 3 x M x H x T x C/H
        if bias is not None:
            mask = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        else:
            mask = unless_full(key_mask[:, None, None, :])
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(attn.transpose(1, 2).reshape(M, T, C))
        return x + self.ff(self.ln2(x))
