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
5. a parent head scoring every variable against the target: P(j in pa(Y)) independently per j;
6. with ``queries`` (the world model), for a query (variable j, value x): a query token from
   j's token, Y's token and x (standardised by X_j's observational stats) attends over the
   context points of variable j — (x_ij, y_i, whether j or another variable was set) of every
   interventional row and of up to ``max_context`` observational rows (evenly spaced) — and not
   over other queries; two heads read it: a bar distribution over a fresh draw of Y under
   do(X_j = x) and one over E[Y | do(X_j = x)] (its posterior: the uncertainty that matters for
   choosing where to intervene), both in Y's observational standard units.

Every row the buffer holds is used for the parent posterior (no subsampling).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from acbo.buffer import PaddedBatch, rows_in_order
from acbo.layers import Block, unless_full
from acbo.predictive import BarDistribution, asinh_edges


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
    queries: bool = False
    """The world model: answer queries (variable j, value x) with the predictive distribution of
    Y under do(X_j = x) and the posterior of E[Y | do(X_j = x)] (step 6 above)."""
    n_bins: int = 64
    """Bins of the two predictive bar distributions (uniform in asinh of standardised Y)."""
    max_context: int = 512
    """Observational rows a query attends to at most (evenly spaced over the observational rows;
    every interventional row is attended to)."""
    query_stats: bool = False
    """Give each query the regression statistics of its variable (:func:`query_statistics`):
    what a linear model of the observations and of the rows where it was set predicts at the
    queried value, and a kernel average of Y near it. Without them the head must learn to multiply
    an attention average by the queried value, which it does slowly (BENCHMARKS.md)."""

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.dim, self.heads, self.ff_mult, self.row_chunk) < 1 or min(self.row_layers, self.var_layers) < 0:
            raise ValueError(f"invalid surrogate config {self}")
        if self.query_stats and not self.queries:
            raise ValueError("query_stats needs the world model (queries = True)")
        if self.n_bins < 2 or self.max_context < 1:
            raise ValueError(f"n_bins must be >= 2 and max_context >= 1, got {self.n_bins}, {self.max_context}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "surrogate config") -> "SurrogateConfig":
        """From a checkpoint's dict; fields added since the first format take their (off) default
        when absent. ValueError naming unknown or missing fields."""
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known or known - set(d) - set(ADDED_LATER):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{where}: fields {got} do not match {sorted(known)}")
        return cls(**{**ADDED_LATER, **d})


ADDED_LATER = {"pair_bias": False, "queries": False, "n_bins": 64, "max_context": 512, "query_stats": False}
"""Config fields that checkpoints written before them lack, with the value those checkpoints mean."""

QUERY_MODULES = ("ctx_embed", "query_embed", "q_ln", "q_proj", "kv", "q_out", "q_ff", "draw_head", "mean_head",
                 "stat_embed")
"""The world model's modules (``queries``): absent from checkpoints written without it."""
CONTEXT_FEATURES = 6
"""Per context point of a query: x_ij, y_i, x_ij y_i, j set, another variable set, observational."""
STAT_FEATURES = 9
"""Per query (j, x): x·b_obs, x·b_all, the line through the rows where j was set at x, their share
n_j / (n_j + 2), a kernel average of Y near x over those rows and log(1 + its weight), and the three
slopes b_obs, b_all, b_set (see :func:`query_statistics`)."""
KERNEL_WIDTH = 0.5
"""Bandwidth (standardised units of X_j) of the kernel average over the rows where j was set."""
INPUT_CLAMP = 50.0
"""Standardised values beyond +-50 (far interventions) enter the model clamped there."""
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


@dataclass(frozen=True)
class PairTerms:
    """What the pair path adds to a readout (:meth:`Surrogate.pair_terms`), a function of the
    observational moments and the target only, so a campaign whose new rows are all
    interventional keeps them: biases, one B x H x D x D attention bias per variable-attention
    layer; head, B x D x C, the (j, Y) pair's term in the parent head."""

    biases: tuple[torch.Tensor, ...]
    head: torch.Tensor

    def repeat_interleave(self, k: int) -> "PairTerms":
        """Each campaign's terms k times over (B*k campaigns)."""
        rep = lambda t: t.repeat_interleave(k, dim=0)
        return PairTerms(tuple(rep(b) for b in self.biases), rep(self.head))


def _clamped_xy(batch: "PaddedBatch") -> tuple[torch.Tensor, torch.Tensor]:
    """The standardised values clamped to +-INPUT_CLAMP in float64 (B x N x D) and the target's
    column of them (B x N)."""
    x = batch.values.clamp(-INPUT_CLAMP, INPUT_CLAMP).double()
    return x, (x * batch.target.double()[:, None, :]).sum(2)


def observational_slopes(batch: "PaddedBatch", xy: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(b_obs, b_all), B x D float64 each: the slope of Y on X_j over the observational rows, and
    X_j's coefficient in the ridge regression of Y on every other variable there (see
    :func:`query_statistics`). ``xy``: :func:`_clamped_xy` of the batch, when already at hand."""
    x, y = _clamped_xy(batch) if xy is None else xy
    obs = (batch.row_mask & ~batch.intervened.any(2)).double()                             # B x N
    cols = (batch.var_mask & ~batch.target).double()                                       # B x D
    xo = x * obs[..., None] * cols[:, None, :]                                             # B x N x D
    sxx = (xo * xo).sum(1)                                                                 # B x D
    b_obs = (xo * y[..., None]).sum(1) / (sxx + RIDGE * obs.sum(1, keepdim=True) + 1e-9)   # B x D
    gram = xo.transpose(1, 2) @ xo + torch.diag_embed(RIDGE * obs.sum(1, keepdim=True).clamp_min(1) * cols + (1 - cols))
    b_all = torch.linalg.solve(gram, (xo * y[..., None]).sum(1)[..., None])[..., 0]        # B x D
    return b_obs, b_all


def query_statistics(batch: "PaddedBatch", var: torch.Tensor, z: torch.Tensor,
                     slopes: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """B x Q x K x STAT_FEATURES regression statistics for queries do(X_var = z) (standardised
    values; var B x Q, z B x Q x K): b_obs, the slope of Y on X_j over the observational rows; b_all,
    X_j's coefficient in the ridge regression of Y on every other variable there; over the rows
    where only X_j was set (n_j of them), the least-squares line (its value at z, once n_j >= 2)
    and a Gaussian-kernel average of Y at z with log(1 + its total weight). Clamped to +-INPUT_CLAMP.
    ``slopes``: :func:`observational_slopes` of the batch, when already known (they change only
    with the observational rows)."""
    B, N, D = batch.values.shape
    _, Q, K = z.shape
    x, y = _clamped_xy(batch)                                                              # B x N x D, B x N
    b_obs, b_all = observational_slopes(batch, (x, y)) if slopes is None else slopes       # B x D each
    single = batch.intervened.sum(2) == 1
    pick = lambda t: t.gather(1, var)                                                      # B x D -> B x Q
    # the rows where one variable was set, gathered in arrival order (M <= interventions, not N)
    sel = single & batch.row_mask                                                          # B x N
    rows = rows_in_order(sel)                                                              # B x M
    M = rows.shape[1]
    x_m, y_m = x.gather(1, rows[..., None].expand(B, M, D)), y.gather(1, rows)              # B x M x D, B x M
    iv_m = batch.intervened.gather(1, rows[..., None].expand(B, M, D)) & sel.gather(1, rows)[..., None]
    xj = x_m.gather(2, var[:, None, :].expand(B, M, Q))                                    # B x M x Q
    setj = iv_m.gather(2, var[:, None, :].expand(B, M, Q)).double()                        # B x M x Q
    n_j = setj.sum(1)                                                                      # B x Q
    mx = (setj * xj).sum(1) / n_j.clamp_min(1)
    my = (setj * y_m[..., None]).sum(1) / n_j.clamp_min(1)
    dx = (xj - mx[:, None]) * setj
    b_set = (dx * y_m[..., None]).sum(1) / ((dx * dx).sum(1) + RIDGE * n_j + 1e-9)        # B x Q
    zz = z.double()                                                                        # B x Q x K
    line = torch.where(n_j[..., None] >= 2, my[..., None] + b_set[..., None] * (zz - mx[..., None]), torch.zeros_like(zz))
    w = torch.exp(-0.5 * ((xj.transpose(1, 2)[:, :, None, :] - zz[..., None]) / KERNEL_WIDTH) ** 2)  # B x Q x K x M
    w = w * setj.transpose(1, 2)[:, :, None, :]
    wsum = w.sum(3)                                                                        # B x Q x K
    local = (w * y_m[:, None, None, :]).sum(3) / wsum.clamp_min(1e-6)
    slopes = torch.stack([pick(b_obs), pick(b_all), b_set], -1)[:, :, None].expand(B, Q, K, 3)
    feats = torch.cat([torch.stack([zz * pick(b_obs)[..., None], zz * pick(b_all)[..., None], line,
                                    (n_j / (n_j + 2))[..., None].expand(B, Q, K), local, torch.log1p(wsum)], -1),
                       slopes], -1)
    return feats.clamp(-INPUT_CLAMP, INPUT_CLAMP).float()


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


class ContextMemo:
    """What :meth:`Surrogate.query` keeps between the decisions of one campaign: the keys and
    values of the context rows it has seen (rows are only ever added: observational rows first,
    then each intervention's), with what they were computed from. Every use compares that with
    the batch and recomputes from the first row that differs; empty until the first query."""

    def __init__(self):
        self.key: tuple[torch.Tensor, ...] | None = None  # var, target, idx, keep, rows, intervened
        self.k = self.v = self.mask = None                 # (B Q) x H x capacity x C/H, (B Q) x 1 x 1 x capacity
        # observational_slopes, the context rows they were computed with, and the observational row
        # counts (B) and variable mask then: valid while those rows hold and no observational row came
        self.slopes: tuple[torch.Tensor, torch.Tensor] | None = None
        self.slope_rows, self.n_obs, self.var_mask = 0, None, None
        self.observed: tuple | None = None
        """The conditioned world model's reading of the observations (:mod:`acbo.surrogate.world`),
        with the tensors it was computed from."""

    def prefix(self, var, target, idx, keep, rows, intervened) -> int:
        """How many leading context rows (of idx B x R) hold what this memo computed them from."""
        if self.key is None:
            return 0
        m_var, m_target, m_idx, m_keep, m_rows, m_iv = self.key
        if m_var.shape != var.shape or not torch.equal(m_var, var) or not torch.equal(m_target, target):
            return 0
        n = min(m_idx.shape[1], idx.shape[1])
        same = ((m_idx[:, :n] == idx[:, :n]) & (m_keep[:, :n] == keep[:, :n])
                & (m_rows[:, :n] == rows[:, :n]).all(2) & (m_iv[:, :n] == intervened[:, :n]).all(2)).all(0)  # n
        return n if bool(same.all()) else int((~same).float().argmax())

    def write(self, start: int, key: tuple[torch.Tensor, ...], kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """Hold the keys, values and mask of context rows start .. R (kv) and what they came from (key)."""
        k, v, mask = kv
        end = start + k.shape[2]
        if start == 0 or self.k.shape[2] < end:  # a fresh start, or out of room: twice the rows, the kept ones copied
            old = (self.k, self.v, self.mask)
            cap = max(end + 32, 2 * end)
            self.k, self.v = k.new_zeros(*k.shape[:2], cap, k.shape[3]), v.new_zeros(*v.shape[:2], cap, v.shape[3])
            self.mask = mask.new_zeros(*mask.shape[:3], cap)
            if start:
                self.k[:, :, :start], self.v[:, :, :start] = old[0][:, :, :start], old[1][:, :, :start]
                self.mask[..., :start] = old[2][..., :start]
        self.k[:, :, start:end], self.v[:, :, start:end], self.mask[..., start:end] = k, v, mask
        self.key = key

    def slopes_for(self, batch: PaddedBatch, prefix: int, rows: int, n_obs: torch.Tensor, max_context: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`observational_slopes` of ``batch``, kept from an earlier call when they cannot
        have changed: every observational row is a context row (n_obs <= max_context), the
        ``prefix`` leading context rows hold what this memo saw (see :meth:`prefix`) and cover the
        rows there were then, and the observational row counts and variables are the same."""
        if (self.slopes is None or prefix < self.slope_rows or int(n_obs.max()) > max_context
                or not torch.equal(n_obs, self.n_obs) or not torch.equal(batch.var_mask, self.var_mask)):
            self.slopes = observational_slopes(batch)
            self.slope_rows, self.n_obs, self.var_mask = rows, n_obs, batch.var_mask
        return self.slopes


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
        if cfg.queries:
            self.register_buffer("edges", asinh_edges(cfg.n_bins), persistent=False)
            self.ctx_embed = nn.Sequential(nn.Linear(CONTEXT_FEATURES, C), nn.GELU(), nn.Linear(C, C))
            self.query_embed = nn.Sequential(nn.Linear(2 * C + 2, C), nn.GELU(), nn.Linear(C, C))
            self.q_ln = nn.LayerNorm(C)
            self.q_proj = nn.Linear(C, C)
            self.kv = nn.Linear(C, 2 * C)
            self.q_out = nn.Linear(C, C)
            self.q_ff = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.ff_mult * C), nn.GELU(), nn.Linear(cfg.ff_mult * C, C))
            self.draw_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.n_bins))
            self.mean_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, cfg.n_bins))
            if cfg.query_stats:  # zero-initialised output: added to a trained head, it starts as that head
                self.stat_embed = nn.Sequential(nn.Linear(STAT_FEATURES, C), nn.GELU(), nn.Linear(C, C))
                nn.init.zeros_(self.stat_embed[-1].weight)
                nn.init.zeros_(self.stat_embed[-1].bias)

    def rows(self, values, intervened, target, var_mask) -> torch.Tensor:
        """Per-cell features after the row blocks, before pooling: rows are processed
        independently, so a pooled state is updated by passing only the new rows (see
        :class:`acbo.surrogate.Encoding`). values (standardised) / intervened: B x n x D,
        target / var_mask: B x D. Returns B x n x D x C."""
        B, n, D = values.shape
        dt = values.dtype
        values = values.clamp(-INPUT_CLAMP, INPUT_CLAMP)
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

    def pair_terms(self, pooled: Pooled, target: torch.Tensor, var_mask: torch.Tensor) -> PairTerms | None:
        """The pair path's terms of a readout from the pooled observational moments (None for a
        model without ``pair_bias``)."""
        if not self.cfg.pair_bias:
            return None
        pf = self.pairs(pooled, var_mask)                                                    # B x D x D x F
        B, D = target.shape
        biases = self.pair_attn(pf).reshape(B, D, D, -1, self.cfg.heads).permute(3, 0, 4, 1, 2).unbind(0)  # layers x (B x H x D x D)
        pf_t = (pf * target[:, None, :, None].to(pf.dtype)).sum(2)                          # B x D x F: pair (j, Y)
        return PairTerms(biases, self.pair_head(pf_t))

    def readout(self, pooled: Pooled, target: torch.Tensor, var_mask: torch.Tensor, pairs: PairTerms | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """From pooled sums to (parent logits B x D, -inf for the target and padding; variable
        tokens B x D x C, the encoding a policy can reuse). ``pairs``: the pair terms when
        already known (:meth:`pair_terms` of the same observational moments), else computed."""
        sums, counts = pooled.sums, pooled.counts
        _, B, D, C = sums.shape
        pooled_mean = sums / counts.clamp_min(1)[..., None]                                  # 3 x B x D x C
        z = torch.cat([pooled_mean[0], pooled_mean[1], pooled_mean[2], torch.log1p(counts).permute(1, 2, 0)], dim=-1)
        h = self.pool_proj(z) + target[..., None].to(sums.dtype) * self.target_embed        # B x D x C
        if pairs is None:
            pairs = self.pair_terms(pooled, target, var_mask)
        biases, pair_t = ([None] * len(self.var_blocks), None) if pairs is None else (pairs.biases, pairs.head)
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

    # ---------------------------------------------------------------- the world model
    def context(self, batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows queries attend to: every interventional row (Y not set) and up to
        ``max_context`` observational rows, evenly spaced. Returns (row indices B x R, mask
        B x R of real rows), R = the largest count over the batch."""
        return self._context(batch)[:2]

    def _context(self, batch: PaddedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`context` and the observational row counts (B)."""
        B, N, D = batch.values.shape
        dev = batch.values.device
        row_int = batch.intervened.any(2) & batch.row_mask                                  # B x N
        y_set = (batch.intervened & batch.target[:, None, :]).any(2)
        obs = batch.row_mask & ~row_int
        n_obs = obs.sum(1)                                                                  # B
        M = self.cfg.max_context
        # rank of each observational row among them; keep ranks on an even grid of at most M
        rank = obs.long().cumsum(1) - 1                                                     # B x N
        stride = (n_obs.float() / M).clamp_min(1.0)                                          # B
        keep_obs = obs & (torch.floor(rank.float() / stride[:, None]) != torch.floor((rank.float() - 1) / stride[:, None]))
        keep = keep_obs | (row_int & ~y_set)
        R = max(1, int(keep.sum(1).max()))
        score = torch.where(keep, -torch.arange(N, device=dev, dtype=torch.float32)[None], torch.full((B, N), -1e9, device=dev))
        idx = score.topk(R, dim=1).indices.sort(dim=1).values                              # B x R, arrival order
        return idx, keep.gather(1, idx), n_obs

    def _context_kv(self, batch: PaddedBatch, var: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys and values of the context rows ``idx`` (B x R) for queries on the variables ``var``
        (B x Q): each (B Q) x H x R x C/H, and the attention mask (B Q) x 1 x 1 x R."""
        B, N, D = batch.values.shape
        Q, R = var.shape[1], idx.shape[1]
        C, H = self.cfg.dim, self.cfg.heads
        take = lambda t: t.gather(1, idx[..., None].expand(B, R, D))                        # B x R x D
        zv, iv = take(batch.values).clamp(-INPUT_CLAMP, INPUT_CLAMP), take(batch.intervened)
        y = (zv * batch.target[:, None, :].to(zv.dtype)).sum(2, keepdim=True)              # B x R x 1
        row_int = iv.any(2, keepdim=True)
        xj = zv.gather(2, var[:, None, :].expand(B, R, Q))                                  # B x R x Q
        setj = iv.gather(2, var[:, None, :].expand(B, R, Q)).to(zv.dtype)
        other = row_int.to(zv.dtype) - setj
        ctx = torch.stack([xj, y.expand_as(xj), xj * y, setj, other, 1 - row_int.to(zv.dtype).expand_as(xj)], -1)
        e = self.ctx_embed(ctx).permute(0, 2, 1, 3).reshape(B * Q, R, C)                      # (B Q) x R x C
        k, v = self.kv(e).reshape(B * Q, R, 2, H, C // H).permute(2, 0, 3, 1, 4)            # 2 x (B Q) x H x R x C/H
        return k, v, keep[:, None, :].expand(B, Q, R).reshape(B * Q, 1, 1, R)

    def _memo_kv(self, batch: PaddedBatch, var: torch.Tensor, memo: "ContextMemo"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """:meth:`_context_kv` of every context row, read from ``memo`` for the leading rows that
        are those it holds (same rows, same values, same queried variables), computed and added
        to it for the rest; and the observational slopes (:meth:`ContextMemo.slopes_for`; None
        for a model without ``query_stats``)."""
        idx, keep, n_obs = self._context(batch)                                              # B x R, B
        B, R = idx.shape
        D = batch.values.shape[2]
        rows = batch.values.gather(1, idx[..., None].expand(B, R, D))                       # B x R x D
        ivr = batch.intervened.gather(1, idx[..., None].expand(B, R, D))
        P = memo.prefix(var, batch.target, idx, keep, rows, ivr)
        slopes = memo.slopes_for(batch, P, R, n_obs, self.cfg.max_context) if self.cfg.query_stats else None
        if P < R:
            memo.write(P, (var, batch.target, idx, keep, rows, ivr),
                       self._context_kv(batch, var, idx[:, P:], keep[:, P:]))
        return memo.k[:, :, :R], memo.v[:, :, :R], memo.mask[..., :R], slopes

    def query(self, batch: PaddedBatch, tokens: torch.Tensor, var: torch.Tensor, z: torch.Tensor,
              memo: "ContextMemo | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive logits for queries do(X_var = value): batch (standardised), tokens B x D x C
        (:meth:`readout`), var B x Q (variable indices), z B x Q x K (values standardised by
        each variable's observational mean and std). Returns (draw logits, mean logits), each
        B x Q x K x n_bins, over :attr:`edges` in Y's standard units.

        ``memo`` (a :class:`ContextMemo` kept across the decisions of a campaign) holds the keys
        and values of the context rows already seen, so that only the rows added since are
        encoded: the same answer, without recomputing the rest."""
        if not self.cfg.queries:
            raise ValueError("this surrogate has no world-model head (SurrogateConfig.queries = False)")
        B, Q, K = z.shape
        C, H = self.cfg.dim, self.cfg.heads
        if memo is None:
            k, v, mask = self._context_kv(batch, var, *self.context(batch))
            slopes = None
        else:
            k, v, mask, slopes = self._memo_kv(batch, var, memo)
        h_j = tokens.gather(1, var[..., None].expand(B, Q, C))                              # B x Q x C
        h_y = (tokens * batch.target[..., None].to(tokens.dtype)).sum(1, keepdim=True).expand(B, Q, C)
        zq = z.to(tokens.dtype).clamp(-INPUT_CLAMP, INPUT_CLAMP)
        q_in = torch.cat([h_j[:, :, None].expand(B, Q, K, C), h_y[:, :, None].expand(B, Q, K, C), zq[..., None],
                          torch.asinh(zq)[..., None]], -1)
        q = self.query_embed(q_in)                                                           # B x Q x K x C
        if self.cfg.query_stats:
            q = q + self.stat_embed(query_statistics(batch, var, z, slopes).to(q.dtype))
        q = q.reshape(B * Q, K, C)                                                           # (B Q) x K x C
        qh = self.q_proj(self.q_ln(q)).reshape(B * Q, K, H, C // H).transpose(1, 2)        # (B Q) x H x K x C/H
        att = F.scaled_dot_product_attention(qh, k, v, attn_mask=unless_full(mask))          # queries do not see each other
        o = q + self.q_out(att.transpose(1, 2).reshape(B * Q, K, C))
        o = (o + self.q_ff(o)).reshape(B, Q, K, C)
        return self.draw_head(o), self.mean_head(o)

    def predictive(self, logits: torch.Tensor) -> BarDistribution:
        """The bar distribution (Y's standard units) of logits from :meth:`query`."""
        return BarDistribution.from_logits(logits, self.edges)
