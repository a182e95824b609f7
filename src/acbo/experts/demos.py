"""Expert demonstrations: PARENT_SCALE run on SCMs from a named family, recorded step by step.

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
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from acbo.buffer import Buffer
from acbo.experts.parent_scale import ParentScale
from acbo.method import Problem
from acbo.parallel import map_tasks
from acbo.scm import SCM, get_family
from acbo.scm.scm import FORMAT_VERSION as SCM_FORMAT
from acbo.seeding import generator

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DemoConfig:
    """One demonstration collection."""

    family: str
    """Registered family the SCMs come from (train stream)."""
    n_scms: int
    """Number of SCMs (demonstrations)."""
    steps: int = 20
    """Interventions per demonstration (T)."""
    shard_size: int = 16
    """SCMs per shard file."""
    seed: int = 0
    """Collection seed (SCM i uses generator("train", "demos", family, seed, i))."""
    n_obs: int | None = None
    """Observational rows (None: the family's budget)."""
    expert_options: dict = field(default_factory=dict)
    """Keyword options of the parent_scale method (DR variant, regressor, set model, ...)."""

    def __post_init__(self):
        get_family(self.family)
        if self.n_scms < 1 or self.steps < 1 or self.shard_size < 1 or self.seed < 0:
            raise ValueError(f"n_scms, steps, shard_size must be >= 1 and seed >= 0; got "
                             f"{self.n_scms}, {self.steps}, {self.shard_size}, {self.seed}")

    @property
    def n_shards(self) -> int:
        return -(-self.n_scms // self.shard_size)


def demonstrate(cfg: DemoConfig, index: int) -> tuple[dict[str, np.ndarray], dict]:
    """Run the expert on SCM ``index`` of the collection through the Method interface (the same
    seeds and generators as ``CausalOptimizer(..., seed=index)``); (arrays, metadata)."""
    fam = get_family(cfg.family)
    g = generator("train", "demos", cfg.family, cfg.seed, index)
    scm = fam.sample(g)
    x = scm.sample(cfg.n_obs or fam.draw_n_obs(g), g)[0]
    names, d, T = scm.names(), scm.d, cfg.steps
    low, high, can = (t[0] for t in fam.domains(g, scm, x[None]))
    y_star = float(scm.optimum(low[None], high[None], can[None]).value[0])
    e_obs = float(scm.observational_mean()[0])
    t_start = time.perf_counter()
    x64 = x.double()
    problem = Problem.from_data(names, x64.numpy(), "Y", {n: (float(low[j]), float(high[j])) for j, n in enumerate(names)
                                                          if n != "Y"}, [n for j, n in enumerate(names) if can[j]],
                                seed=index)
    expert = ParentScale(problem, **cfg.expert_options)
    ask_gen = generator("ask", index)
    buffer = Buffer(d, capacity=x.shape[0] + T)
    buffer.add(x64)
    n_rows = np.zeros(T, dtype=np.int64)
    variable = np.zeros(T, dtype=np.int64)
    value, e_y, seconds = np.zeros(T), np.zeros(T), np.zeros(T)
    ei = np.full((T, d), np.nan)
    posts, phases = [], []
    for t in range(T):
        posts.append(expert.posterior(buffer))  # the posterior the decision is made from
        n_rows[t] = buffer.n
        t0 = time.perf_counter()
        j, v = expert.propose(buffer, ask_gen)
        seconds[t] = time.perf_counter() - t0
        info = expert.last_decision
        phases.append(info.get("phase", ""))
        for n, val in info.get("ei", {}).items():
            ei[t, names.index(n)] = val
        iv = {names[j]: v}
        outcome = scm.run_experiment(iv, generator("train", "demo-outcome", cfg.family, cfg.seed, index, t))
        mask = torch.zeros(d, dtype=torch.bool)
        mask[j] = True
        buffer.add(torch.tensor([outcome[n] for n in names], dtype=torch.float64), mask)
        variable[t], value[t] = j, v
        e_y[t] = scm.expected_outcome(iv)
    S = max(p.sets.shape[0] for p in posts)
    post_sets = np.zeros((T, S, d), dtype=bool)
    post_probs = np.zeros((T, S))
    for t, p in enumerate(posts):
        post_sets[t, : p.sets.shape[0]] = p.sets.numpy()
        post_probs[t, : p.sets.shape[0]] = p.probs.numpy()
    arrays = {
        "buffer": buffer.values.numpy().copy(), "intervened": buffer.intervened.numpy().copy(),
        "n_rows": n_rows, "variable": variable, "value": value, "e_y": e_y, "ei": ei, "seconds": seconds,
        "post_sets": post_sets, "post_probs": post_probs,
        "post_marginals": np.stack([p.marginals.numpy() for p in posts]),
        "parents": scm.parents()[0].numpy(),
        "low": low.double().numpy(), "high": high.double().numpy(), "intervenable": can.numpy(),
    }
    state = scm.to_dict()
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            arrays[f"scm.{k}"] = v.numpy()
    meta = {"index": index, "d": d, "target": int(scm.target[0]), "names": names, "mechanism": scm.mechanism,
            "noise": scm.noise, "scm_format": SCM_FORMAT, "y_star": y_star, "e_obs": e_obs, "phase": phases,
            "prior_seconds": expert.setup_seconds, "total_seconds": time.perf_counter() - t_start,
            "expert": expert.describe()}
    return arrays, meta


def _shard_paths(out: Path, k: int) -> tuple[Path, Path]:
    return out / f"shard_{k:05d}.npz", out / f"shard_{k:05d}.json"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_shard(task: tuple[DemoConfig, str, int]) -> int:
    """Collect shard k and write it atomically (npz, then JSON). Returns k."""
    cfg, out_str, k = task
    out = Path(out_str)
    first, last = k * cfg.shard_size, min(cfg.n_scms, (k + 1) * cfg.shard_size)
    arrays, metas = {}, []
    for j, i in enumerate(range(first, last)):
        a, m = demonstrate(cfg, i)
        arrays.update({f"{j}/{key}": v for key, v in a.items()})
        metas.append(m)
    npz, js = _shard_paths(out, k)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    _atomic_write(npz, write_npz)
    meta = {"format_version": FORMAT_VERSION, "shard": k, "config": asdict(cfg), "scms": metas}
    _atomic_write(js, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    return k


def collect_demos(cfg: DemoConfig, out: str | Path, workers: int = 1, max_shards: int | None = None,
                  progress: bool = True, backend: str = "local", address: str | None = None) -> list[int]:
    """Collect (or resume) a demonstration set into ``out``; returns the shards written now.

    A folder already holding a collection with a different configuration is refused.
    ``max_shards`` stops after that many new shards (for staged runs). ``backend`` / ``address``:
    where the shards are made (:func:`acbo.parallel.map_tasks`; the folder must be reachable there)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "collection.json"
    want = json.dumps(asdict(cfg), sort_keys=True)
    if manifest.exists():
        have = json.dumps(json.loads(manifest.read_text()), sort_keys=True)
        if have != want:
            raise ValueError(f"{out} holds a collection with another configuration ({have}); use a new folder")
    else:
        _atomic_write(manifest, lambda tmp: tmp.write_text(json.dumps(asdict(cfg), indent=1)))
    for stale in out.glob(".*.tmp"):  # leftovers of an interrupted write
        stale.unlink()
    todo = [k for k in range(cfg.n_shards) if not (_shard_paths(out, k)[1].exists() and _shard_paths(out, k)[0].exists())]
    if max_shards is not None:
        todo = todo[:max_shards]
    sizes = [min(cfg.shard_size, cfg.n_scms - k * cfg.shard_size) for k in todo]
    return map_tasks(write_shard, [(cfg, str(out), k) for k in todo], workers=workers, description="demos (SCMs)",
                     progress=progress, units=sizes, backend=backend, address=address)


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
