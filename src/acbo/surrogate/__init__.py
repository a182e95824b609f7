"""The amortized surrogate: model, stage-1 training, checkpoints, inference."""

from acbo.surrogate.checkpoint import export_checkpoint, load_pretrained, load_surrogate, read_checkpoint, save_checkpoint
from acbo.surrogate.inference import surrogate_marginals, surrogate_posterior
from acbo.surrogate.model import Surrogate, SurrogateConfig

__all__ = ["Surrogate", "SurrogateConfig", "export_checkpoint", "load_pretrained", "load_surrogate", "read_checkpoint", "save_checkpoint",
           "surrogate_marginals", "surrogate_posterior"]
