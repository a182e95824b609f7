"""The surrogate as a posterior: buffers in, ParentPosterior out."""

from __future__ import annotations

import torch

from acbo.buffer import Buffer, PaddedBatch
from acbo.posterior import ParentPosterior
from acbo.surrogate.model import Surrogate


@torch.no_grad()
def surrogate_marginals(model: Surrogate, buffers: list[Buffer], targets: list[int]) -> list[torch.Tensor]:
    """P(j in pa(Y)) per buffer (a d-vector each; 0 for the target), one batched forward pass."""
    dev = next(model.parameters()).device
    batch = PaddedBatch.of_buffers(buffers, targets, standardise=True, device=dev)
    probs = torch.sigmoid(model(batch)).cpu().double()                                          # B x D
    return [probs[i, : b.d] for i, b in enumerate(buffers)]


def surrogate_posterior(model: Surrogate, buffer: Buffer, target: int, names) -> ParentPosterior:
    """The surrogate's (factorised) posterior over pa(Y) for one buffer."""
    return ParentPosterior.from_marginals(names, target, surrogate_marginals(model, [buffer], [target])[0])


def _encoded(model: Surrogate, buffer: Buffer, target: int):
    """One buffer read by the world model: (batch, parent logits, tokens, observational mean and
    std); ValueError for a surrogate without the world-model head."""
    if not model.cfg.queries:
        raise ValueError("this surrogate has no world-model head (trained without queries)")
    dev = next(model.parameters()).device
    batch = PaddedBatch.of_buffers([buffer], [target], standardise=True, device=dev)
    logits, tokens = model.encode(batch)
    mean, std = buffer.observational_stats()
    return batch, logits, tokens, mean, std


@torch.no_grad()
def world_predictive(model: Surrogate, buffer: Buffer, target: int, variable: int, x: torch.Tensor, draw: bool = True):
    """The world model's predictive (observed units, over the Q values x) of Y under
    do(X_variable = x) given the buffer: of a fresh measurement (``draw``) or of E[Y | do]."""
    batch, _, tokens, mean, std = _encoded(model, buffer, target)
    dev = tokens.device
    z = ((x.to(torch.float64) - mean[variable]) / std[variable]).float().to(dev)
    draw_logits, mean_logits = model.query(batch, tokens, torch.tensor([[variable]], device=dev), z[None, None])
    bar = model.predictive((draw_logits if draw else mean_logits)[0, 0].double().cpu())
    Q = x.shape[0]
    return bar.affine(mean[target].expand(Q), std[target].expand(Q))


def _with_partners(buffer: Buffer, target: int, variables: list[int], low: torch.Tensor, high: torch.Tensor,
                   domains: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(var, low, high): the queried ``variables`` (their domains low/high, observed units) and
    after them every other variable some row sets together with others, with its domain from
    ``domains`` (low, high over all d variables): the world model reads a set row as evidence about
    each member once it knows the others' effects (:func:`acbo.surrogate.world.set_rows`). Without
    ``domains`` the queried ones alone, and rows that set any other variable are left out (rows
    that set only queried ones are still read)."""
    var = torch.tensor(variables, dtype=torch.long)
    low, high = low.to(torch.float64), high.to(torch.float64)
    several = (buffer.intervened.sum(1) >= 2) & ~buffer.intervened[:, target]                       # N
    if domains is None or not bool(several.any()):
        return var, low, high
    others = buffer.intervened[several].any(0)                                                       # d
    others[var] = False
    extra = others.nonzero().flatten()
    d_low, d_high = (t.to(torch.float64) for t in domains)
    return torch.cat([var, extra]), torch.cat([low, d_low[extra]]), torch.cat([high, d_high[extra]])


@torch.no_grad()
def conditioned_grid(model: Surrogate, buffer: Buffer, target: int, variables: list[int], xs: torch.Tensor,
                     low: torch.Tensor, high: torch.Tensor, draw: bool = False,
                     domains: tuple[torch.Tensor, torch.Tensor] | None = None) -> list:
    """The conditioned world model (:mod:`acbo.surrogate.world`) for several variables in one
    pass: xs Q x K values (observed units) of the Q ``variables``, low/high their domains (Q);
    ``domains`` (low, high over every variable, observed units) lets it read rows that set several
    variables at once (:func:`_with_partners`). Returns Q Gaussian predictives
    (:class:`acbo.predictive.GaussianMixture`, observed units) of E[Y | do] or, with ``draw``, of a
    fresh measurement."""
    from acbo.predictive import GaussianMixture
    from acbo.surrogate.world import conditioned_world

    batch, logits, tokens, mean, std = _encoded(model, buffer, target)
    dev = tokens.device
    Q, K = xs.shape
    var, low, high = _with_partners(buffer, target, variables, low, high, domains)                 # Q' >= Q each
    lo, hi = (low - mean[var]) / std[var], (high - mean[var]) / std[var]
    u = (xs.to(torch.float64) - low[:Q, None]) / (high - low)[:Q, None]                              # Q x K
    u = torch.cat([u, u.new_full((len(var) - Q, K), 0.5)])                                           # Q' x K: partners read at mid-domain
    w = conditioned_world(model, batch, tokens, torch.sigmoid(logits.double()), var[None].to(dev), lo[None].to(dev),
                          hi[None].to(dev), u[None].to(dev))
    v = (w.var_y if draw else w.var_f)[0].cpu()
    return [GaussianMixture.normal(w.mean[0, q].cpu(), v[q].sqrt()).affine(mean[target].expand(K), std[target].expand(K))
            for q in range(len(variables))]


def conditioned_predictive(model: Surrogate, buffer: Buffer, target: int, variable: int, x: torch.Tensor,
                           low: float, high: float, draw: bool = True,
                           domains: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The conditioned world model's predictive (:mod:`acbo.surrogate.world`; observed units,
    over the Q values x) of Y under do(X_variable = x): a Gaussian for a fresh measurement
    (``draw``) or for E[Y | do]. low, high: the variable's domain (observed units); ``domains``:
    every variable's, to read rows that set several at once (:func:`conditioned_grid`)."""
    return conditioned_grid(model, buffer, target, [variable], x.reshape(1, -1),
                            torch.tensor([low], dtype=torch.float64), torch.tensor([high], dtype=torch.float64), draw,
                            domains)[0]


@torch.no_grad()
def conditioned_set(model: Surrogate, buffer: Buffer, target: int, variables: list[int], xs: torch.Tensor,
                    low: torch.Tensor, high: torch.Tensor, draw: bool = False,
                    domains: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The conditioned world model (:mod:`acbo.surrogate.world`) for experiments that set the k
    ``variables`` together at xs (Q x k, observed units; low/high: their domains, k): a Gaussian
    over the Q settings (observed units) of E[Y | do(X_S = x)] or, with ``draw``, of a measurement.

    The prior adds the single-variable world models' effects (means and variances, each about Y's
    observational mean: right where the members act on Y separately, not where one acts through
    another), each conditioned on the rows that set it, alone or with others (all of them with
    ``domains``, every variable's, :func:`_with_partners`; without, the rows that set none but the
    queried variables); the rows where exactly this set was set correct the sum, through a GP over
    the members' positions on the residuals (:func:`acbo.surrogate.conditioning.set_residual`),
    with a measurement's noise the members' average, updated by any replicates of one setting.
    Those rows so count twice, in the members' effects and in the correction: an approximation
    that pulls the prediction at a measured setting further towards its measurements than the
    joint posterior would (in an idealised one-row example, two effects of unit variance and a
    noise variance of 0.1, one plain GP step: mean 0.996 y and variance 0.091, where the joint
    posterior has 0.952 y and 0.095)."""
    from acbo.predictive import GaussianMixture
    from acbo.surrogate.conditioning import set_posterior
    from acbo.surrogate.world import conditioned_world

    if len(variables) < 2 or len(set(variables)) != len(variables):
        raise ValueError(f"a set query names at least two different variables, got {variables}")
    batch, logits, tokens, mean, std = _encoded(model, buffer, target)
    k = len(variables)
    var, low, high = _with_partners(buffer, target, variables, low, high, domains)                 # k' >= k each
    width = (high - low).clamp_min(1e-12)
    exact = (buffer.intervened[:, var[:k]].all(1) & (buffer.intervened.sum(1) == k))                 # N: rows that set S
    rows = buffer.values[exact][:, var[:k]].to(torch.float64)                                        # M x k
    ys = (buffer.values[exact, target].to(torch.float64) - mean[target]) / std[target]               # M
    at = torch.cat([xs.to(torch.float64), rows]) if len(rows) else xs.to(torch.float64)              # (Q + M) x k
    u = (at - low[:k]) / width[:k]                                                                   # (Q + M) x k
    u_all = torch.cat([u.T, u.new_full((len(var) - k, u.shape[0]), 0.5)])                            # k' x (Q + M): partners at mid-domain
    w = conditioned_world(model, batch, tokens, torch.sigmoid(logits.double()), var[None], ((low - mean[var]) / std[var])[None],
                          ((high - mean[var]) / std[var])[None], u_all[None])                        # 1 x k' x (Q + M)
    prior_mean, prior_var = w.mean[0, :k].sum(0), w.var_f[0, :k].sum(0)                              # Q + M each
    noise = float((w.var_y - w.var_f)[0, :k].mean())
    mean_f, var_f, noise = set_posterior(prior_mean, prior_var, u, ys, rows, noise)
    Q = xs.shape[0]
    var_out = var_f + (noise if draw else 0.0)
    return GaussianMixture.normal(mean_f, var_out.sqrt()).affine(mean[target].expand(Q), std[target].expand(Q))
