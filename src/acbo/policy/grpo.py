"""GRPO as pure functions: group-relative advantages, the clipped surrogate loss, the KL estimate.

Names follow the papers: G (group size), mu (update epochs per batch), eps_low/eps_high (the
asymmetric clip range of DAPO, arXiv 2503.14476), beta (KL weight; DeepSeekMath, arXiv
2402.03300, uses the k3 estimator below). Whether to divide advantages by the group std is an
option: DeepSeekMath does, Dr. GRPO (arXiv 2503.20783) argues it biases updates towards groups
with small reward spread; our default follows Dr. GRPO.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, scale_by_std: bool = False, eps: float = 1e-6,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards: M x G (M groups of G). Returns (advantages M x G = reward - group mean, optionally
    / group std; informative M: False for groups whose rewards are all equal, which carry no
    signal and are skipped)."""
    M, G = rewards.shape
    if G < 2:
        raise ValueError(f"a group needs at least 2 members, got G = {G}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    spread = rewards.std(dim=1, keepdim=True)
    informative = (rewards.amax(1) - rewards.amin(1)) > eps
    adv = centred / (spread + eps) if scale_by_std else centred
    return torch.where(informative[:, None], adv, torch.zeros_like(adv)), informative


def clipped_objective(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, eps_low: float,
                      eps_high: float, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate, as a loss to minimise: -mean(min(r A, clip(r, 1 - eps_low,
    1 + eps_high) A)), r = exp(logp - logp_old). All inputs the same shape; weight (0/1 or
    fractional) masks entries. Returns (loss, fraction of weighted entries where clipping acts)."""
    w = torch.ones_like(adv) if weight is None else weight.to(adv.dtype)
    ratio = torch.exp(logp - logp_old)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    obj = torch.minimum(ratio * adv, clipped * adv)
    n = w.sum().clamp_min(1)
    acts = ((ratio * adv) > (clipped * adv)).to(adv.dtype)
    return -(obj * w).sum() / n, (acts * w).sum() / n


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Unbiased, non-negative per-sample estimate of KL(pi || pi_ref) from samples of pi:
    exp(logp_ref - logp) - (logp_ref - logp) - 1 (Schulman's k3)."""
    d = logp_ref - logp
    return torch.exp(d) - d - 1
