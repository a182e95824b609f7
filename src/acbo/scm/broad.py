"""The broad world's sampler: B random SCMs with mixed mechanism kinds, noise families, root
distributions, units, natural bounds and optional hidden confounders (:func:`broad_scms`)."""

from __future__ import annotations

import math

import torch

from acbo.scm import mechanisms as mech
from acbo.scm.graphs import pick_target, sample_graph
from acbo.scm.scm import SCM, check_batch


SATURATION = 25.0
"""Broad world: nonlinear nodes saturate softly at this many latent units (see :mod:`acbo.scm.scm`)."""
UNITS_FAR = 0.3
"""Broad world: share of variables whose values sit far from zero (an offset of 5-30 of their scales)."""


def broad_scms(
    generator: torch.Generator,
    B: int,
    d: int,
    graph: str = "er",
    expected_degree: float = 2.0,
    target: str = "any",
    mechanisms: tuple[str, ...] = ("linear", "poly", "saturating", "prob", "periodic", "exp", "log", "mlp", "gp"),
    mixing: float = 0.7,
    noises: tuple[str, ...] = ("gaussian", "laplace", "hetero"),
    roots: tuple[str, ...] = ("gaussian", "uniform", "bimodal", "lognormal"),
    noise_std: tuple[float, float] = (0.01, 3.0),
    noise_log: bool = True,
    units: tuple[float, float] = (-2.0, 3.0),
    p_raw_linear: float = 0.0,
    n_latent: int = 0,
    n_pilot: int = 2000,
    target_mechanisms: tuple[str, ...] = (),
    p_target_mechanism: float = 1.0,
) -> SCM:
    """Draw B random SCMs of the broad world over d variables on the generator's device.

    Graph from the prior ``graph`` (expected degree ``expected_degree``), Y by the ``target``
    rule, random labelling (as :func:`random_scms`). Per model: with probability
    ``p_raw_linear`` a classical raw linear SCM (unit noise, unstandardised weights ±U(0.5, 2),
    variances growing along the order, no units); otherwise with probability ``mixing`` every
    node draws its kind from ``mechanisms``, else one kind for the whole graph. Non-root nodes
    draw their noise family from ``noises`` and a noise std (relative to their unit-variance
    signal) from ``noise_std``, log-uniformly if ``noise_log`` (1 % of the signal to three times
    it); roots draw their distribution from ``roots``. ``n_latent`` hidden confounders, each a
    standard-normal latent with an effect ±U(0.5, 1.2) on two random observed nodes. Units: each
    variable's scale is 10^U(units) and its offset scale x N(0, 2²), plus 5-30 scales for a
    share ``UNITS_FAR`` of variables; prob nodes stay in [0, 1] and log-normal roots positive
    (their natural bounds). Mechanisms standardised on an n_pilot-row pilot sample. With
    ``target_mechanisms``, Y's own mechanism is drawn from them instead, with probability
    ``p_target_mechanism`` per model (raw linear models excepted).
    """
    check_batch(B, noise_std)
    unknown = [m for m in tuple(mechanisms) + tuple(target_mechanisms) if m not in mech.MECHANISMS] + [n for n in noises if n not in mech.NOISES] + \
              [r for r in roots if r not in mech.ROOTS]
    if unknown or not mechanisms or not noises or not roots:
        raise ValueError(f"unknown or missing mechanisms / noises / roots: {unknown or (mechanisms, noises, roots)}")
    if noise_log and noise_std[0] <= 0:
        raise ValueError(f"log-uniform noise std needs low > 0, got {noise_std}")
    dev = generator.device
    u01 = lambda *shape: torch.rand(*shape, generator=generator, device=dev)
    A = sample_graph(graph, generator, B, d, expected_degree)
    A, t_c = pick_target(generator, A, target)
    label = u01(B, d).argsort(dim=1)                                                          # canonical -> label
    has_parent = A.any(dim=1)                                                                 # B x d
    # mechanism kinds: per node, per graph, or raw linear
    codes = torch.tensor([mech.MECHANISMS.index(m) for m in mechanisms], device=dev)
    raw = u01(B) < p_raw_linear
    mixed = u01(B) < mixing
    per_graph = codes[torch.randint(len(codes), (B,), generator=generator, device=dev)]
    per_node = codes[torch.randint(len(codes), (B, d), generator=generator, device=dev)]
    kind = torch.where(mixed[:, None], per_node, per_graph[:, None])
    drawable = set(codes.tolist()) | {mech.LINEAR}
    if target_mechanisms:  # Y's own kind (draws nothing for the families without it)
        t_codes = torch.tensor([mech.MECHANISMS.index(m) for m in target_mechanisms], device=dev)
        t_kind = t_codes[torch.randint(len(t_codes), (B,), generator=generator, device=dev)]
        take = (u01(B) < p_target_mechanism)[:, None] & (torch.arange(d, device=dev)[None] == t_c[:, None])
        kind = torch.where(take, t_kind[:, None], kind)
        drawable |= set(t_codes.tolist())
    kind = torch.where(raw[:, None] | ~has_parent, torch.full_like(kind, mech.LINEAR), kind)
    W, c, a, link_gain, link_bias = mech.sample_node_parameters(generator, A, kind, tuple(sorted(drawable)))
    sd, noise_kind, hetero = _broad_noise(generator, has_parent, raw, noises, roots, noise_std, noise_log)
    conf = _confounders(generator, B, d, n_latent)
    loc, scale, lower, upper = _broad_units(generator, kind, noise_kind, has_parent, raw, units)
    mc_seed = torch.randint(0, 2**62, (B,), generator=generator, device=dev)
    zeros = torch.zeros(B, d, device=dev)
    scm = SCM(
        A=A, label=label, target=label.gather(1, t_c[:, None]).squeeze(1), kind=kind, W=W, c=c, a=a,
        f_loc=zeros.clone(), f_scale=torch.ones(B, d, device=dev), noise_std=sd, noise_kind=noise_kind, hetero=hetero,
        link_gain=link_gain, link_bias=link_bias, conf=conf, loc=loc, scale=scale, lower=lower, upper=upper,
        standardised=~raw, saturation=torch.where(raw, 0.0, SATURATION), mc_seed=mc_seed,
    )
    scm._latent(scm._noise(generator, n_pilot), fit=True)  # sets f_loc / f_scale in place
    return scm


def _broad_noise(generator: torch.Generator, has_parent: torch.Tensor, raw: torch.Tensor, noises: tuple[str, ...],
                 roots: tuple[str, ...], noise_std: tuple[float, float], noise_log: bool):
    """Noise scales, base distributions and heteroskedasticity per node (B x d each): non-roots
    from ``noises`` with a std from ``noise_std``, roots from ``roots`` with std 1, raw linear
    models Gaussian with std 1."""
    dev = generator.device
    B, d = has_parent.shape
    lo, hi = noise_std
    v = torch.rand(B, d, generator=generator, device=dev)
    sd = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * v) if noise_log else lo + (hi - lo) * v
    sd = torch.where(has_parent & ~raw[:, None], sd, torch.ones_like(sd))
    noise_pick = torch.randint(len(noises), (B, d), generator=generator, device=dev)
    root_pick = torch.randint(len(roots), (B, d), generator=generator, device=dev)
    noise_base = torch.tensor([mech.BASES.index("gaussian" if n == "hetero" else n) for n in noises], device=dev)[noise_pick]
    root_base = torch.tensor([mech.BASES.index(r) for r in roots], device=dev)[root_pick]
    noise_kind = torch.where(has_parent, noise_base, root_base)
    noise_kind = torch.where(raw[:, None], torch.full_like(noise_kind, mech.BASES.index("gaussian")), noise_kind)
    hetero = has_parent & ~raw[:, None] & torch.tensor([n == "hetero" for n in noises], device=dev)[noise_pick]
    return sd, noise_kind, hetero


def _confounders(generator: torch.Generator, B: int, d: int, n_latent: int) -> torch.Tensor:
    """B x d x L effects of L hidden confounders: each on two distinct nodes, ±U(0.5, 1.2)."""
    dev = generator.device
    conf = torch.zeros(B, d, n_latent, device=dev)
    for l in range(n_latent):
        pair = torch.rand(B, d, generator=generator, device=dev).topk(2, dim=1).indices         # B x 2
        sign = torch.randint(0, 2, (B, 2), generator=generator, device=dev).float() * 2 - 1
        conf[:, :, l].scatter_(1, pair, sign * (0.5 + 0.7 * torch.rand(B, 2, generator=generator, device=dev)))
    return conf


def _broad_units(generator: torch.Generator, kind: torch.Tensor, noise_kind: torch.Tensor, has_parent: torch.Tensor,
                 raw: torch.Tensor, units: tuple[float, float]):
    """(loc, scale, lower, upper), B x d: scales 10^U(units), offsets scale x N(0, 2^2) plus 5-30
    scales for a share UNITS_FAR of variables; prob nodes unit-free in [0, 1], log-normal roots
    positive, raw linear models unit-free."""
    dev = generator.device
    B, d = kind.shape
    u01 = lambda: torch.rand(B, d, generator=generator, device=dev)
    scale = 10 ** (units[0] + (units[1] - units[0]) * u01())
    far = (u01() < UNITS_FAR).float() * (5 + 25 * u01()) * (torch.randint(0, 2, (B, d), generator=generator,
                                                                       device=dev).float() * 2 - 1)
    loc = scale * (2 * torch.randn(B, d, generator=generator, device=dev) + far)
    lower = torch.full((B, d), -math.inf, device=dev)
    upper = torch.full((B, d), math.inf, device=dev)
    prob = (kind == mech.PROB) & has_parent
    lognormal = ~has_parent & (noise_kind == mech.BASES.index("lognormal"))
    m_ln, s_ln = mech.lognormal_moments()
    loc = torch.where(prob, torch.zeros_like(loc), torch.where(lognormal, scale * m_ln / s_ln, loc))
    scale = torch.where(prob, torch.ones_like(scale), scale)
    lower = torch.where(prob | lognormal, torch.zeros_like(lower), lower)
    upper = torch.where(prob, torch.ones_like(upper), upper)
    loc = torch.where(raw[:, None], torch.zeros_like(loc), loc)
    scale = torch.where(raw[:, None], torch.ones_like(scale), scale)
    return loc, scale, lower, upper
