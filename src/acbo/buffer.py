"""The data of one system: observational and interventional rows in arrival order.

A row is one joint measurement of all d variables; its intervention mask marks the variables
that were set (hard interventions) in that experiment. Rows without a mark are observational.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Buffer:
    """Rows of one system (N x d values, N x d intervention mask), grown by amortised doubling."""

    def __init__(self, d: int, capacity: int = 256, dtype: torch.dtype = torch.float64):
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"a buffer needs d >= 1 variables, got {d!r}")
        self.d = d
        self._values = torch.empty(max(capacity, 1), d, dtype=dtype)
        self._mask = torch.zeros(max(capacity, 1), d, dtype=torch.bool)
        self._n = 0

    @property
    def n(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    @property
    def values(self) -> torch.Tensor:
        """N x d values (a view; do not write to it)."""
        return self._values[: self._n]

    @property
    def intervened(self) -> torch.Tensor:
        """N x d bool: which variables were set in each row."""
        return self._mask[: self._n]

    @property
    def observational_rows(self) -> torch.Tensor:
        """N bool: rows with no intervention."""
        return ~self.intervened.any(dim=1)

    @property
    def n_obs(self) -> int:
        return int(self.observational_rows.sum())

    @property
    def n_int(self) -> int:
        return self._n - self.n_obs

    def add(self, values, intervened=None) -> None:
        """Append rows. values: n x d (or d); intervened: bool, same shape (default: none)."""
        v = torch.as_tensor(values, dtype=self._values.dtype)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != self.d:
            raise ValueError(f"rows must have shape n x {self.d}, got {tuple(v.shape)}")
        if not torch.isfinite(v).all():
            raise ValueError("rows contain NaN or inf")
        m = torch.zeros_like(v, dtype=torch.bool) if intervened is None else torch.as_tensor(intervened, dtype=torch.bool)
        if m.ndim == 1:
            m = m[None]
        if m.shape != v.shape:
            raise ValueError(f"intervention mask shape {tuple(m.shape)} does not match rows {tuple(v.shape)}")
        n_new = self._n + v.shape[0]
        if n_new > self._values.shape[0]:
            cap = max(n_new, 2 * self._values.shape[0])
            self._values = torch.cat([self._values[: self._n], self._values.new_empty(cap - self._n, self.d)])
            self._mask = torch.cat([self._mask[: self._n], self._mask.new_zeros(cap - self._n, self.d)])
        self._values[self._n : n_new] = v
        self._mask[self._n : n_new] = m
        self._n = n_new

    def observational_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (d each) of the observational rows (all rows if fewer than 2 are
        observational); a std of 0 is replaced by 1."""
        rows = self.observational_rows
        x = self.values[rows] if int(rows.sum()) >= 2 else self.values
        if x.shape[0] == 0:
            raise ValueError("the buffer is empty")
        mean = x.mean(dim=0)
        std = x.std(dim=0) if x.shape[0] > 1 else torch.ones_like(mean)
        return mean, torch.where(std > 0, std, torch.ones_like(std))

    def copy(self) -> "Buffer":
        out = Buffer(self.d, capacity=max(self._n, 1), dtype=self._values.dtype)
        out.add(self.values, self.intervened)
        return out

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "intervened": self.intervened.clone()}

    @classmethod
    def from_state(cls, state: dict) -> "Buffer":
        v = state["values"]
        out = cls(v.shape[1], capacity=max(v.shape[0], 1), dtype=v.dtype)
        out.add(v, state["intervened"])
        return out


@dataclass(frozen=True)
class PaddedBatch:
    """Buffers of different n and d, padded to B x N x D.

    values: B x N x D (standardised by each buffer's observational stats when asked, 0 in
    padding), intervened: B x N x D bool, row_mask: B x N (real rows), var_mask: B x D (real
    variables), target: B x D one-hot of the target variable (False where none is given).
    """

    values: torch.Tensor
    intervened: torch.Tensor
    row_mask: torch.Tensor
    var_mask: torch.Tensor
    target: torch.Tensor


def pad_batch(
    buffers: list[Buffer],
    targets: list[int] | None = None,
    standardise: bool = True,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> PaddedBatch:
    """Stack buffers into one padded, masked batch (one copy per buffer, no per-row loops)."""
    if not buffers:
        raise ValueError("pad_batch needs at least one buffer")
    B = len(buffers)
    N = max(b.n for b in buffers)
    D = max(b.d for b in buffers)
    values = torch.zeros(B, N, D, dtype=dtype, device=device)
    intervened = torch.zeros(B, N, D, dtype=torch.bool, device=device)
    row_mask = torch.zeros(B, N, dtype=torch.bool, device=device)
    var_mask = torch.zeros(B, D, dtype=torch.bool, device=device)
    target = torch.zeros(B, D, dtype=torch.bool, device=device)
    for i, buf in enumerate(buffers):
        x = buf.values
        if standardise:
            mean, std = buf.observational_stats()
            x = (x - mean) / std
        values[i, : buf.n, : buf.d] = x.to(device=device, dtype=dtype)
        intervened[i, : buf.n, : buf.d] = buf.intervened.to(device)
        row_mask[i, : buf.n] = True
        var_mask[i, : buf.d] = True
        if targets is not None:
            if not 0 <= targets[i] < buf.d:
                raise ValueError(f"target {targets[i]} out of range for buffer {i} with d = {buf.d}")
            target[i, targets[i]] = True
    return PaddedBatch(values, intervened, row_mask, var_mask, target)


def observational_stats(values: torch.Tensor, intervened: torch.Tensor, row_mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-variable mean and std over each buffer's observational rows (real rows where nothing
    was set). values/intervened: B x N x D, row_mask: B x N. Returns (mean, std), B x D each; std is
    1 where it is 0."""
    obs = (row_mask & ~intervened.any(2)).to(values.dtype)[..., None]                        # B x N x 1
    n = obs.sum(1).clamp_min(1)                                                              # B x 1
    mean = (values * obs).sum(1) / n
    var = (((values - mean[:, None]) ** 2) * obs).sum(1) / (n - 1).clamp_min(1)
    std = var.sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardise_by_observations(values: torch.Tensor, intervened: torch.Tensor, row_mask: torch.Tensor,
                                var_mask: torch.Tensor) -> torch.Tensor:
    """B x N x D values standardised per buffer and variable by the observational rows' stats,
    0 in padding (rows or variables)."""
    mean, std = observational_stats(values, intervened, row_mask)
    z = (values - mean[:, None]) / std[:, None]
    return torch.where(row_mask[..., None] & var_mask[:, None], z, torch.zeros_like(z))
