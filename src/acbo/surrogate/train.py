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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from acbo.buffer import TrainingBatch
from acbo.configs import config_from_argv, format_record, print_line
from acbo.io import load_packaged
from acbo.metrics import average_precision
from acbo.posterior import exact_posterior
from acbo.scm import Family, resolve_family
from acbo.seeding import generator
from acbo.surrogate.checkpoint import PRETRAINED, read_checkpoint, save_checkpoint
from acbo.surrogate.data import Queries, load_demo_buffers, sample_buffers, sample_queries
from acbo.surrogate.model import QUERY_MODULES, Surrogate, SurrogateConfig
from acbo.training import (Budget, Window, all_reduce_grads, append_jsonl, broadcast_params, from_process_0, process_group,
                           resume, set_lr, world_size)


@dataclass(frozen=True)
class SurrogateTrainConfig:
    """Stage-1 training run."""

    families: tuple[str | Family, ...] = ("train-lin", "train-nonlin")
    """Training families (registered names or Family objects), cycled batch by batch (train stream)."""
    steps: int = 2000
    """Optimizer steps."""
    max_minutes: float = 0.0
    """Wall-time budget, over all pieces of a resumed run: the learning-rate schedule follows
    max(step, time) progress and the run stops when it is spent (0: no budget; a budget makes
    the run depend on the machine's speed)."""
    batch_size: int = 32
    """Buffers per step."""
    n_obs: tuple[int, int] = (50, 300)
    """Observational rows per buffer, uniform per batch."""
    n_int: tuple[int, int] = (0, 30)
    """Interventional rows per buffer, uniform per batch."""
    lr: float = 3e-4
    """AdamW learning rate (cosine decay to 10% over the run)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    w_truth: float = 1.0
    """Weight of the cross-entropy to the true parents."""
    w_exact: float = 0.0
    """Weight of the cross-entropy to the exact posterior's marginals (linear batches only)."""
    demos: str = ""
    """Folder of expert demonstrations (``acbo demos``) whose buffers join the training data."""
    demo_every: int = 0
    """Every demo_every-th step trains on a batch of demonstration buffers (0: never)."""
    w_expert: float = 0.0
    """Weight of the cross-entropy to the expert's posterior marginals (demonstration batches)."""
    init: str = ""
    """Start from this surrogate checkpoint (``pretrained``: the packaged one) instead of a random
    initialisation: fine-tuning. The architecture fields below must match it."""
    dim: int = 64
    """Model width."""
    heads: int = 4
    """Attention heads."""
    row_layers: int = 2
    """Attention layers over variables within samples."""
    var_layers: int = 3
    """Attention layers over variables after pooling."""
    pair_bias: bool = False
    """Pair statistics (observational correlation / partial correlation) bias the variable
    attention and the parent head (``SurrogateConfig.pair_bias``). Can be switched on when
    fine-tuning a checkpoint without it: the new path starts at zero, i.e. at the checkpoint."""
    query_stats: bool = False
    """Give the world model's queries their regression statistics (``SurrogateConfig.query_stats``);
    can be switched on when fine-tuning a world model without them (zero-initialised: the start is
    that model)."""
    queries: bool = False
    """Train the world model (``SurrogateConfig.queries``): the predictive of Y under do(X_j = x)
    and the posterior of E[Y | do(X_j = x)]. Can be switched on when fine-tuning a checkpoint
    without it (the parent head is unaffected by the new modules)."""
    w_draw: float = 1.0
    """Weight of the negative log-likelihood of a fresh draw of Y under each query."""
    w_mean: float = 1.0
    """Weight of the negative log-likelihood of E[Y | do] (exact or Monte Carlo) under the mean head."""
    query_vars: int = 4
    """Variables queried per buffer."""
    query_values: int = 8
    """Values queried per variable, uniform over its domain widened by half its width on both sides."""
    query_mc: int = 128
    """Monte Carlo samples of the E[Y | do] targets of nonlinear models (exact for linear ones)."""
    greedy: float = 0.0
    """Share of batches whose interventional rows are collected greedily on the truth (each the best
    of 8 random candidates by E[Y | do]) rather than at random."""
    val_family: str | Family = "lin-er-20"
    """Validation family (its test stream; never trained on)."""
    val_buffers: int = 64
    """Validation buffers (n_obs = 200, 10 interventions)."""
    eval_every: int = 200
    """Steps between validation and checkpoint."""
    seed: int = 0
    """Seed of the training stream and the initialisation."""
    shards: int = 1
    """The batch of a step is drawn as this many sub-batches of batch_size / shards buffers, each
    from its own stream, and their gradients averaged. Under ``torchrun`` (data parallel, any
    backend) the ranks share the shards, so W processes with shards = W train what one process
    with the same shards does (to float rounding)."""
    device: str = "cpu"
    """Training device."""
    out: str = "runs/surrogate"
    """Folder for the checkpoint (model.pt) and the log (log.jsonl); an existing run resumes."""

    def __post_init__(self):
        positive = {k: getattr(self, k) for k in ("steps", "batch_size", "eval_every", "val_buffers", "dim", "heads")}
        bad = {k: v for k, v in positive.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"these settings must be positive integers: {bad}")
        for name in ("n_obs", "n_int"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi or (name == "n_obs" and lo < 2):
                raise ValueError(f"{name} must be a range low <= high (n_obs >= 2, n_int >= 0), got {(lo, hi)}")
        if not self.families:
            raise ValueError("families must name at least one training family")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1 \
                or self.batch_size % self.shards:
            raise ValueError(f"shards must be a positive integer dividing batch_size {self.batch_size}, got {self.shards!r}")
        if self.lr <= 0 or self.max_minutes < 0 or min(self.w_truth, self.w_exact, self.w_expert) < 0:
            raise ValueError(f"lr must be > 0 and max_minutes, w_truth, w_exact, w_expert >= 0; got lr={self.lr}, "
                             f"max_minutes={self.max_minutes}, weights={(self.w_truth, self.w_exact, self.w_expert)}")
        if not 0 <= self.greedy <= 1 or min(self.w_draw, self.w_mean) < 0 or min(self.query_vars, self.query_values,
                                                                                     self.query_mc) < 1:
            raise ValueError(f"greedy must be in [0, 1], w_draw/w_mean >= 0, query_vars/values/mc >= 1; got "
                             f"{(self.greedy, self.w_draw, self.w_mean, self.query_vars, self.query_values, self.query_mc)}")
        if (self.demo_every > 0) != bool(self.demos):
            raise ValueError(f"demos and demo_every go together (got demos={self.demos!r}, demo_every={self.demo_every})")
        for f in self.families + (self.val_family,):
            resolve_family(f)

    def model_config(self) -> SurrogateConfig:
        return SurrogateConfig(dim=self.dim, heads=self.heads, row_layers=self.row_layers, var_layers=self.var_layers,
                               pair_bias=self.pair_bias, queries=self.queries, query_stats=self.query_stats)


def losses(model: Surrogate, data: TrainingBatch, w_truth: float, w_exact: float = 0.0, w_expert: float = 0.0,
           queries: Queries | None = None, w_draw: float = 1.0, w_mean: float = 1.0) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (each a scalar) and their weighted sum ``loss``: binary
    cross-entropy of the parent logits to the true parents (``truth``; ``demo_truth`` on
    demonstration buffers, logged apart), to the exact posterior's marginals on the linear
    buffers (``exact``, when w_exact > 0) and to the expert's marginals (``expert``, on buffers
    that carry them); with ``queries``, the negative log-likelihoods of the world model's two
    predictives at their targets (``draw``: a fresh draw of Y; ``mean``: E[Y | do])."""
    logits, tokens = model.encode(data.batch)
    valid = data.batch.var_mask & ~data.batch.target
    safe = logits.masked_fill(~valid, 0.0)
    truth = F.binary_cross_entropy_with_logits(safe[valid], data.parents[valid].float())
    if data.expert is not None:
        out = {"demo_truth": truth, "expert": F.binary_cross_entropy_with_logits(safe[valid], data.expert[valid])}
        out["loss"] = w_truth * truth + w_expert * out["expert"]
        return out
    out = {"truth": truth}
    loss = w_truth * truth
    if w_exact > 0 and bool(data.linear.any()):
        lin = valid & data.linear[:, None]
        soft = exact_marginals(data).to(logits.device)
        out["exact"] = F.binary_cross_entropy_with_logits(safe[lin], soft[lin])
        loss = loss + w_exact * out["exact"]
    if queries is not None:
        draw_logits, mean_logits = model.query(data.batch, tokens, queries.var, queries.z)
        out["draw"] = model.predictive(draw_logits).nll(queries.draw).mean()
        out["mean"] = model.predictive(mean_logits).nll(queries.mean).mean()
        loss = loss + w_draw * out["draw"] + w_mean * out["mean"]
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


def surrogate_step(model: Surrogate, opt: torch.optim.Optimizer, data: TrainingBatch, w_truth: float,
                   w_exact: float = 0.0, w_expert: float = 0.0, max_grad_norm: float = 1.0,
                   queries: Queries | None = None, w_draw: float = 1.0, w_mean: float = 1.0) -> dict[str, float]:
    """One optimisation step on a batch (and its world-model queries): the loss terms (floats) and
    the gradient norm before clipping."""
    return sharded_step(model, opt, [(data, queries)], 1, (w_truth, w_exact, w_expert, w_draw, w_mean), max_grad_norm)


def sharded_step(model: Surrogate, opt: torch.optim.Optimizer, shards: list[tuple[TrainingBatch, Queries | None]],
                 n_shards: int, weights: tuple[float, ...], max_grad_norm: float = 1.0) -> dict[str, float]:
    """One optimisation step on the mean gradient of ``n_shards`` sub-batches, of which this process
    holds ``shards`` (all of them, or its share under torch.distributed: the gradients and the loss
    terms are summed over the processes before clipping). weights: (w_truth, w_exact, w_expert,
    w_draw, w_mean). Returns the mean loss terms over the shards and the gradient norm before clipping."""
    w_truth, w_exact, w_expert, w_draw, w_mean = weights
    opt.zero_grad(set_to_none=True)
    sums = torch.zeros(2, len(TERMS), dtype=torch.float64)  # per term: sum over shards, shards having it
    for data, queries in shards:
        terms = losses(model, data, w_truth, w_exact, w_expert, queries, w_draw, w_mean)
        (terms["loss"] / n_shards).backward()
        for k, v in terms.items():
            sums[:, TERMS.index(k)] += torch.tensor([v.item(), 1.0], dtype=torch.float64)
    if world_size() > 1:
        all_reduce_grads(model)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
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


def init_weights(model: Surrogate, cfg: SurrogateTrainConfig) -> None:
    """Load ``cfg.init``'s weights into ``model`` (ValueError if its architecture differs; a pair
    path the checkpoint lacks is added, zero-initialised; a world-model head it lacks is added,
    freshly initialised)."""
    state = load_packaged(PRETRAINED, read_checkpoint, "surrogate") if cfg.init == "pretrained" else read_checkpoint(cfg.init)
    ours = asdict(cfg.model_config())
    adds = {"pair_bias"} if ours["pair_bias"] and not state["model_config"]["pair_bias"] else set()
    if ours["queries"] and not state["model_config"]["queries"]:  # a new head: its own settings
        adds |= {"queries", "n_bins", "max_context", "query_stats"}
    if ours["query_stats"] and not state["model_config"].get("query_stats", False):
        adds.add("query_stats")
    differ = {k: (v, ours[k]) for k, v in state["model_config"].items() if ours[k] != v and k != "row_chunk" and k not in adds}
    if differ:
        hint = (" (it has a world-model head: pass --queries true to keep it)" if "queries" in differ else
                " (its world model has query statistics: pass --query-stats true to keep them)" if "query_stats" in differ
                else "")
        raise ValueError(f"init checkpoint {cfg.init!r} has another architecture (checkpoint, config): {differ}{hint}")
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    assert not unexpected and all(k.startswith(("pair_",) + QUERY_MODULES) for k in missing), (missing, unexpected)


def make_validation(cfg: SurrogateTrainConfig) -> list[TrainingBatch]:
    """The fixed validation buffers: the validation family's test stream, n_obs = 200, 10 interventions."""
    fam = resolve_family(cfg.val_family)
    g = generator("test", "surrogate-val", fam.name, device=cfg.device)
    return [sample_buffers(fam, 16, 200, 10, g) for _ in range(max(1, cfg.val_buffers // 16))]


def make_query_validation(cfg: SurrogateTrainConfig, val: list[TrainingBatch]) -> list[Queries]:
    """Fixed validation queries on the validation buffers (test stream; E[Y | do] with 1,000 MC samples)."""
    g = generator("test", "surrogate-val-queries", resolve_family(cfg.val_family).name, device=cfg.device)
    return [sample_queries(data, cfg.query_vars, cfg.query_values, g, n_mc=1000) for data in val]


def training_batch(cfg: SurrogateTrainConfig, step: int, demos: TrainingBatch | None, shard: int = 0
                   ) -> tuple[TrainingBatch, Queries | None]:
    """The batch of ``step`` (with shards: its sub-batch ``shard``) and its world-model queries:
    fresh buffers from the train stream keyed by the step (a resumed run draws the same data),
    collected at random or (a ``greedy`` share) greedily; or every demo_every-th step a draw of the
    expert's buffers (no queries)."""
    key = (step,) if cfg.shards == 1 else (step, "shard", shard)
    g = generator("train", "surrogate", cfg.seed, *key, device=cfg.device)
    size = cfg.batch_size // cfg.shards
    fam = cfg.families[step % len(cfg.families)]
    n_obs = int(torch.randint(cfg.n_obs[0], cfg.n_obs[1] + 1, (1,), generator=g, device=cfg.device))
    n_int = int(torch.randint(cfg.n_int[0], cfg.n_int[1] + 1, (1,), generator=g, device=cfg.device))
    if demos is not None and step % cfg.demo_every == cfg.demo_every - 1:
        return demos.sample(size, g), None
    collector = "random"
    if cfg.greedy > 0 and float(torch.rand(1, generator=g, device=cfg.device)) < cfg.greedy:
        collector = "greedy"
    data = sample_buffers(fam, size, n_obs, n_int, g, collector=collector)
    queries = sample_queries(data, cfg.query_vars, cfg.query_values, g, cfg.query_mc) if cfg.queries else None
    return data, queries


def train(cfg: SurrogateTrainConfig, log=print_line) -> Surrogate:  # long: one loop, top to bottom, as it runs
    """Run (or resume) stage-1 training; returns the trained model. ``log`` receives one line
    per logging window (means over the window: loss terms, grad norm; the last step's lr).
    Under ``torchrun`` every process takes its share of the shards; process 0 validates, logs
    and writes the checkpoint."""
    rank, world = process_group(cfg.device)
    if cfg.shards % world:
        raise ValueError(f"shards ({cfg.shards}) must be a multiple of the processes ({world})")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "model.pt"
    torch.manual_seed(cfg.seed)
    model = Surrogate(cfg.model_config()).to(cfg.device)
    if cfg.init:
        init_weights(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget, start, history = Budget(cfg.steps, cfg.max_minutes), 0, []
    state = resume(ckpt, asdict(cfg), read_checkpoint, defaults=TRAIN_ADDED_LATER)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"]["opt"])
        budget.elapsed_before = state["optimizer"].get("elapsed_s", 0.0)
        start, history = state["step"], state["history"]
        if rank == 0:
            log(f"resumed from step {start}")
    if world > 1:  # one start everywhere, whatever each process read
        broadcast_params(model)
    demos = load_demo_buffers(cfg.demos, cfg.device) if cfg.demos else None
    val = make_validation(cfg) if rank == 0 else []
    val_q = make_query_validation(cfg, val) if cfg.queries and rank == 0 else None
    weights = (cfg.w_truth, cfg.w_exact, cfg.w_expert, cfg.w_draw, cfg.w_mean)

    def validate() -> dict[str, float]:
        rec = {"val_auprc": validation_auprc(model, val)}
        return {**rec, **validation_world(model, val, val_q)} if cfg.queries else rec

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt, model, step, asdict(cfg), {"opt": opt.state_dict(), "elapsed_s": budget.elapsed()},
                        history)

    model.train()
    window, t_last, seen = Window(), time.perf_counter(), 0
    for step in range(start, cfg.steps):
        stop, lr = from_process_0(budget.spent(step), budget.lr(cfg.lr, step), world)
        if stop:
            if rank == 0:
                log(f"time budget spent at step {step}")
                if not history or history[-1]["step"] != step:
                    history.append({"step": step, **validate()})
                    checkpoint(step)
                    log(format_record(history[-1]))
            break
        # ---- data (this process's shards), then one step at the scheduled learning rate
        mine = [training_batch(cfg, step, demos, k) for k in range(rank, cfg.shards, world)]
        set_lr(opt, lr)
        terms = sharded_step(model, opt, mine, cfg.shards, weights)
        grad_norm = terms.pop("grad_norm")
        window.add(terms)
        seen += cfg.batch_size
        # ---- diagnostics, validation, checkpoint (process 0)
        done = step + 1
        evaluate = done % cfg.eval_every == 0 or done == cfg.steps
        if rank == 0 and (done % 20 == 0 or evaluate):
            now = time.perf_counter()
            rec = {"step": done, **window.means(), "grad_norm": grad_norm, "lr": lr, "buffers_per_s": seen / (now - t_last)}
            t_last, seen = now, 0
            if evaluate:
                rec.update(validate())
                history.append(rec)
                checkpoint(done)
            append_jsonl(out / "log.jsonl", rec)
            log(format_record(rec))
    model.eval()
    return model


TRAIN_ADDED_LATER = {"query_stats": False, "shards": 1}
"""Training settings that runs written before them lack, with the value those runs mean: such a run resumes."""


def main(argv: list[str] | None = None) -> None:
    train(config_from_argv(SurrogateTrainConfig, argv, __doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
