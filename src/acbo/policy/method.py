"""The deployed system as a method: ``amortized`` = surrogate posterior + trained policy.

data -> posterior -> intervention -> outcome -> repeat, with no expert and no per-problem
fitting. The surrogate's pooled state is kept between decisions and updated with the new rows
only (``acbo.policy.agent.Encoding``), so a decision costs one row pass, the variable-attention
readout and the policy, whatever the number of samples.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from acbo.buffer import Buffer
from acbo.method import Method, Problem, register_method
from acbo.policy.agent import Encoding, policy_input
from acbo.policy.features import Campaign
from acbo.posterior import ParentPosterior


@lru_cache(maxsize=4)
def _models(checkpoint: str | None):
    from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy

    return load_pretrained_policy() if checkpoint is None else load_policy_checkpoint(checkpoint)


@register_method
class Amortized(Method):
    """Options: checkpoint (a policy checkpoint; default the shipped one), horizon (the budget T
    the policy plans for; it sees steps taken and left), greedy (take the most probable action
    instead of sampling)."""

    name = "amortized"

    def __init__(self, problem: Problem, checkpoint: str | None = None, horizon: int = 20, greedy: bool = False):
        super().__init__(problem)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.horizon, self.greedy = horizon, bool(greedy)
        self.policy, self.surrogate = _models(self.checkpoint)
        self._enc: Encoding | None = None
        self._enc_key = (-1, -1)  # (rows encoded, observational rows then)

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "horizon": self.horizon, "greedy": self.greedy}

    def _campaign(self, buffer: Buffer) -> Campaign:
        p = self.problem
        x = buffer.values.clone()
        if not p.minimize:  # the policy minimises: hand it -Y
            x[:, p.target] = -x[:, p.target]
        n, d = x.shape
        target = torch.zeros(1, d, dtype=torch.bool)
        target[0, p.target] = True
        low, high = p.low.clone(), p.high.clone()
        return Campaign(x[None], buffer.intervened[None], torch.ones(1, n, dtype=torch.bool),
                        torch.ones(1, d, dtype=torch.bool), target, low[None], high[None], p.intervenable[None] & ~target,
                        torch.tensor([buffer.n_int]), torch.tensor([self.horizon]))

    def _encoding(self, c: Campaign, buffer: Buffer) -> Encoding:
        n_done, obs_then = self._enc_key
        if self._enc is None or buffer.n_obs != obs_then or buffer.n < n_done:
            self._enc = Encoding.of(self.surrogate, c)
        elif buffer.n > n_done:
            self._enc = self._enc.add(self.surrogate, c.values[:, n_done:], c.intervened[:, n_done:])
        self._enc_key = (buffer.n, buffer.n_obs)
        return self._enc

    @torch.inference_mode()
    def _state(self, buffer: Buffer):
        c = self._campaign(buffer)
        marg, tokens = self._encoding(c, buffer).readout(self.surrogate)
        return c, marg, tokens

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        _, marg, _ = self._state(buffer)
        return ParentPosterior.from_marginals(self.problem.names, self.problem.target, marg[0].double())

    @torch.inference_mode()
    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        c, marg, tokens = self._state(buffer)
        dist = self.policy(policy_input(c, marg, tokens))
        var, u = dist.mode() if self.greedy else (t[:, 0] for t in dist.sample(generator, 1))
        j = int(var[0])
        lo, hi = float(self.problem.low[j]), float(self.problem.high[j])
        return j, lo + float(u[0]) * (hi - lo)
