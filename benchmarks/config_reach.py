"""How far each trainer's config travels: the functions that read a setting of it, measured.

    python benchmarks/config_reach.py            # the three stages, tiny runs on the CPU

For each stage a tiny training run (a few steps, BC, validation, checkpoint) runs with every config
class of its config tree (the train config and its sub-configs) instrumented: each read of a setting
records the function that read it. A *stop* is one function outside the config classes' own methods
(their checks and helpers) that reads a setting; the table gives the stops and the files they are
in, then each stop with the settings it reads. The static walk of ``farm-studio walk
FILE:train:cfg`` counts more: it also follows every object built from the config (the models, the
simulated campaigns) into the code that uses them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from dataclasses import fields, is_dataclass
from pathlib import Path

import torch

DEMOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "demos_sample"


def config_classes(config) -> set[type]:
    """The classes of a config instance and of every sub-config in it."""
    out = {type(config)}
    for f in fields(config):
        v = getattr(config, f.name)
        if is_dataclass(v) and not isinstance(v, type):
            out |= config_classes(v)
    return out


def trace_reads(classes: set[type], run) -> dict[tuple[str, str], set[str]]:
    """Run ``run()`` with reads of the settings of ``classes`` recorded: (file, function) -> the
    settings it read. Reads by the classes' own methods and by the standard library are left out."""
    reads: dict[tuple[str, str], set[str]] = defaultdict(set)
    own = {f"{c.__name__}." for c in classes}
    names = {c: {f.name for f in fields(c)} for c in classes}
    saved = {c: c.__getattribute__ for c in classes}

    def reader(cls):
        def get(self, name):
            if name in names[cls]:
                frame = sys._getframe(1)
                code = frame.f_code
                where = code.co_filename
                if "/acbo/" in where and not code.co_qualname.startswith(tuple(own)):
                    reads[(where.split("/acbo/", 1)[1], code.co_qualname)].add(f"{cls.__name__}.{name}")
            return object.__getattribute__(self, name)
        return get

    try:
        for c in classes:
            c.__getattribute__ = reader(c)
        run()
    finally:
        for c, g in saved.items():
            c.__getattribute__ = g
    return reads


def stages(tmp: Path) -> dict[str, tuple]:
    """(config, train) per stage, each a tiny run that takes every path of its trainer once."""
    from acbo.configs import configure
    from acbo.e2e.train import E2EConfig
    from acbo.e2e.train import train as train_e2e
    from acbo.policy.train import PolicyTrainConfig
    from acbo.policy.train import train as train_policy
    from acbo.surrogate.train import SurrogateTrainConfig
    from acbo.surrogate.train import train as train_surrogate

    s1 = configure(SurrogateTrainConfig, families=("train-lin",), steps=4, batch_size=4, n_obs=(20, 30), n_int=(0, 3),
                   dim=16, heads=2, row_layers=1, var_layers=1, queries=True, query_vars=2, query_values=4, query_mc=8,
                   w_exact=1.0, folder=str(DEMOS), every=2, w_expert=0.5, family="lin-er-10", buffers=16,
                   eval_every=2, out=str(tmp / "s1"))
    s2 = configure(PolicyTrainConfig, families=("train-lin",), iterations=2, batch_size=4, group_size=2,
                   horizon=(2, 2), n_obs=(20, 20), minibatch=16, val_family="lin-er-10", val_campaigns=4,
                   val_horizon=2, val_every=1, reward_mc=16, bc_demos=str(DEMOS), bc_steps=2, bc_coef=0.3, beta=0.05,
                   out=str(tmp / "s2"))
    s3 = configure(E2EConfig, levels=2, threshold=10.0, patience=1, level_rounds=50, rounds=3,
                   batch_size=4, group_size=2, horizon=(2, 2), minibatch=16, reward_mc=16, query_vars=2,
                   query_values=4, val_campaigns=4, val_horizon=2, val_every=1, val_mc=32, out=str(tmp / "s3"))
    return {"stage 1 (surrogate)": (s1, train_surrogate), "stage 2 (policy)": (s2, train_policy),
            "stage 3 (e2e)": (s3, train_e2e)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detail", action="store_true", help="list each stop with the settings it reads")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (cfg, train) in stages(Path(tmp)).items():
            reads = trace_reads(config_classes(cfg), lambda: train(cfg, log=lambda s: None))
            files = sorted({f for f, _ in reads})
            rows.append((name, len(reads), len(files)))
            if args.detail:
                print(f"## {name}: {len(reads)} stops in {len(files)} files")
                for (f, fn), what in sorted(reads.items()):
                    print(f"- {f}:{fn}: {', '.join(sorted(what))}")
                print()
    print("| trainer | stops (functions reading a setting) | files |")
    print("|---|---|---|")
    for name, n, k in rows:
        print(f"| {name} | {n} | {k} |")


if __name__ == "__main__":
    main()
