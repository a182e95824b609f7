"""acbo: amortized causal Bayesian optimization.

Find the intervention that drives an outcome Y to its best value in few experiments, without
knowing the causal graph. The public API is what ``__all__`` lists.
"""

from acbo.buffer import Buffer
from acbo.method import METHODS, Method, Problem, get_method, register_method
from acbo.optimizer import CausalOptimizer, Clamp, Intervention, Recommendation, Record, Suggestion
from acbo.posterior import ExactPosteriorConfig, ParentPosterior, exact_posterior
from acbo.scm import FAMILIES, SCM, Family, get_family, random_scms

__version__ = "0.1.0"

__all__ = [
    "CausalOptimizer", "Intervention", "Record", "Recommendation", "Suggestion", "Clamp",
    "Method", "Problem", "METHODS", "register_method", "get_method", "Buffer",
    "ParentPosterior", "ExactPosteriorConfig", "exact_posterior",
    "SCM", "Family", "FAMILIES", "get_family", "random_scms",
    "__version__",
]
