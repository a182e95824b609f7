"""Baselines behind the CausalOptimizer interface: random, exact-posterior and surrogate-posterior
Thompson sampling, oracle."""

from acbo.baselines.exact_ts import ExactThompsonSampling
from acbo.baselines.oracle import Oracle
from acbo.baselines.random import RandomSearch
from acbo.baselines.surrogate_ts import SurrogateThompsonSampling

__all__ = ["RandomSearch", "ExactThompsonSampling", "Oracle", "SurrogateThompsonSampling"]
