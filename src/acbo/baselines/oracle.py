"""The oracle: knows the SCM and always intervenes at its optimum (the ceiling of any method)."""

from __future__ import annotations

import torch

from acbo.buffer import Buffer
from acbo.method import Method, Problem, register_method
from acbo.scm import SCM


@register_method
class Oracle(Method):
    name = "oracle"
    stochastic = False

    def __init__(self, problem: Problem, scm: SCM | dict | None = None):
        super().__init__(problem)
        if scm is None:
            raise ValueError("method 'oracle' needs the true model: CausalOptimizer(..., method='oracle', scm=...)")
        scm = SCM.from_dict(scm) if isinstance(scm, dict) else scm
        if not isinstance(scm, SCM) or scm.batch_size != 1:
            raise ValueError("oracle's scm must be a single acbo.scm.SCM (batch size 1)")
        if scm.d != problem.d or int(scm.target[0]) != problem.target:
            raise ValueError(f"oracle's SCM has d = {scm.d} and target index {int(scm.target[0])}; the data have "
                             f"d = {problem.d} and target index {problem.target} (columns must be in the SCM's order)")
        self.scm = scm
        sign = 1.0 if problem.minimize else -1.0
        if problem.minimize:
            opt = scm.optimum(problem.low[None].float(), problem.high[None].float(), problem.intervenable[None])
        else:  # maximise E[Y] = minimise E[-Y]: negate Y's observed scale and offset
            neg = _negate_target(scm)
            opt = neg.optimum(problem.low[None].float(), problem.high[None].float(), problem.intervenable[None])
        j = int(opt.variable[0])
        # the optimum is searched in the SCM's float32; keep its setting inside the float64 domain
        setting = min(max(float(opt.setting[0]), float(problem.low[j])), float(problem.high[j]))
        self.best = (j, setting, sign * float(opt.value[0]))

    def options(self) -> dict:
        return {"scm": self.scm.to_dict()}

    def ask(self, buffer: Buffer, generator: torch.Generator) -> tuple[int, float]:
        return self.best[0], self.best[1]


def _negate_target(scm: SCM) -> SCM:
    """The same model with Y observed as -Y (children still see the latent value)."""
    from dataclasses import replace

    t_c = scm.canon.gather(1, scm.target[:, None])
    loc, scale = scm.loc.clone(), scm.scale.clone()
    loc.scatter_(1, t_c, -loc.gather(1, t_c))
    scale.scatter_(1, t_c, -scale.gather(1, t_c))
    return replace(scm, loc=loc, scale=scale)
