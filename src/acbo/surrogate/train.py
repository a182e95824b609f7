"""Stage 1: surrogate pretraining (python -m acbo.surrogate.train --help).

Each step draws a batch of fresh buffers from a training family (cycling through them) on the
training device, scores the parent logits against

- the true parents (binary cross-entropy), weight ``w_truth``;
- for linear batches, the exact BLR posterior's marginals (soft cross-entropy: distillation of
  the Bayes-optimal answer), weight ``w_exact``;
- every ``demo_every``-th step, the batch is instead drawn from the buffers the PARENT_SCALE expert
  decided from (``demos``), scored against the true parents (``w_truth``) and the expert's own
  posterior marginals (distillation of the expert, weight ``w_expert``);
- with ``queries`` (the world model), ``query_vars`` x ``query_values`` queries per buffer
  (variable, value across and beyond its domain): the negative log-likelihood of a fresh draw of
  Y from the simulator under the intervention (weight ``w_draw``: the posterior predictive under
  the prior, PFN-style) and of E[Y | do] under the mean head (weight ``w_mean``; exact for linear
  models, ``query_mc``-sample common-random-number Monte Carlo otherwise). A ``greedy`` share of
  batches has its interventional rows collected greedily on the truth, the rest at random;

and takes an AdamW step. Every ``eval_every`` steps it reports AUPRC on a fixed validation set
(from the test stream of ``val_family``; with queries also the mean head's RMSE and NLL, the
draw head's NLL and its 90 % coverage) and writes an atomic, resumable checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from acbo.buffer import TrainingBatch
from acbo.configs import check_range, config_from_argv, print_line
from acbo.io import load_packaged
from acbo.metrics import average_precision
from acbo.posterior import exact_posterior
from acbo.scm import Draws, Family, resolve_family
from acbo.seeding import generator
from acbo.surrogate.checkpoint import PRETRAINED, read_checkpoint, save_checkpoint
from acbo.surrogate.data import Queries, QuerySettings, load_demo_buffers, sample_buffers, sample_queries
from acbo.surrogate.model import QUERY_MODULES, Surrogate, SurrogateConfig
from acbo.training import (Loop, OptimConfig, RunConfig, Throughput, Window, all_reduce_grads, leave_process_group,
                           restore_into, run_loop, shard_share, world_size)


@dataclass(frozen=True)
class SurrogateLoss:
    """The terms of the surrogate's loss, their weights, and the gradient clip."""

    w_truth: float = 1.0
    """Weight of the cross-entropy to the true parents."""
    w_exact: float = 0.0
    """Weight of the cross-entropy to the exact posterior's marginals (linear batches only)."""
    w_expert: float = 0.0
    """Weight of the cross-entropy to the expert's posterior marginals (demonstration batches)."""
    w_draw: float = 1.0
    """Weight of the negative log-likelihood of a fresh draw of Y under each world-model query."""
    w_mean: float = 1.0
    """Weight of the negative log-likelihood of E[Y | do] (exact or Monte Carlo) under the mean head."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""

    def __post_init__(self):
        if min(self.w_truth, self.w_exact, self.w_expert, self.w_draw, self.w_mean) < 0 or not self.max_grad_norm > 0:
            raise ValueError(f"loss weights must be >= 0 and max_grad_norm > 0, got {self}")


@dataclass(frozen=True)
class DemoMix:
    """Expert demonstrations mixed into stage-1 training."""

    folder: str = ""
    """Folder of expert demonstrations (``acbo demos``) whose buffers join the training data."""
    every: int = 0
    """Every ``every``-th step trains on a batch of demonstration buffers (0: never)."""

    def __post_init__(self):
        if (self.every > 0) != bool(self.folder):
            raise ValueError(f"demos.folder and demos.every go together (got {self.folder!r}, {self.every})")


@dataclass(frozen=True)
class SurrogateValidation:
    """Stage 1's fixed validation set."""

    family: str | Family = "lin-er-20"
    """Validation family (its test stream; never trained on)."""
    buffers: int = 64
    """Validation buffers (n_obs = 200, 10 interventions)."""

    def __post_init__(self):
        resolve_family(self.family)
        if isinstance(self.buffers, bool) or not isinstance(self.buffers, int) or self.buffers < 1:
            raise ValueError(f"val.buffers must be a positive integer, got {self.buffers!r}")


@dataclass(frozen=True)
class SurrogateTrainConfig:
    """Stage-1 training run."""

    run: RunConfig = RunConfig(steps=2000, eval_every=200, log_every=20, out="runs/surrogate")
    """Length, cadence, seed, device and folder (the checkpoint is model.pt)."""
    optim: OptimConfig = OptimConfig(lr=3e-4)
    """The AdamW optimizer."""
    data: Draws = Draws(n_obs=(50, 300))
    """Training families and observational rows per buffer."""
    n_int: tuple[int, int] = (0, 30)
    """Interventional rows per buffer, uniform per batch."""
    greedy: float = 0.0
    """Share of batches whose interventional rows are collected greedily on the truth (each the best
    of 8 random candidates by E[Y | do]) rather than at random."""
    model: SurrogateConfig = SurrogateConfig()
    """The architecture (``model.queries``: train the world model, the predictive of Y under
    do(X_j = x) and the posterior of E[Y | do(X_j = x)]). Fine-tuning may switch on ``pair_bias``,
    ``queries`` and ``query_stats`` on a checkpoint without them (the new paths start at the
    checkpoint); the other fields must match it."""
    loss: SurrogateLoss = SurrogateLoss()
    """Loss terms and weights."""
    training_queries: QuerySettings = QuerySettings()
    """World-model queries per buffer (with ``model.queries``)."""
    demos: DemoMix = DemoMix()
    """Expert demonstrations mixed in."""
    val: SurrogateValidation = SurrogateValidation()
    """The validation set."""
    init_surrogate: str = ""
    """Start from this surrogate checkpoint (``pretrained``: the packaged one) instead of a random
    initialisation: fine-tuning."""

    LEGACY: ClassVar[dict] = {
        **{k: f"run.{k}" for k in ("steps", "max_minutes", "batch_size", "eval_every", "seed", "device", "out")},
        **{k: f"optim.{k}" for k in ("lr", "weight_decay")}, **{k: f"data.{k}" for k in ("families", "n_obs", "shards")},
        **{k: f"model.{k}" for k in ("dim", "heads", "row_layers", "var_layers", "pair_bias", "queries", "query_stats")},
        **{k: f"loss.{k}" for k in ("w_truth", "w_exact", "w_expert", "w_draw", "w_mean")},
        "query_vars": "training_queries.vars", "query_values": "training_queries.values",
        "query_mc": "training_queries.mc", "init": "init_surrogate", "demos": "demos.folder",
        "demo_every": "demos.every", "val_family": "val.family", "val_buffers": "val.buffers"}
    """The flat stage-1 settings of old runs and flags -> today's paths (such a run resumes)."""

    def __post_init__(self):
        if self.run.steps < 1:
            raise ValueError(f"these settings must be positive integers: {{'steps': {self.run.steps}}}")
        check_range("n_int", self.n_int, 0)
        if self.run.batch_size % self.data.shards:
            raise ValueError(f"shards must be a positive integer dividing batch_size {self.run.batch_size}, "
                             f"got {self.data.shards!r}")
        if not 0 <= self.greedy <= 1:
            raise ValueError(f"greedy must be in [0, 1], got {self.greedy}")


PLACEMENT = ("model.row_chunk",)
"""Settings that change no result (memory only): a resumed run may change them."""
ADDED_LATER = {"model.query_stats": False, "data.shards": 1, "run.log_every": 20, "model.ff_mult": 2,
               "model.row_chunk": 2048, "model.n_bins": 64, "model.max_context": 512, "loss.max_grad_norm": 1.0}
"""Settings that runs written before them lack, with the value those runs mean."""


def losses(model: Surrogate, data: TrainingBatch, w: SurrogateLoss = SurrogateLoss(), queries: Queries | None = None
           ) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (each a scalar) and their weighted sum ``loss``: binary
    cross-entropy of the parent logits to the true parents (``truth``; ``demo_truth`` on
    demonstration buffers, logged apart), to the exact posterior's marginals on the linear
    buffers (``exact``, when w.w_exact > 0) and to the expert's marginals (``expert``, on buffers
    that carry them); with ``queries``, the negative log-likelihoods of the world model's two
    predictives at their targets (``draw``: a fresh draw of Y; ``mean``: E[Y | do])."""
    logits, tokens = model.encode(data.batch)
    valid = data.batch.var_mask & ~data.batch.target
    safe = logits.masked_fill(~valid, 0.0)
    truth = F.binary_cross_entropy_with_logits(safe[valid], data.parents[valid].float())
    if data.expert is not None:
        out = {"demo_truth": truth, "expert": F.binary_cross_entropy_with_logits(safe[valid], data.expert[valid])}
        out["loss"] = w.w_truth * truth + w.w_expert * out["expert"]
        return out
    out = {"truth": truth}
    loss = w.w_truth * truth
    if w.w_exact > 0 and bool(data.linear.any()):
        lin = valid & data.linear[:, None]
        soft = exact_marginals(data).to(logits.device)
        out["exact"] = F.binary_cross_entropy_with_logits(safe[lin], soft[lin])
        loss = loss + w.w_exact * out["exact"]
    if queries is not None:
        draw_logits, mean_logits = model.query(data.batch, tokens, queries.var, queries.z)
        out["draw"] = model.predictive(draw_logits).nll(queries.draw).mean()
        out["mean"] = model.predictive(mean_logits).nll(queries.mean).mean()
        loss = loss + w.w_draw * out["draw"] + w.w_mean * out["mean"]
    out["loss"] = loss
    return out


def exact_marginals(data: TrainingBatch) -> torch.Tensor:
    """B x D exact-posterior marginals of the batch's linear buffers (computed on the CPU; 0 for
    the others)."""
    raw, mask = data.raw.cpu(), data.batch.intervened.cpu()
    targets = data.batch.target.to(torch.int8).argmax(1).tolist()
    linear = data.linear.tolist()
    out = torch.zeros(raw.shape[0], raw.shape[2])
    for b in range(raw.shape[0]):
        if linear[b]:
            n, d = int(data.batch.row_mask[b].sum()), int(data.batch.var_mask[b].sum())
            out[b, :d] = exact_posterior(raw[b, :n, :d], mask[b, :n, :d], targets[b]).marginals.float()
    return out


def surrogate_step(model: Surrogate, opt: torch.optim.Optimizer, data: TrainingBatch,
                   w: SurrogateLoss = SurrogateLoss(), queries: Queries | None = None) -> dict[str, float]:
    """One optimisation step on a batch (and its world-model queries): the loss terms (floats) and
    the gradient norm before clipping."""
    return sharded_step(model, opt, [(data, queries)], 1, w)


def sharded_step(model: Surrogate, opt: torch.optim.Optimizer, shards: list[tuple[TrainingBatch, Queries | None]],
                 n_shards: int, w: SurrogateLoss) -> dict[str, float]:
    """One optimisation step on the mean gradient of ``n_shards`` sub-batches, of which this process
    holds ``shards`` (all of them, or its share under torch.distributed: the gradients and the loss
    terms are summed over the processes before clipping). Returns the mean loss terms over the
    shards and the gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    sums = torch.zeros(2, len(TERMS), dtype=torch.float64)  # per term: sum over shards, shards having it
    for data, queries in shards:
        terms = losses(model, data, w, queries)
        (terms["loss"] / n_shards).backward()
        for k, v in terms.items():
            sums[:, TERMS.index(k)] += torch.tensor([v.item(), 1.0], dtype=torch.float64)
    if world_size() > 1:
        all_reduce_grads(model)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), w.max_grad_norm))
    opt.step()
    means = {k: float(sums[0, i] / sums[1, i]) for i, k in enumerate(TERMS) if sums[1, i] > 0}
    return {**means, "grad_norm": grad_norm}


TERMS = ("truth", "demo_truth", "expert", "exact", "draw", "mean", "loss")
"""Every loss term :func:`losses` may return (a batch has a subset)."""


@torch.no_grad()
def validation_world(model: Surrogate, val: list[TrainingBatch], queries: list[Queries]) -> dict[str, float]:
    """The world model on the validation queries: RMSE of the mean head's mean against E[Y | do]
    (Y's standard units), the two heads' NLL, and how often a fresh draw falls in the draw head's
    central 90 % interval."""
    was_training = model.training
    model.eval()
    sq, nll_m, nll_d, cover, n = 0.0, 0.0, 0.0, 0.0, 0
    for data, q in zip(val, queries):
        _, tokens = model.encode(data.batch)
        draw_logits, mean_logits = model.query(data.batch, tokens, q.var, q.z)
        pm, pd_ = model.predictive(mean_logits), model.predictive(draw_logits)
        sq += float(((pm.mean - q.mean) ** 2).sum())
        nll_m += float(pm.nll(q.mean).sum())
        nll_d += float(pd_.nll(q.draw).sum())
        cover += float(((pd_.quantile(0.05) <= q.draw) & (q.draw <= pd_.quantile(0.95))).float().sum())
        n += q.mean.numel()
    model.train(was_training)
    return {"val_mean_rmse": math.sqrt(sq / n), "val_mean_nll": nll_m / n, "val_draw_nll": nll_d / n,
            "val_cover90": cover / n}


@torch.no_grad()
def validation_auprc(model: Surrogate, val: list[TrainingBatch]) -> float:
    """Mean AUPRC of the parent marginals over the validation buffers."""
    was_training = model.training
    model.eval()
    scores = []
    for data in val:
        probs = torch.sigmoid(model(data.batch)).cpu()
        valid = (data.batch.var_mask & ~data.batch.target).cpu()
        for b in range(probs.shape[0]):
            scores.append(average_precision(probs[b][valid[b]].numpy(), data.parents[b].cpu()[valid[b]].numpy()))
    model.train(was_training)
    return float(np.nanmean(scores))


def init_weights(model: Surrogate, init: str) -> None:
    """Load the checkpoint ``init``'s weights into ``model`` (ValueError if its architecture differs;
    a pair path the checkpoint lacks is added, zero-initialised; a world-model head it lacks is
    added, freshly initialised)."""
    state = load_packaged(PRETRAINED, read_checkpoint, "surrogate") if init == "pretrained" else read_checkpoint(init)
    ours = asdict(model.cfg)
    adds = {"pair_bias"} if ours["pair_bias"] and not state["model_config"]["pair_bias"] else set()
    if ours["queries"] and not state["model_config"]["queries"]:  # a new head: its own settings
        adds |= {"queries", "n_bins", "max_context", "query_stats"}
    if ours["query_stats"] and not state["model_config"].get("query_stats", False):
        adds.add("query_stats")
    differ = {k: (v, ours[k]) for k, v in state["model_config"].items() if ours[k] != v and k != "row_chunk" and k not in adds}
    if differ:
        hint = (" (it has a world-model head: pass --queries true to keep it)" if "queries" in differ else
                " (its world model has query statistics: pass --query-stats true to keep them)"
                if "query_stats" in differ else "")
        raise ValueError(f"init checkpoint {init!r} has another architecture (checkpoint, config): {differ}{hint}")
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    assert not unexpected and all(k.startswith(("pair_",) + QUERY_MODULES) for k in missing), (missing, unexpected)


def make_validation(cfg: SurrogateTrainConfig) -> list[TrainingBatch]:
    """The fixed validation buffers: the validation family's test stream, n_obs = 200, 10 interventions."""
    fam = resolve_family(cfg.val.family)
    g = generator("test", "surrogate-val", fam.name, device=cfg.run.device)
    return [sample_buffers(fam, 16, 200, 10, g) for _ in range(max(1, cfg.val.buffers // 16))]


def make_query_validation(cfg: SurrogateTrainConfig, val: list[TrainingBatch]) -> list[Queries]:
    """Fixed validation queries on the validation buffers (test stream; E[Y | do] with 1,000 MC samples)."""
    g = generator("test", "surrogate-val-queries", resolve_family(cfg.val.family).name, device=cfg.run.device)
    return [sample_queries(data, cfg.training_queries.vars, cfg.training_queries.values, g, n_mc=1000) for data in val]


def training_batch(cfg: SurrogateTrainConfig, step: int, demos: TrainingBatch | None, shard: int = 0
                   ) -> tuple[TrainingBatch, Queries | None]:
    """The batch of ``step`` (with shards: its sub-batch ``shard``) and its world-model queries:
    fresh buffers from the train stream keyed by the step (a resumed run draws the same data),
    collected at random or (a ``greedy`` share) greedily; or every demos.every-th step a draw of
    the expert's buffers (no queries)."""
    dev = cfg.run.device
    key = (step,) if cfg.data.shards == 1 else (step, "shard", shard)
    g = generator("train", "surrogate", cfg.run.seed, *key, device=dev)
    size = cfg.run.batch_size // cfg.data.shards
    fam = cfg.data.families[step % len(cfg.data.families)]
    n_obs = int(torch.randint(cfg.data.n_obs[0], cfg.data.n_obs[1] + 1, (1,), generator=g, device=dev))
    n_int = int(torch.randint(cfg.n_int[0], cfg.n_int[1] + 1, (1,), generator=g, device=dev))
    if demos is not None and step % cfg.demos.every == cfg.demos.every - 1:
        return demos.sample(size, g), None
    collector = "random"
    if cfg.greedy > 0 and float(torch.rand(1, generator=g, device=dev)) < cfg.greedy:
        collector = "greedy"
    data = sample_buffers(fam, size, n_obs, n_int, g, collector=collector)
    return data, cfg.training_queries.sample(data, g) if cfg.model.queries else None


def train(cfg: SurrogateTrainConfig, log=print_line) -> Surrogate:
    """Run (or resume) stage-1 training in ``cfg.run.out``; returns the trained model. ``log`` gets
    a line per logging window (means over it: loss terms; the last step's grad norm and lr). Under
    ``torchrun`` every process takes its share of the shards; process 0 validates, logs, saves."""
    rank, world = shard_share(cfg.data.shards, cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    model = Surrogate(cfg.model).to(cfg.run.device)
    if cfg.init_surrogate:
        init_weights(model, cfg.init_surrogate)
    opt = cfg.optim.adamw(model.parameters())
    demos = load_demo_buffers(cfg.demos.folder, cfg.run.device) if cfg.demos.folder else None
    val = make_validation(cfg) if rank == 0 else []
    val_q = make_query_validation(cfg, val) if cfg.model.queries and rank == 0 else None
    window, last, clock = Window(), {}, Throughput()

    def step(i: int) -> None:
        mine = [training_batch(cfg, i, demos, k) for k in range(rank, cfg.data.shards, world)]
        terms = sharded_step(model.train(), opt, mine, cfg.data.shards, cfg.loss)
        last.update(grad_norm=terms.pop("grad_norm"), lr=opt.param_groups[0]["lr"])
        window.add(terms)
        clock.count(cfg.run.batch_size)

    def validate() -> dict[str, float]:
        rec = {"val_auprc": validation_auprc(model, val)}
        return {**rec, **validation_world(model, val, val_q)} if cfg.model.queries else rec

    def save(path: Path, done: int, history: list, elapsed: float) -> None:
        save_checkpoint(path, model, done, asdict(cfg), {"opt": opt.state_dict(), "elapsed_s": elapsed}, history)

    run_loop(cfg.run, cfg, Loop(step=step, validate=validate, save=save, read=read_checkpoint,
                                restore=restore_into(model, opt), checkpoint="model.pt", optimizers=[(opt, cfg.optim.lr)],
                                models=[model], record=lambda: {**window.means(), **last, "buffers_per_s": clock.rate()},
                                legacy=cfg.LEGACY, defaults=ADDED_LATER, placement=PLACEMENT), log)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(SurrogateTrainConfig, argv, __doc__.splitlines()[0], prog="python -m acbo.surrogate.train"))
    leave_process_group()  # a failed run exits with its error instead: a barrier there could wait forever


if __name__ == "__main__":
    main()
