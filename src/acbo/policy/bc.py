"""Imitation of the expert: behaviour cloning from PARENT_SCALE demonstrations.

Every recorded decision becomes (the policy's input at that state, the expert's variable, the
position of its value in the variable's domain). Domains and settable variables are those the
expert was posed (recorded in the demonstration; older shards: each variable's observed
[min, max] over the observational rows, every variable settable). The loss is the
negative log-likelihood of the expert's action under the policy (variable and value parts
logged separately).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from acbo.buffer import CampaignBatch
from acbo.demonstrations import Demo, iter_demos
from acbo.policy.model import U_EPS, Policy, PolicyInput
from acbo.policy.decide import policy_input
from acbo.surrogate import Belief, Encoding, Surrogate, surrogate_digest


@dataclass(frozen=True)
class DemoBatch:
    """M expert decisions: inputs (padded to a common D), var M x 1, u M x 1. The inputs hold the
    tokens and marginals of the surrogate whose digest is ``surrogate_sha256``: after that
    surrogate changes (stage 3), rebuild the batch with :func:`load_demo_batch`."""

    x: PolicyInput
    var: torch.Tensor
    u: torch.Tensor
    surrogate_sha256: str

    def __len__(self) -> int:
        return self.var.shape[0]

    def minibatch(self, size: int, generator: torch.Generator) -> "DemoBatch":
        idx = torch.randint(len(self), (min(size, len(self)),), generator=generator, device=self.var.device)
        return DemoBatch(self.x.index(idx), self.var[idx], self.u[idx], self.surrogate_sha256)


def pad_input(x: PolicyInput, D: int) -> PolicyInput:
    """Pad the variable axis of B x d inputs to D (padding: invalid, masked, domain [0, 1])."""
    B, d = x.valid.shape
    if d == D:
        return x
    if d > D:
        raise ValueError(f"cannot pad {d} variables down to {D}")
    pad = lambda t, v: torch.cat([t, torch.full((B, D - d, *t.shape[2:]), v, dtype=t.dtype, device=t.device)], dim=1)
    return PolicyInput(pad(x.tokens, 0), pad(x.var_feats, 0), x.glob, pad(x.valid, False), pad(x.var_mask, False),
                       pad(x.low, 0), pad(x.high, 1), pad(x.grid, 0), pad(x.cost, 0))


@torch.no_grad()
def demo_decisions(demo: Demo, surrogate: Surrogate, phases: tuple[str, ...] = ("ei",), device="cpu", grid: int = 0,
                   world: str = "network") -> tuple[PolicyInput, torch.Tensor, torch.Tensor] | None:
    """The decisions of one demonstration whose phase is in ``phases`` (None if there are none):
    (inputs T' x d, var T' x 1, u T' x 1). The buffer grows one row per step, so the surrogate
    state is updated incrementally."""
    a = demo.arrays
    keep = [t for t, ph in enumerate(demo.meta["phase"]) if ph in phases]
    if not keep:
        return None
    values = torch.from_numpy(a["buffer"]).to(device)                                          # N x d
    intervened = torch.from_numpy(a["intervened"]).to(device)
    n_rows = a["n_rows"]
    T = len(n_rows)
    if "low" in a:  # the problem the expert was posed
        low, high = torch.from_numpy(a["low"]).to(device), torch.from_numpy(a["high"]).to(device)
        can = torch.from_numpy(a["intervenable"]).to(device)[None]
    else:  # shards from before the domains were recorded: observed ranges, every variable
        obs = ~intervened[: n_rows[0]].any(1)
        low, high = values[: n_rows[0]][obs].amin(0), values[: n_rows[0]][obs].amax(0)
        can = None
    target = torch.tensor([int(demo.meta["target"])], device=device)

    def campaign(t: int) -> CampaignBatch:
        n = int(n_rows[t])
        return CampaignBatch.of_rows(values[None, :n], intervened[None, :n], target, low[None], high[None], t, T, can)

    enc = Encoding.of(surrogate, campaign(0))
    xs = []
    for t in range(T):
        if t > 0:
            s, e = int(n_rows[t - 1]), int(n_rows[t])
            enc = enc.add(surrogate, values[None, s:e], intervened[None, s:e])
        if t in keep:
            xs.append(policy_input(campaign(t), Belief.read(surrogate, enc), surrogate, grid, world=world))
    var = torch.as_tensor(a["variable"][keep], device=device)[:, None]
    width = (high - low).clamp_min(1e-12)
    u = ((torch.as_tensor(a["value"][keep], device=device, dtype=low.dtype) - low[var[:, 0]]) / width[var[:, 0]])
    return PolicyInput.cat(xs), var, u.clamp(U_EPS, 1 - U_EPS).float()[:, None]


def load_demo_batch(folder: str | Path, surrogate: Surrogate, device="cpu", phases: tuple[str, ...] = ("ei",),
                    grid: int = 0, world: str = "network") -> DemoBatch:
    """Every decision of a demonstration collection, ready for BC."""
    parts = [p for p in (demo_decisions(dm, surrogate, phases, device, grid, world) for dm in iter_demos(folder))
             if p is not None]
    if not parts:
        raise ValueError(f"{folder}: no complete demonstration shards with decisions in phases {phases}")
    D = max(p[0].valid.shape[1] for p in parts)
    x = PolicyInput.cat([pad_input(p[0], D) for p in parts])
    return DemoBatch(x, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), surrogate_digest(surrogate))


def bc_loss(policy: Policy, batch: DemoBatch) -> dict[str, torch.Tensor]:
    """Negative log-likelihood of the expert's actions: total, variable part, value part."""
    dist = policy(batch.x)
    logp_var = torch.log_softmax(dist.var_logits, dim=1).gather(1, batch.var)
    logp = dist.log_prob(batch.var, batch.u)
    return {"loss": -logp.mean(), "nll_var": -logp_var.mean(), "nll_value": -(logp - logp_var).mean()}


def expert_agreement(policy: Policy, batch: DemoBatch) -> float:
    """Fraction of decisions where the policy's most probable variable is the expert's."""
    with torch.no_grad():
        return float((policy(batch.x).var_logits.argmax(1, keepdim=True) == batch.var).float().mean())

