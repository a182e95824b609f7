"""Training and evaluation buffers for the surrogate, generated on the fly on any device.

A batch is B SCMs from one family (one d), each with n_obs observational rows and n_int
single-variable hard interventions on random settable variables, half at a uniform value in
the variable's domain and half at one of its ends (what optimisers such as Thompson sampling
and PARENT_SCALE tend to do); domains and settable variables by the family's rules. Values are standardised per buffer and variable by the
observational mean/std; labels are the true parents of Y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.buffer import PaddedBatch, TrainingBatch, nonzero_spread, observational_stats, standardise_by_observations
from acbo.demonstrations import iter_demos
from acbo.scm import Family, resolve_family


def random_interventions(generator: torch.Generator, low: torch.Tensor, high: torch.Tensor, target: torch.Tensor,
                         n: int, intervenable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n single-variable interventions per model on random settable variables (``intervenable``
    B x d; default: every non-target variable).

    low/high: B x d domains, target: B. Returns (mask, values), each B x n x d."""
    B, d = low.shape
    dev = low.device
    if intervenable is None:  # a uniform non-target variable: draw among d - 1 slots and skip the target's
        j = torch.randint(d - 1, (B, n), generator=generator, device=dev)
        j = j + (j >= target[:, None]).long()
    else:  # a uniform settable one
        score = torch.rand(B, n, d, generator=generator, device=dev).masked_fill(~intervenable[:, None], -1.0)
        j = score.argmax(dim=2)
    mask = torch.zeros(B, n, d, dtype=torch.bool, device=dev)
    mask.scatter_(2, j[..., None], True)
    u = torch.rand(B, n, generator=generator, device=dev)
    at_end = torch.rand(B, n, generator=generator, device=dev) < 0.5
    u = torch.where(at_end, (u > 0.5).to(u.dtype), u)
    lo, hi = low.gather(1, j), high.gather(1, j)                                              # B x n
    vals = torch.zeros(B, n, d, device=dev, dtype=low.dtype)
    vals.scatter_(2, j[..., None], (lo + u * (hi - lo))[..., None])
    return mask, vals


def standardise(raw: torch.Tensor, n_obs: int) -> torch.Tensor:
    """B x N x D standardised by the first n_obs (observational) rows' mean and std."""
    obs = raw[:, :n_obs]
    std = obs.std(dim=1, keepdim=True)
    return (raw - obs.mean(dim=1, keepdim=True)) / nonzero_spread(std)


COLLECTORS = ("random", "greedy")
"""How a training buffer's interventional rows are chosen: uniformly at random, or greedily on
the truth (each the best of ``GREEDY_CANDIDATES`` random candidates by its true E[Y | do]: the
buffers a good optimiser collects)."""
GREEDY_CANDIDATES = 8


def greedy_interventions(generator: torch.Generator, scm, low: torch.Tensor, high: torch.Tensor,
                         intervenable: torch.Tensor | None, n: int, n_mc: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """n interventions per model, each the candidate with the lowest true E[Y | do] among
    GREEDY_CANDIDATES random ones (MC with n_mc samples for nonlinear models). Returns (mask,
    values), each B x n x d."""
    B, d = low.shape
    rows = torch.arange(B, device=low.device)
    masks, vals = [], []
    for _ in range(n):  # the steps of a campaign: sequential by construction
        cm, cv = random_interventions(generator, low, high, scm.target, GREEDY_CANDIDATES, intervenable)
        best = scm.expected_target(cm, cv, n_mc).argmin(dim=1)                                 # B
        masks.append(cm[rows, best][:, None])
        vals.append(cv[rows, best][:, None])
    return torch.cat(masks, 1), torch.cat(vals, 1)


def sample_buffers(family: str | Family, B: int, n_obs: int, n_int: int, generator: torch.Generator,
                   d: int | None = None, collector: str = "random") -> TrainingBatch:
    """B buffers from ``family`` (a name or a Family; optionally at a fixed d) on the generator's
    device, with the family's domains; ``collector`` chooses the interventional rows."""
    if collector not in COLLECTORS:
        raise ValueError(f"collector must be one of {COLLECTORS}, got {collector!r}")
    fam = resolve_family(family)
    if d is not None:
        fam = fam.with_(d_range=(d, d))
    scm = fam.sample(generator, B)
    obs = scm.sample(n_obs, generator)                                                         # B x n_obs x d
    mask = torch.zeros_like(obs, dtype=torch.bool)
    raw = obs
    low, high, can = fam.domains(generator, scm, obs)
    if n_int > 0:
        settable = None if fam.p_all_intervenable == 1 else can
        if collector == "greedy":
            do_mask, do_val = greedy_interventions(generator, scm, low, high, settable, n_int)
        else:
            do_mask, do_val = random_interventions(generator, low, high, scm.target, n_int, settable)
        xi = scm.sample(n_int, generator, do_mask=do_mask, do_value=do_val)
        raw = torch.cat([obs, xi], dim=1)
        mask = torch.cat([mask, do_mask], dim=1)
    B_, N, D = raw.shape
    dev = raw.device
    target = torch.zeros(B, D, dtype=torch.bool, device=dev)
    target[torch.arange(B, device=dev), scm.target] = True
    batch = PaddedBatch(standardise(raw, n_obs), mask, torch.ones(B, N, dtype=torch.bool, device=dev),
                        torch.ones(B, D, dtype=torch.bool, device=dev), target)
    return TrainingBatch(batch, scm.parents(), raw, scm.linear, None, scm, low, high)


@dataclass(frozen=True)
class QuerySettings:
    """How many world-model training queries each buffer gets, and how their targets are computed."""

    vars: int = 4
    """Variables queried per buffer."""
    values: int = 8
    """Values queried per variable, uniform over its domain widened by half its width on both sides."""
    mc: int = 128
    """Monte Carlo samples of the E[Y | do] targets of nonlinear models (exact for linear ones)."""

    def __post_init__(self):
        bad = {k: v for k, v in (("vars", self.vars), ("values", self.values), ("mc", self.mc))
               if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"query settings must be positive integers: {bad}")

    def sample(self, data: "TrainingBatch", generator: torch.Generator) -> "Queries":
        """Queries on the buffers of ``data`` (:func:`sample_queries`)."""
        return sample_queries(data, self.vars, self.values, generator, self.mc)


@dataclass(frozen=True)
class Queries:
    """Training queries of the world model for B buffers: var B x Q (variables), z B x Q x K
    (values in each variable's observational standard units), draw B x Q x K (a fresh draw of Y
    under the intervention) and mean B x Q x K (E[Y | do], exact or Monte Carlo), both in Y's
    observational standard units."""

    var: torch.Tensor
    z: torch.Tensor
    draw: torch.Tensor
    mean: torch.Tensor


def sample_queries(data: TrainingBatch, Q: int, K: int, generator: torch.Generator, n_mc: int = 128,
                   beyond: float = 0.5) -> Queries:
    """Q distinct non-target variables per buffer and K values each, uniform over the domain
    widened by ``beyond`` of its width on both sides (queries across and beyond it), with their
    simulator targets. Needs a simulated batch (``data.scm``) with domains."""
    if data.scm is None or data.low is None:
        raise ValueError("queries need a simulated batch with its SCMs and domains (sample_buffers)")
    raw, iv, rows = data.raw, data.batch.intervened, data.batch.row_mask
    B, N, D = raw.shape
    dev = raw.device
    Q = min(Q, D - 1)
    score = torch.rand(B, D, generator=generator, device=dev).masked_fill(data.batch.target, -1.0)
    var = score.topk(Q, dim=1).indices                                                        # B x Q
    lo, hi = data.low.gather(1, var), data.high.gather(1, var)                               # B x Q
    u = torch.rand(B, Q, K, generator=generator, device=dev)
    x = (lo - beyond * (hi - lo))[..., None] + ((1 + 2 * beyond) * (hi - lo))[..., None] * u  # B x Q x K
    do_mask = torch.zeros(B, Q, K, D, dtype=torch.bool, device=dev)
    do_mask.scatter_(3, var[:, :, None, None].expand(B, Q, K, 1), True)
    do_val = do_mask * x[..., None]
    do_mask, do_val = do_mask.reshape(B, Q * K, D), do_val.reshape(B, Q * K, D)
    t = data.scm.target
    draw = data.scm.sample(Q * K, generator, do_mask=do_mask, do_value=do_val)[torch.arange(B, device=dev), :, t]
    mean = data.scm.expected_target(do_mask, do_val, n_mc)                                    # B x QK
    mu, sd = observational_stats(raw, iv, rows)                                               # B x D
    mu_y, sd_y = mu.gather(1, t[:, None]), sd.gather(1, t[:, None])
    z = (x - mu.gather(1, var)[..., None]) / sd.gather(1, var)[..., None]
    std_y = lambda v: ((v - mu_y) / sd_y).reshape(B, Q, K)
    return Queries(var, z, std_y(draw), std_y(mean))


def load_demo_buffers(folder: str, device: str | torch.device = "cpu") -> TrainingBatch:
    """The expert's buffers at every step of every demonstration in ``folder`` (complete
    shards), with the true parents and the expert's posterior marginals at that step (``expert``)."""
    items = []
    for demo in iter_demos(folder):
        a = demo.arrays
        for t, n in enumerate(a["n_rows"]):
            items.append((a["buffer"][:n], a["intervened"][:n], int(demo.meta["target"]), a["parents"],
                          a["post_marginals"][t], demo.meta["mechanism"] == "linear"))
    if not items:
        raise ValueError(f"{folder}: no complete demonstration shards")
    M, N, D = len(items), max(x[0].shape[0] for x in items), max(x[0].shape[1] for x in items)
    out = {k: torch.zeros(M, *s, dtype=dt) for k, s, dt in (
        ("values", (N, D), torch.float64), ("intervened", (N, D), torch.bool), ("row_mask", (N,), torch.bool),
        ("var_mask", (D,), torch.bool), ("target", (D,), torch.bool), ("parents", (D,), torch.bool),
        ("expert", (D,), torch.float32))}
    for i, (v, iv, t, pa, marg, _) in enumerate(items):
        n, d = v.shape
        out["values"][i, :n, :d] = torch.from_numpy(v)
        out["intervened"][i, :n, :d] = torch.from_numpy(iv)
        out["row_mask"][i, :n] = True
        out["var_mask"][i, :d] = True
        out["target"][i, t] = True
        out["parents"][i, :d] = torch.from_numpy(pa)
        out["expert"][i, :d] = torch.from_numpy(marg).float()
    o = {k: v.to(device) for k, v in out.items()}
    z = standardise_by_observations(o["values"], o["intervened"], o["row_mask"], o["var_mask"])
    batch = PaddedBatch(z.float(), o["intervened"], o["row_mask"], o["var_mask"], o["target"])
    linear = torch.tensor([x[5] for x in items], device=device)
    return TrainingBatch(batch, o["parents"], o["values"], linear, o["expert"].clamp(0, 1))
