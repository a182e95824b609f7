"""Policy checkpoints: a plain dict (policy weights and config, the frozen surrogate it reads,
format version, step, training config, optimizer state, history), written atomically. One
file rebuilds the whole deployed system (surrogate + policy)."""

from __future__ import annotations

import os
from dataclasses import asdict, fields

import torch

from acbo.io import atomic_save, load_packaged, load_state
from acbo.policy.model import Policy, PolicyConfig
from acbo.surrogate.model import Surrogate, SurrogateConfig

FORMAT_VERSION = 1
KIND = "acbo.policy"
PRETRAINED = "policy.pt"


def save_policy(path: str | os.PathLike, policy: Policy, surrogate: Surrogate, step: int, train_config: dict | None = None,
                optimizer_state: dict | None = None, history: list | None = None) -> None:
    state = {
        "kind": KIND, "format_version": FORMAT_VERSION, "model_config": asdict(policy.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "surrogate_config": asdict(surrogate.cfg),
        "surrogate_state_dict": {k: v.detach().cpu() for k, v in surrogate.state_dict().items()},
        "step": step, "train_config": train_config or {}, "optimizer": optimizer_state, "history": history or [],
    }
    atomic_save(state, path)


def read_policy_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, validated: ValueError naming what is wrong."""
    state = load_state(path, KIND, FORMAT_VERSION, "policy checkpoint", "acbo policy checkpoint")
    known = {f.name for f in fields(PolicyConfig)}
    if not isinstance(state.get("model_config"), dict) or set(state["model_config"]) != known:
        raise ValueError(f"{path}: model_config does not have the fields {sorted(known)}")
    state["surrogate_config"] = asdict(SurrogateConfig.from_dict(state.get("surrogate_config"), f"{path}: surrogate_config"))
    return state


def load_policy_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Policy, Surrogate]:
    """Rebuild (policy, surrogate) from a checkpoint file (eval mode)."""
    state = read_policy_checkpoint(path)
    policy = Policy(PolicyConfig(**state["model_config"]))
    surrogate = Surrogate(SurrogateConfig(**state["surrogate_config"]))  # normalised by read_policy_checkpoint
    try:
        policy.load_state_dict(state["state_dict"])
        surrogate.load_state_dict(state["surrogate_state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the model config: {e}") from None
    return policy.to(device).eval(), surrogate.to(device).eval()


def load_pretrained_policy(device: str | torch.device = "cpu") -> tuple[Policy, Surrogate]:
    """The (policy, surrogate) shipped with the package (no network access)."""
    return load_packaged(PRETRAINED, lambda p: load_policy_checkpoint(p, device), "policy")


def export_policy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a training checkpoint without its optimizer state (what the package ships)."""
    state = read_policy_checkpoint(src)
    policy, surrogate = load_policy_checkpoint(src)
    save_policy(dst, policy, surrogate, state["step"], state["train_config"], None, state["history"])
