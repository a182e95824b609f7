"""Baselines behind the CausalOptimizer interface: random, exact-posterior and surrogate-posterior
Thompson sampling, expected improvement on the learned world model, oracle."""

from acbo.baselines.exact_ts import ExactThompsonSampling
from acbo.baselines.oracle import Oracle
from acbo.baselines.random import RandomSearch
from acbo.baselines.surrogate_ei import SurrogateEI
from acbo.baselines.surrogate_ts import SurrogateThompsonSampling

__all__ = ["RandomSearch", "ExactThompsonSampling", "Oracle", "SurrogateThompsonSampling", "SurrogateEI"]
