"""The demonstration format: expert campaigns recorded step by step, as the surrogate and
behaviour cloning read them (collected by :mod:`acbo.experts.demos`).

Storage: ``DIR/shard_00000.npz`` + ``DIR/shard_00000.json``, one pair per ``shard_size`` SCMs.
A shard is complete iff its JSON exists: the npz is written first (to a temporary name, then
renamed), the JSON last the same way, so an interrupted collection leaves no half shard that
looks whole, and a resumed one skips exactly the finished shards. SCM i of the collection is
drawn from the train stream ``generator("train", "demos", family, seed, i)``, so a shard's
content does not depend on which worker made it or when.

Per SCM j of a shard, npz arrays named ``j/<field>``:

- ``buffer`` (n_obs + T) x d values and ``intervened`` (same shape, bool): the final buffer. The
  buffer the expert used at step t is exactly its first ``n_rows[t]`` rows (arrival order);
- ``n_rows`` T; ``variable`` T (column chosen), ``value`` T, ``e_y`` T (E[Y | do(chosen)]);
- ``ei`` T x d (expected improvement per exploration variable; NaN elsewhere and in the initial
  design), ``seconds`` T (wall time of each decision);
- ``post_sets`` T x S x d, ``post_probs`` T x S (the expert's posterior over sets at decision
  time, padded with empty sets of probability 0), ``post_marginals`` T x d;
- ``parents`` d (true parents of Y), and the SCM itself as ``scm.<field>`` tensors (its format
  version in the metadata, ``scm_format``).

The JSON holds the format version, the configuration (family, seed, steps, expert options)
and per SCM its index, d, target column, variable names, mechanism, noise, y*, E[Y]_obs,
the phase of every step (init / ei), the DR-prior seconds and the total seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from acbo.scm import SCM

FORMAT_VERSION = 1


def shard_paths(out: Path, k: int) -> tuple[Path, Path]:
    """The (npz, JSON) files of shard k in folder ``out``."""
    return out / f"shard_{k:05d}.npz", out / f"shard_{k:05d}.json"


@dataclass(frozen=True)
class Demo:
    """One demonstration read back: arrays (see the module docstring) and metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict

    def scm(self) -> SCM:
        """The SCM of the demonstration (shards written before format 2 of the SCM name their
        mechanism and noise in the metadata)."""
        state = {k[len("scm."):]: torch.from_numpy(v) for k, v in self.arrays.items() if k.startswith("scm.")}
        state["format_version"] = self.meta.get("scm_format", 1)
        if state["format_version"] == 1:
            state.update({"mechanism": self.meta["mechanism"], "noise": self.meta["noise"]})
        return SCM.from_dict(state)


def load_shard(path: str | Path) -> list[Demo]:
    """Read one shard (give the .npz or the .json path)."""
    path = Path(path)
    npz, js = path.with_suffix(".npz"), path.with_suffix(".json")
    if not js.exists() or not npz.exists():
        raise ValueError(f"{path} is not a complete demonstration shard (need {npz.name} and {js.name})")
    meta = json.loads(js.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{js} has format version {meta.get('format_version')}; this acbo reads {FORMAT_VERSION}")
    with np.load(npz) as z:
        data = {k: z[k] for k in z.files}
    out = []
    for j, m in enumerate(meta["scms"]):
        prefix = f"{j}/"
        out.append(Demo({k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}, m))
    return out


def iter_demos(folder: str | Path):
    """Every demonstration of a collection, shard by shard (complete shards only)."""
    for js in sorted(Path(folder).glob("shard_*.json")):
        yield from load_shard(js)
