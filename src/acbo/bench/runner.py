"""The benchmark harness: methods x families x seeds through the ask/tell loop.

For each (family, seed) one SCM and one observational data set are drawn from the test stream
(``seeding.generator("test", "bench", family, seed)``), so every method faces the same
problem; the outcome of step t is drawn from a stream keyed by (family, seed, t), so two methods
that choose the same intervention at the same step see the same measurement. Each step records
the chosen intervention, E[Y | do(chosen)] (exact for linear SCMs, 10^4-sample common-random-
number Monte Carlo otherwise; never the noisy sample), the best of those so far, the normalised
simple regret r_t = (best_t - y*) / (E[Y]_obs - y*) (step 0, before any intervention, is
r_0 = 1 by definition; later steps can exceed 1 when every choice so far made Y worse than
not intervening), posterior metrics, and the wall time of the ``ask``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from acbo.metrics import normalised_regret, posterior_metrics
from acbo.method import get_method, simulate_campaign
from acbo.optimizer import CausalOptimizer
from acbo.parallel import Placement, map_tasks
from acbo.scm import SCM, get_family
from acbo.configs import parse_value
from acbo.seeding import generator


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    methods: tuple[str, ...] = ("random", "exact-ts", "oracle")
    """Registered method names."""
    families: tuple[str, ...] = ("lin-er-10", "lin-er-20", "nonlin-er-10")
    """Registered family names (the problems are drawn from their test streams)."""
    n_seeds: int = 30
    """Problems per family (seeds first_seed .. first_seed + n_seeds - 1)."""
    first_seed: int = 0
    """First seed; runs with disjoint seed ranges can be merged."""
    steps: int = 20
    """Interventions per run (T)."""
    n_obs: int | None = None
    """Observational sample size; None: each family's own budget."""
    placement: Placement = Placement()
    """Where the tasks run (one task = one family x seed, all methods): worker processes, local or Ray."""
    method_options: dict = field(default_factory=dict)
    """Per-method keyword options, {method: {option: value}}."""
    max_set: int = 1
    """How many variables one experiment may set at once; above 1, y* is the optimum over such
    sets (:meth:`acbo.scm.SCM.set_optimum`) and every method must choose sets."""
    batch: int = 1
    """Experiments per round, asked at once (``CausalOptimizer.ask(n=batch)``) and told before the
    next round; ``steps`` stays the number of experiments."""
    costs: tuple[float, float] | None = None
    """Unequal costs for each problem's settable variables, log-uniform in [low, high]
    (:func:`draw_costs`), told to the methods; rows then carry the spend (``cost``) and the mean
    cost (``cost_unit``), and the summary gives regret against spend. None: no costs."""
    budget_cost: float | None = None
    """With ``costs``, a budget of this many mean costs: a campaign stops when it cannot pay for
    another experiment (``steps`` is then the most it may run)."""

    def __post_init__(self):
        for m in self.methods:
            get_method(m)
        for f in self.families:
            get_family(f)
        if self.n_seeds < 1 or self.steps < 1 or self.first_seed < 0:
            raise ValueError(f"n_seeds and steps must be >= 1 and first_seed >= 0; got {self.n_seeds}, {self.steps}, {self.first_seed}")
        if self.n_obs is not None and self.n_obs < 2:
            raise ValueError(f"n_obs must be >= 2, got {self.n_obs}")
        if self.max_set < 1:
            raise ValueError(f"max_set must be >= 1, got {self.max_set}")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer (experiments per round), got {self.batch!r}")
        if self.costs is not None and not (len(self.costs) == 2 and 0 < self.costs[0] <= self.costs[1] < math.inf):
            raise ValueError(f"costs must be (low, high) with 0 < low <= high, got {self.costs!r}")
        if self.budget_cost is not None and (self.costs is None or not 0 < self.budget_cost < math.inf):
            raise ValueError(f"budget_cost needs costs and must be > 0 (mean costs), got {self.budget_cost!r}")
        if self.max_set > 1:
            single = [m for m in self.methods if not get_method(m).chooses_sets]
            if single:
                raise ValueError(f"max_set={self.max_set}, but {single} set one variable per experiment")


@dataclass(frozen=True)
class _Task:
    family: str
    seed: int
    cfg: BenchConfig


@dataclass(frozen=True, eq=False)
class BenchProblem:
    """One test problem: an SCM, its observational data (as a frame with the SCM's variable
    names), the problem posed (domains low/high and which variables may be set, d each, by the
    family's rules), y* with its Monte Carlo standard error, E[Y]_obs and the true parents of Y."""

    family: str
    seed: int
    scm: SCM
    frame: pd.DataFrame
    low: torch.Tensor
    high: torch.Tensor
    intervenable: torch.Tensor
    y_star: float
    y_star_se: float
    y_star_variable: int
    y_star_setting: float
    e_obs: float
    truth: torch.Tensor
    max_set: int = 1
    """How many variables an experiment may set; y* is over such sets (y_star_variable and
    y_star_setting describe the best single variable)."""
    y_star_set: dict | None = None
    """The best set {name: value} where ``max_set`` > 1."""

    @property
    def names(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def domains(self) -> dict[str, tuple[float, float]]:
        """{name: (low, high)} of every non-target variable."""
        return {n: (float(self.low[j]), float(self.high[j])) for j, n in enumerate(self.names) if n != "Y"}

    @property
    def settable(self) -> list[str]:
        return [n for j, n in enumerate(self.names) if bool(self.intervenable[j])]


def make_problem(family: str, seed: int, n_obs: int | None = None, max_set: int = 1) -> BenchProblem:
    """Draw problem ``seed`` of ``family`` from the test stream: the SCM, its observational data
    (the family's budget unless ``n_obs``), the domains and settable variables, y* (over sets of
    at most ``max_set`` variables)."""
    fam = get_family(family)
    g = generator("test", "bench", family, seed)
    scm = fam.sample(g)
    x = scm.sample(n_obs or fam.draw_n_obs(g), g)[0]                                    # n_obs x d
    low, high, can = (t[0] for t in fam.domains(g, scm, x[None]))
    opt = scm.optimum(low[None], high[None], can[None])
    e_obs = float(scm.observational_mean()[0])
    frame = pd.DataFrame(x.double().numpy(), columns=scm.names())
    y_star, y_star_se, best_set = float(opt.value[0]), float(opt.se[0]), None
    if max_set > 1:
        sets = scm.set_optimum(low[None], high[None], max_set, can[None], single=opt)
        y_star, y_star_se = float(sets.value[0]), float(sets.se[0])
        best_set = {n: float(sets.setting[0, j]) for j, n in enumerate(scm.names()) if bool(sets.mask[0, j])}
    return BenchProblem(family, seed, scm, frame, low.double(), high.double(), can, y_star, y_star_se,
                        int(opt.variable[0]), float(opt.setting[0]), e_obs, scm.parents()[0], max_set, best_set)


def method_spec(spec: str) -> tuple[str, dict]:
    """A method with options as the benchmark scripts take it, ``name:key=value[:key=value]`` ->
    (name, options); values read as the command line reads them (:func:`acbo.configs.parse_value`;
    ``amortized:batch=distinct``)."""
    name, *pairs = spec.split(":")
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"a method option is key=value, got {pair!r} in {spec!r}")
        opts[key] = parse_value(value)
    return name, opts


def draw_costs(problem: BenchProblem, low: float = 1.0, high: float = 10.0) -> dict[str, float]:
    """Unequal costs for a problem's settable variables: log-uniform in [low, high], drawn from
    the test stream of (family, seed)."""
    g = generator("test", "bench-costs", problem.family, problem.seed)
    u = torch.rand(len(problem.settable), generator=g, dtype=torch.float64)
    return {n: float(low * (high / low) ** float(v)) for n, v in zip(problem.settable, u)}


def with_problem_knowledge(problem: BenchProblem, method: str, options: dict | None = None) -> dict:
    """``options`` plus the knowledge a reference method is handed: the oracle the SCM, CBO the
    true parents."""
    opts = dict(options or {})
    if method == "oracle":
        opts["scm"] = problem.scm
    if method == "cbo-parents":
        opts["parents"] = [n for n, is_pa in zip(problem.names, problem.truth.tolist()) if is_pa]
    return opts


def run_method(problem: BenchProblem, method: str, steps: int, options: dict | None = None,
               on_step=None, batch: int = 1, costs: dict | None = None, budget_cost: float | None = None,
               cost_aware: bool = True) -> tuple[list[dict], CausalOptimizer]:
    """Drive ``method`` for ``steps`` interventions on ``problem``, ``batch`` per round; one row
    per step (0..T; ``round`` numbers the rounds; ``cost`` is the spend so far with ``costs``),
    and the optimizer at the end; with ``budget_cost`` it stops earlier when that is spent.
    ``on_step(row)`` sees each step's row as it happens."""
    scm = problem.scm
    opt = CausalOptimizer(problem.frame, target="Y", method=method, seed=problem.seed, domains=problem.domains,
                          intervenable=problem.settable, max_set=min(problem.max_set, len(problem.settable)),
                          costs=costs, budget_cost=budget_cost, cost_aware=cost_aware,
                          **with_problem_knowledge(problem, method, options))
    base = {"family": problem.family, "seed": problem.seed, "method": method, "config": opt.method.describe(), "d": scm.d,
            "mechanism": scm.mechanism, "n_parents": int(problem.truth.sum()),
            "y_star": problem.y_star, "e_obs": problem.e_obs}
    best = float("inf")
    post0 = opt.posterior()
    rows = [{**base, "step": 0, "round": 0, "cost": 0.0 if costs else None, "variable": None, "value": None, "y": None, "e_y": None, "best_e": None,
             "regret": 1.0, "time_s": None, "setup_s": opt.method.setup_seconds, **posterior_metrics(post0, problem.truth)}]

    def record(t: int, iv, sample: dict, dt: float) -> None:
        nonlocal best
        if len(iv) == 1:
            (name, value), = iv.items()
        else:  # a set: "A+B" and its values in that order
            name, value = "+".join(iv), [float(v) for v in iv.values()]
        e_y = scm.expected_outcome(iv)
        best = min(best, e_y)
        rows.append({**base, "step": t, "round": current_round, "cost": opt.spent, "variable": name, "value": value, "y": sample["Y"], "e_y": e_y,
                     "best_e": best, "regret": normalised_regret(best, problem.y_star, problem.e_obs),
                     "time_s": dt, "setup_s": None, **posterior_metrics(opt.posterior(), problem.truth)})
        if on_step is not None:
            on_step(rows[-1])

    outcome = lambda iv, t: scm.run_experiment(iv, generator("test", "bench-outcome", problem.family, problem.seed, t))
    def start(r: int) -> None:
        nonlocal current_round
        current_round = r

    current_round = 0
    simulate_campaign(opt.ask, outcome, partial(opt.tell, accept_outlier=True), steps, record, batch, start)
    return rows, opt


def run_problem(task: _Task) -> list[dict]:
    """Every method of the config on one (family, seed) problem."""
    cfg = task.cfg
    problem = make_problem(task.family, task.seed, cfg.n_obs, cfg.max_set)
    costs = draw_costs(problem, *cfg.costs) if cfg.costs else None
    unit = sum(costs.values()) / len(costs) if costs else None
    budget = cfg.budget_cost * unit if cfg.budget_cost else None
    rows = []
    for method in cfg.methods:
        rows += [{**r, "cost_unit": unit} for r in run_method(problem, method, cfg.steps, cfg.method_options.get(method),
                                                                batch=cfg.batch, costs=costs, budget_cost=budget)[0]]
    return rows


_ADDED_LATER = {"max_set": 1, "batch": 1, "costs": None, "budget_cost": None}
"""Settings a run written before them had at these values (its config.json lacks them)."""
_EXTENDABLE = ("n_seeds", "first_seed", "placement", "workers", "backend", "address")
"""Settings that only add, pick or place tasks (keyed by (family, seed)): a run may change them and resume
(``workers``, ``backend``, ``address``: where runs written before ``placement`` kept them)."""


def run_bench(cfg: BenchConfig, out: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Run the benchmark; with ``out``, write ``results.jsonl``, ``summary.md`` and ``regret.png``
    there. Each finished (family, seed) task is appended to ``out/tasks.jsonl`` at once, so an
    interrupted or failed run loses only the tasks in flight, and running the same configuration
    into the same folder again redoes only the missing tasks (a run may be extended: more seeds,
    another first seed)."""
    tasks = [_Task(f, s, cfg) for f in cfg.families for s in range(cfg.first_seed, cfg.first_seed + cfg.n_seeds)]
    done: dict[tuple[str, int], list[dict]] = {}
    save = None
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        config = json.loads(json.dumps(asdict(cfg), default=str))
        cfg_path, log_path = out / "config.json", out / "tasks.jsonl"
        if log_path.exists():
            same = {k: v for k, v in config.items() if k not in _EXTENDABLE}
            if not cfg_path.exists() or {k: v for k, v in {**_ADDED_LATER, **json.loads(cfg_path.read_text())}.items()
                                         if k not in _EXTENDABLE} != same:
                raise ValueError(f"{out} holds results of another benchmark configuration; use a new --out")
            for line in log_path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash: that task is redone
                    continue
                done[(rec["family"], rec["seed"])] = rec["rows"]
        cfg_path.write_text(json.dumps(config, indent=2))
        todo = [t for t in tasks if (t.family, t.seed) not in done]

        def save(i: int, rows: list[dict]) -> None:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(json_safe({"family": todo[i].family, "seed": todo[i].seed, "rows": rows}),
                                    allow_nan=False) + "\n")
    else:
        todo = tasks
    where = cfg.placement
    results = map_tasks(run_problem, todo, workers=where.workers, description="bench", progress=progress, on_result=save,
                        backend=where.backend, address=where.address or None)
    done.update({(t.family, t.seed): rows for t, rows in zip(todo, results)})
    df = pd.DataFrame([r for t in tasks for r in done[(t.family, t.seed)]])
    if out is not None:
        from acbo.bench.report import plot_regret, posterior_table, summary_table

        with open(out / "results.jsonl", "w") as fh:
            for rec in df.to_dict(orient="records"):
                fh.write(json.dumps(json_safe(rec), allow_nan=False) + "\n")
        (out / "summary.md").write_text(summary_table(df) + posterior_table(df))
        plot_regret(df, out / "regret.png")
    return df


def json_safe(obj):
    """NaN and infinities as null (strict JSON readers reject bare NaN), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def load_results(path: str | Path) -> pd.DataFrame:
    """Read a ``results.jsonl`` written by :func:`run_bench`."""
    return pd.read_json(path, lines=True)
