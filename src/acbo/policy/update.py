"""The policy's optimisation steps: a GRPO update on a rollout, and a behaviour-cloning step.

Both take the policy, its optimizer and their data explicitly, so that stage-2 training, its BC
warm start and stage-3 alternation call the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from acbo.policy.bc import DemoBatch, bc_loss
from acbo.policy.grpo import clipped_objective, kl_k3
from acbo.policy.model import Policy
from acbo.policy.rollout import Rollout


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


def grpo_update(policy: Policy, opt: torch.optim.Optimizer, batch: Rollout, s: UpdateSettings,
                generator: torch.Generator, ref: Policy | None = None, demos: DemoBatch | None = None
                ) -> dict[str, float]:
    """mu epochs of minibatches over the rollout's decisions: the clipped ratio loss on the
    informative groups, minus the entropy bonus, plus beta x KL(policy || ref) and bc_coef x the
    BC loss on a minibatch of ``demos``. Returns the means over minibatches of loss, pg, kl,
    clip_frac, entropy and bc, and the number of updates."""
    if s.beta > 0 and ref is None:
        raise ValueError("beta > 0 needs a reference policy")
    if s.bc_coef > 0 and demos is None:
        raise ValueError("bc_coef > 0 needs expert demonstrations")
    dev = batch.var.device
    M = batch.var.shape[0]
    sums = {"loss": 0.0, "pg": 0.0, "kl": 0.0, "clip_frac": 0.0, "entropy": 0.0, "bc": 0.0}
    n_mb = 0
    for _ in range(s.epochs):
        perm = torch.randperm(M, generator=generator, device=dev)
        for start in range(0, M, s.minibatch):
            idx = perm[start:start + s.minibatch]
            if not batch.informative[idx].any():
                continue
            x = batch.x.index(idx)
            dist = policy(x)
            logp = dist.log_prob(batch.var[idx], batch.u[idx])
            w = batch.informative[idx, None].expand_as(logp)
            pg, clip_frac = clipped_objective(logp, batch.logp[idx], batch.adv[idx], s.eps_low, s.eps_high, w)
            ent = dist.entropy().mean()
            loss = pg - s.entropy_coef * ent
            kl = torch.zeros((), device=dev)
            if s.beta > 0:
                with torch.no_grad():
                    logp_ref = ref(x).log_prob(batch.var[idx], batch.u[idx])
                kl = (kl_k3(logp, logp_ref) * w).sum() / w.sum().clamp_min(1)
                loss = loss + s.beta * kl
            bc = torch.zeros((), device=dev)
            if s.bc_coef > 0:
                bc = bc_loss(policy, demos.minibatch(s.minibatch, generator))["loss"]
                loss = loss + s.bc_coef * bc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), s.max_grad_norm)
            opt.step()
            for k, v in (("loss", loss), ("pg", pg), ("kl", kl), ("clip_frac", clip_frac), ("entropy", ent), ("bc", bc)):
                sums[k] += float(v.detach())
            n_mb += 1
    return {**{k: v / max(n_mb, 1) for k, v in sums.items()}, "updates": n_mb}


def bc_step(policy: Policy, opt: torch.optim.Optimizer, demos: DemoBatch, size: int, generator: torch.Generator,
            max_grad_norm: float = 1.0) -> dict[str, float]:
    """One behaviour-cloning step on a minibatch of ``size`` expert decisions; the loss terms."""
    terms = bc_loss(policy, demos.minibatch(size, generator))
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
    opt.step()
    return {k: float(v.detach()) for k, v in terms.items()}
