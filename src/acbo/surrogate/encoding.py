"""The surrogate's state of B campaigns, updated incrementally as rows arrive.

The surrogate processes every sample independently before pooling, and the pools are sums
(:class:`~acbo.surrogate.model.Pooled`), so adding a measured row only needs that row's pass.
:class:`Encoding` keeps the pooled sums of a batch of campaigns (values standardised by their
fixed observational statistics) and adds rows, or scores hypothetical rows (a group of
candidate outcomes) without copying the buffer. A decision then costs one row pass plus the
variable-attention readout, whatever n is. :class:`Belief` is an encoding together with its
readout (parent marginals and variable tokens): what a policy reads.

Interventional rows never change the observational moments behind the pair features, so when
every added row is interventional the pair path's terms (:class:`PairTerms`) are computed once
and kept with the encoding.

Equality with a full pass: the pooled sums of an incremental update equal a full pass's up to
float32 rounding of the order of the additions (tested at 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from acbo.buffer import CampaignBatch
from acbo.surrogate.model import PairTerms, Pooled, Surrogate


@dataclass(frozen=True)
class Encoding:
    """Pooled surrogate state of B campaigns (:class:`Pooled`: sums 3 x B x D x C, counts
    3 x B x D, observational cross moments B x D x D or None), the observational mean/std (B x D)
    used to standardise new rows, target/var_mask B x D; pairs, the pair path's terms of these
    observational moments (:meth:`Surrogate.pair_terms`; None: computed at each readout)."""

    pooled: Pooled
    mean: torch.Tensor
    std: torch.Tensor
    target: torch.Tensor
    var_mask: torch.Tensor
    pairs: PairTerms | None = None

    @classmethod
    @torch.no_grad()
    def of(cls, surrogate: Surrogate, c: CampaignBatch) -> "Encoding":
        """Pool every row of the campaigns (one full pass)."""
        mean, std = c.observational_stats()
        pooled = surrogate.pool(c.standardised())
        return cls(pooled, mean, std, c.target, c.var_mask, surrogate.pair_terms(pooled, c.target, c.var_mask))

    def _row_terms(self, surrogate: Surrogate, rows: torch.Tensor, mask: torch.Tensor) -> Pooled:
        """Pool contributions of k rows per campaign taken one at a time: rows/mask B x k x D ->
        Pooled with a k axis after B (sums 3 x B x k x D x C, counts 3 x B x k x D, cross
        B x k x D x D or None)."""
        B, k, D = rows.shape
        z = ((rows - self.mean[:, None]) / self.std[:, None]).float()
        z = torch.where(self.var_mask[:, None], z, torch.zeros_like(z))
        h = surrogate.rows(z, mask, self.target, self.var_mask)                                # B x k x D x C
        row_int = mask.any(2, keepdim=True).expand_as(mask)                                      # B x k x D
        w = torch.stack([~row_int, mask, row_int & ~mask]).to(h.dtype) * self.var_mask[None, :, None]   # 3 x B x k x D
        cross = surrogate.cross(z.reshape(B * k, 1, D), ~row_int[:, :, 0].reshape(B * k, 1),
                                self.var_mask.repeat_interleave(k, dim=0))                       # B*k x D x D, one row each
        return Pooled(w[..., None] * h[None], w, None if cross is None else cross.reshape(B, k, D, D))

    @torch.no_grad()
    def add(self, surrogate: Surrogate, rows: torch.Tensor, mask: torch.Tensor) -> "Encoding":
        """The encoding after appending rows (B x k x D, all of them) to every campaign."""
        t = self._row_terms(surrogate, rows, mask)
        cross = None if t.cross is None else t.cross.sum(1)
        pooled = self.pooled + Pooled(t.sums.sum(2), t.counts.sum(2), cross)
        if not bool(mask.any(2).all()):  # an observational row: new moments, new pair terms
            return replace(self, pooled=pooled, pairs=surrogate.pair_terms(pooled, self.target, self.var_mask))
        return replace(self, pooled=pooled)

    @torch.no_grad()
    def marginals_with(self, surrogate: Surrogate, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Parent marginals after adding each candidate row on its own: rows/mask B x k x D ->
        B x k x D (the information-gain reward of a group of candidates)."""
        B, k, D = rows.shape
        t = self._row_terms(surrogate, rows, mask)                                               # k axis after B
        p = self.pooled
        C = t.sums.shape[-1]
        rep = lambda t: t.repeat_interleave(k, dim=0)                                            # B*k x ...
        pairs = cross = None
        if t.cross is not None:
            if bool(mask.any(2).all()):  # interventional rows: the observational moments stay as they are
                own = self.pairs if self.pairs is not None else surrogate.pair_terms(p, self.target, self.var_mask)
                pairs = own.repeat_interleave(k)
            else:
                cross = (p.cross[:, None] + t.cross).reshape(B * k, D, D)
        pooled = Pooled((p.sums[:, :, None] + t.sums).reshape(3, B * k, D, C),
                        (p.counts[:, :, None] + t.counts).reshape(3, B * k, D), cross)
        logits, _ = surrogate.readout(pooled, rep(self.target), rep(self.var_mask), pairs)
        return torch.sigmoid(logits).reshape(B, k, D)

    @torch.no_grad()
    def readout(self, surrogate: Surrogate) -> tuple[torch.Tensor, torch.Tensor]:
        """(parent marginals B x D, 0 for the target and padding; tokens B x D x C)."""
        logits, tokens = surrogate.readout(self.pooled, self.target, self.var_mask, self.pairs)
        return torch.sigmoid(logits), tokens


@dataclass(frozen=True)
class Belief:
    """What the surrogate believes about B campaigns: the encoding, and its readout —
    marginals B x D (P(j in pa(Y)), 0 for the target and padding) and tokens B x D x C."""

    encoding: Encoding
    marginals: torch.Tensor
    tokens: torch.Tensor

    @classmethod
    def of(cls, surrogate: Surrogate, c: CampaignBatch) -> "Belief":
        """From a full pass over the campaigns' rows."""
        return cls.read(surrogate, Encoding.of(surrogate, c))

    @classmethod
    def read(cls, surrogate: Surrogate, encoding: Encoding) -> "Belief":
        marginals, tokens = encoding.readout(surrogate)
        return cls(encoding, marginals, tokens)

    def add(self, surrogate: Surrogate, rows: torch.Tensor, mask: torch.Tensor) -> "Belief":
        """The belief after appending rows (B x k x D) to every campaign."""
        return Belief.read(surrogate, self.encoding.add(surrogate, rows, mask))


class EncodingCache:
    """A method's incremental encoding of its one campaign: rows added since the last decision
    are pooled onto the saved sums (a full pass when the observational rows changed or rows were
    removed). Its state travels with a saved campaign, so a reloaded one continues the same sums
    (a recomputation agrees only up to float32 rounding, which depends on the CPU)."""

    def __init__(self, surrogate: Surrogate):
        self.surrogate = surrogate
        self.encoding: Encoding | None = None
        self.key = (-1, -1)  # (rows encoded, observational rows then)
        self._read: Belief | None = None  # the last readout, of self.encoding

    def belief(self, c: CampaignBatch, n_rows: int, n_obs: int) -> Belief:
        """The belief about campaign ``c`` (B = 1) holding ``n_rows`` rows, ``n_obs`` observational."""
        n_done, obs_then = self.key
        if self.encoding is None or n_obs != obs_then or n_rows < n_done:
            self.encoding = Encoding.of(self.surrogate, c)
        elif n_rows > n_done:
            self.encoding = self.encoding.add(self.surrogate, c.values[:, n_done:], c.intervened[:, n_done:])
        self.key = (n_rows, n_obs)
        if self._read is None or self._read.encoding is not self.encoding:  # read once per encoding
            self._read = Belief.read(self.surrogate, self.encoding)
        return self._read

    def state_dict(self) -> dict:
        if self.encoding is None:
            return {}
        e = self.encoding
        return {"sums": e.pooled.sums, "counts": e.pooled.counts, "cross": e.pooled.cross, "mean": e.mean, "std": e.std,
                "target": e.target, "var_mask": e.var_mask, "rows": self.key[0], "n_obs": self.key[1]}

    def load_state_dict(self, state: dict, who: str) -> None:
        if not state:
            self.encoding, self.key = None, (-1, -1)
            return
        try:
            pooled = Pooled(state["sums"], state["counts"], state["cross"])
            self.encoding = Encoding(pooled, state["mean"], state["std"], state["target"], state["var_mask"],
                                     self.surrogate.pair_terms(pooled, state["target"], state["var_mask"]))
            self.key = (int(state["rows"]), int(state["n_obs"]))
        except KeyError as e:
            raise ValueError(f"{who}: saved state lacks {e}") from None
