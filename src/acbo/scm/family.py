"""Named, sampleable SCM families: graph prior x mechanism x noise x d range x data budget.

Training and evaluation draw from families by name, with independent seed streams
(:mod:`acbo.seeding`), so that what a model was trained on and what it is judged on are
named, reproducible and separate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from acbo.configs import check_range, positive_ints
from acbo.scm.graphs import DENSE_MAX_D, GRAPH_PRIORS, TARGET_RULES, check_d
from acbo.scm.mechanisms import CLASSIC, MECHANISMS, NOISES, ROOTS, SHAPES
from acbo.scm.broad import broad_scms
from acbo.scm.scm import SCM, random_scms


def _range(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _choices(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@dataclass(frozen=True)
class Family:
    """A distribution over SCMs, their observational data, and the problems posed on them
    (domains, which variables may be set).

    Two worlds share this type. A *classic* family (only linear / mlp / gp mechanisms and every
    field below "the broad world" at its default) draws one mechanism and one noise family for
    every node of a batch, standardised units and domains equal to the observed range
    (:func:`acbo.scm.random_scms`). Any other family is drawn from the broad world
    (:func:`acbo.scm.broad_scms`): mechanisms per node, noise and root distributions per node,
    variables in their own units, experimenters' domains. Fields that take a range draw
    uniformly in it; fields that take a tuple of names draw uniformly among them (repeat a name
    to weight it).
    """

    name: str
    """Registry name; appears in every result, and keys the family's seed streams."""
    graph: tuple[str, ...] = ("er",)
    """Graph priors; each batch picks one (dense graphs have at most 7 variables)."""
    mechanism: tuple[str, ...] = ("linear",)
    """Mechanism kinds (:data:`acbo.scm.mechanisms.MECHANISMS`). Classic: one per batch.
    Broad: per node or per graph, see ``mixing``."""
    noise: str | tuple[str, ...] = "gaussian"
    """Noise families of non-root nodes: gaussian, laplace, hetero, student_t (broad: per node)."""
    d_range: tuple[int, int] = (10, 10)
    """Number of variables, uniform on [low, high] per batch."""
    expected_degree: float | tuple[float, float] = 2.0
    """Expected number of edges per node (in + out) for the ER and scale-free priors (a range: per batch)."""
    noise_std: tuple[float, float] = (0.2, 0.7)
    """Noise std of non-root nodes relative to their unit-variance signal (uniform, or see ``noise_log``)."""
    n_obs: int | tuple[int, int] = 200
    """Observational sample size (the data budget), or a range drawn per problem."""
    target: str | tuple[str, ...] = "any"
    """Where Y sits: ``any`` node with a parent (Y usually has children, so its Markov blanket is
    more than its parents) or a ``sink`` with a parent (the usual CBO setting); a tuple: per batch."""
    # ---- the broad world (the defaults are the classic world)
    mixing: float = 0.0
    """Probability that a graph draws a mechanism per node (else one for the whole graph)."""
    roots: tuple[str, ...] = ()
    """Distributions of root nodes: gaussian, laplace, student_t, uniform, bimodal, lognormal
    (empty: the noise family, as in the classic world)."""
    noise_log: bool = False
    """Draw the noise std log-uniformly on ``noise_std`` (near-deterministic to noise-dominated)."""
    units: tuple[float, float] | None = None
    """log10 range of the variables' scales (offsets follow them); None: scales in [0.5, 2]."""
    p_raw_linear: float = 0.0
    """Share of classical raw linear SCMs (unit noise, unstandardised weights, no units)."""
    n_latent: tuple[int, int] = (0, 0)
    """Hidden confounders per graph: latent variables with an effect on two observed nodes."""
    domain_width: tuple[float, float] = (1.0, 1.0)
    """An experimenter's domain: the observed range widened to this many times its spread
    (uniform on the range), the extra split at random between the two ends (so shifted too),
    clipped to the variable's natural bounds."""
    p_observed_domain: float = 1.0
    """Probability that a variable's domain is exactly its observed range."""
    p_all_intervenable: float = 1.0
    """Probability that every non-target variable may be set; else a random 1 .. d-1 of them,
    always including at least one ancestor of Y."""
    target_mechanism: tuple[str, ...] = ()
    """Broad world: Y's own mechanism kinds (empty: Y draws like every node)."""
    p_target_mechanism: float = 1.0
    """Probability that Y's mechanism is drawn from ``target_mechanism``."""

    def __post_init__(self):
        bad = lambda what: ValueError(f"family {self.name!r}: {what}")
        for g in self.graph:
            if g not in GRAPH_PRIORS:
                raise bad(f"unknown graph prior {g!r}; known: {sorted(GRAPH_PRIORS)}")
        for m in tuple(self.mechanism) + tuple(self.target_mechanism):
            if m not in MECHANISMS:
                raise bad(f"unknown mechanism {m!r}; known: {MECHANISMS}")
        for t in _choices(self.target):
            if t not in TARGET_RULES:
                raise bad(f"unknown target rule {t!r}; known: {TARGET_RULES}")
        for n in _choices(self.noise):
            if n not in NOISES:
                raise bad(f"unknown noise {n!r}; known: {NOISES}")
        for r in self.roots:
            if r not in ROOTS:
                raise bad(f"unknown root distribution {r!r}; known: {ROOTS}")
        lo, hi = self.d_range
        check_d(lo), check_d(hi)
        if lo > hi:
            raise bad(f"d_range {self.d_range} has low > high")
        n_lo, n_hi = _range(self.n_obs)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in (n_lo, n_hi)) or not 2 <= n_lo <= n_hi:
            raise bad(f"n_obs must be an integer >= 2 or a range of them, got {self.n_obs!r}")
        e_lo, e_hi = _range(self.expected_degree)
        if not 0 < e_lo <= e_hi:
            raise bad(f"expected_degree must be > 0 (or a range low <= high), got {self.expected_degree!r}")
        for name in ("mixing", "p_raw_linear", "p_observed_domain", "p_all_intervenable", "p_target_mechanism"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(f"{name} must be a probability, got {getattr(self, name)!r}")
        w_lo, w_hi = self.domain_width
        if not 1 <= w_lo <= w_hi:
            raise bad(f"domain_width must be a range 1 <= low <= high, got {self.domain_width!r}")
        l_lo, l_hi = self.n_latent
        if not 0 <= l_lo <= l_hi:
            raise bad(f"n_latent must be a range 0 <= low <= high, got {self.n_latent!r}")
        if self.units is not None and not self.units[0] <= self.units[1]:
            raise bad(f"units must be a log10 range low <= high, got {self.units!r}")
        s_lo, s_hi = self.noise_std
        if not 0 <= s_lo <= s_hi or (self.noise_log and s_lo <= 0):
            raise bad(f"noise_std must be a range 0 <= low <= high (low > 0 if log-uniform), got {self.noise_std!r}")

    @property
    def classic(self) -> bool:
        """Whether the family belongs to the classic world (see the class docstring)."""
        return (all(m in CLASSIC for m in self.mechanism) and isinstance(self.noise, str) and self.noise != "student_t"
                and isinstance(self.target, str) and not isinstance(self.expected_degree, (tuple, list))
                and self.mixing == 0 and not self.roots and not self.noise_log and self.units is None
                and self.p_raw_linear == 0 and tuple(self.n_latent) == (0, 0) and not self.target_mechanism)

    def with_(self, **changes) -> "Family":
        """A copy with some fields changed (e.g. ``fam.with_(d_range=(50, 50))``)."""
        return replace(self, **changes)

    def sample(self, generator: torch.Generator, B: int = 1) -> SCM:
        """B SCMs sharing one d and graph prior (and, classic, one mechanism), from the generator."""
        dev = generator.device
        pick = lambda options: options[int(torch.randint(len(options), (1,), generator=generator, device=dev))]
        lo, hi = self.d_range
        d = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=dev))
        g = pick(self.graph)
        if g == "dense":
            d = min(d, DENSE_MAX_D)
        if self.classic:
            m = pick(self.mechanism)
            return random_scms(generator, B, d, graph=g, mechanism=m, noise=self.noise,
                               expected_degree=self.expected_degree, noise_std=self.noise_std, target=self.target)
        rule = pick(_choices(self.target))
        e_lo, e_hi = _range(self.expected_degree)
        degree = e_lo + (e_hi - e_lo) * float(torch.rand(1, generator=generator, device=dev))
        L = int(torch.randint(self.n_latent[0], self.n_latent[1] + 1, (1,), generator=generator, device=dev))
        return broad_scms(generator, B, d, graph=g, expected_degree=degree, target=rule, mechanisms=self.mechanism,
                          mixing=self.mixing, noises=_choices(self.noise), roots=self.roots or ("gaussian",),
                          noise_std=self.noise_std, noise_log=self.noise_log, units=self.units or (-0.3, 0.3),
                          p_raw_linear=self.p_raw_linear, n_latent=L, target_mechanisms=tuple(self.target_mechanism),
                          p_target_mechanism=self.p_target_mechanism)

    def draw_n_obs(self, generator: torch.Generator) -> int:
        """The observational budget of one problem (a fixed budget draws nothing)."""
        if isinstance(self.n_obs, int):
            return self.n_obs
        lo, hi = self.n_obs
        return int(torch.randint(lo, hi + 1, (1,), generator=generator, device=generator.device))

    def domains(self, generator: torch.Generator, scm: SCM, obs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The problems posed on B SCMs given their observational data (B x n x d, label order):
        (low, high, intervenable), B x d each. Observed ranges and every non-target variable
        for the default rules (which draw nothing); see ``domain_width``, ``p_observed_domain``
        and ``p_all_intervenable`` otherwise."""
        B, n, d = obs.shape
        dev = obs.device
        low, high = obs.amin(1), obs.amax(1)
        u01 = lambda *shape: torch.rand(*shape, generator=generator, device=dev)
        if self.p_observed_domain < 1 and self.domain_width[1] > 1:
            spread = torch.maximum(high - low, 1e-6 * (1 + high.abs()))
            keep = u01(B, d) < self.p_observed_domain
            w_lo, w_hi = self.domain_width
            extra = (w_lo - 1 + (w_hi - w_lo) * u01(B, d)) * spread
            split = u01(B, d)
            nat_lo, nat_hi = scm.natural_bounds()
            low = torch.where(keep, low, torch.maximum(low - extra * split, nat_lo))
            high = torch.where(keep, high, torch.minimum(high + extra * (1 - split), nat_hi))
        high = torch.where(high > low, high, low + 1e-6 * (1 + low.abs()))                     # never a single point
        target = torch.zeros(B, d, dtype=torch.bool, device=dev)
        target[torch.arange(B, device=dev), scm.target] = True
        can = ~target
        if self.p_all_intervenable < 1:
            every = u01(B) < self.p_all_intervenable
            k = 1 + (u01(B) * (d - 1)).long().clamp_max(d - 2)                                 # 1 .. d-1
            score = u01(B, d).masked_fill(target, -1.0)
            one_ancestor = (u01(B, d) * scm.ancestors()).argmax(1)                              # always settable
            score[torch.arange(B, device=dev), one_ancestor] = 2.0
            rank = score.argsort(dim=1, descending=True).argsort(dim=1)                         # 0 = highest
            can = torch.where(every[:, None], can, rank < k[:, None])
        return low, high, can


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"a family named {family.name!r} is registered already")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    """The registered family ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def resolve_family(family: "str | Family | dict") -> Family:
    """A Family from a registered name, a Family (returned as it is: e.g. a modified copy from
    ``Family.with_``, which need not be registered) or its dict form (``dataclasses.asdict``, as
    stored in a training checkpoint's config). Seed streams are keyed by the family's name, so a
    modified family should get a name of its own."""
    if isinstance(family, Family):
        return family
    if isinstance(family, str):
        return get_family(family)
    if isinstance(family, dict):
        try:
            return Family(**{k: tuple(v) if isinstance(v, list) else v for k, v in family.items()})
        except TypeError as e:
            raise ValueError(f"not a family: {family!r} ({e})") from None
    raise ValueError(f"a family is a registered name or an acbo.Family, got {type(family).__name__}: {family!r}")


for _f in (
    Family("lin-er-10", d_range=(10, 10)),
    Family("lin-er-20", d_range=(20, 20)),
    Family("lin-er-50", d_range=(50, 50)),
    Family("lin-er-10-sink", d_range=(10, 10), target="sink"),
    Family("lin-er-20-sink", d_range=(20, 20), target="sink"),
    Family("lin-sf-20", graph=("sf",), d_range=(20, 20)),
    Family("nonlin-er-10", mechanism=("gp",), d_range=(10, 10)),
    Family("mlp-er-10", mechanism=("mlp",), d_range=(10, 10)),
    Family("nonlin-er-20", mechanism=("gp", "mlp"), d_range=(20, 20)),
    Family("lin-laplace-er-10", noise="laplace", d_range=(10, 10)),
    Family("nonlin-hetero-er-10", mechanism=("gp",), noise="hetero", d_range=(10, 10)),
    Family("cfc-mixed-10", graph=("chain", "fork", "collider"), mechanism=("linear", "gp"), d_range=(10, 10)),
    Family("small-mixed", graph=("chain", "fork", "collider"), mechanism=("linear", "mlp", "gp"), d_range=(3, 6)),
    Family("train-lin", graph=("er", "sf"), d_range=(5, 20)),
    Family("train-nonlin", graph=("er", "sf"), mechanism=("mlp", "gp"), d_range=(5, 20)),
    Family("train-mixed", graph=("er", "sf"), mechanism=("linear", "mlp", "gp"), d_range=(5, 20)),
):
    register_family(_f)


BROAD = dict(
    graph=("er", "sf", "chain", "fork", "collider", "dense"),
    mechanism=("linear", "poly", "saturating", "prob", "periodic", "exp", "log", "mlp", "gp"),
    noise=("gaussian", "laplace", "hetero"), roots=("gaussian", "uniform", "bimodal", "lognormal"),
    d_range=(3, 30), expected_degree=(1.0, 3.0), noise_std=(0.01, 3.0), noise_log=True, n_obs=(20, 1000),
    target=("any", "sink"), mixing=0.7, units=(-2.0, 3.0), p_raw_linear=0.15, domain_width=(1.0, 3.0),
    p_observed_domain=0.3, p_all_intervenable=0.5,
)
"""The broad training world: everything but what the shift families hold out (multiplicative
interactions, Student-t noise, domains wider than 3 observed spreads, d > 30, hidden confounders)."""

TRAIN_SHAPES = ("bump", "wave", "step")
"""The response shapes the training world draws; ``test-shapes`` also holds out ``vshape`` and
``bump2d`` (:data:`acbo.scm.mechanisms.SHAPES`). ``train-joint`` and ``test-joint`` give Y a dip
on each of two parents (``dips2``: the best experiment sets both, a joint optimum), the first for
training a policy that chooses sets, the second (every Y of that kind, a sink with more parents)
to measure one."""

for _f in (
    Family("train-broad", **BROAD),
    Family("test-broad", **{**BROAD, "d_range": (3, 20)}),
    Family("test-interactions", **{**BROAD, "d_range": (3, 20), "mechanism": BROAD["mechanism"] + ("interaction",) * 9}),
    Family("test-heavy-tail", **{**BROAD, "d_range": (3, 20), "noise": ("student_t",), "roots": ("student_t",)}),
    Family("test-wide-domains", **{**BROAD, "d_range": (3, 20), "domain_width": (4.0, 8.0), "p_observed_domain": 0.0}),
    Family("test-confounded", **{**BROAD, "d_range": (3, 20), "n_latent": (1, 3)}),
    Family("test-d50", **{**BROAD, "graph": ("er", "sf", "chain", "fork", "collider"), "d_range": (50, 50)}),
    Family("test-d100", **{**BROAD, "graph": ("er", "sf", "chain", "fork", "collider"), "d_range": (100, 100)}),
    Family("train-shapes", **{**BROAD, "mechanism": BROAD["mechanism"] + TRAIN_SHAPES,
                              "target_mechanism": TRAIN_SHAPES, "p_target_mechanism": 0.5}),
    Family("test-shapes", **{**BROAD, "d_range": (3, 20), "mechanism": BROAD["mechanism"] + SHAPES,
                             "target_mechanism": SHAPES}),
    Family("train-joint", **{**BROAD, "mechanism": BROAD["mechanism"] + TRAIN_SHAPES,
                             "target_mechanism": TRAIN_SHAPES + ("dips2",) * 3, "p_target_mechanism": 0.7}),
    Family("test-joint", **{**BROAD, "d_range": (3, 20), "target": "sink2", "graph": ("er", "sf", "collider", "dense"),
                            "expected_degree": (1.5, 3.0),
                            "mechanism": BROAD["mechanism"] + TRAIN_SHAPES, "target_mechanism": ("dips2",)}),
):
    register_family(_f)


@dataclass(frozen=True)
class Draws:
    """Where a step's problems come from: training families (train stream) and data sizes."""

    families: tuple = ("train-lin", "train-nonlin")
    """Training families (registered names or Family objects), cycled step by step."""
    n_obs: tuple[int, int] = (50, 300)
    """Observational rows per problem, uniform per step."""
    shards: int = 1
    """A step's problems are drawn as this many sub-batches of batch_size / shards, each from its own
    stream, their gradients averaged; under ``torchrun`` the processes share the shards, so W
    processes with shards = W train what one process with the same shards does (to float rounding).
    1: one batch, the stream of every earlier run."""

    def __post_init__(self):
        if not self.families:
            raise ValueError("families must name at least one training family")
        for f in self.families:
            resolve_family(f)
        check_range("n_obs", self.n_obs, 2)
        positive_ints(self, ("shards",))
