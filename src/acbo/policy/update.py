"""The policy's optimisation steps: a GRPO update on a rollout, and a behaviour-cloning step.

Both take the policy, its optimizer and their data explicitly, so that stage-2 training, its BC
warm start and stage-3 alternation call the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from acbo.policy.bc import DemoBatch, bc_loss
from acbo.policy.grpo import clipped_objective, kl_k3
from acbo.policy.model import Policy
from acbo.policy.rollout import Rollout
from acbo.training import all_reduce_grads, world_size


@dataclass(frozen=True)
class UpdateSettings:
    """One GRPO update (names as in the papers; see :mod:`acbo.policy.grpo`)."""

    epochs: int = 2
    """mu: passes over the rollout (> 1, so the clipping acts)."""
    minibatch: int = 256
    """Decisions per gradient step."""
    eps_low: float = 0.2
    """Lower clip range of the ratio (PPO)."""
    eps_high: float = 0.28
    """Upper clip range (DAPO's clip-higher)."""
    beta: float = 0.0
    """Weight of the k3 KL to the reference policy."""
    entropy_coef: float = 1e-3
    """Entropy bonus."""
    bc_coef: float = 0.0
    """Weight of the behaviour-cloning loss on expert decisions, as an auxiliary term."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""


TERMS = ("loss", "pg", "kl", "clip_frac", "entropy", "bc")
"""The diagnostics of a GRPO update (means over its minibatches)."""


def minibatch_terms(policy: Policy, batch: Rollout, idx: torch.Tensor, s: UpdateSettings, generator: torch.Generator,
                    ref: Policy | None, demos: DemoBatch | None) -> dict[str, torch.Tensor]:
    """The loss of one minibatch of decisions ``idx``: the clipped ratio loss on its informative
    groups, minus the entropy bonus, plus beta x KL(policy || ref) and bc_coef x the BC loss on a
    minibatch of ``demos``; with its terms (TERMS)."""
    dev = batch.var.device
    x = batch.x.index(idx)
    dist = batch.drawn_from(policy(x), idx)
    logp = batch.log_prob(dist, idx)
    w = batch.informative[idx, None].expand_as(logp)
    pg, clip_frac = clipped_objective(logp, batch.logp[idx], batch.adv[idx], s.eps_low, s.eps_high, w)
    ent = dist.entropy().mean()
    loss = pg - s.entropy_coef * ent
    kl = torch.zeros((), device=dev)
    if s.beta > 0:
        with torch.no_grad():
            logp_ref = batch.log_prob(batch.drawn_from(ref(x), idx), idx)
        kl = (kl_k3(logp, logp_ref) * w).sum() / w.sum().clamp_min(1)
        loss = loss + s.beta * kl
    bc = torch.zeros((), device=dev)
    if s.bc_coef > 0:
        bc = bc_loss(policy, demos.minibatch(s.minibatch, generator))["loss"]
        loss = loss + s.bc_coef * bc
    return {"loss": loss, "pg": pg, "kl": kl, "clip_frac": clip_frac, "entropy": ent, "bc": bc}


def grpo_update(policy: Policy, opt: torch.optim.Optimizer, batch: Rollout | list[tuple[Rollout, torch.Generator]],
                s: UpdateSettings, generator: torch.Generator | None = None, ref: Policy | None = None,
                demos: DemoBatch | None = None, n_shards: int = 1) -> dict[str, float]:
    """mu epochs of minibatches over the rollout's decisions (see :func:`minibatch_terms`); the
    means over minibatches of TERMS, and the number of updates. A minibatch without an
    informative group is skipped.

    Data parallel: ``batch`` may be this process's shards, (rollout, generator) pairs of the
    ``n_shards`` the step's campaigns were drawn as (all of them, or its share under
    torch.distributed). Each shard is permuted by its own generator, and a gradient step is the
    mean loss over the shards of minibatch / n_shards decisions from each, its gradients summed
    over the processes; it is skipped only if no shard has an informative decision in it. So W
    processes holding n_shards / W shards each take the steps one process holding all takes."""
    if s.beta > 0 and ref is None:
        raise ValueError("beta > 0 needs a reference policy")
    if s.bc_coef > 0 and demos is None:
        raise ValueError("bc_coef > 0 needs expert demonstrations")
    shards = [(batch, generator)] if isinstance(batch, Rollout) else list(batch)
    if s.minibatch % n_shards:
        raise ValueError(f"minibatch ({s.minibatch}) must be a multiple of the shards ({n_shards})")
    size = s.minibatch // n_shards
    M = shards[0][0].var.shape[0]
    assert all(b.var.shape[0] == M for b, _ in shards), "shards of one step have the same number of decisions"
    parallel = world_size() > 1
    sums = torch.zeros(len(TERMS), dtype=torch.float64)
    n_mb = 0
    for _ in range(s.epochs):
        perms = [torch.randperm(M, generator=g, device=b.var.device) for b, g in shards]
        for start in range(0, M, size):
            idxs = [perm[start:start + size] for perm in perms]
            informative = torch.tensor([float(sum(bool(b.informative[i].any()) for (b, _), i in zip(shards, idxs)))])
            if parallel:
                dist.all_reduce(informative, op=dist.ReduceOp.SUM)
            if informative.item() == 0:
                continue
            opt.zero_grad(set_to_none=True)
            for (b, g), idx in zip(shards, idxs):
                terms = minibatch_terms(policy, b, idx, s, g, ref, demos)
                (terms["loss"] / n_shards).backward()
                sums += torch.tensor([float(terms[k].detach()) for k in TERMS], dtype=torch.float64) / n_shards
            if parallel:
                all_reduce_grads(policy)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), s.max_grad_norm)
            opt.step()
            n_mb += 1
    if parallel:
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return {**{k: float(v) / max(n_mb, 1) for k, v in zip(TERMS, sums)}, "updates": n_mb}


def bc_step(policy: Policy, opt: torch.optim.Optimizer, demos: DemoBatch, size: int, generator: torch.Generator,
            max_grad_norm: float = 1.0) -> dict[str, float]:
    """One behaviour-cloning step on a minibatch of ``size`` expert decisions; the loss terms."""
    terms = bc_loss(policy, demos.minibatch(size, generator))
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    opt.step()
    return {k: float(v.detach()) for k, v in terms.items()}
