"""The data: rows of one system, and the batched forms the models read.

A row is one joint measurement of all d variables; its intervention mask marks the variables
that were set (hard interventions) in that experiment. Rows without a mark are observational.
The types, from the user's data to a model's training batch:

- :class:`Buffer` — the rows of one system in arrival order (N x d, float64), grown by
  ``add``; what every method reads.
- :class:`CampaignBatch` — B buffers padded to B x N x D (raw, observed units) together with what
  a decision needs: the target, the domains, which variables may be set, the step and the
  budget. Built from one buffer (``CampaignBatch.of_buffer``, deployment) or from B simulated
  campaigns of the same size (``CampaignBatch.of_rows``, training).
- :class:`PaddedBatch` — the surrogate's input: values standardised per buffer and variable by
  the observational rows, with row, variable and target masks. From a campaign
  (``CampaignBatch.standardised``) or from buffers (``PaddedBatch.of_buffers``).
- :class:`TrainingBatch` — a PaddedBatch with what the surrogate learns from: the true parents,
  optionally another posterior's marginals to distil (the expert's), the raw values, and which
  rows are linear-Gaussian (where the exact posterior is the Bayes answer). From a campaign
  (``CampaignBatch.training_batch``), from the simulator (``acbo.surrogate.data.sample_buffers``) or
  from demonstrations (``acbo.surrogate.data.load_demo_buffers``).

The surrogate's pooled state of a campaign (``acbo.surrogate.Encoding``) and the simulated
campaigns themselves (``acbo.env.Env``, which hold an SCM and hand out CampaignBatches) are built on
these.
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
        self.believed = 0
        """How many of the last rows stand for pending experiments (asked, not yet measured): their
        values are believed, not measured (:meth:`acbo.method.Method.believed`); 0 in a buffer of
        measurements."""

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
        """Mean and std (d each) of the observational rows (:func:`rows_stats`)."""
        if self._n == 0:
            raise ValueError("the buffer is empty")
        return rows_stats(self.values, self.intervened)

    @property
    def told(self) -> "Buffer":
        """The measured rows: this buffer, or a copy without its believed rows."""
        if not self.believed:
            return self
        out = Buffer(self.d, capacity=self._n - self.believed, dtype=self._values.dtype)
        out.add(self._values[: self._n - self.believed], self._mask[: self._n - self.believed])
        return out

    def copy(self) -> "Buffer":
        out = Buffer(self.d, capacity=max(self._n, 1), dtype=self._values.dtype)
        out.add(self.values, self.intervened)
        out.believed = self.believed
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
    """Buffers of different n and d, padded to B x N x D: the surrogate's input.

    values: B x N x D (standardised by each buffer's observational stats, 0 in padding),
    intervened: B x N x D bool, row_mask: B x N (real rows), var_mask: B x D (real variables),
    target: B x D one-hot of the target variable (False where none is given).
    """

    values: torch.Tensor
    intervened: torch.Tensor
    row_mask: torch.Tensor
    var_mask: torch.Tensor
    target: torch.Tensor

    @classmethod
    def of_buffers(cls, buffers: list[Buffer], targets: list[int] | None = None, standardise: bool = True,
                   dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "PaddedBatch":
        """Stack buffers into one padded, masked batch (one copy per buffer, no per-row loops)."""
        if not buffers:
            raise ValueError("a padded batch needs at least one buffer")
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
        return cls(values, intervened, row_mask, var_mask, target)

    def index(self, idx: torch.Tensor) -> "PaddedBatch":
        """The buffers ``idx``."""
        return PaddedBatch(self.values[idx], self.intervened[idx], self.row_mask[idx], self.var_mask[idx],
                           self.target[idx])


@dataclass(frozen=True)
class TrainingBatch:
    """A surrogate training batch: the model input and what it learns from.

    batch: the standardised PaddedBatch (B x N x D); parents: B x D bool, the true parents of Y;
    raw: B x N x D values in observed units; linear: B bool, buffers drawn from a
    linear-Gaussian SCM (the exact BLR posterior is then the Bayes answer and can be distilled);
    expert: B x D, another posterior's marginals to distil (the expert's, on demonstration
    buffers), or None; scm: the B models behind a simulated batch (None for recorded buffers);
    low/high: B x D domains in observed units (where the world model is queried), or None.
    """

    batch: PaddedBatch
    parents: torch.Tensor
    raw: torch.Tensor
    linear: torch.Tensor
    expert: torch.Tensor | None = None
    scm: object | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.parents.shape[0]

    def index(self, idx: torch.Tensor) -> "TrainingBatch":
        """The buffers ``idx``."""
        pick = lambda t: None if t is None else t[idx]
        return TrainingBatch(self.batch.index(idx), self.parents[idx], self.raw[idx], self.linear[idx], pick(self.expert),
                             pick(self.scm), pick(self.low), pick(self.high))

    def sample(self, B: int, generator: torch.Generator) -> "TrainingBatch":
        """B buffers drawn uniformly with replacement."""
        idx = torch.randint(len(self), (B,), generator=generator, device=generator.device).to(self.parents.device)
        return self.index(idx)


@dataclass(frozen=True)
class CampaignBatch:
    """B campaigns at the same step, padded to B x N x D.

    values: B x N x D raw values (observed units), intervened: B x N x D bool, row_mask: B x N,
    var_mask: B x D, target: B x D one-hot, low/high: B x D domains (observed units),
    intervenable: B x D bool, step: B interventions made so far, horizon: B total budget T.
    """

    values: torch.Tensor
    intervened: torch.Tensor
    row_mask: torch.Tensor
    var_mask: torch.Tensor
    target: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    intervenable: torch.Tensor
    step: torch.Tensor
    horizon: torch.Tensor

    @classmethod
    def of_buffer(cls, buffer: Buffer, target: int, low: torch.Tensor, high: torch.Tensor, intervenable: torch.Tensor,
                  horizon: int, negate_target: bool = False) -> "CampaignBatch":
        """One campaign (B = 1) from a buffer: low/high/intervenable d (the target is never
        intervenable); its step is the number of interventional rows. ``negate_target``: Y
        enters as -Y (a maximisation handed to a minimiser)."""
        x = buffer.values.clone()
        if negate_target:
            x[:, target] = -x[:, target]
        n, d = x.shape
        tgt = torch.zeros(1, d, dtype=torch.bool)
        tgt[0, target] = True
        return cls(x[None], buffer.intervened[None].clone(), torch.ones(1, n, dtype=torch.bool),
                   torch.ones(1, d, dtype=torch.bool), tgt, low.clone()[None], high.clone()[None],
                   intervenable[None] & ~tgt, torch.tensor([buffer.n_int]), torch.tensor([horizon]))

    @classmethod
    def of_rows(cls, values: torch.Tensor, intervened: torch.Tensor, target: torch.Tensor, low: torch.Tensor,
                high: torch.Tensor, step: int, horizon: int, intervenable: torch.Tensor | None = None) -> "CampaignBatch":
        """B campaigns with the same number of rows and variables (no padding): values/intervened
        B x N x d, target B (index of Y), low/high B x d, intervenable B x d (default: every
        non-target variable; the target never)."""
        B, N, d = values.shape
        dev = values.device
        tgt = torch.zeros(B, d, dtype=torch.bool, device=dev)
        tgt[torch.arange(B, device=dev), target] = True
        can = ~tgt if intervenable is None else intervenable & ~tgt
        return cls(values, intervened, torch.ones(B, N, dtype=torch.bool, device=dev),
                   torch.ones(B, d, dtype=torch.bool, device=dev), tgt, low, high, can,
                   torch.full((B,), step, device=dev), torch.full((B,), horizon, device=dev))

    def single_settings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows an incumbent counts (B x N bool: real rows that set exactly one variable, not
        the target) and the variable each sets (B x N; meaningless in the other rows)."""
        iv = self.intervened & self.row_mask[..., None]                                          # B x N x D
        single = (iv.sum(2) == 1) & ~(iv & self.target[:, None]).any(2)                          # B x N
        return single, iv.float().argmax(2)

    def observational_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-variable mean and std over observational rows (B x D each; std 1 where it is 0);
        computed once per campaign object (its tensors are not changed in place)."""
        stats = self.__dict__.get("_observational_stats")
        if stats is None:
            stats = observational_stats(self.values, self.intervened, self.row_mask)
            object.__setattr__(self, "_observational_stats", stats)  # a cache, not a field
        return stats

    def standardised(self) -> PaddedBatch:
        """The surrogate's input: values standardised by the observational stats, 0 in padding;
        computed once per campaign object, as :meth:`observational_stats` (a decision reads it
        several times)."""
        batch = self.__dict__.get("_standardised")
        if batch is None:
            mean, std = self.observational_stats()
            z = standardised_values(self.values, mean, std, self.row_mask, self.var_mask)
            batch = PaddedBatch(z.float(), self.intervened, self.row_mask, self.var_mask, self.target)
            object.__setattr__(self, "_standardised", batch)  # a cache, not a field
        return batch

    def training_batch(self, parents: torch.Tensor, linear: torch.Tensor, scm=None) -> TrainingBatch:
        """The campaigns' buffers as a surrogate training batch (the rows a policy collected are
        the data the surrogate will see in deployment). parents: B x D bool, linear: B bool."""
        return TrainingBatch(self.standardised(), parents, self.values, linear, None, scm, self.low, self.high)


def nonzero_spread(std: torch.Tensor) -> torch.Tensor:
    """The rule for a zero spread when values are standardised by observational stats: a std of
    0 (a variable constant in the observations) becomes 1, so the variable's standardised values
    are its deviations from the mean. (The experts keep their reference's rule instead:
    :func:`clamped_stats`.)"""
    return torch.where(std > 0, std, torch.ones_like(std))


def clamped_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (d each) of n x d observational rows with the std clamped at 1e-12: the rule
    of the PARENT_SCALE reference, which the experts (their GPs, set posterior and DR prior) keep.
    It differs from :func:`nonzero_spread` only for a (nearly) constant variable, std < 1e-12."""
    return x.mean(0), x.std(0).clamp_min(1e-12)


def rows_stats(values: torch.Tensor, intervened: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (d each) of one buffer's observational rows (values/intervened N x d): all
    rows if fewer than 2 are observational, a std of 1 from a single row, :func:`nonzero_spread`.
    The batched :func:`observational_stats` computes the same statistics by masked sums (equal up
    to float rounding, not bit for bit)."""
    obs = ~intervened.any(dim=1)
    x = values[obs] if int(obs.sum()) >= 2 else values
    mean = x.mean(dim=0)
    std = x.std(dim=0) if x.shape[0] > 1 else torch.ones_like(mean)
    return mean, nonzero_spread(std)


def rows_in_order(mask: torch.Tensor) -> torch.Tensor:
    """B x R indices of the rows where ``mask`` (B x N) holds, in arrival order; R is the most of
    any campaign (at least 1), and a campaign with fewer fills its last slots with rows outside
    the mask (mask them again with ``mask.gather(1, rows)``)."""
    B, N = mask.shape
    score = torch.where(mask, -torch.arange(N, device=mask.device, dtype=torch.float64)[None],
                        torch.full((B, N), -1e18, dtype=torch.float64, device=mask.device))
    R = max(1, int(mask.sum(1).max()))
    return score.topk(R, dim=1).indices.sort(dim=1).values


def observational_stats(values: torch.Tensor, intervened: torch.Tensor, row_mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-variable mean and std over each buffer's observational rows (real rows where nothing
    was set). values/intervened: B x N x D, row_mask: B x N. Returns (mean, std), B x D each,
    :func:`nonzero_spread`."""
    obs = (row_mask & ~intervened.any(2)).to(values.dtype)[..., None]                        # B x N x 1
    n = obs.sum(1).clamp_min(1)                                                              # B x 1
    mean = (values * obs).sum(1) / n
    var = (((values - mean[:, None]) ** 2) * obs).sum(1) / (n - 1).clamp_min(1)
    return mean, nonzero_spread(var.sqrt())


def standardise_by_observations(values: torch.Tensor, intervened: torch.Tensor, row_mask: torch.Tensor,
                                var_mask: torch.Tensor) -> torch.Tensor:
    """B x N x D values standardised per buffer and variable by the observational rows' stats,
    0 in padding (rows or variables)."""
    mean, std = observational_stats(values, intervened, row_mask)
    return standardised_values(values, mean, std, row_mask, var_mask)


def standardised_values(values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, row_mask: torch.Tensor,
                        var_mask: torch.Tensor) -> torch.Tensor:
    """(values - mean) / std (B x N x D; mean/std B x D), 0 in padding (rows or variables)."""
    z = (values - mean[:, None]) / std[:, None]
    return torch.where(row_mask[..., None] & var_mask[:, None], z, torch.zeros_like(z))
