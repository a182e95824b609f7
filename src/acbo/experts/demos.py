"""Expert demonstrations: PARENT_SCALE run on SCMs from a named family, recorded step by step.

The storage format and its readers (:class:`Demo`, :func:`load_shard`, :func:`iter_demos`):
:mod:`acbo.demonstrations`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from acbo.buffer import Buffer
from acbo.demonstrations import FORMAT_VERSION, shard_paths
from acbo.experts.parent_scale import ParentScale
from acbo.io import atomic_write
from acbo.method import Problem, simulate_campaign
from acbo.parallel import map_tasks
from acbo.scm import get_family
from acbo.scm.scm import FORMAT_VERSION as SCM_FORMAT
from acbo.seeding import generator


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
    posts, phases = [expert.posterior(buffer)], []  # the posterior each decision is made from
    n_rows[0] = buffer.n

    def ask() -> dict[str, float]:
        j, v = expert.propose(buffer, ask_gen)
        return {names[j]: v}

    def tell(iv: dict[str, float], outcome: dict) -> None:
        mask = torch.zeros(d, dtype=torch.bool)
        mask[names.index(next(iter(iv)))] = True
        buffer.add(torch.tensor([outcome[n] for n in names], dtype=torch.float64), mask)

    def record(t: int, iv: dict[str, float], outcome: dict, dt: float) -> None:
        i = t - 1
        seconds[i] = dt
        info = expert.last_decision
        phases.append(info.get("phase", ""))
        for n, val in info.get("ei", {}).items():
            ei[i, names.index(n)] = val
        (name, v), = iv.items()
        variable[i], value[i] = names.index(name), v
        e_y[i] = scm.expected_outcome(iv)
        if t < T:
            posts.append(expert.posterior(buffer))
            n_rows[t] = buffer.n

    outcome = lambda iv, t: scm.run_experiment(iv, generator("train", "demo-outcome", cfg.family, cfg.seed, index, t - 1))
    simulate_campaign(ask, outcome, tell, T, record)
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
    npz, js = shard_paths(out, k)

    atomic_write(npz, lambda fh: np.savez_compressed(fh, **arrays))
    meta = {"format_version": FORMAT_VERSION, "shard": k, "config": asdict(cfg), "scms": metas}
    atomic_write(js, lambda fh: fh.write(json.dumps(meta, indent=1).encode()))
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
        atomic_write(manifest, lambda fh: fh.write(json.dumps(asdict(cfg), indent=1).encode()))
    for stale in out.glob(".*.tmp"):  # leftovers of an interrupted write
        stale.unlink()
    todo = [k for k in range(cfg.n_shards) if not (shard_paths(out, k)[1].exists() and shard_paths(out, k)[0].exists())]
    if max_shards is not None:
        todo = todo[:max_shards]
    sizes = [min(cfg.shard_size, cfg.n_scms - k * cfg.shard_size) for k in todo]
    return map_tasks(write_shard, [(cfg, str(out), k) for k in todo], workers=workers, description="demos (SCMs)",
                     progress=progress, units=sizes, backend=backend, address=address)
