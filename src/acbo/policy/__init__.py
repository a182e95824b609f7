"""Stage 2: the acquisition policy (model, rewards, GRPO, behaviour cloning, training) and the
deployed ``amortized`` method."""

from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy, save_policy
from acbo.policy.method import Amortized
from acbo.policy.model import ActionDist, Policy, PolicyConfig, PolicyInput

__all__ = ["Policy", "PolicyConfig", "PolicyInput", "ActionDist", "Amortized", "save_policy",
           "load_policy_checkpoint", "load_pretrained_policy"]
