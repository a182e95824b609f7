"""Surrogate checkpoints: a plain dict (weights, model config, format version, step, training
config), written atomically; enough to rebuild the model from the file alone."""

from __future__ import annotations

import os
from dataclasses import asdict

import torch

from acbo.io import atomic_save, load_packaged, load_state
from acbo.surrogate.model import Surrogate, SurrogateConfig

FORMAT_VERSION = 1
KIND = "acbo.surrogate"
PRETRAINED = "surrogate.pt"


def save_checkpoint(path: str | os.PathLike, model: Surrogate, step: int, train_config: dict | None = None,
                    optimizer_state: dict | None = None, history: list | None = None) -> None:
    state = {
        "kind": KIND, "format_version": FORMAT_VERSION, "model_config": asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "step": step,
        "train_config": train_config or {}, "optimizer": optimizer_state, "history": history or [],
    }
    atomic_save(state, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, validated: ValueError naming what is wrong."""
    state = load_state(path, KIND, FORMAT_VERSION, "surrogate checkpoint", "acbo surrogate checkpoint")
    state["model_config"] = asdict(SurrogateConfig.from_dict(state["model_config"], f"{path}: model config"))
    return state


def load_surrogate(path: str | os.PathLike, device: str | torch.device = "cpu") -> Surrogate:
    """Rebuild a surrogate from a checkpoint file (eval mode)."""
    state = read_checkpoint(path)
    model = Surrogate(SurrogateConfig(**state["model_config"]))  # normalised by read_checkpoint
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the model config: {e}") from None
    return model.to(device).eval()


def load_pretrained(device: str | torch.device = "cpu") -> Surrogate:
    """The surrogate shipped with the package (no network access)."""
    return load_packaged(PRETRAINED, lambda p: load_surrogate(p, device), "surrogate")


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a training checkpoint without its optimizer state (what the package ships)."""
    state = read_checkpoint(src)
    model = load_surrogate(src)
    save_checkpoint(dst, model, state["step"], state["train_config"], None, state["history"])
