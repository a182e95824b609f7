"""Surrogate checkpoints: a plain dict (weights, model config, format version, step, training
config), written atomically; enough to rebuild the model from the file alone. A surrogate is
named by the digest of its content (:func:`surrogate_digest`), so a policy can say which
surrogate it reads."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict

import torch

from acbo.io import atomic_save, cached_loader, load_packaged, load_state
from acbo.surrogate.model import ADDED_LATER, Surrogate, SurrogateConfig

FORMAT_VERSION = 1
KIND = "acbo.surrogate"
PRETRAINED = "surrogate.pt"


def surrogate_digest(model: Surrogate) -> str:
    """SHA-256 of the model's architecture and weights (not of the file: two files holding the
    same model, with different training logs, have the same digest). ``row_chunk`` does not
    change the output and is left out, and so are fields added to the config later while they
    hold the value that means "not used" (so a new version of acbo keeps old digests)."""
    h = hashlib.sha256()
    cfg = {k: v for k, v in asdict(model.cfg).items()
           if k != "row_chunk" and not (k in ADDED_LATER and ADDED_LATER[k] == v)}
    h.update(json.dumps(cfg, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


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


def surrogate_from_state(state: dict, where: str, device: str | torch.device = "cpu") -> Surrogate:
    """Rebuild a surrogate (eval mode) from a checkpoint dict read by :func:`read_checkpoint`."""
    model = Surrogate(SurrogateConfig(**state["model_config"]))
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{where}: weights do not fit the model config: {e}") from None
    return model.to(device).eval()


def load_surrogate(path: str | os.PathLike, device: str | torch.device = "cpu") -> Surrogate:
    """Rebuild a surrogate from a checkpoint file (eval mode)."""
    return surrogate_from_state(read_checkpoint(path), str(path), device)


def load_pretrained(device: str | torch.device = "cpu") -> Surrogate:
    """The surrogate shipped with the package (no network access)."""
    return load_packaged(PRETRAINED, lambda p: load_surrogate(p, device), "surrogate")


@cached_loader
def shared_surrogate(checkpoint: str | None) -> Surrogate:
    """The surrogate of ``checkpoint`` (None: the shipped one), loaded once per process
    (:func:`acbo.io.cached_loader`): what the methods built on a surrogate hold."""
    return load_pretrained() if checkpoint is None else load_surrogate(checkpoint)


def export_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a training checkpoint without its optimizer state (what the package ships)."""
    state = read_checkpoint(src)
    save_checkpoint(dst, surrogate_from_state(state, str(src)), state["step"], state["train_config"], None,
                    state["history"])
