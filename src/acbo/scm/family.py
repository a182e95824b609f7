"""Named, sampleable SCM families: graph prior x mechanism x noise x d range x data budget.

Training and evaluation draw from families by name, with independent seed streams
(:mod:`acbo.seeding`), so that what a model was trained on and what it is judged on are
named, reproducible and separate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from acbo.scm.graphs import GRAPH_PRIORS, TARGET_RULES, check_d
from acbo.scm.mechanisms import MECHANISMS, NOISES
from acbo.scm.scm import SCM, random_scms


@dataclass(frozen=True)
class Family:
    """A distribution over SCMs and their observational data."""

    name: str
    """Registry name; appears in every result."""
    graph: tuple[str, ...] = ("er",)
    """Graph priors; each draw of a batch picks one uniformly."""
    mechanism: tuple[str, ...] = ("linear",)
    """Mechanisms; each draw of a batch picks one uniformly."""
    noise: str = "gaussian"
    """Additive noise family: gaussian, laplace or hetero."""
    d_range: tuple[int, int] = (10, 10)
    """Number of variables, uniform on [low, high] per batch."""
    expected_degree: float = 2.0
    """Expected number of edges per node (in + out) for the ER and scale-free priors."""
    noise_std: tuple[float, float] = (0.2, 0.7)
    """Noise std of non-root nodes relative to their unit-variance signal, uniform on the range."""
    n_obs: int = 200
    """Observational sample size (the data budget); also fixes the default domains."""
    target: str = "any"
    """Where Y sits: ``any`` node with a parent (Y usually has children, so its Markov blanket is
    more than its parents) or a ``sink`` with a parent (the usual CBO setting)."""

    def __post_init__(self):
        for g in self.graph:
            if g not in GRAPH_PRIORS:
                raise ValueError(f"family {self.name!r}: unknown graph prior {g!r}; known: {sorted(GRAPH_PRIORS)}")
        for m in self.mechanism:
            if m not in MECHANISMS:
                raise ValueError(f"family {self.name!r}: unknown mechanism {m!r}; known: {MECHANISMS}")
        if self.target not in TARGET_RULES:
            raise ValueError(f"family {self.name!r}: unknown target rule {self.target!r}; known: {TARGET_RULES}")
        if self.noise not in NOISES:
            raise ValueError(f"family {self.name!r}: unknown noise {self.noise!r}; known: {NOISES}")
        lo, hi = self.d_range
        check_d(lo), check_d(hi)
        if lo > hi:
            raise ValueError(f"family {self.name!r}: d_range {self.d_range} has low > high")
        if isinstance(self.n_obs, bool) or not isinstance(self.n_obs, int) or self.n_obs < 2:
            raise ValueError(f"family {self.name!r}: n_obs must be an integer >= 2, got {self.n_obs!r}")

    def with_(self, **changes) -> "Family":
        """A copy with some fields changed (e.g. ``fam.with_(d_range=(50, 50))``)."""
        return replace(self, **changes)

    def sample(self, generator: torch.Generator, B: int = 1) -> SCM:
        """B SCMs sharing one d, graph prior and mechanism (picked from the generator)."""
        dev = generator.device
        lo, hi = self.d_range
        d = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=dev))
        g = self.graph[int(torch.randint(len(self.graph), (1,), generator=generator, device=dev))]
        m = self.mechanism[int(torch.randint(len(self.mechanism), (1,), generator=generator, device=dev))]
        return random_scms(generator, B, d, graph=g, mechanism=m, noise=self.noise,
                           expected_degree=self.expected_degree, noise_std=self.noise_std, target=self.target)


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
