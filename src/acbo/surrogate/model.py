"""The amortized surrogate: a buffer in, a posterior over the target's parents out.

Permutation-equivariant over variables and invariant over samples, for any d and n:

1. each cell (sample i, variable j) is embedded from (standardised value z_ij, intervened flag,
   target flag, row-has-any-intervention flag, the target's value z_iY in the same sample, the
   product z_ij z_iY, and whether Y was set in that sample) — so that pooling over samples can
   read moments with the target directly;
2. ``row_layers`` of self-attention over the variables of each sample (rows are independent,
   so any n is processed in chunks of ``row_chunk`` rows: memory O(row_chunk d^2), time O(n d^2));
3. masked mean pooling over samples, separately over observational rows, rows where this
   variable was set, and rows where another variable was set (the three kinds of evidence a
   parent test needs), plus the log counts of each;
4. ``var_layers`` of self-attention over variables; with ``pair_bias``, each layer's attention
   logits get a learned bias per head from the pair's observational correlation and partial
   correlation (from the pooled second moments Σ z zᵀ of the observational rows, a d x d
   inverse per buffer), and the parent head reads the same pair features against the target —
   the statistics a linear-Gaussian parent test is built on, which the pooled per-variable
   tokens only approximate;
5. a parent head scoring every variable against the target: P(j in pa(Y)) independently per j.

Every row the buffer holds is used (no subsampling).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from acbo.buffer import PaddedBatch
from acbo.layers import Block


@dataclass(frozen=True)
class SurrogateConfig:
    """Architecture of the surrogate."""

    dim: int = 64
    """Width of every token."""
    heads: int = 4
    """Attention heads."""
    row_layers: int = 2
    """Attention layers over the variables of each sample, before pooling."""
    var_layers: int = 3
    """Attention layers over variables, after pooling over samples."""
    ff_mult: int = 2
    """Feed-forward width multiple."""
    row_chunk: int = 2048
    """Samples (summed over the batch) processed at once before pooling: bounds memory at large n
    and B; no effect on the output."""
    pair_bias: bool = False
    """Bias the variable attention and the parent head by each pair's observational correlation
    and partial correlation (step 4 above)."""

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.dim, self.heads, self.ff_mult, self.row_chunk) < 1 or min(self.row_layers, self.var_layers) < 0:
            raise ValueError(f"invalid surrogate config {self}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "surrogate config") -> "SurrogateConfig":
        """From a checkpoint's dict; fields added since the first format take their (off) default
        when absent. ValueError naming unknown or missing fields."""
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known or known - set(d) - set(ADDED_LATER):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: fields {got} do not match {sorted(known)}")
        return cls(**{**ADDED_LATER, **d})


ADDED_LATER = {"pair_bias": False}
"""Config fields that checkpoints written before them lack, with the value those checkpoints mean."""

PAIR_FEATURES = 5
"""Per pair (j, k): correlation, partial correlation, their absolute values, j == k."""
RIDGE = 1e-2
"""Added to the correlation matrix's diagonal before inverting it (n may be below d)."""


@dataclass(frozen=True)
class Pooled:
    """What the readout needs from the samples, as sums over them (the sums of two row sets add:
    incremental updates). sums: 3 x B x D x C pooled row features (observational rows, rows where
    this variable was set, rows where another was set); counts: 3 x B x D; cross: B x D x D,
    Σ z zᵀ over the observational rows (None for a model without ``pair_bias``)."""

    sums: torch.Tensor
    counts: torch.Tensor
    cross: torch.Tensor | None

    def __add__(self, other: "Pooled") -> "Pooled":
        cross = None if self.cross is None else self.cross + other.cross
        return Pooled(self.sums + other.sums, self.counts + other.counts, cross)


def pair_features(cross: torch.Tensor, n_obs: torch.Tensor, var_mask: torch.Tensor) -> torch.Tensor:
    """Observational correlation and partial correlation of every pair. cross: B x D x D (Σ z zᵀ
    over the observational rows, z standardised by them), n_obs: B, var_mask: B x D.
    Returns B x D x D x PAIR_FEATURES (zero for padding pairs)."""
    B, D, _ = cross.shape
    pair = var_mask[:, :, None] & var_mask[:, None, :]                                       # B x D x D
    eye = torch.eye(D, dtype=torch.bool, device=cross.device).expand(B, D, D)
    corr = (cross / n_obs.clamp_min(1)[:, None, None]).clamp(-1, 1)
    corr = torch.where(pair, corr, eye.to(corr.dtype))                                      # padding: identity
    prec = torch.linalg.inv(corr.double() + RIDGE * torch.eye(D, dtype=torch.float64, device=cross.device))
    diag = prec.diagonal(dim1=1, dim2=2).clamp_min(1e-12).sqrt()                            # B x D
    partial = (-prec / (diag[:, :, None] * diag[:, None, :])).to(corr.dtype)
    off = pair & ~eye
    corr, partial = corr * off, partial * off
    feats = torch.stack([corr, partial, corr.abs(), partial.abs(), (pair & eye).to(corr.dtype)], dim=-1)
    return feats


class Surrogate(nn.Module):
    """Buffers (a :class:`PaddedBatch`, values standardised) -> parent logits B x D."""

    def __init__(self, cfg: SurrogateConfig = SurrogateConfig()):
        super().__init__()
        self.cfg = cfg
        C = cfg.dim
        self.embed = nn.Sequential(nn.Linear(7, C), nn.GELU(), nn.Linear(C, C))
        self.row_blocks = nn.ModuleList(Block(C, cfg.heads, cfg.ff_mult) for _ in range(cfg.row_layers))
        self.pool_proj = nn.Sequential(nn.Linear(3 * C + 3, C), nn.GELU(), nn.Linear(C, C))
        self.target_embed = nn.Parameter(torch.zeros(C))
        self.var_blocks = nn.ModuleList(Block(C, cfg.heads, cfg.ff_mult) for _ in range(cfg.var_layers))
        self.ln = nn.LayerNorm(C)
        self.head = nn.Sequential(nn.Linear(3 * C, C), nn.GELU(), nn.Linear(C, 1))
        if cfg.pair_bias:  # zero-initialised output layers: a fresh pair path leaves the model unchanged
            self.pair_attn = nn.Sequential(nn.Linear(PAIR_FEATURES, C), nn.GELU(), nn.Linear(C, cfg.var_layers * cfg.heads))
            self.pair_head = nn.Sequential(nn.Linear(PAIR_FEATURES, C), nn.GELU(), nn.Linear(C, C))
            for out in (self.pair_attn[-1], self.pair_head[-1]):
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)

    def rows(self, values, intervened, target, var_mask) -> torch.Tensor:
        """Per-cell features after the row blocks, before pooling: rows are processed
        independently, so a pooled state is updated by passing only the new rows (see
        :class:`acbo.surrogate.Encoding`). values (standardised) / intervened: B x n x D,
        target / var_mask: B x D. Returns B x n x D x C."""
        B, n, D = values.shape
        dt = values.dtype
        tgt = target[:, None, :].expand(B, n, D)
        row_int = intervened.any(dim=2, keepdim=True).expand(B, n, D)
        z_y = (values * tgt.to(dt)).sum(2, keepdim=True).expand(B, n, D)                    # the target's value
        y_set = (intervened & tgt).any(2, keepdim=True).expand(B, n, D)
        feats = torch.stack([values, intervened.to(dt), tgt.to(dt), row_int.to(dt), z_y, values * z_y,
                             y_set.to(dt)], dim=-1)                                          # B x n x D x 7
        h = self.embed(feats)                                                                # B x n x D x C
        h = h.reshape(B * n, D, -1)                                                          # rows as sequences
        mask = var_mask[:, None, :].expand(B, n, D).reshape(B * n, D)
        for blk in self.row_blocks:
            h = blk(h, mask)
        return h.reshape(B, n, D, -1)

    def pool(self, batch: PaddedBatch) -> Pooled:
        """Pooled sums over samples (see :class:`Pooled`). Rows are independent before pooling,
        so the sums of two row sets add (incremental updates)."""
        values, intervened, row_mask, var_mask, target = (batch.values, batch.intervened, batch.row_mask,
                                                           batch.var_mask, batch.target)
        B, N, D = values.shape
        C = self.cfg.dim
        row_int = intervened.any(dim=2)                                                      # B x N
        w_obs = (row_mask & ~row_int)[:, :, None].expand(B, N, D)
        w_self = row_mask[:, :, None] & intervened
        w_other = (row_mask & row_int)[:, :, None] & ~intervened
        sums = torch.zeros(3, B, D, C, device=values.device, dtype=values.dtype)
        step = max(1, self.cfg.row_chunk // B)  # at most row_chunk samples (over the batch) at once
        for s in range(0, N, step):  # chunks of rows: pooled sums are exact
            e = min(N, s + step)
            h = self.rows(values[:, s:e], intervened[:, s:e], target, var_mask)            # B x n x D x C
            for k, w in enumerate((w_obs, w_self, w_other)):
                sums[k] += torch.einsum("bnd,bndc->bdc", w[:, s:e].to(h.dtype), h)
        counts = torch.stack([w.sum(1) for w in (w_obs, w_self, w_other)]).to(values.dtype)  # 3 x B x D
        return Pooled(sums, counts, self.cross(values, row_mask & ~row_int, var_mask))

    def cross(self, values: torch.Tensor, obs_rows: torch.Tensor, var_mask: torch.Tensor) -> torch.Tensor | None:
        """Σ z zᵀ over the observational rows: values B x n x D (standardised), obs_rows B x n ->
        B x D x D; None for a model without ``pair_bias``."""
        if not self.cfg.pair_bias:
            return None
        z = values * (var_mask[:, None, :] & obs_rows[:, :, None]).to(values.dtype)
        return torch.einsum("bnd,bne->bde", z, z)

    def pairs(self, pooled: Pooled, var_mask: torch.Tensor) -> torch.Tensor | None:
        """The pair features of the pooled observational moments (B x D x D x PAIR_FEATURES), or
        None for a model without ``pair_bias``. Interventional rows leave them unchanged."""
        if not self.cfg.pair_bias:
            return None
        n_obs = pooled.counts[0].amax(dim=1)                                                 # B: observational rows
        return pair_features(pooled.cross, n_obs, var_mask)

    def readout(self, pooled: Pooled, target: torch.Tensor, var_mask: torch.Tensor, pairs: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """From pooled sums to (parent logits B x D, -inf for the target and padding; variable
        tokens B x D x C, the encoding a policy can reuse). ``pairs``: the pair features when
        already known (:meth:`pairs`), else computed from ``pooled``."""
        sums, counts = pooled.sums, pooled.counts
        _, B, D, C = sums.shape
        pooled_mean = sums / counts.clamp_min(1)[..., None]                                  # 3 x B x D x C
        z = torch.cat([pooled_mean[0], pooled_mean[1], pooled_mean[2], torch.log1p(counts).permute(1, 2, 0)], dim=-1)
        h = self.pool_proj(z) + target[..., None].to(sums.dtype) * self.target_embed        # B x D x C
        biases, pair_t = [None] * len(self.var_blocks), None
        if self.cfg.pair_bias:
            pf = self.pairs(pooled, var_mask) if pairs is None else pairs                    # B x D x D x F
            H = self.cfg.heads
            biases = self.pair_attn(pf).reshape(B, D, D, -1, H).permute(3, 0, 4, 1, 2).unbind(0)   # layers x (B x H x D x D)
            pf_t = (pf * target[:, None, :, None].to(pf.dtype)).sum(2)                      # B x D x F: pair (j, Y)
            pair_t = self.pair_head(pf_t)                                                    # B x D x C
        for blk, bias in zip(self.var_blocks, biases):
            h = blk(h, var_mask, bias)
        h = self.ln(h)
        h_t = (h * target[..., None].to(h.dtype)).sum(1, keepdim=True).expand(B, D, C)     # the target's token
        pre = self.head[0](torch.cat([h, h_t, h * h_t], dim=-1))
        if pair_t is not None:
            pre = pre + pair_t
        logits = self.head[2](self.head[1](pre)).squeeze(-1)                                # B x D
        return logits.masked_fill(target | ~var_mask, float("-inf")), h

    def encode(self, batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(parent logits B x D, variable tokens B x D x C)."""
        return self.readout(self.pool(batch), batch.target, batch.var_mask)

    def forward(self, batch: PaddedBatch) -> torch.Tensor:
        """Parent logits, B x D (-inf for the target itself and for padding variables)."""
        return self.encode(batch)[0]
