"""Mechanism, noise and root families: batched parameter samplers and pure evaluators.

Every node k has a mechanism *kind* (per node, so one graph can mix them) that maps its latent
parent values u (roughly standardised) to a signal g_k, stored in shared tensors
W[k, h, j] (masked to the parents j of k), c[k, h], a[k, h]:

| code | kind        | g_k(u)                                           | parameters                                 |
|------|-------------|--------------------------------------------------|--------------------------------------------|
| 0    | linear      | sum_j w_j u_j                                    | W[k, 0] = w, abs(w) ~ U(0.5, 2), random sign  |
| 1    | mlp         | sum_h a_h tanh(W_h . u + c_h)                    | H = 16 random tanh units                   |
| 2    | gp          | sum_h a_h cos(W_h . u + c_h)                     | H = 32 random Fourier features of an RBF GP |
| 3    | poly        | b1 z + b2 z^2 + b3 z^3, z = w^ . u - z0          | a = (b1, b2, b3); the extremum near z0     |
| 4    | saturating  | tanh(gain w^ . u + offset)                       | gain ~ logU(0.7, 3), offset ~ U(-1.5, 1.5) |
| 5    | prob        | w^ . u; the node is sigmoid(gain (f + noise) + bias) in (0, 1) | link_gain, link_bias    |
| 6    | periodic    | sin(freq w^ . u + phase)                          | freq ~ U(0.7, 2.5), phase ~ U(0, 2 pi)     |
| 7    | exp         | exp(min(gain w^ . u, 8))                          | gain ~ +-U(0.4, 1)                          |
| 8    | log         | sign(z) log(1 + abs(z)), z = gain w^ . u + offset | gain ~ U(1, 4), offset ~ U(-1, 1)          |
| 9    | interaction | alpha u_i u_j + v . u                            | two distinct parents i, j (one parent: u_i^2) |
| 10   | bump        | a1 exp(-z1^2/2) + a2 exp(-z2^2/2) + v . u, z_h = (w^_h . u - m_h) / s_h | a localised bump or dip (a second with prob. 1/2, along its own direction w^_2), centre m ~ U(-2.5, 2.5), width s ~ logU(0.15, 0.8) |
| 11   | wave        | sin(freq w^ . u + phase) + v . u                  | freq ~ U(1.25, 5): 1-4 periods over a domain of ~5 latent units |
| 12   | step        | tanh(z1) - b tanh(z2) + v . u, z_h = g (w^ . u - t_h) | sharp threshold (gain g ~ U(4, 15)), or a plateau between t1 < t2 (b = 1, prob. 1/2) |
| 13   | vshape      | abs(w^ . u - t) + v . u                           | a V with its tip at t ~ U(-2, 2)           |
| 14   | bump2d      | a exp(-(z_i^2 + z_j^2)/2) + v . u, z = (u - m) / s  | a peak over two distinct parents i, j (one parent: a bump), interior optimum |
| 15   | dips2       | -a1 exp(-z_i^2/2) - a2 exp(-z_j^2/2) + v . u, z = (u - m) / s | a dip on each of two distinct parents i, j (one parent: one dip), a_h ~ U(1, 2), centre m ~ U(-1.5, 1.5), width s ~ logU(0.3, 1): the lowest Y sets both at their dips (a joint optimum) |

The shape kinds (10-15) add a small linear part v . u (|v| ~ U(0.1, 0.4)), so their signal's
spread never rests on a feature the observations rarely reach. w^: random-sign weights
normalised to unit length over the parents. The signal is then
standardised on a pilot sample (see :mod:`acbo.scm.scm`), so every kind enters with unit
variance. Noise (per node, zero mean, unit variance before scaling): ``BASES`` below;
heteroskedastic noise is Gaussian noise whose scale grows with abs(f).
"""

from __future__ import annotations

import math

import torch

from acbo.seeding import standard_gamma

MECHANISMS = ("linear", "mlp", "gp", "poly", "saturating", "prob", "periodic", "exp", "log", "interaction",
              "bump", "wave", "step", "vshape", "bump2d", "dips2")
"""Mechanism kinds; a node's kind is its index here."""
CLASSIC = ("linear", "mlp", "gp")
"""The kinds of the classic families (one kind per graph)."""
LINEAR, MLP, GP, POLY, SATURATING, PROB, PERIODIC, EXP, LOG, INTERACTION, BUMP, WAVE, STEP, VSHAPE, BUMP2D, DIPS2 = \
    range(len(MECHANISMS))
SHAPES = ("bump", "wave", "step", "vshape", "bump2d")
"""The response shapes: localised features a smooth global fit misses."""
HIDDEN = {"linear": 1, "mlp": 16, "gp": 32, "poly": 3, "saturating": 1, "prob": 1, "periodic": 1, "exp": 1, "log": 1,
          "interaction": 3, "bump": 3, "wave": 2, "step": 3, "vshape": 2, "bump2d": 3, "dips2": 3}
"""Hidden units each kind uses in W, c, a (poly: its three coefficients in a)."""
EXP_MAX = 8.0
"""exp mechanisms clamp their argument here (no overflow under far interventions)."""

BASES = ("gaussian", "laplace", "student_t", "uniform", "bimodal", "lognormal")
"""Zero-mean, unit-variance base distributions of a node's noise (roots: of its value)."""
NOISES = ("gaussian", "laplace", "hetero", "student_t")
"""Noise families of non-root nodes (hetero: Gaussian with a scale that grows with the signal)."""
ROOTS = ("gaussian", "laplace", "student_t", "uniform", "bimodal", "lognormal")
"""Distributions of root nodes."""
T_DF = 3.0
"""Degrees of freedom of Student-t noise (heavy tails: finite variance, infinite kurtosis)."""
BIMODAL_MEAN = 0.9
"""Bimodal roots: an equal mixture of N(+-0.9, 0.19)."""
LOGNORMAL_S = 0.6
"""Log-normal roots: exp(0.6 Z), standardised; positive in observed units."""


def lognormal_moments(s: float = LOGNORMAL_S) -> tuple[float, float]:
    """Mean and std of exp(s Z)."""
    m = math.exp(s * s / 2)
    return m, math.sqrt((math.exp(s * s) - 1) * math.exp(s * s))


# ----------------------------------------------------------------------------- activations
def activation(mechanism: str, z: torch.Tensor) -> torch.Tensor:
    """The unit activation of the classic kinds."""
    if mechanism == "linear":
        return z
    if mechanism == "mlp":
        return torch.tanh(z)
    if mechanism == "gp":
        return torch.cos(z)
    raise ValueError(f"no single activation for mechanism {mechanism!r}; classic kinds: {CLASSIC}")


def evaluate(kind: int, W_k: torch.Tensor, c_k: torch.Tensor, a_k: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """g_k for one node of one kind, batched over the models that have it.

    W_k: b x H x p (H >= the kind's units), c_k, a_k: b x H, u: b x n x p (the first p canonical
    latents). Returns b x n."""
    name = MECHANISMS[kind]
    h = HIDDEN[name]
    if kind in (LINEAR, MLP, GP):
        z = torch.einsum("bnp,bhp->bnh", u, W_k[:, :h]) + c_k[:, None, :h]                      # b x n x h
        return torch.einsum("bnh,bh->bn", activation(name, z), a_k[:, :h])
    z = torch.einsum("bnp,bhp->bnh", u, W_k[:, :h]) + c_k[:, None, :h]                          # b x n x h
    z0 = z[..., 0]
    a = a_k[:, None, :]                                                                          # b x 1 x H
    if kind == POLY:
        return a[..., 0] * z0 + a[..., 1] * z0 ** 2 + a[..., 2] * z0 ** 3
    if kind == SATURATING:
        return a[..., 0] * torch.tanh(z0)
    if kind == PROB:
        return z0
    if kind == PERIODIC:
        return a[..., 0] * torch.sin(z0)
    if kind == EXP:
        return a[..., 0] * torch.exp(z0.clamp(max=EXP_MAX))
    if kind == LOG:
        return a[..., 0] * torch.sign(z0) * torch.log1p(z0.abs())
    if kind == INTERACTION:
        return a[..., 0] * z0 * z[..., 1] + z[..., 2]
    if kind in (BUMP, DIPS2):
        return a[..., 0] * torch.exp(-0.5 * z0 ** 2) + a[..., 1] * torch.exp(-0.5 * z[..., 1] ** 2) + z[..., 2]
    if kind == WAVE:
        return torch.sin(z0) + z[..., 1]
    if kind == STEP:
        return torch.tanh(z0) - a[..., 1] * torch.tanh(z[..., 1]) + z[..., 2]
    if kind == VSHAPE:
        return z0.abs() + z[..., 1]
    if kind == BUMP2D:
        return a[..., 0] * torch.exp(-0.5 * (z0 ** 2 + z[..., 1] ** 2)) + z[..., 2]
    raise ValueError(f"unknown mechanism code {kind}")


# ----------------------------------------------------------------------------- classic parameters
def sample_parameters(mechanism: str, generator: torch.Generator, A: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parameters of one classic kind for every node of canonical DAGs A (B x d x d).

    Returns W: B x d x H x d (W[b, k, :, j] = 0 unless j -> k), c: B x d x H, a: B x d x H."""
    if mechanism not in CLASSIC:
        raise ValueError(f"unknown classic mechanism {mechanism!r}; known: {CLASSIC}")
    B, d, _ = A.shape
    H = HIDDEN[mechanism]
    dev = generator.device
    mask = A.transpose(1, 2).unsqueeze(2).float()                                   # B x d(child) x 1 x d(parent)
    n_pa = A.sum(1).clamp_min(1).float()                                            # B x d
    if mechanism == "linear":
        sign = torch.randint(0, 2, (B, d, 1, d), generator=generator, device=dev).float() * 2 - 1
        mag = 0.5 + 1.5 * torch.rand(B, d, 1, d, generator=generator, device=dev)   # |w| ~ U(0.5, 2)
        W = sign * mag * mask
        c = torch.zeros(B, d, 1, device=dev)
        a = torch.ones(B, d, 1, device=dev)
    elif mechanism == "mlp":
        W = torch.randn(B, d, H, d, generator=generator, device=dev) * mask
        W = W * (1.5 / n_pa.sqrt())[:, :, None, None]
        c = torch.randn(B, d, H, generator=generator, device=dev)
        a = torch.randn(B, d, H, generator=generator, device=dev)
    else:  # gp: random Fourier features of an RBF kernel with lengthscale l ~ U(0.8, 1.6)
        ls = 0.8 + 0.8 * torch.rand(B, d, 1, 1, generator=generator, device=dev)
        W = torch.randn(B, d, H, d, generator=generator, device=dev) * mask / ls
        c = 2 * math.pi * torch.rand(B, d, H, generator=generator, device=dev)
        a = torch.randn(B, d, H, generator=generator, device=dev) * math.sqrt(2.0 / H)
    return W, c, a


# ----------------------------------------------------------------------------- per-node kinds
def _uniform(generator, shape, lo, hi):
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=generator.device)


def _sign(generator, shape):
    return torch.randint(0, 2, shape, generator=generator, device=generator.device).float() * 2 - 1


def _unit_weights(generator: torch.Generator, mask: torch.Tensor) -> torch.Tensor:
    """Random-sign weights with abs ~ U(0.5, 2) on the parents, normalised to unit length.
    mask: B x d x d (child, parent) float. Returns B x d x d."""
    w = _sign(generator, mask.shape) * _uniform(generator, mask.shape, 0.5, 2.0) * mask
    return w / w.norm(dim=2, keepdim=True).clamp_min(1e-12)


def sample_node_parameters(generator: torch.Generator, A: torch.Tensor, kind: torch.Tensor, kinds: tuple[int, ...]
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parameters of every node given its kind (B x d codes). ``kinds``: the codes this world
    can draw; each one's parameters are drawn for every node (in code order, so the stream does
    not depend on which kinds happen to occur), then each node keeps its own kind's.

    Returns W: B x d x H x d, c, a: B x d x H (H = the largest kind's units), link_gain,
    link_bias: B x d (nonzero gain only for prob nodes)."""
    B, d, _ = A.shape
    dev = generator.device
    H = max(HIDDEN[MECHANISMS[k]] for k in kinds)
    W = torch.zeros(B, d, H, d, device=dev)
    c = torch.zeros(B, d, H, device=dev)
    a = torch.zeros(B, d, H, device=dev)
    link_gain = torch.zeros(B, d, device=dev)
    link_bias = torch.zeros(B, d, device=dev)
    mask = A.transpose(1, 2).float()                                                             # B x d x d
    n_pa = A.sum(1)                                                                              # B x d
    for code in sorted(set(kinds)):
        name = MECHANISMS[code]
        h = HIDDEN[name]
        Wk = torch.zeros(B, d, h, d, device=dev)
        ck = torch.zeros(B, d, h, device=dev)
        ak = torch.zeros(B, d, h, device=dev)
        gain = bias = None
        if code in (LINEAR, MLP, GP):
            Wk, ck, ak = sample_parameters(name, generator, A)
        elif code == POLY:
            Wk[:, :, 0] = _unit_weights(generator, mask)
            ck[:, :, 0] = -_uniform(generator, (B, d), -1.5, 1.5)
            ak[:, :, 0] = _uniform(generator, (B, d), -0.5, 0.5)
            ak[:, :, 1] = _sign(generator, (B, d)) * _uniform(generator, (B, d), 0.5, 1.5)
            ak[:, :, 2] = _uniform(generator, (B, d), -0.4, 0.4)
        elif code == SATURATING:
            gain_s = torch.exp(_uniform(generator, (B, d), math.log(0.7), math.log(3.0)))
            Wk[:, :, 0] = _unit_weights(generator, mask) * gain_s[..., None]
            ck[:, :, 0] = _uniform(generator, (B, d), -1.5, 1.5)
            ak[:, :, 0] = 1.0
        elif code == PROB:
            Wk[:, :, 0] = _unit_weights(generator, mask)
            ak[:, :, 0] = 1.0
            gain = _uniform(generator, (B, d), 1.0, 3.0)
            bias = _uniform(generator, (B, d), -1.5, 1.5)
        elif code == PERIODIC:
            freq = _uniform(generator, (B, d), 0.7, 2.5)
            Wk[:, :, 0] = _unit_weights(generator, mask) * freq[..., None]
            ck[:, :, 0] = _uniform(generator, (B, d), 0.0, 2 * math.pi)
            ak[:, :, 0] = 1.0
        elif code == EXP:
            gain_e = _sign(generator, (B, d)) * _uniform(generator, (B, d), 0.4, 1.0)
            Wk[:, :, 0] = _unit_weights(generator, mask) * gain_e[..., None]
            ak[:, :, 0] = 1.0
        elif code == LOG:
            gain_l = _uniform(generator, (B, d), 1.0, 4.0)
            Wk[:, :, 0] = _unit_weights(generator, mask) * gain_l[..., None]
            ck[:, :, 0] = _uniform(generator, (B, d), -1.0, 1.0)
            ak[:, :, 0] = 1.0
        elif code == INTERACTION:
            # two distinct parents by random scores (one parent: its square), plus a linear part
            score = torch.rand(B, d, d, generator=generator, device=dev).masked_fill(mask == 0, -1.0)
            top = score.topk(min(2, d), dim=2).indices                                           # B x d x 2
            second = torch.where(n_pa >= 2, top[..., -1], top[..., 0])
            Wk[:, :, 0].scatter_(2, top[..., :1], 1.0)
            Wk[:, :, 1].scatter_(2, second[..., None], 1.0)
            Wk[:, :, :2] *= mask[:, :, None, :]
            Wk[:, :, 2] = _unit_weights(generator, mask) * _uniform(generator, (B, d, 1), 0.2, 0.8)
            ak[:, :, 0] = _sign(generator, (B, d)) * _uniform(generator, (B, d), 0.7, 1.5)
        elif code in (BUMP, WAVE, STEP, VSHAPE, BUMP2D, DIPS2):
            Wk, ck, ak = _shape_parameters(code, generator, mask, n_pa, h)
        here = (kind == code)                                                                    # B x d
        W[:, :, :h] = torch.where(here[:, :, None, None], Wk, W[:, :, :h])
        c[:, :, :h] = torch.where(here[:, :, None], ck, c[:, :, :h])
        a[:, :, :h] = torch.where(here[:, :, None], ak, a[:, :, :h])
        if gain is not None:
            link_gain = torch.where(here, gain, link_gain)
            link_bias = torch.where(here, bias, link_bias)
    return W, c, a, link_gain, link_bias


def _shape_parameters(code: int, generator: torch.Generator, mask: torch.Tensor, n_pa: torch.Tensor, h: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W (B x d x h x d), c, a (B x d x h) of one shape kind (see the table above); the last unit
    is always the small linear part v . u."""
    B, d, _ = mask.shape
    dev = generator.device
    Wk = torch.zeros(B, d, h, d, device=dev)
    ck = torch.zeros(B, d, h, device=dev)
    ak = torch.zeros(B, d, h, device=dev)
    Wk[:, :, h - 1] = _unit_weights(generator, mask) * _uniform(generator, (B, d, 1), 0.1, 0.4)
    if code == BUMP:
        for k in range(2):
            width = torch.exp(_uniform(generator, (B, d), math.log(0.15), math.log(0.8)))
            centre = _uniform(generator, (B, d), -2.5, 2.5)
            Wk[:, :, k] = _unit_weights(generator, mask) / width[..., None]
            ck[:, :, k] = -centre / width
            ak[:, :, k] = _sign(generator, (B, d)) * _uniform(generator, (B, d), 1.0, 2.0)
        ak[:, :, 1] *= (torch.rand(B, d, generator=generator, device=dev) < 0.5).float()
    elif code == WAVE:
        freq = _uniform(generator, (B, d), 1.25, 5.0)
        Wk[:, :, 0] = _unit_weights(generator, mask) * freq[..., None]
        ck[:, :, 0] = _uniform(generator, (B, d), 0.0, 2 * math.pi)
    elif code == STEP:
        gain = _uniform(generator, (B, d), 4.0, 15.0)
        t = _uniform(generator, (B, d, 2), -1.5, 1.5).sort(dim=2).values
        w = _unit_weights(generator, mask) * gain[..., None]
        for k in range(2):
            Wk[:, :, k] = w
            ck[:, :, k] = -gain * t[..., k]
        ak[:, :, 1] = (torch.rand(B, d, generator=generator, device=dev) < 0.5).float()
    elif code == VSHAPE:
        Wk[:, :, 0] = _unit_weights(generator, mask)
        ck[:, :, 0] = -_uniform(generator, (B, d), -2.0, 2.0)
    elif code in (BUMP2D, DIPS2):  # two distinct parents by random scores (one parent: that one alone)
        score = torch.rand(B, d, d, generator=generator, device=dev).masked_fill(mask == 0, -1.0)
        top = score.topk(min(2, d), dim=2).indices                                               # B x d x 2
        second = torch.where(n_pa >= 2, top[..., -1], top[..., 0])
        reach = 2.0 if code == BUMP2D else 1.5
        for k, idx in enumerate((top[..., 0], second)):
            width = torch.exp(_uniform(generator, (B, d), math.log(0.3), math.log(1.0)))
            centre = _uniform(generator, (B, d), -reach, reach)
            Wk[:, :, k].scatter_(2, idx[..., None], 1.0)
            Wk[:, :, k] *= mask / width[..., None]
            ck[:, :, k] = -centre / width
        single = n_pa < 2
        Wk[:, :, 1] = torch.where(single[..., None], torch.zeros_like(Wk[:, :, 1]), Wk[:, :, 1])
        ck[:, :, 1] = torch.where(single, torch.zeros_like(ck[:, :, 1]), ck[:, :, 1])
        if code == BUMP2D:
            ak[:, :, 0] = _sign(generator, (B, d)) * _uniform(generator, (B, d), 1.0, 2.0)
        else:  # one dip per parent (none on the second when there is one parent)
            ak[:, :, :2] = -_uniform(generator, (B, d, 2), 1.0, 2.0)
            ak[:, :, 1] = torch.where(single, torch.zeros_like(ak[:, :, 1]), ak[:, :, 1])
    return Wk, ck, ak


# ----------------------------------------------------------------------------- noise
def base_noise(base: str, generator: torch.Generator, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """Zero-mean, unit-variance draws of one base distribution (``BASES``)."""
    dev = generator.device
    if base == "gaussian":
        return torch.randn(shape, generator=generator, device=dev, dtype=dtype)
    if base == "laplace":  # inverse CDF; scale 1/sqrt(2) gives unit variance
        u = torch.rand(shape, generator=generator, device=dev, dtype=dtype) - 0.5
        return -torch.sign(u) * torch.log1p(-2 * u.abs().clamp_max(0.5 - 1e-7)) / math.sqrt(2.0)
    if base == "student_t":  # Z / sqrt(chi2_df / df), scaled to unit variance
        z = torch.randn(shape, generator=generator, device=dev, dtype=dtype)
        chi2 = 2 * standard_gamma(torch.full(shape, T_DF / 2, device=dev, dtype=dtype), generator)
        return z / torch.sqrt(chi2 / T_DF).clamp_min(1e-6) * math.sqrt((T_DF - 2) / T_DF)
    if base == "uniform":
        return (2 * torch.rand(shape, generator=generator, device=dev, dtype=dtype) - 1) * math.sqrt(3.0)
    if base == "bimodal":
        side = torch.rand(shape, generator=generator, device=dev, dtype=dtype) < 0.5
        z = torch.randn(shape, generator=generator, device=dev, dtype=dtype)
        return torch.where(side, BIMODAL_MEAN, -BIMODAL_MEAN) + math.sqrt(1 - BIMODAL_MEAN ** 2) * z
    if base == "lognormal":
        m, s = lognormal_moments()
        return (torch.exp(LOGNORMAL_S * torch.randn(shape, generator=generator, device=dev, dtype=dtype)) - m) / s
    raise ValueError(f"unknown noise distribution {base!r}; known: {BASES}")


def draw_noise(bases: list[int], kind: torch.Tensor | None, generator: torch.Generator, shape: tuple[int, ...],
               dtype=torch.float32) -> torch.Tensor:
    """Noise of shape ... x n x D where column k follows ``BASES[kind[..., k]]``. ``bases``: the
    codes that occur (each is drawn over the whole shape, in code order, then selected); with one
    code ``kind`` may be None. kind: broadcastable to shape without its n axis (B x D or D)."""
    if len(bases) == 1:
        return base_noise(BASES[bases[0]], generator, shape, dtype)
    out = None
    sel = kind.unsqueeze(-2)                                                                     # ... x 1 x D
    for code in sorted(bases):
        x = base_noise(BASES[code], generator, shape, dtype)
        out = x if out is None else torch.where(sel == code, x, out)
    return out


def hetero_multiplier(f: torch.Tensor) -> torch.Tensor:
    """Heteroskedastic noise scale: (0.5 + abs(f)) / 1.3, about 1 on average for unit-variance f."""
    return (0.5 + f.abs()) / 1.3
