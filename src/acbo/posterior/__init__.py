"""Posteriors over the target's parent sets."""

from acbo.posterior.exact import ExactPosteriorConfig, exact_posterior, log_evidence, sample_weights
from acbo.posterior.types import ParentPosterior

__all__ = ["ParentPosterior", "ExactPosteriorConfig", "exact_posterior", "log_evidence", "sample_weights"]
