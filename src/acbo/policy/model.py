"""The acquisition policy: (surrogate tokens, features) in, a distribution over (variable, value) out.

Equivariant over variables, for any d: every variable's token is built from the surrogate's
encoding of that variable, its own features and the broadcast global features; ``layers`` of
self-attention over variables mix them; two heads read each token:

- a logit of choosing that variable (a categorical over intervenable variables; the target,
  non-intervenable and padding variables get -inf and are never sampled);
- the two concentrations (alpha, beta >= 1) of a Beta distribution for the position u in
  [0, 1] of the value inside that variable's domain: value = low + u (high - low).

log pi(j, v) = log softmax(logits)_j + log Beta(u; alpha_j, beta_j) - log(high_j - low_j): an
exact density on the observed data's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from acbo.policy.features import N_GLOBAL_FEATURES, N_VAR_FEATURES
from acbo.layers import Block

U_EPS = 1e-4
"""Sampled positions are kept inside [U_EPS, 1 - U_EPS], where the Beta density is finite."""


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture of the policy."""

    token_dim: int = 64
    """Width of the surrogate tokens the policy reads (the surrogate's ``dim``)."""
    dim: int = 64
    """Width of the policy's tokens."""
    heads: int = 4
    """Attention heads."""
    layers: int = 2
    """Attention layers over variables."""
    ff_mult: int = 2
    """Feed-forward width multiple."""

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.token_dim, self.dim, self.heads, self.ff_mult) < 1 or self.layers < 0:
            raise ValueError(f"invalid policy config {self}")


@dataclass(frozen=True)
class PolicyInput:
    """Everything one decision depends on. tokens: B x D x C (surrogate), var_feats: B x D x F,
    glob: B x G, valid: B x D (may be chosen), low/high: B x D domains (observed units)."""

    tokens: torch.Tensor
    var_feats: torch.Tensor
    glob: torch.Tensor
    valid: torch.Tensor
    var_mask: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def index(self, idx: torch.Tensor) -> "PolicyInput":
        """Rows ``idx`` of every field (a minibatch)."""
        return PolicyInput(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list["PolicyInput"]) -> "PolicyInput":
        """Concatenate along the batch (all parts padded to the same D)."""
        return PolicyInput(*(torch.cat([getattr(p, f) for p in parts]) for f in PolicyInput.__dataclass_fields__))


@dataclass(frozen=True)
class ActionDist:
    """The policy's distribution for B decisions: var_logits B x D (-inf where invalid),
    alpha/beta B x D (Beta concentrations per variable), low/high B x D."""

    var_logits: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def sample(self, generator: torch.Generator, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """k actions per decision: (variables B x k, positions u B x k in [U_EPS, 1 - U_EPS])."""
        B, D = self.var_logits.shape
        probs = torch.softmax(self.var_logits.double(), dim=1)
        var = torch.multinomial(probs, k, replacement=True, generator=generator)                 # B x k
        a, b = self.alpha.gather(1, var).double(), self.beta.gather(1, var).double()
        # Beta(a, b) = Ga(a) / (Ga(a) + Ga(b)), with the generator (torch's Beta takes none)
        ga = torch._standard_gamma(a, generator=generator)
        gb = torch._standard_gamma(b, generator=generator)
        u = (ga / (ga + gb)).clamp(U_EPS, 1 - U_EPS)
        return var, u.to(self.alpha.dtype)

    def mode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable variable and the mode of its Beta (B each)."""
        var = self.var_logits.argmax(1)
        a, b = self.alpha.gather(1, var[:, None])[:, 0], self.beta.gather(1, var[:, None])[:, 0]
        u = torch.where(a + b > 2, (a - 1) / (a + b - 2).clamp_min(1e-6), torch.full_like(a, 0.5))
        return var, u.clamp(U_EPS, 1 - U_EPS)

    def value(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Positions -> values on the data's scale (same shape as var)."""
        lo, hi = self.low.gather(1, var), self.high.gather(1, var)
        return lo + u.to(lo.dtype) * (hi - lo)

    def log_prob(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact log-density of (variable, value) for B x k actions (value = low + u (high - low))."""
        logp_var = torch.log_softmax(self.var_logits, dim=1).gather(1, var)
        a, b = self.alpha.gather(1, var), self.beta.gather(1, var)
        u = u.to(a.dtype)
        logp_u = (a - 1) * torch.log(u) + (b - 1) * torch.log1p(-u) - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))
        width = (self.high.gather(1, var) - self.low.gather(1, var)).to(a.dtype)
        return logp_var + logp_u - torch.log(width)

    def entropy(self) -> torch.Tensor:
        """Entropy of the categorical plus the expected entropy of the position (B)."""
        valid = torch.isfinite(self.var_logits)
        # masked entries are zeroed before any product, so no 0 * inf reaches the gradient
        logp = torch.log_softmax(self.var_logits, dim=1).masked_fill(~valid, 0.0)
        p = logp.exp().masked_fill(~valid, 0.0)
        h_u = torch.distributions.Beta(self.alpha, self.beta).entropy()                          # B x D
        return -(p * logp).sum(1) + (p * h_u.masked_fill(~valid, 0.0)).sum(1)


class Policy(nn.Module):
    """PolicyInput -> ActionDist."""

    def __init__(self, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.cfg = cfg
        C = cfg.dim
        self.inp = nn.Sequential(nn.Linear(cfg.token_dim + N_VAR_FEATURES + N_GLOBAL_FEATURES, C), nn.GELU(),
                                 nn.Linear(C, C))
        self.blocks = nn.ModuleList(Block(C, cfg.heads, cfg.ff_mult) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(C)
        self.var_head = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 1))
        self.value_head = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 2))

    def forward(self, x: PolicyInput) -> ActionDist:
        B, D, _ = x.var_feats.shape
        g = x.glob[:, None, :].expand(B, D, x.glob.shape[1])
        h = self.inp(torch.cat([x.tokens, x.var_feats, g], dim=-1))                             # B x D x C
        for blk in self.blocks:
            h = blk(h, x.var_mask)
        h = self.ln(h)
        logits = self.var_head(h).squeeze(-1).masked_fill(~x.valid, float("-inf"))               # B x D
        ab = 1.0 + F.softplus(self.value_head(h))                                                # B x D x 2
        return ActionDist(logits, ab[..., 0], ab[..., 1], x.low, x.high)
