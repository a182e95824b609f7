"""Policy checkpoints and model pairs.

A policy checkpoint is a plain dict (policy weights and config, format version, step, training
config, optimizer state, history) written atomically. A policy reads the tokens of one
particular surrogate, so the checkpoint names that surrogate by content (``surrogate_sha256``,
:func:`acbo.surrogate.surrogate_digest`) and by file (``surrogate_file``, a surrogate checkpoint
in the same folder): the two files are a *model pair*. Loading checks the pair: a surrogate with
another digest is refused with both digests in the message, never used silently.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import torch

from acbo.io import atomic_save, cached_loader, load_state, packaged_path
from acbo.policy.model import Policy, PolicyConfig
from acbo.surrogate import Surrogate, load_surrogate, read_checkpoint, save_checkpoint, surrogate_digest

FORMAT_VERSION = 2
KIND = "acbo.policy"
PRETRAINED = "policy.pt"
MODEL_ADDED_LATER = {"grid": 0, "world": "network", "stop_head": False, "cost_head": False}
"""Policy config fields added after checkpoints were written, with the value they had before."""
SURROGATE_FILE = "surrogate.pt"
"""Default file name of a pair's surrogate, next to its policy."""


def save_policy(path: str | os.PathLike, policy: Policy, surrogate: Surrogate, step: int,
                train_config: dict | None = None, optimizer_state: dict | None = None, history: list | None = None,
                surrogate_file: str = SURROGATE_FILE) -> None:
    """Write the policy to ``path`` and make its folder hold the pair: ``surrogate_file`` there is
    written (config and weights) unless it already holds this very surrogate."""
    path = Path(path)
    digest = surrogate_digest(surrogate)
    sur_path = path.parent / surrogate_file
    if not sur_path.exists() or _digest_of(sur_path) != digest:
        save_checkpoint(sur_path, surrogate, 0)
    state = {
        "kind": KIND, "format_version": FORMAT_VERSION, "model_config": asdict(policy.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "surrogate_sha256": digest, "surrogate_file": surrogate_file,
        "step": step, "train_config": train_config or {}, "optimizer": optimizer_state, "history": history or [],
    }
    atomic_save(state, path)


def _digest_of(path: Path) -> str | None:
    try:
        return surrogate_digest(load_surrogate(path))
    except ValueError:
        return None


def read_policy_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, validated: ValueError naming what is wrong."""
    state = load_state(path, KIND, FORMAT_VERSION, "policy checkpoint", "acbo policy checkpoint",
                       old={1: "it embeds a copy of its surrogate; this acbo keeps the policy and the surrogate it "
                               "reads as a pair of files, checked by content hash"})
    known = {f.name for f in fields(PolicyConfig)}
    if not isinstance(state.get("model_config"), dict):
        raise ValueError(f"{path}: no model_config")
    state["model_config"] = {**MODEL_ADDED_LATER, **state["model_config"]}
    if set(state["model_config"]) != known:
        raise ValueError(f"{path}: model_config does not have the fields {sorted(known)}")
    for key in ("surrogate_sha256", "surrogate_file"):
        if not isinstance(state.get(key), str):
            raise ValueError(f"{path}: no {key} naming the surrogate the policy reads")
    return state


def load_policy_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                           surrogate: str | os.PathLike | Surrogate | None = None) -> tuple[Policy, Surrogate]:
    """Rebuild (policy, surrogate) from a policy checkpoint (eval mode). The surrogate is the
    pair's (``surrogate_file`` next to the policy) unless given (a checkpoint path or a model);
    either way its digest must be the one the policy was trained with."""
    state = read_policy_checkpoint(path)
    policy = Policy(PolicyConfig(**state["model_config"]))
    try:
        policy.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the model config: {e}") from None
    if surrogate is None:
        surrogate = Path(path).parent / state["surrogate_file"]
        if not surrogate.exists():
            raise ValueError(f"{path}: its surrogate {surrogate} is missing (a policy and its surrogate are a pair)")
    where = "the given surrogate" if isinstance(surrogate, Surrogate) else str(surrogate)
    if not isinstance(surrogate, Surrogate):
        surrogate = load_surrogate(surrogate, device)
    digest = surrogate_digest(surrogate)
    if digest != state["surrogate_sha256"]:
        raise ValueError(f"{path} was trained with the surrogate of digest {state['surrogate_sha256'][:12]}…, but "
                         f"{where} has digest {digest[:12]}…: not a model pair")
    if policy.cfg.token_dim != surrogate.cfg.dim:
        raise ValueError(f"{path}: the policy reads {policy.cfg.token_dim}-dim tokens, the surrogate makes {surrogate.cfg.dim}")
    return policy.to(device).eval(), surrogate.to(device).eval()


def load_pretrained_policy(device: str | torch.device = "cpu") -> tuple[Policy, Surrogate]:
    """The (policy, surrogate) pair shipped with the package (no network access)."""
    with packaged_path(PRETRAINED, "policy") as p:
        return load_policy_checkpoint(p, device)


@cached_loader
def shared_policy(checkpoint: str | None) -> tuple[Policy, Surrogate]:
    """The (policy, surrogate) pair of ``checkpoint`` (None: the shipped pair), loaded once per
    process (:func:`acbo.io.cached_loader`): what the ``amortized`` method holds."""
    return load_pretrained_policy() if checkpoint is None else load_policy_checkpoint(checkpoint)


def export_policy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a training checkpoint without its optimizer state, with its surrogate (the pair)."""
    state = read_policy_checkpoint(src)
    src, dst = Path(src), Path(dst)
    load_policy_checkpoint(src)  # checks the pair
    dst.parent.mkdir(parents=True, exist_ok=True)
    sur_src, sur_dst = src.parent / state["surrogate_file"], dst.parent / state["surrogate_file"]
    if sur_src.resolve() != sur_dst.resolve():
        read_checkpoint(sur_src)
        shutil.copyfile(sur_src, sur_dst)
    atomic_save({**state, "optimizer": None}, dst)
