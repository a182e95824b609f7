"""Same seeds, same numbers: held-out figures of the shipped checkpoints and tiny training runs,
recorded to a JSON file so that two versions of the code can be compared.

    python benchmarks/refactor_check.py --out before.json        # on the old code
    python benchmarks/refactor_check.py --out after.json         # on the new code
    python benchmarks/refactor_check.py --compare before.json after.json

What it records (one CPU thread, fixed seeds):
1. the shipped surrogate and the exact posterior on held-out buffers (AUPRC per buffer);
2. every method on held-out problems through the ask/tell loop (chosen values, E[Y | do]);
3. a tiny stage-1 run (truth + exact distillation + demonstration batches): its log and weights;
4. a tiny stage-2 run per group design, with BC warm start, KL reference and BC auxiliary loss;
5. a tiny stage-3 run per policy kind (the shipped pair; a new grid policy on a fresh world-model surrogate);
6. a tiny demonstration collection;
7. (``--parts simulator``) every registered family's SCMs, data, E[Y | do] and y*.
Comparison: every number equal (bit for bit), else the largest absolute difference.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch

DEMOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "demos_sample"


def _weights(model: torch.nn.Module) -> list[float]:
    """A fingerprint of the weights: sum and sum of squares per tensor, in order."""
    out = []
    for v in model.state_dict().values():
        v = v.double()
        out += [float(v.sum()), float((v * v).sum())]
    return out


def surrogate_figures() -> dict:
    from acbo.surrogate import load_pretrained
    from acbo.surrogate.evaluate import evaluate

    model = load_pretrained()
    out = {}
    for fam in ("lin-er-20", "nonlin-er-10"):
        for k in (0, 5):
            df = evaluate(model, fam, n_buffers=40, n_obs=200, n_int=k, expert=False)
            for post, g in df.groupby("posterior"):
                out[f"{fam}/n_int={k}/{post}/auprc"] = g["auprc"].tolist()
                out[f"{fam}/n_int={k}/{post}/log_p_true"] = g["log_p_true"].tolist()
    return out


def bench_figures() -> dict:
    from acbo.bench.runner import BenchConfig, run_bench

    methods = ("amortized", "surrogate-ts", "exact-ts", "random", "parent_scale", "cbo-parents", "oracle")
    cfg = BenchConfig(methods=methods, families=("lin-er-10", "nonlin-er-10"), n_seeds=3, steps=6)
    df = run_bench(cfg, progress=False)
    out = {}
    for (fam, method), g in df.groupby(["family", "method"]):
        g = g.sort_values(["seed", "step"])
        out[f"{fam}/{method}/value"] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                                        for v in g["value"].tolist()]
        out[f"{fam}/{method}/e_y"] = g["e_y"].fillna(0.0).tolist()
        out[f"{fam}/{method}/auprc"] = g["auprc"].tolist()
    return out


def surrogate_training() -> dict:
    from acbo.configs import configure
    from acbo.surrogate.train import SurrogateTrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = configure(SurrogateTrainConfig, families=("train-lin", "train-nonlin"), steps=20, batch_size=8, n_obs=(30, 60),
                                   n_int=(0, 5), w_exact=1.0, demos=str(DEMOS), demo_every=5, w_expert=0.5,
                                   dim=32, heads=4, row_layers=1, var_layers=1, pair_bias=True, val_buffers=16,
                                   eval_every=10, out=tmp)
        logs = []
        model = train(cfg, log=logs.append)
        lines = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    keep = ("truth", "exact", "expert", "demo_truth", "loss", "grad_norm", "lr", "val_auprc")
    return {"log": [{k: r[k] for k in keep if k in r} for r in lines], "weights": _weights(model)}


def policy_training() -> dict:
    from acbo.configs import configure
    from acbo.policy.train import PolicyTrainConfig, train

    out = {}
    for mode in ("candidates", "trajectory"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = configure(PolicyTrainConfig, families=("train-lin", "train-nonlin"), mode=mode, iterations=3, batch_size=4,
                                    group_size=3, horizon=(3, 4), n_obs=(30, 40), minibatch=16, val_family="lin-er-10",
                                    val_campaigns=6, val_horizon=3, val_every=2, reward_mc=32, bc_demos=str(DEMOS),
                                    bc_steps=4, bc_coef=0.3, beta=0.05, out=tmp)
            policy = train(cfg, log=lambda s: None)
            lines = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
        drop = ("seconds", "env_steps_per_s")
        out[mode] = {"log": [{k: v for k, v in r.items() if k not in drop} for r in lines], "weights": _weights(policy)}
    return out


def e2e_training() -> dict:
    from acbo.configs import configure
    from acbo.e2e.train import E2EConfig, train
    from acbo.surrogate import Surrogate, SurrogateConfig
    from acbo.surrogate.checkpoint import save_checkpoint

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        fresh = Path(tmp) / "fresh.pt"
        save_checkpoint(fresh, Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=True)),
                        0, {}, {}, [])
        for kind, extra in (("shipped", {}), ("grid", {"grid": 8, "surrogate": str(fresh)})):
            run = Path(tmp) / kind
            cfg = configure(E2EConfig, levels=2, threshold=10.0, patience=1, level_rounds=50, rounds=4, batch_size=4,
                            group_size=2, horizon=(2, 3), minibatch=16, reward_mc=16, query_vars=2, query_values=4,
                            val_campaigns=4, val_horizon=2, val_every=2, val_mc=64, out=str(run), **extra)
            policy, surrogate = train(cfg, log=lambda s: None)
            lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            drop = ("seconds", "elapsed_s")
            out[kind] = {"log": [{k: v for k, v in r.items() if k not in drop} for r in lines],
                         "policy": _weights(policy), "surrogate": _weights(surrogate)}
    return out


def demo_figures() -> dict:
    from acbo.demonstrations import iter_demos
    from acbo.experts.demos import DemoConfig, collect_demos

    with tempfile.TemporaryDirectory() as tmp:
        collect_demos(DemoConfig("small-mixed", n_scms=2, steps=3, shard_size=2,
                                 expert_options={"dr_regressor": "ridge"}), tmp, progress=False)
        out = {}
        for demo in iter_demos(tmp):
            for k, v in demo.arrays.items():
                if k != "seconds":
                    out[f"{demo.meta['index']}/{k}"] = v.astype(float).ravel().tolist()
            out[f"{demo.meta['index']}/phase"] = demo.meta["phase"]
    return out


def simulator_figures() -> dict:
    """Every registered classic family: a batch of SCMs, their data, E[Y | do] and y* (observed ranges)."""
    from acbo.scm import FAMILIES, get_family
    from acbo.seeding import generator

    out = {}
    for name in sorted(n for n, f in FAMILIES.items() if f.classic):
        g = generator("test", "refactor-check", name)
        scm = get_family(name).sample(g, B=3)
        x = scm.sample(50, g)
        lo, hi = x.amin(1), x.amax(1)
        mask = torch.eye(scm.d, dtype=torch.bool)[:3]
        vals = lo[:, None, :] + 0.3 * (hi - lo)[:, None, :] * torch.ones(3, 3, scm.d)
        opt = scm.optimum(lo, hi)
        out[name] = {"data": x.double().flatten().tolist()[::7], "e_y": scm.expected_target(mask, vals).flatten().tolist(),
                     "y_star": opt.value.tolist(), "argmin": opt.variable.tolist(), "setting": opt.setting.tolist(),
                     "parents": scm.parents().flatten().int().tolist()}
    return out


PARTS = {"surrogate": surrogate_figures, "bench": bench_figures, "surrogate_training": surrogate_training,
         "policy_training": policy_training, "e2e_training": e2e_training, "demos": demo_figures, "simulator": simulator_figures}


def record(path: str, parts: list[str]) -> None:
    torch.set_num_threads(1)
    figures = {}
    for name in parts:
        figures[name] = PARTS[name]()
        print(f"recorded {name}", flush=True)
    Path(path).write_text(json.dumps(figures))


def _flatten(x, prefix=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _flatten(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, x


def compare(a_path: str, b_path: str) -> None:
    a, b = (dict(_flatten(json.loads(Path(p).read_text()))) for p in (a_path, b_path))
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if missing or extra:
        print(f"keys differ: only in {a_path}: {missing[:10]}; only in {b_path}: {extra[:10]}")
    per_part: dict[str, list] = {}
    for k in sorted(set(a) & set(b)):
        part = k.split("/")[0]
        va, vb = a[k], b[k]
        stats = per_part.setdefault(part, [0, 0, 0.0, 0.0, ""])  # numbers, equal, max |diff|, max rel diff, where
        stats[0] += 1
        if va == vb or (isinstance(va, float) and isinstance(vb, float) and math.isnan(va) and math.isnan(vb)):
            stats[1] += 1
        elif isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            diff = abs(va - vb)
            rel = diff / max(abs(va), abs(vb), 1e-12)
            if diff > stats[2]:
                stats[2], stats[4] = diff, k
            stats[3] = max(stats[3], rel)
        else:
            stats[2], stats[4] = float("inf"), k
    print("| part | numbers | equal bit for bit | max abs diff | max rel diff | where |")
    print("|---|---|---|---|---|---|")
    for part, (n, eq, d, r, where) in per_part.items():
        print(f"| {part} | {n} | {eq} | {d:.3g} | {r:.3g} | {where if d else ''} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="record the figures of this code into this JSON file")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two recorded files")
    ap.add_argument("--parts", default="surrogate,bench,surrogate_training,policy_training,e2e_training,demos",
                    help=f"comma-separated parts to record, of {sorted(PARTS)}")
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.out:
        record(args.out, [p for p in args.parts.split(",") if p])
    else:
        ap.error("give --out FILE or --compare BEFORE AFTER")


if __name__ == "__main__":
    main()
