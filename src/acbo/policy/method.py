"""The deployed system as a method: ``amortized`` = surrogate posterior + trained policy.

data -> posterior -> intervention -> outcome -> repeat, with no expert and no per-problem
fitting. The surrogate's pooled state is kept between decisions and updated with the new rows
only (:class:`acbo.surrogate.Encoding`), so a decision costs one row pass, the variable-attention
readout and the policy, whatever the number of samples.
"""

from __future__ import annotations

import torch

from acbo.buffer import Buffer, CampaignBatch
from acbo.method import Method, Problem, register_method
from acbo.policy.checkpoint import shared_policy
from acbo.policy.decide import after_experiments, decide
from acbo.policy.model import GridActionDist
from acbo.posterior import ParentPosterior
from acbo.surrogate import Belief, EncodingCache
from acbo.surrogate.checkpoint import shared_surrogate
from acbo.surrogate.model import ContextMemo
from acbo.surrogate.world import conditioned_world


def _world_model():
    model = shared_surrogate(None)
    if not model.cfg.queries:
        raise ValueError("neither the policy's surrogate nor the shipped one has a world-model head")
    return model


@register_method
class Amortized(Method):
    """Options: checkpoint (a policy checkpoint, read with the surrogate it names; default the
    shipped pair), horizon (the budget T the policy plans for; it sees steps taken and left),
    greedy (take the most probable action instead of sampling)."""

    name = "amortized"
    believes_pending = True

    def __init__(self, problem: Problem, checkpoint: str | None = None, horizon: int = 20, greedy: bool = False):
        super().__init__(problem)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.horizon, self.greedy = horizon, bool(greedy)
        self.policy, self.surrogate = shared_policy(self.checkpoint)
        self._cache = EncodingCache(self.surrogate)
        self._memo = ContextMemo()  # the world model's context rows, encoded once over the campaign

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "horizon": self.horizon, "greedy": self.greedy}

    def state_dict(self) -> dict:
        """The incremental encoding (see :class:`acbo.surrogate.EncodingCache`): a reloaded campaign
        continues it, so that its next ask is the original's, bit for bit."""
        return self._cache.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._cache.load_state_dict(state, "amortized")

    def _campaign(self, buffer: Buffer) -> CampaignBatch:
        p = self.problem
        return CampaignBatch.of_buffer(buffer, p.target, p.low, p.high, p.intervenable, self.horizon,
                                  negate_target=not p.minimize)  # the policy minimises: hand it -Y

    def _belief(self, c: CampaignBatch, buffer: Buffer) -> Belief:
        """The surrogate's belief about the measured rows (:attr:`Buffer.told`; ``c`` is ``buffer``'s campaign)."""
        told = buffer.told
        return self._cache.belief(c if told is buffer else self._campaign(told), told.n, told.n_obs)

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        """The learned predictive: the world model the policy reads (:attr:`PolicyConfig.world`),
        of the policy's own surrogate if it has a world-model head, else of the shipped surrogate
        (``acbo.surrogate.load_pretrained``)."""
        from acbo.surrogate.inference import conditioned_predictive, world_predictive

        model = self.surrogate if self.surrogate.cfg.queries else _world_model()
        if self.policy.cfg.world == "conditioned":
            p = self.problem
            return conditioned_predictive(model, buffer, p.target, variable, x, float(p.low[variable]),
                                          float(p.high[variable]), draw)
        return world_predictive(model, buffer, self.problem.target, variable, x, draw)

    @torch.inference_mode()
    def believed_means(self, told: Buffer, var: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """:meth:`predict`'s E[Y | do(X_var[p] = val[p])] (observed units, P) for a batch's
        believed rows, from the campaign's own encoding and memo (what its decisions read) in
        one pass; the network world model (a policy without the conditioned one) through
        :meth:`predict`."""
        if self.policy.cfg.world != "conditioned" or not self.surrogate.cfg.queries:
            return super().believed_means(told, var, val)
        p = self.problem
        c = self._campaign(told)
        belief = self._belief(c, told)
        mean, std = (t[0] for t in c.observational_stats())                                     # D each
        lo, hi = (p.low[var] - mean[var]) / std[var], (p.high[var] - mean[var]) / std[var]      # P each
        u = (val - p.low[var]) / (p.high[var] - p.low[var]).clamp_min(1e-12)
        w = conditioned_world(self.surrogate, c.standardised(), belief.tokens, belief.marginals, var[None],
                              lo[None], hi[None], u[None, :, None], self._memo)                 # 1 x P x 1
        sign = 1.0 if p.minimize else -1.0  # the campaign hands the world model -Y when maximising
        return sign * (mean[p.target] + std[p.target] * w.mean[0, :, 0].double())

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        """The surrogate's marginals; with the conditioned world model, those of the settable
        variables after the experiments on them (an experiment that showed no effect lowers them)."""
        p = self.problem
        with torch.inference_mode():
            c = self._campaign(buffer)
            belief = self._belief(c, buffer)
            marginals = belief.marginals[0].double()
            if self.policy.cfg.world == "conditioned":
                marginals = after_experiments(self.surrogate, c, belief)[0]
        return ParentPosterior.from_marginals(p.names, p.target, marginals)

    @torch.inference_mode()
    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """The policy's action on the data. Where the buffer ends in believed rows (pending
        experiments of a batch, :meth:`Method.believed`), the policy reads them as measured and
        its draw avoids their (variable, grid cell) pairs: a batch never puts two experiments in
        one cell of the policy's grid."""
        c = self._campaign(buffer)
        _, dist = decide(self.policy, c, self._belief(c, buffer), self.surrogate, self._memo)
        if buffer.believed and isinstance(dist, GridActionDist):
            p = self.problem
            rows, mask = buffer.values[-buffer.believed:], buffer.intervened[-buffer.believed:]      # P x d each
            var = mask.to(torch.int64).argmax(1)                                                    # P
            lo, hi = p.low[var], p.high[var]
            u = (rows.gather(1, var[:, None])[:, 0] - lo) / (hi - lo).clamp_min(1e-12)
            dist = dist.excluding(var[None], u[None])
        var, u = dist.mode() if self.greedy else (t[:, 0] for t in dist.sample(generator, 1))
        j = int(var[0])
        lo, hi = float(self.problem.low[j]), float(self.problem.high[j])
        return j, lo + float(u[0]) * (hi - lo)
