"""The amortized surrogate: model, incremental encoding, stage-1 training, checkpoints, inference."""

from acbo.surrogate.checkpoint import (
    export_checkpoint,
    load_pretrained,
    load_surrogate,
    read_checkpoint,
    save_checkpoint,
    surrogate_digest,
)
from acbo.surrogate.encoding import Belief, Encoding, EncodingCache
from acbo.surrogate.inference import surrogate_marginals, surrogate_posterior
from acbo.surrogate.model import Pooled, Surrogate, SurrogateConfig

__all__ = ["Surrogate", "SurrogateConfig", "Pooled", "Encoding", "EncodingCache", "Belief", "export_checkpoint", "load_pretrained",
           "load_surrogate", "read_checkpoint", "save_checkpoint", "surrogate_digest", "surrogate_marginals",
           "surrogate_posterior"]
