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

With ``grid = K > 0`` the policy also reads the world model (:func:`acbo.policy.features.grid_features`):
K grid points per variable, each with the predictive of E[Y | do] there and its expected
improvement. Each grid point becomes a token (its features, plus its variable's token after the
attention layers); pooled over the grid they also enter the variable's token before attention. The
action is then a grid cell and a position inside it (:class:`GridActionDist`): a categorical over
(variable, cell) pairs whose logits start as log EI — so an untrained grid policy samples where the
world model expects improvement, in proportion to it — plus a learned correction, and a Beta
refinement inside the cell. Why a grid and not one Beta per variable: the world model's EI is a
function over the domain that can have several modes; a categorical over cells can follow it (a Beta
cannot), starts from it, and keeps the log-probability exact: log pi(j, v) = log softmax(logits)_(j,k)
+ log Beta(r; alpha_jk, beta_jk) + log K - log(high_j - low_j), for v in cell k at relative position r.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from acbo.policy.features import LOG_EI, N_COST_FEATURES, N_GLOBAL_FEATURES, N_GRID_FEATURES, N_VAR_FEATURES
from acbo.layers import Block
from acbo.seeding import sample_beta

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
    grid: int = 0
    """Grid points per variable of the world-model features (0: the policy does not read the world
    model and picks a value from one Beta per variable)."""
    world: str = "network"
    """The world model the grid features read (:data:`acbo.surrogate.world.WORLDS`): ``network``,
    the network's own answer, or ``conditioned``, that answer conditioned on the data of the
    problem (measurements, observations read nonparametrically, experiments that showed no effect)."""
    stop_head: bool = False
    """A head that reads each grid cell's token and adds a learned bias to the *stop* logit of an
    experiment that may set two variables (:class:`acbo.policy.sets.SetActionDist`): the
    policy's say in whether a first member in that cell is set alone. It starts at zero (the
    world model's rule); trained with set actions (``design.max_set = 2``), where each variable set
    costs a unit of reward (``rewards.cost``; with ``design.costs`` its cost over the mean): with
    costs, the partner's expected improvement is per unit of cost besides. Needs ``grid``."""
    cost_head: bool = False
    """The policy reads what each grid cell costs (:func:`acbo.policy.features.cost_features`: its
    cost against the mean, its share of what may still be spent, what the rest buys): where costs
    are given, each cell's probability is divided by its cost to a learned power (starting at 1:
    Snoek et al.'s per-unit rule) and a learned term of the cell's token and its cost features,
    which starts at zero, is added to its logit (:class:`CostHead`). Without costs the head is not
    read, so the policy acts as it does without it. Trained with ``design.costs``. Needs ``grid``."""

    def __post_init__(self):
        from acbo.surrogate.world import WORLDS

        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {WORLDS}, got {self.world!r}")
        if self.world == "conditioned" and not self.grid:
            raise ValueError("world 'conditioned' is read through the grid features: it needs grid >= 2, got grid 0")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 0 or self.grid == 1:
            raise ValueError(f"grid must be 0 (no world-model features) or an integer >= 2, got {self.grid!r}")
        for head in ("stop_head", "cost_head"):
            if getattr(self, head) and not self.grid:
                raise ValueError(f"{head} reads the grid cells' tokens: it needs grid >= 2, got grid 0")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if min(self.token_dim, self.dim, self.heads, self.ff_mult) < 1 or self.layers < 0:
            raise ValueError(f"invalid policy config {self}")


@dataclass(frozen=True)
class PolicyInput:
    """Everything one decision depends on. tokens: B x D x C (surrogate), var_feats: B x D x F,
    glob: B x G, valid: B x D (may be chosen), low/high: B x D domains (observed units), grid:
    B x D x K x F_grid world-model features (K = 0 for a policy that does not read them), cost:
    B x D x K x F_cost what each cell costs (:func:`acbo.policy.features.cost_features`; K = 0
    without costs)."""

    tokens: torch.Tensor
    var_feats: torch.Tensor
    glob: torch.Tensor
    valid: torch.Tensor
    var_mask: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    grid: torch.Tensor
    cost: torch.Tensor

    def index(self, idx: torch.Tensor) -> "PolicyInput":
        """Rows ``idx`` of every field (a minibatch)."""
        return PolicyInput(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    @staticmethod
    def cat(parts: list["PolicyInput"]) -> "PolicyInput":
        """Concatenate along the batch (all parts padded to the same D)."""
        return PolicyInput(*(torch.cat([getattr(p, f) for p in parts]) for f in PolicyInput.__dataclass_fields__))


def _log_beta(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log Beta(u; a, b) density."""
    return (a - 1) * torch.log(u) + (b - 1) * torch.log1p(-u) - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))


def _beta_mode(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mode of Beta(a, b) (a, b >= 1; 1/2 for the uniform)."""
    return torch.where(a + b > 2, (a - 1) / (a + b - 2).clamp_min(1e-6), torch.full_like(a, 0.5))


def _domain_value(low: torch.Tensor, high: torch.Tensor, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Positions u in [0, 1] of variables var (B x k) -> values low + u (high - low) on the data's scale."""
    lo, hi = low.gather(1, var), high.gather(1, var)
    return lo + u.to(lo.dtype) * (hi - lo)


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
        u = sample_beta(a, b, generator).clamp(U_EPS, 1 - U_EPS)  # with the generator (torch's Beta takes none)
        return var, u.to(self.alpha.dtype)

    def mode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable variable and the mode of its Beta (B each)."""
        var = self.var_logits.argmax(1)
        a, b = self.alpha.gather(1, var[:, None])[:, 0], self.beta.gather(1, var[:, None])[:, 0]
        return var, _beta_mode(a, b).clamp(U_EPS, 1 - U_EPS)

    def value(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Positions -> values on the data's scale (same shape as var)."""
        return _domain_value(self.low, self.high, var, u)

    def log_prob(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact log-density of (variable, value) for B x k actions (value = low + u (high - low))."""
        logp_var = torch.log_softmax(self.var_logits, dim=1).gather(1, var)
        a, b = self.alpha.gather(1, var), self.beta.gather(1, var)
        u = u.to(a.dtype)
        logp_u = _log_beta(u, a, b)
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




@dataclass(frozen=True)
class GridActionDist:
    """The distribution of a policy that reads the world model, for B decisions: logits B x D x K
    over (variable, grid cell) pairs (-inf for invalid variables), alpha/beta B x D x K (the Beta of
    the position inside each cell), low/high B x D. The same interface as :class:`ActionDist`:
    actions are (variable, position u in [0, 1] of the domain), u in cell k = floor(u K)."""

    logits: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    stop: torch.Tensor | None = None
    """B x D x K: the policy's bias of the *stop* logit for a first member in each cell
    (:attr:`PolicyConfig.stop_head`); None without the head (a bias of 0)."""

    @property
    def var_logits(self) -> torch.Tensor:
        """B x D: log of each variable's total probability (up to a constant), -inf where invalid."""
        return torch.logsumexp(self.logits, dim=2)

    def _flat(self) -> torch.Tensor:
        B, D, K = self.logits.shape
        return torch.log_softmax(self.logits.reshape(B, D * K), dim=1)                           # B x DK

    def _at(self, t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Entries of a B x D x K tensor at flat (variable, cell) indices idx = j K + k (B x k)."""
        return t.reshape(t.shape[0], -1).gather(1, idx)

    def sample(self, generator: torch.Generator, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """k actions per decision: (variables B x k, positions u B x k in [U_EPS, 1 - U_EPS])."""
        K = self.logits.shape[2]
        idx = torch.multinomial(self._flat().double().exp(), k, replacement=True, generator=generator)  # B x k
        r = sample_beta(self._at(self.alpha, idx).double(), self._at(self.beta, idx).double(), generator
                        ).clamp(U_EPS, 1 - U_EPS)
        u = ((idx % K + r) / K).clamp(U_EPS, 1 - U_EPS)
        return idx // K, u.to(self.alpha.dtype)

    def mode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The most probable (variable, cell) and the mode of its Beta (B each)."""
        K = self.logits.shape[2]
        idx = self.logits.reshape(self.logits.shape[0], -1).argmax(1, keepdim=True)              # B x 1
        r = _beta_mode(self._at(self.alpha, idx), self._at(self.beta, idx))
        return idx[:, 0] // K, ((idx % K + r) / K).clamp(U_EPS, 1 - U_EPS)[:, 0]

    def value(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Positions -> values on the data's scale (same shape as var)."""
        return _domain_value(self.low, self.high, var, u)

    def excluding(self, var: torch.Tensor, u: torch.Tensor) -> "GridActionDist":
        """The distribution conditioned on avoiding the (variable, cell) pairs of P actions (var,
        u: B x P; u in [0, 1] of the domain, in cell floor(u K)); see :meth:`restricted`."""
        B, D, K = self.logits.shape
        cell = torch.floor(u.double() * K).long().clamp(0, K - 1)
        keep = torch.ones(B, D * K, dtype=torch.bool, device=self.logits.device)
        keep.scatter_(1, var * K + cell, False)
        return self.restricted(keep.reshape(B, D, K))

    def restricted(self, keep: torch.Tensor) -> "GridActionDist":
        """The distribution conditioned on the (variable, cell) pairs ``keep`` (B x D x K bool); see
        :meth:`reweighted`."""
        return self.reweighted(torch.where(keep, 0.0, float("-inf")).to(self.logits.dtype))

    def reweighted(self, log_weight: torch.Tensor) -> "GridActionDist":
        """Each (variable, cell) probability times exp(``log_weight``) (B x D x K; -inf drops a
        cell), renormalised; a decision left with no valid cell is left as it was."""
        out = self.logits + log_weight.to(self.logits.dtype)
        left = torch.isfinite(out).flatten(1).any(1)[:, None, None]                              # B x 1 x 1
        return dataclasses.replace(self, logits=torch.where(left, out, self.logits))

    def flat_cell(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The flat (variable, cell) index j K + floor(u K) of actions (var, u: any shape, the same)."""
        K = self.logits.shape[2]
        return var * K + torch.floor(u.double() * K).long().clamp(0, K - 1)

    def log_prob(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Exact log-density of (variable, value) for B x k actions (value = low + u (high - low)):
        u lies in cell k = floor(u K) at relative position r = u K - k."""
        return self._flat().gather(1, self.flat_cell(var, u)) + self.within(var, u)

    def within(self, var: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """log-density of positions u (B x k, in [0, 1] of the domains of variables var) inside
        their grid cells: the cell's Beta, per unit of the domain (finite whatever the cell's
        probability)."""
        K = self.logits.shape[2]
        cell = torch.floor(u.double() * K).long().clamp(0, K - 1)
        r = (u.double() * K - cell).clamp(U_EPS, 1 - U_EPS)
        idx = var * K + cell
        a, b = self._at(self.alpha, idx), self._at(self.beta, idx)
        width = (self.high.gather(1, var) - self.low.gather(1, var)).to(a.dtype)
        return _log_beta(r.to(a.dtype), a, b) + math.log(K) - torch.log(width)

    def entropy(self) -> torch.Tensor:
        """Entropy of the (variable, cell) categorical plus the expected entropy of the position
        inside the cell (in units of the domain: a Beta's entropy minus log K), B."""
        B, D, K = self.logits.shape
        logp = self._flat()
        valid = torch.isfinite(logp)
        logp = logp.masked_fill(~valid, 0.0)
        p = logp.exp().masked_fill(~valid, 0.0)
        h_r = torch.distributions.Beta(self.alpha, self.beta).entropy().reshape(B, D * K) - math.log(K)
        return -(p * logp).sum(1) + (p * h_r.masked_fill(~valid, 0.0)).sum(1)


class CostHead(nn.Module):
    """What a cell's cost does to its logit (:attr:`PolicyConfig.cost_head`): -s log(c / c_bar) +
    m(token, cost features), with the weight s of the per-unit rule starting at 1 and the
    correction m, an MLP, at 0 (so the untrained head is the rule). cell: B x D x K x C tokens,
    cost: B x D x K x F_cost features (the first log(c / c_bar)). Returns B x D x K."""

    def __init__(self, C: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.mlp = nn.Sequential(nn.Linear(C + N_COST_FEATURES, C), nn.GELU(), nn.Linear(C, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, cell: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        return -self.scale * cost[..., 0] + self.mlp(torch.cat([cell, cost], dim=-1))[..., 0]


class Policy(nn.Module):
    """PolicyInput -> ActionDist (grid = 0) or GridActionDist (grid = K)."""

    def __init__(self, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.cfg = cfg
        C = cfg.dim
        self.inp = nn.Sequential(nn.Linear(cfg.token_dim + N_VAR_FEATURES + N_GLOBAL_FEATURES, C), nn.GELU(),
                                 nn.Linear(C, C))
        self.blocks = nn.ModuleList(Block(C, cfg.heads, cfg.ff_mult) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(C)
        if cfg.grid:
            self.grid_embed = nn.Sequential(nn.Linear(N_GRID_FEATURES, C), nn.GELU(), nn.Linear(C, C))
            self.grid_pool = nn.Linear(2 * C, C)
            # per (variable, cell): a correction of the log-EI logit and the Beta inside the cell;
            # the last layer starts at zero: the untrained policy samples cells in proportion to EI
            self.cell_head = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, C), nn.GELU(), nn.Linear(C, 3))
            nn.init.zeros_(self.cell_head[-1].weight)
            nn.init.zeros_(self.cell_head[-1].bias)
            self.ei_scale = nn.Parameter(torch.ones(()))
            if cfg.stop_head:  # starts at zero: the untrained head leaves the partner rule as it is
                self.stop_head = nn.Linear(C, 1)
                nn.init.zeros_(self.stop_head.weight)
                nn.init.zeros_(self.stop_head.bias)
            if cfg.cost_head:
                self.cost_head = CostHead(C)
        else:
            self.var_head = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 1))
            self.value_head = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 2))

    def forward(self, x: PolicyInput) -> ActionDist | GridActionDist:
        B, D, _ = x.var_feats.shape
        g = x.glob[:, None, :].expand(B, D, x.glob.shape[1])
        h = self.inp(torch.cat([x.tokens, x.var_feats, g], dim=-1))                             # B x D x C
        if self.cfg.grid:
            K = self.cfg.grid
            if x.grid.shape[:3] != (B, D, K):
                raise ValueError(f"the policy reads {K} grid points per variable, its input has grid {tuple(x.grid.shape)}")
            e = self.grid_embed(x.grid)                                                          # B x D x K x C
            h = h + self.grid_pool(torch.cat([e.max(2).values, e.mean(2)], dim=-1))
        for blk in self.blocks:
            h = blk(h, x.var_mask)
        h = self.ln(h)
        if not self.cfg.grid:
            logits = self.var_head(h).squeeze(-1).masked_fill(~x.valid, float("-inf"))           # B x D
            ab = 1.0 + F.softplus(self.value_head(h))                                            # B x D x 2
            return ActionDist(logits, ab[..., 0], ab[..., 1], x.low, x.high)
        cell = h[:, :, None] + e                                                                 # B x D x K x C
        out = self.cell_head(cell)                                                               # B x D x K x 3
        logits = self.ei_scale * x.grid[..., LOG_EI] + out[..., 0]                              # B x D x K
        if self.cfg.cost_head and x.cost.shape[2]:  # per unit cost, plus the learned term
            if x.cost.shape[2] != K:
                raise ValueError(f"the policy reads costs on {K} grid cells per variable, its input has {tuple(x.cost.shape)}")
            logits = logits + self.cost_head(cell, x.cost)
        logits = logits.masked_fill(~x.valid[..., None], float("-inf"))
        ab = 1.0 + F.softplus(out[..., 1:] - 3.0)                                                # B x D x K x 2, ~1 at the start
        stop = self.stop_head(cell)[..., 0] if self.cfg.stop_head else None                      # B x D x K
        return GridActionDist(logits, ab[..., 0], ab[..., 1], x.low, x.high, stop)

    def with_stop_head(self) -> "Policy":
        """This policy with a :attr:`PolicyConfig.stop_head` (at zero: the same actions) added, if
        it has none: the start of training set actions from a policy trained one variable at a
        time."""
        return self._with_head("stop_head")

    def with_cost_head(self) -> "Policy":
        """This policy with a :attr:`PolicyConfig.cost_head` (at zero: the per-unit rule) added, if
        it has none: the start of training with costs from a policy trained without them."""
        return self._with_head("cost_head")

    def _with_head(self, head: str) -> "Policy":
        if getattr(self.cfg, head):
            return self
        out = Policy(dataclasses.replace(self.cfg, **{head: True})).to(next(self.parameters()).device)
        missing, unexpected = out.load_state_dict(self.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(f"{head}.") for k in missing), (missing, unexpected)
        return out.train(self.training)
