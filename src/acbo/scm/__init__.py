"""Structural causal models: graph priors, mechanisms, batched sampling and do, families."""

from acbo.scm.broad import broad_scms
from acbo.scm.family import FAMILIES, Draws, Family, get_family, register_family, resolve_family
from acbo.scm.graphs import GRAPH_PRIORS, sample_graph, topological_order
from acbo.scm.mechanisms import MECHANISMS, NOISES
from acbo.scm.optimum import Optimum, SetOptimum
from acbo.scm.scm import SCM, random_scms

__all__ = [
    "SCM", "Optimum", "SetOptimum", "random_scms", "broad_scms", "Family", "Draws", "FAMILIES", "get_family", "register_family", "resolve_family",
    "GRAPH_PRIORS", "MECHANISMS", "NOISES", "sample_graph", "topological_order",
]
