"""Expected improvement on the learned world model: the amortized analogue of CBO's acquisition.

Per intervenable variable, the world model's posterior of E[Y | do(X_j = x)] on a grid of
``grid`` values over the domain (one pass answers every variable and value); the expected
improvement of each over the best so far — the lowest posterior mean of E[Y | do] at the
interventions already made, or Y's observational mean if that is lower (doing nothing) — then a
second, finer grid of ``refine`` points between the neighbours of the best grid value. No
policy: myopic, the baseline a planning policy must beat. Maximisation hands the model -Y.
"""

from __future__ import annotations

import torch

from acbo.buffer import Buffer, CampaignBatch, PaddedBatch
from acbo.method import Method, Problem, register_method
from acbo.posterior import ParentPosterior
from acbo.surrogate import EncodingCache
from acbo.surrogate.checkpoint import shared_surrogate


def _model(checkpoint: str | None):
    model = shared_surrogate(checkpoint)
    if not model.cfg.queries:
        raise ValueError(f"surrogate-ei needs a surrogate with a world-model head; {checkpoint or 'the shipped one'} has none")
    return model


@register_method
class SurrogateEI(Method):
    name = "surrogate-ei"
    stochastic = False  # the argmax of EI on a fixed grid: the data alone decide
    believes_pending = True

    def __init__(self, problem: Problem, checkpoint: str | None = None, grid: int = 32, refine: int = 9):
        super().__init__(problem)
        for name, v in (("grid", grid), ("refine", refine)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.grid, self.refine = grid, refine
        self.model = _model(self.checkpoint)
        self._cache = EncodingCache(self.model)

    def options(self) -> dict:
        return {"checkpoint": self.checkpoint, "grid": self.grid, "refine": self.refine}

    def state_dict(self) -> dict:
        return self._cache.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._cache.load_state_dict(state, "surrogate-ei")

    def posterior(self, buffer: Buffer) -> ParentPosterior:
        from acbo.surrogate.inference import surrogate_posterior

        return surrogate_posterior(self.model, buffer, self.problem.target, self.problem.names)

    def predict(self, buffer: Buffer, variable: int, x: torch.Tensor, draw: bool = True):
        from acbo.surrogate.inference import world_predictive

        return world_predictive(self.model, buffer, self.problem.target, variable, x, draw)

    @torch.inference_mode()
    def predict_grid(self, buffer: Buffer, variables: list[int], xs: torch.Tensor, draw: bool = False):
        """The predictive of Y (observed units) for every variable of ``variables`` (Q) at its values
        xs (Q x K), from one query pass on the incremental encoding: what one decision costs."""
        p = self.problem
        c, belief = self._state(buffer, negate=False)
        mean, std = c.observational_stats()
        var = torch.tensor(variables)
        z = ((xs - mean[0, var, None]) / std[0, var, None]).float()
        draw_logits, mean_logits = self.model.query(c.standardised(), belief.tokens, var[None], z[None])
        bar = self.model.predictive((draw_logits if draw else mean_logits)[0].double())
        Q, K = xs.shape
        return bar.affine(mean[0, p.target].expand(Q, K), std[0, p.target].expand(Q, K))

    def _state(self, buffer: Buffer, negate: bool):
        """The campaign (Y negated for a maximisation when ``negate``) and the surrogate's belief
        (of the measured rows: :attr:`Buffer.told`)."""
        p = self.problem
        campaign = lambda b: CampaignBatch.of_buffer(b, p.target, p.low, p.high, p.intervenable, 1, negate_target=negate)
        c, told = campaign(buffer), buffer.told
        cache = self._cache if negate == (not p.minimize) else EncodingCache(self.model)
        return c, cache.belief(c if told is buffer else campaign(told), told.n, told.n_obs)

    @torch.no_grad()
    def _posterior_means(self, batch: PaddedBatch, tokens: torch.Tensor, var: torch.Tensor, z: torch.Tensor):
        """The mean head's bar distributions for var 1 x Q, z 1 x Q x K (the sign of Y as the model sees it)."""
        _, mean_logits = self.model.query(batch, tokens, var, z)
        return self.model.predictive(mean_logits[0])                                             # Q x K

    @torch.inference_mode()
    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        """The value of most expected improvement on the grid, refined around it. In a batch the
        pending experiments are believed (:meth:`Method.believed`), and since the network's world
        model moves little for one believed row, a later member also keeps out of every value
        within half a grid step of a pending experiment's on the same variable: a batch never
        repeats an experiment."""
        p = self.problem
        c, belief = self._state(buffer, negate=not p.minimize)  # the model minimises: hand it -Y
        batch, tokens = c.standardised(), belief.tokens
        mean, std = (t[0] for t in c.observational_stats())
        can = torch.nonzero(p.intervenable).flatten()                                            # Q
        lo, hi = p.low[can], p.high[can]
        t = torch.linspace(0, 1, self.grid, dtype=torch.float64)
        vals = lo[:, None] + (hi - lo)[:, None] * t                                               # Q x K
        z = ((vals - mean[can, None]) / std[can, None]).float()
        f = self._posterior_means(batch, tokens, can[None], z[None])
        best = self._best(c, batch, tokens, buffer, mean, std)
        ei = self._away_from_pending(f.expected_improvement(torch.full(f.mean.shape, best)), can, vals)  # Q x K
        q, k = divmod(int(ei.argmax()), self.grid)
        # finer grid between the neighbours of the best grid value
        a, b = vals[q, max(k - 1, 0)], vals[q, min(k + 1, self.grid - 1)]
        fine = a + (b - a) * torch.linspace(0, 1, self.refine, dtype=torch.float64)
        fz = ((fine - mean[can[q]]) / std[can[q]]).float()
        f2 = self._posterior_means(batch, tokens, can[q:q + 1][None], fz[None, None])
        ei2 = self._away_from_pending(f2.expected_improvement(torch.full(f2.mean.shape, best)), can[q:q + 1],
                                      fine[None], (hi[q] - lo[q]) / (self.grid - 1))[0]
        if float(ei2.max()) > float(ei[q, k]):
            return int(can[q]), float(fine[int(ei2.argmax())])
        return int(can[q]), float(vals[q, k])

    def _away_from_pending(self, ei: torch.Tensor, can: torch.Tensor, vals: torch.Tensor,
                           step: torch.Tensor | None = None) -> torch.Tensor:
        """``ei`` (Q x K at values vals of the variables can, Q) at -inf within half a grid step
        (``step``; by default each row's own spacing) of a pending experiment's value of the same
        variable (:attr:`Method.pending`), where any other value is left."""
        if not self.pending:
            return ei
        step = (vals[:, -1] - vals[:, 0]) / (vals.shape[1] - 1) if step is None else step.expand(len(can))   # Q
        near = torch.zeros_like(ei, dtype=torch.bool)
        for q in self.pending:
            for j, v in q.items():
                row = (can == j).nonzero().flatten()
                near[row] |= (vals[row] - v).abs() <= step[row, None] / 2
        return ei if bool(near.all()) else ei.masked_fill(near, float("-inf"))

    def _best(self, c: CampaignBatch, batch, tokens, buffer: Buffer, mean, std) -> float:
        """The best E[Y | do] so far by the model's posterior mean at each intervention made (Y's
        standard units, as the model sees Y; the rows of :meth:`CampaignBatch.single_settings`),
        or 0 (doing nothing) if that is lower."""
        single, var = c.single_settings()
        rows = torch.nonzero(single[0]).flatten()
        if len(rows) == 0:
            return 0.0
        var = var[0, rows]                                                                        # R
        zx = ((buffer.values[rows, var] - mean[var]) / std[var]).float()
        f = self._posterior_means(batch, tokens, var[None], zx[None, :, None])                   # R x 1
        return min(0.0, float(f.mean.min()))
