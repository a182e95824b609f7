"""How the world model reads the observations: the variants of issue 28's item 2, on the same buffers.

    python benchmarks/observation_reading.py --out runs/observation-reading [--problems 25] [--workers 2]
        [--families test-broad,test-shapes,test-confounded,test-wide-domains] [--n-int 0,5,20]

For each problem (test stream) and number of random interventional rows (the buffers of
``world_model_eval.py``), the conditioned world model (:mod:`acbo.surrogate.world`) predicts
E[Y | do(X_j = x)] on 32 points of every settable variable's domain, once per variant of its
reading of the observational rows:

- ``plain``: one local-linear regression of Y on X_j at the rule's bandwidth (issue 28 as first shipped);
- ``shipped``: the bandwidth picked by leave-one-out cross-validation among 0.5 / 1 / 2 x the rule,
  and the estimates adjusted for the other believed parents of Y averaged with the plain ones by
  their evidence under the network's prior (today's default);
- ``no-observations``: no observational pseudo-measurements at all (the network's prior conditioned
  on the measurements only).

Scored as in ``world_model_eval.py`` (RMSE in Y's observational std, 90 % coverage, normalised
regret of the argmin) and printed as the mean per variant with the paired difference to ``plain``
(mean ± 95 % CI over the problems). The variants are set through the module's constants.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from world_model_eval import GRID, N_MC, _buffer  # noqa: E402

from acbo.baselines.surrogate_ei import SurrogateEI  # noqa: E402
from acbo.bench.report import _fmt  # noqa: E402
from acbo.bench.runner import make_problem  # noqa: E402
from acbo.method import Problem  # noqa: E402
from acbo.metrics import mean_ci, normalised_regret  # noqa: E402
from acbo.parallel import map_tasks  # noqa: E402
from acbo.surrogate import world  # noqa: E402
from acbo.surrogate.conditioning import ADJUST_BELIEF, MIN_PARENT, OBS_BANDWIDTHS  # noqa: E402
from acbo.surrogate.inference import conditioned_grid  # noqa: E402

VARIANTS = {  # (ADJUST_BELIEF, OBS_BANDWIDTHS, MIN_PARENT) of acbo.surrogate.world
    "plain": (2.0, (1.0,), MIN_PARENT),  # a belief above 1 adjusts for nothing
    "shipped": (ADJUST_BELIEF, OBS_BANDWIDTHS, MIN_PARENT),
    "no-observations": (ADJUST_BELIEF, OBS_BANDWIDTHS, 2.0),  # no belief reaches 2: every estimate dropped
}


def evaluate(task: tuple) -> list[dict]:
    """Every variant on one problem, at every interventional budget."""
    family, seed, budgets = task
    torch.set_num_threads(1)
    p = make_problem(family, seed)
    problem = Problem.from_data(p.names, p.frame.to_numpy(), "Y", p.domains, p.settable, True, seed)
    model = SurrogateEI(problem).model
    settable = torch.nonzero(p.intervenable).flatten().tolist()
    grids = torch.stack([p.low[j] + (p.high[j] - p.low[j]) * torch.linspace(0, 1, GRID, dtype=torch.float64)
                         for j in settable])                                                # Q x GRID
    d = p.scm.d
    mask = torch.zeros(len(settable) * GRID, d, dtype=torch.bool)
    vals = torch.zeros(len(settable) * GRID, d)
    for i, j in enumerate(settable):
        mask[i * GRID:(i + 1) * GRID, j] = True
        vals[i * GRID:(i + 1) * GRID, j] = grids[i].float()
    truth = p.scm.expected_target(mask, vals, N_MC)[0].double()
    y_std = float(p.frame["Y"].std())
    rows = []
    for n_int in budgets:
        buf = _buffer(p, n_int)
        for name, (belief, bandwidths, min_parent) in VARIANTS.items():
            world.ADJUST_BELIEF, world.OBS_BANDWIDTHS, world.MIN_PARENT = belief, bandwidths, min_parent
            try:
                preds = conditioned_grid(model, buf, p.names.index("Y"), settable, grids, p.low[settable],
                                         p.high[settable])
            finally:
                world.ADJUST_BELIEF, world.OBS_BANDWIDTHS, world.MIN_PARENT = VARIANTS["shipped"]
            mean = torch.cat([pr.mean.double() for pr in preds])
            lo = torch.cat([pr.quantile(0.05).double() for pr in preds])
            hi = torch.cat([pr.quantile(0.95).double() for pr in preds])
            best = int(mean.argmin())
            rows.append({"family": family, "seed": seed, "n_int": n_int, "variant": name,
                         "rmse": float(((mean - truth) ** 2).mean().sqrt()) / y_std,
                         "cover90": float(((lo <= truth) & (truth <= hi)).double().mean()),
                         "argmin_regret": normalised_regret(float(truth[best]), p.y_star, p.e_obs)})
    return rows


def summary(df: pd.DataFrame) -> str:
    lines = ["| family | rows | problems | metric | plain | shipped (− plain) | no observations (− plain) |",
             "|---|---|---|---|---|---|---|"]
    for (fam, n_int), g in df.groupby(["family", "n_int"], sort=False):
        wide = {m: g.pivot(index="seed", columns="variant", values=m) for m in ("rmse", "cover90", "argmin_regret")}
        for m, t in wide.items():
            cells = [fam, str(n_int), str(len(t)), m, _fmt(*mean_ci(t["plain"]))]
            for v in ("shipped", "no-observations"):
                mu, half = mean_ci(t[v] - t["plain"])
                cells.append(f"{t[v].mean():.3f} ({mu:+.3f} ± {half:.3f})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad,test-shapes,test-confounded,test-wide-domains")
    ap.add_argument("--problems", type=int, default=25)
    ap.add_argument("--n-int", default="0,5,20")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = tuple(int(k) for k in args.n_int.split(","))
    tasks = [(f, s, budgets) for f in args.families.split(",") for s in range(args.problems)]
    results = map_tasks(evaluate, tasks, workers=args.workers, description="observation reading")
    df = pd.DataFrame([r for rows in results for r in rows])
    df.to_csv(out / "results.csv", index=False)
    text = summary(df)
    (out / "summary.md").write_text(text)
    (out / "config.json").write_text(json.dumps(vars(args), indent=1))
    print(text)


if __name__ == "__main__":
    main()
