"""The PARENT_SCALE expert (CBO-U), CBO with the true parents, and expert demonstrations."""

from acbo.experts.causal_gp import average_models, do_effect, expected_improvement
from acbo.experts.drcfs import DRConfig, DRPrior, fit_dr_prior
from acbo.experts.parent_scale import CBOParents, CausalGPMethod, ParentScale
from acbo.experts.set_posterior import CandidateSetPosterior, SetPosteriorConfig, blr_predictive, blr_rank1_update

__all__ = [
    "ParentScale", "CBOParents", "CausalGPMethod", "DRConfig", "DRPrior", "fit_dr_prior",
    "CandidateSetPosterior", "SetPosteriorConfig", "blr_predictive", "blr_rank1_update",
    "expected_improvement", "average_models", "do_effect",
]
