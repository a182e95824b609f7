"""The ``acbo`` command line: run, bench, simulate, list."""

from __future__ import annotations

import functools
import json
import time
import warnings
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

HELP_WIDTH = {"max_content_width": 120, "terminal_width": 120}
"""Help is laid out for 120 columns (typer would cut every command's description at 80)."""
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_WIDTH,
                  help="Amortized causal Bayesian optimization.")
campaign_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_WIDTH,
                           help="A campaign of real experiments: CSV in, next experiment out, state in one file.")
app.add_typer(campaign_app, name="campaign")
console = Console(highlight=False, markup=False)
BACKEND_OPTION = typer.Option("local", help="Where tasks run: local (worker processes) or ray (needs acbo[dist]).")
ADDRESS_OPTION = typer.Option("", help="Ray cluster address (default: a one-machine cluster started for the run).")
errors = Console(stderr=True, highlight=False, markup=False)


def _friendly(fn):
    """Bad input or a file problem becomes one line on stderr and exit code 2, never a traceback;
    a warning for the user (UserWarning) becomes a line "warning: ..." on stderr."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                return fn(*args, **kwargs)
        except (ValueError, OSError) as e:
            msg = str(e) if isinstance(e, ValueError) else f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
            errors.print(f"error: {msg}", soft_wrap=True)
            raise typer.Exit(2) from None
        finally:  # after the recording ended: a warning shown here is not recorded again
            for w in caught:
                if issubclass(w.category, UserWarning):
                    errors.print(f"warning: {w.message}", soft_wrap=True)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)

    return wrapper


def _split(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _options(items: list[str], with_method: bool) -> dict:
    """Parse repeated ``--option [method.]key=value`` into {method: {key: value}} or {key: value}."""
    from acbo.configs import parse_value

    out: dict = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option takes {'method.' if with_method else ''}key=value, got {item!r}")
        if with_method:
            method, dot, opt = key.partition(".")
            if not dot or not opt:
                raise ValueError(f"--option takes method.key=value, got {item!r}")
            out.setdefault(method, {})[opt] = parse_value(val)
        else:
            out[key] = parse_value(val)
    return out


@app.command(short_help="Optimise a problem (default: the built-in bioreactor, three methods side by side).")
@_friendly
def run(
    family: str = typer.Option(None, help="A built-in problem family (see `acbo list`); default: the bioreactor demo."),
    method: str = typer.Option(None, help="Method (see `acbo list`); default: the demo compares amortized, random and "
                                          "parent_scale; a family runs amortized."),
    steps: int = typer.Option(None, min=1, help="Number of experiments (default: 12 for the demo, 20 for a family)."),
    seed: int = typer.Option(0, min=0, help="Problem and method seed."),
    plot: Path = typer.Option(Path("acbo_run.png"), help="Where to write the figure (.png)."),
    option: list[str] = typer.Option(None, help="Method option key=value (repeatable), e.g. set_model=rff."),
    max_set: int = typer.Option(None, min=1, max=2, help="The demo: variables one experiment may set at once (1 or 2; "
                                                           "default 2 for the methods that choose sets, else 1)."),
):
    """Optimise a problem and show what happened: by default the shipped system on a built-in
    bioreactor whose best settings lie inside the domains (the best of all needs two set
    together), next to random search and PARENT_SCALE."""
    if plot.suffix.lower() != ".png":
        raise ValueError(f"--plot must be a .png file, got {plot}")
    plot.parent.mkdir(parents=True, exist_ok=True)  # before any work: a bad path fails now, not at the end
    opts = _options(option, with_method=False)
    if opts and family is None and method is None:
        raise ValueError(f"--option {', '.join(option)} is for one method: give --method too (the demo compares three)")
    if family is not None and max_set is not None:
        raise ValueError("--max-set is for the bioreactor demo; a family's problems are run one variable at a time")
    if family is None:
        _run_demo([method] if method else ["amortized", "random", "parent_scale"], steps or 12, seed, plot, opts, max_set)
    else:
        _run_family(family, method or "amortized", steps or 20, seed, plot, opts)


def _run_demo(methods: list[str], steps: int, seed: int, plot: Path, opts: dict, max_set: int | None = None) -> None:
    from acbo import bioreactor
    from acbo.bench.showcase import run_showcase, showcase_figure
    from acbo.method import get_method

    for m in methods:
        get_method(m)
    console.print(f"the bioreactor: {len(bioreactor.NAMES)} variables ({', '.join(bioreactor.NAMES)}), maximise {bioreactor.TARGET}; "
                  f"settable: {', '.join(bioreactor.SETTABLE)} over domains wider than the 60 observations; "
                  f"{steps} experiments per method, each setting "
                  + ("one variable" if max_set == 1 else "up to two variables (one with a method that does not choose sets)"))
    last = [None]

    def show(method: str, r: dict) -> None:
        if last[0] != method:
            console.print(f"\n{method}:")
            console.print(f"{'step':>4}  {'experiment':<24} {'titer':>8} {'E[titer|do]':>12} {'best':>8} {'ms':>9}")
            last[0] = method
        console.print(f"{r['step']:>4}  {r['do']:<24} {r['titer']:>8.3f} {r['e_titer']:>12.3f} {r['best_e']:>8.3f} "
                      f"{r['ms']:>9.1f}")

    traces, optima = run_showcase(methods, steps, seed, show, {m: opts for m in methods} if len(methods) == 1 else None,
                                  max_set)
    best = optima["single"]
    console.print(f"\nbest single setting: {best[0]} = {best[1]:.4g} gives E[titer] = {best[2]:.3f} g/L "
                  f"(no intervention: {bioreactor.expected_titer({}):.3f})")
    if optima["set"]:
        setting, value = optima["set"]
        console.print("best of at most two set together: " + ", ".join(f"{k} = {v:.4g}" for k, v in setting.items())
                      + f" gives E[titer] = {value:.3f} g/L")
    for tr in traces:
        ms = np.median([r["ms"] for r in tr.rows])
        console.print(f"  {tr.method:<14} best E[titer] {tr.rows[-1]['best_e']:.3f} after {steps} experiments, "
                      f"{ms:.1f} ms per decision (median)")
    showcase_figure(traces, optima, plot, "amortized" if "amortized" in methods else methods[0])
    console.print(f"figure written to {plot}")
    console.print("your own system: acbo campaign init --data observations.csv --target Y --state run.acbo "
                  "(see `acbo campaign --help`)")


def _run_family(family: str, method: str, steps: int, seed: int, plot: Path, opts: dict) -> None:
    import pandas as pd

    from acbo.bench.report import plot_regret
    from acbo.bench.runner import make_problem, run_method
    from acbo.method import get_method

    get_method(method)
    problem = make_problem(family, seed)
    console.print(f"{family} seed {seed}: d = {problem.scm.d} ({problem.scm.mechanism}), "
                  f"{len(problem.frame)} observational rows, target Y, method {method}")
    console.print(f"{'step':>4}  {'do':<22} {'Y':>9} {'E[Y|do]':>9} {'best':>9} {'regret':>7} {'ms':>8}")

    def show(r: dict) -> None:
        console.print(f"{r['step']:>4}  {r['variable'] + '=' + format(r['value'], '.3f'):<22} {r['y']:>9.3f} "
                      f"{r['e_y']:>9.3f} {r['best_e']:>9.3f} {r['regret']:>7.3f} {1000 * r['time_s']:>8.1f}")

    rows, opt = run_method(problem, method, steps, opts, on_step=show)
    post = opt.posterior()
    truth = tuple(n for n, t in zip(problem.names, problem.truth.tolist()) if t)
    console.print(f"posterior over pa(Y) (true parents: {', '.join(truth)}):")
    for names, p in post.top(5):
        console.print(f"  P({{{', '.join(names)}}}) = {p:.3f}")
    iv, y = opt.best
    console.print(f"best experiment: {iv} measured Y = {y:.3f}; E[Y] observational {problem.e_obs:.3f}, "
                  f"optimum y* = {problem.y_star:.3f}, final regret {rows[-1]['regret']:.3f}")
    plot_regret(pd.DataFrame(rows), plot)
    console.print(f"plot written to {plot}")


@app.command(short_help="Benchmark methods x families x seeds (JSONL, summary table, plot).")
@_friendly
def bench(
    methods: str = typer.Option("random,exact-ts,oracle", help="Comma-separated method names."),
    families: str = typer.Option("lin-er-10,lin-er-20,nonlin-er-10", help="Comma-separated family names."),
    seeds: int = typer.Option(30, min=1, help="Problems (SCMs) per family."),
    first_seed: int = typer.Option(0, min=0, help="First seed."),
    steps: int = typer.Option(20, min=1, help="Interventions per run (T)."),
    n_obs: int = typer.Option(0, min=0, help="Observational rows (0: the family's budget)."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    out: Path = typer.Option(Path("runs/bench"), help="Output folder (results.jsonl, summary.md, regret.png)."),
    option: list[str] = typer.Option(None, help="Method option method.key=value (repeatable), "
                                                "e.g. parent_scale.dr_regressor=mlp."),
    max_set: int = typer.Option(1, min=1, help="Variables one experiment may set at once (y* over such sets)."),
    batch: int = typer.Option(1, min=1, help="Experiments per round, asked at once and told before the next round."),
    costs: str = typer.Option(None, help="Unequal costs per settable variable, log-uniform in LOW,HIGH (e.g. 1,10), "
                                         "told to the methods; the summary adds regret against spend."),
    budget_cost: float = typer.Option(None, help="With --costs, a budget of this many mean costs per campaign."),
):
    """Benchmark methods x families x seeds; writes JSONL, a summary table and a plot."""
    from acbo.bench.report import summary_table
    from acbo.bench.runner import BenchConfig, run_bench
    from acbo.parallel import Placement

    cfg = BenchConfig(methods=_split(methods), families=_split(families), n_seeds=seeds, first_seed=first_seed,
                      steps=steps, n_obs=n_obs or None, placement=Placement(workers, backend, address),
                      method_options=_options(option, with_method=True), max_set=max_set, batch=batch,
                      costs=_cost_range(costs), budget_cost=budget_cost)
    df = run_bench(cfg, out=out)
    console.print(summary_table(df))
    console.print(f"results in {out}/")


def _cost_range(text: str | None) -> tuple[float, float] | None:
    """``--costs LOW,HIGH`` as numbers (ValueError naming the text otherwise)."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--costs is LOW,HIGH (two numbers), got {text!r}") from None
    return low, high


@app.command(short_help="Sample SCMs and observational data from a family into one .npz file.")
@_friendly
def simulate(
    family: str = typer.Option(..., help="Family to sample."),
    n_scms: int = typer.Option(10, min=1, help="Number of SCMs."),
    n_obs: int = typer.Option(0, min=0, help="Observational rows per SCM (0: the family's budget)."),
    seed: int = typer.Option(0, min=0, help="Seed (train stream: never collides with the benchmark's test stream)."),
    out: Path = typer.Option(..., help="Output .npz file."),
):
    """Sample SCMs and observational data from a family into one .npz file.

    Per SCM i: data_i (n x d), names_i, target_i (column of Y), adjacency_i (d x d, [j, k] = j -> k),
    low_i / high_i / intervenable_i (d: the problem posed, by the family's rules), y_star_i (min
    E[Y | do] within those domains) and e_obs_i (E[Y])."""
    import numpy as np

    from acbo.io import atomic_write
    from acbo.scm import get_family
    from acbo.seeding import generator

    fam = get_family(family)
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz, got {out}")
    arrays = {}
    for i in range(n_scms):
        g = generator("train", "simulate", family, seed, i)
        scm = fam.sample(g)
        x = scm.sample(n_obs or fam.draw_n_obs(g), g)[0]
        lo, hi, can = fam.domains(g, scm, x[None])
        arrays[f"data_{i}"] = x.numpy()
        arrays[f"low_{i}"], arrays[f"high_{i}"], arrays[f"intervenable_{i}"] = lo[0].numpy(), hi[0].numpy(), can[0].numpy()
        arrays[f"names_{i}"] = np.array(scm.names())
        arrays[f"target_{i}"] = np.array(int(scm.target[0]))
        arrays[f"adjacency_{i}"] = scm.adjacency[0].numpy()
        arrays[f"y_star_{i}"] = np.array(float(scm.optimum(lo, hi, can).value[0]))
        arrays[f"e_obs_{i}"] = np.array(float(scm.observational_mean()[0]))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda fh: np.savez_compressed(fh, **arrays))
    console.print(f"wrote {n_scms} SCMs of {family} to {out}")


@app.command(short_help="Record PARENT_SCALE demonstrations on a family's SCMs (resumable).")
@_friendly
def demos(
    family: str = typer.Option(..., help="Family the SCMs are drawn from (train stream)."),
    n_scms: int = typer.Option(..., min=1, help="Number of demonstrations."),
    out: Path = typer.Option(..., help="Output folder (shards; an interrupted run resumes here)."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    steps: int = typer.Option(20, min=1, help="Interventions per demonstration."),
    shard_size: int = typer.Option(16, min=1, help="SCMs per shard."),
    seed: int = typer.Option(0, min=0, help="Collection seed."),
    option: list[str] = typer.Option(None, help="parent_scale option key=value (repeatable), e.g. set_model=rff."),
):
    """Run the PARENT_SCALE expert on SCMs of a family and record demonstrations (resumable)."""
    from acbo.experts.demos import DemoConfig, collect_demos

    cfg = DemoConfig(family=family, n_scms=n_scms, steps=steps, shard_size=shard_size, seed=seed,
                     expert_options=_options(option, with_method=False))
    t0 = time.perf_counter()
    done = collect_demos(cfg, out, workers=workers, backend=backend, address=address or None)
    secs = time.perf_counter() - t0
    n_new = sum(min(shard_size, n_scms - k * shard_size) for k in done)
    per = f", {secs / n_new:.2f} s per SCM ({workers} workers)" if n_new else ""
    console.print(f"{len(done)} new shard(s) in {out} ({cfg.n_shards} in all){per}")


@app.command("eval-surrogate", short_help="Score the surrogate, the exact and the expert's posteriors on held-out buffers.")
@_friendly
def eval_surrogate(
    families: str = typer.Option("lin-er-20,nonlin-er-10", help="Comma-separated families (test stream)."),
    buffers: int = typer.Option(200, min=1, help="Buffers per family and interventional budget."),
    n_int: str = typer.Option("0,5,20", help="Interventional rows per buffer (comma-separated)."),
    n_obs: int = typer.Option(200, min=2, help="Observational rows per buffer."),
    checkpoint: Path = typer.Option(None, help="Surrogate checkpoint (default: the shipped one)."),
    expert: bool = typer.Option(True, help="Also score PARENT_SCALE's posterior (slow at large d)."),
    out: Path = typer.Option(None, help="Write the summary here as CSV."),
):
    """Score the surrogate, the exact posterior and the expert's posterior on the same held-out buffers."""
    import pandas as pd

    from acbo.surrogate import load_pretrained, load_surrogate
    from acbo.surrogate.evaluate import evaluate, summarise

    model = load_pretrained() if checkpoint is None else load_surrogate(checkpoint)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    combos = [(fam, int(k)) for fam in _split(families) for k in _split(n_int)]
    frames = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors) as bar:
        job = bar.add_task("eval-surrogate (family x interventions)", total=len(combos))
        for fam, k in combos:
            frames.append(summarise(evaluate(model, fam, buffers, n_obs, k, expert=expert)))
            bar.advance(job)
    table = pd.concat(frames)
    console.print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        table.to_csv(out, index=False)


@app.command(short_help="The family report: optima, parents, scales, random's and the oracle's regret.")
@_friendly
def families(
    names: str = typer.Option("test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded",
                              "--families", help="Comma-separated families (their test streams: the benchmark's problems)."),
    problems: int = typer.Option(50, min=1, help="Problems per family."),
    steps: int = typer.Option(10, min=1, help="T of random search's regret."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    backend: str = BACKEND_OPTION,
    address: str = ADDRESS_OPTION,
    out: Path = typer.Option(None, help="Also write the report (report.md) and the facts per problem (facts.csv) to this folder."),
):
    """The family report: where the optima lie, whether the best variable is a parent, scales, random's and the oracle's regret."""
    from acbo.bench.families import family_report, report_table
    from acbo.scm import get_family

    fams = list(_split(names))
    for f in fams:
        get_family(f)
    df = family_report(fams, problems, steps, workers, backend=backend, address=address or None)
    table = report_table(df, steps)
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "facts.csv", index=False)
        (out / "report.md").write_text(table)
        console.print(f"report and facts per problem in {out}/")


@app.command("list", short_help="Registered methods and families.")
def list_():
    """Registered methods and families (names in full: they are what you type)."""
    import acbo
    from acbo.scm import FAMILIES

    typer.echo("methods: " + ", ".join(sorted(acbo.METHODS)))
    rows = [("family", "world", "graph", "mechanism", "noise", "d", "n_obs")]
    for f in FAMILIES.values():
        n_obs = f.n_obs if isinstance(f.n_obs, int) else f"{f.n_obs[0]}-{f.n_obs[1]}"
        noise = f.noise if isinstance(f.noise, str) else "/".join(f.noise)
        rows.append((f.name, "classic" if f.classic else "broad", "/".join(f.graph), "/".join(dict.fromkeys(f.mechanism)),
                     noise, f"{f.d_range[0]}-{f.d_range[1]}", str(n_obs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


# ----------------------------------------------------------------------------- campaigns
def _campaign_io():
    from acbo import campaign as cp

    return cp


@campaign_app.command("init", short_help="Start a campaign: validate the data and write the state file.")
@_friendly
def campaign_init(
    data: Path = typer.Option(..., help="Observational data: a CSV with one column per variable."),
    target: str = typer.Option(..., help="The column to optimise (Y)."),
    state: Path = typer.Option(..., help="Where to keep the campaign (a new file)."),
    minimize: bool = typer.Option(True, "--minimize/--maximize", help="Drive the target down (default) or up."),
    domains: Path = typer.Option(None, help="Domains: JSON {name: [low, high]} or CSV with columns variable,low,high "
                                            "(default: each variable's observed range)."),
    intervenable: str = typer.Option(None, help="Comma-separated variables that may be set (default: all but the target)."),
    method: str = typer.Option("amortized", help="Method (see `acbo list`)."),
    budget: int = typer.Option(None, min=1, help="Number of experiments planned (the method plans for it)."),
    seed: int = typer.Option(0, min=0, help="Seed: the same seed and results give the same suggestions."),
    option: list[str] = typer.Option(None, help="Method option key=value (repeatable)."),
    max_set: int = typer.Option(None, min=1, help="Variables one experiment may set at once (default: the largest "
                                                  "exploration set, else 1)."),
    exploration_set: list[str] = typer.Option(None, help="Variables that may be set together, comma-separated "
                                                         "(repeatable; default: any set of at most --max-set)."),
    cost: list[str] = typer.Option(None, help="The cost of setting a variable, NAME=COST (repeatable or comma-separated; "
                                              "give every variable that may be set)."),
    move_cost: list[str] = typer.Option(None, help="A cost per unit a variable is moved from the last experiment's "
                                                   "value, NAME=COST (needs --cost)."),
    budget_cost: float = typer.Option(None, help="The budget in cost units (asks stop when it cannot pay for another "
                                                 "experiment; needs --cost)."),
):
    """Start a campaign: validate the data (every problem at once) and write the state file."""
    cp = _campaign_io()
    from acbo.optimizer import CausalOptimizer

    if state.exists():
        raise ValueError(f"{state} exists already: give a new --state (or delete the old campaign)")
    obs = cp.read_observations(data, target)
    doms = cp.read_domains(domains) if domains is not None else None
    opts = _options(option, with_method=False)
    if budget is not None and method == "amortized" and "horizon" not in opts:
        opts["horizon"] = budget
    can = list(_split(intervenable)) if intervenable else None
    sets = [list(_split(e)) for e in exploration_set] if exploration_set else None
    if not cost and (move_cost or budget_cost is not None):
        raise cp.CampaignError("--move-cost and --budget-cost need --cost (the cost of setting each variable that may "
                               "be set)")
    pairs = lambda given, flag: cp.parse_assignments(given, flag, f"{flag} value") if given else None
    opt = CausalOptimizer(obs, target=target, domains=doms, intervenable=can, method=method, minimize=minimize, seed=seed,
                          max_set=max_set, exploration_sets=sets, costs=pairs(cost, "--cost"),
                          move_costs=pairs(move_cost, "--move-cost"),
                          budget_cost=budget_cost, **opts)
    campaign = cp.Campaign(opt, budget, [opt.posterior().marginals.double().tolist()],
                           [{"event": "init", "time": cp._now(), "data": str(data), "rows": len(obs)}], str(data))
    state.parent.mkdir(parents=True, exist_ok=True)
    with cp.locked(state):
        campaign.save(state)
    settable = [n for n, m in zip(opt.names, opt.problem.intervenable.tolist()) if m]
    console.print(f"campaign started in {state}: {len(obs)} observations of {len(opt.names)} variables, target "
                  f"{target} ({'minimise' if minimize else 'maximise'}), method {method}, settable: {', '.join(settable)}"
                  + (f", up to {opt.problem.max_set} at once" if opt.problem.max_set > 1 else "")
                  + (f", budget {budget_cost:g} in cost units" if budget_cost else "")
                  + (f", budget {budget}" if budget else ""))
    console.print(f"next: acbo campaign ask --state {state}")


def _print_experiments(ivs: list, fmt: str, names: tuple[str, ...], batch: bool, again: int,
                       prices: tuple[float, ...] | None = None) -> None:
    """The experiments to run: json (an object, or a list for a batch), csv (one row per
    experiment, a column per variable set in any, empty where not set) or a table (with
    ``prices``, what each will be charged)."""
    if fmt == "json":
        typer.echo(json.dumps([dict(iv) for iv in ivs] if batch else dict(ivs[0])))
    elif fmt == "csv":
        cols = [n for n in names if any(n in iv for iv in ivs)]
        typer.echo(",".join(cols))
        for iv in ivs:
            typer.echo(",".join(repr(iv[n]) if n in iv else "" for n in cols))
    else:
        for k, iv in enumerate(ivs):
            what = "still pending (no result told yet)" if k < again else "next experiment"
            console.print((f"{k + 1}. " if batch else "") + f"{what}: " + ", ".join(f"set {n} = {v:.6g}" for n, v in iv.items())
                          + _price(prices, k))


@campaign_app.command("ask", short_help="The next experiment(s) (kept as pending until told).")
@_friendly
def campaign_ask(
    state: Path = typer.Option(..., help="The campaign's state file."),
    n: int = typer.Option(None, "--n", help="A batch: this many experiments to run at once (the pending ones "
                                            "topped up; tell their results in any order)."),
    format: str = typer.Option("table", help="Output: table, json or csv."),
):
    """The next experiment, or with --n a batch of experiments to run at once (recorded as pending;
    asking again returns the same ones)."""
    if format not in ("table", "json", "csv"):
        raise ValueError(f"--format must be table, json or csv, got {format!r}")
    cp = _campaign_io()
    with cp.locked(state):
        campaign = cp.Campaign.load(state)
        before = len(campaign.optimizer.pending_experiments)
        out = campaign.ask(n)
        ivs = out if n is not None else [out]
        if len(campaign.optimizer.pending_experiments) != before:
            campaign.save(state)
    prices = campaign.optimizer.pending_costs
    _print_experiments(ivs, format, campaign.optimizer.names, n is not None, min(before, len(ivs)),
                       None if prices is None else prices[:len(ivs)])
    if format == "table":
        rows = "one row per experiment" if n is not None else "one row"
        console.print(f"then: acbo campaign tell --state {state} --result measured.csv "
                      f"({rows}, with every variable: {', '.join(campaign.optimizer.names)})")


@campaign_app.command("tell", short_help="Record measurements of pending experiments or of one you chose.")
@_friendly
def campaign_tell(
    state: Path = typer.Option(..., help="The campaign's state file."),
    result: Path = typer.Option(..., help="CSV: one row per experiment with every variable as measured (a batch's "
                                          "results in any order)."),
    intervention: str = typer.Option(None, help="An experiment you chose yourself, e.g. \"X3=4.2\" (a one-row "
                                                "result; default: the pending experiment each row answers)."),
    accept_outlier: bool = typer.Option(False, "--accept-outlier",
                                        help="Record a value far outside anything seen (refused otherwise as a likely error)."),
):
    """Record measurements: each row under the pending experiment whose settings it holds, or one
    row under --intervention. A file with a row that cannot be recorded changes nothing."""
    cp = _campaign_io()
    iv = cp.parse_intervention(intervention) if intervention else None
    with cp.changing(state) as campaign:
        rows = cp.read_results(result, campaign.optimizer.names)
        if iv is not None and len(rows) != 1:
            raise cp.CampaignError(f"--intervention records one experiment, but {result} holds {len(rows)} rows")
        pending = len(campaign.optimizer.pending_experiments)
        if iv is None and len(rows) > max(pending, 1):
            raise cp.CampaignError(f"{result} holds {len(rows)} rows but {pending} experiment(s) are pending (nothing "
                                   "was recorded): one row per pending experiment; one of your own: --intervention")
        told = []
        for k, row in enumerate(rows, 2):
            try:
                told.append(campaign.tell(row, iv, accept_outlier))
            except cp.CampaignError as e:
                where = f"line {k} of {result} (nothing was recorded)" if len(rows) > 1 else ""
                opt = campaign.optimizer
                same = [j for j, done in enumerate(told, 2) if opt.holds(done, row)]
                if same and not any(opt.holds(q, row) for q in opt.pending_experiments):
                    e = cp.CampaignError(f"it answers the same experiment as line {same[0]} ({told[same[0] - 2]}), "
                                         "told once already")
                raise cp.CampaignError(f"{where}: {e}" if where else str(e)) from None
    opt = campaign.optimizer
    first = campaign.done - len(rows) + 1
    for k, (row, done) in enumerate(zip(rows, told)):
        console.print(f"recorded experiment {first + k}: {done} -> {opt.target} = {row[opt.target]:.6g}")
    best_iv, best_y = opt.best
    left = len(opt.pending_experiments)
    console.print(f"best measured so far {best_y:.6g} at {best_iv}" + (f"; {left} still pending" if left else "")
                  + (f" ({campaign.budget - campaign.done} left)" if campaign.budget else ""))
    for c in opt.clamped:
        if c.where in {f"experiment {first + k}" for k in range(len(rows))}:
            console.print(f"note: the models see {c.variable} = {c.used:.6g} (clamped; measured {c.value:.6g}); if "
                          f"it was an error: acbo campaign drop --state {state} --row {c.where.split()[-1]}")


@campaign_app.command("withdraw", short_help="Take back pending experiments that will not be run.")
@_friendly
def campaign_withdraw(
    state: Path = typer.Option(..., help="The campaign's state file."),
    intervention: str = typer.Option(None, help="The pending experiment to take back, e.g. \"X3=4.2\" (default: all)."),
):
    """Take back pending experiments (one, or all): nothing is recorded; the next ask chooses afresh."""
    cp = _campaign_io()
    iv = cp.parse_intervention(intervention) if intervention else None
    with cp.changing(state) as campaign:
        out = campaign.withdraw(iv)
    console.print("withdrawn: " + "; ".join(map(str, out)) + f" ({len(campaign.optimizer.pending_experiments)} still pending)")


@campaign_app.command("drop", short_help="Take an experiment out of what the models see (--undo: back in).")
@_friendly
def campaign_drop(
    state: Path = typer.Option(..., help="The campaign's state file."),
    row: int = typer.Option(..., help="The experiment's number (the step in `acbo campaign status`)."),
    undo: bool = typer.Option(False, "--undo", help="Bring a dropped experiment back."),
):
    """Drop a recorded experiment from what the models see (kept in the history, marked; --undo reverses it)."""
    cp = _campaign_io()
    with cp.changing(state) as campaign:
        campaign.drop(row, undo)
    console.print(f"experiment {row} {'is back' if undo else 'dropped'}: the models now see the observations and "
                  f"{sum(not r.dropped for r in campaign.optimizer.history)} of {campaign.done} experiments (a "
                  "dropped experiment still counts towards the budget)")


@campaign_app.command("extend", short_help="Raise the campaign's budget of experiments, or in cost units.")
@_friendly
def campaign_extend(
    state: Path = typer.Option(..., help="The campaign's state file."),
    budget: int = typer.Option(None, help="The new budget: the total number of experiments planned."),
    budget_cost: float = typer.Option(None, help="The new budget in cost units: the total (a campaign with --cost and "
                                                 "--budget-cost)."),
):
    """Raise the campaign's budget of experiments (--budget), or its budget in cost units (--budget-cost)."""
    cp = _campaign_io()
    if budget is None and budget_cost is None:
        raise cp.CampaignError("extend needs --budget (experiments) or --budget-cost (cost units)")
    with cp.changing(state) as campaign:
        if budget_cost is not None:
            campaign.extend_cost(budget_cost)
        if budget is not None:
            campaign.extend(budget)
    opt = campaign.optimizer
    if budget is not None:
        console.print(f"budget {budget}: {budget - campaign.done} experiment(s) left")
    if budget_cost is not None:
        console.print(f"budget {opt.budget_cost:g} in cost units: {opt.budget_cost - opt.spent:.6g} not spent"
                      + _committed(opt.pending_costs))


def _price(prices: tuple[float, ...] | None, k: int) -> str:
    """" (costs C)" for experiment k of a batch with prices, else ""."""
    return f" (costs {prices[k]:.6g})" if prices is not None else ""


def _committed(prices: tuple[float, ...] | None) -> str:
    """"; C committed to the n pending" where experiments with prices are pending, else ""."""
    return f"; {sum(prices):.6g} committed to the {len(prices)} pending" if prices else ""


@campaign_app.command("status", short_help="History, recommendation, parent sets, predicted best per variable.")
@_friendly
def campaign_status(
    state: Path = typer.Option(..., help="The campaign's state file."),
    plot: Path = typer.Option(None, help="Also draw the campaign to this PNG file."),
):
    """History, the recommendation (and the best single measurement), most probable parent sets and the
    predicted best per variable."""
    cp = _campaign_io()
    campaign = cp.Campaign.load(state)
    opt = campaign.optimizer
    if plot is not None and plot.suffix.lower() != ".png":
        raise ValueError(f"--plot must be a .png file, got {plot}")
    hist = campaign.history_frame()
    console.print(f"campaign {state}: method {opt.method_name}, {campaign.done} experiment(s)"
                  + (f" of {campaign.budget}" if campaign.budget else "") + f", target {opt.target} "
                  f"({'minimise' if opt.problem.minimize else 'maximise'})")
    if len(hist):
        paid = opt.costs is not None
        table = Table("step", "set", opt.target, "best so far", *(("cost", "spent") if paid else ()))
        for r in hist.itertuples(index=False):
            table.add_row(str(r.step), r.set + (" (dropped)" if r.dropped else ""), f"{getattr(r, opt.target):.6g}",
                          f"{r.best_so_far:.6g}", *((f"{r.cost:.6g}", f"{r.spent:.6g}") if paid else ()))
        console.print(table)
        if opt.best is not None:
            best_iv, best_y = opt.best
            console.print(f"best single measurement: {best_iv} measured {opt.target} = {best_y:.6g} (one reading: "
                          "see the recommendation)")
        _print_recommendation(campaign.recommendation_frame(), opt.target)
    for c in opt.clamped:
        console.print(f"clamped for the models: {c.where}, {c.variable} = {c.value:.6g} seen as {c.used:.6g}")
    prices = opt.pending_costs
    for k, iv in enumerate(opt.pending_experiments, 1):
        console.print(f"pending {k}: " + ", ".join(f"{n} = {v:.6g}" for n, v in iv.items())
                      + _price(prices, k - 1))
    if opt.costs is not None:
        console.print(f"spent {opt.spent:.6g}" + (f" of the budget of {opt.budget_cost:.6g}" if opt.budget_cost else "")
                      + " (cost units)" + _committed(prices))
    console.print(f"most probable parent sets of {opt.target}:")
    for names, p in opt.posterior().top(3):
        console.print(f"  P({{{', '.join(names)}}}) = {p:.3f}")
    bel = cp.beliefs(campaign)
    if bel is None:
        console.print(f"(method {opt.method_name} has no model of the response: no predictions)")
    else:
        console.print(f"predicted best setting per variable (E[{opt.target} | do] with its 90 % interval):")
        for r in bel.itertuples(index=False):
            console.print(f"  {r.variable} = {r[1]:.4g}: {r[2]:.4g} [{r.q05:.4g}, {r.q95:.4g}]")
    if plot is not None:
        cp.status_figure(campaign, plot)
        console.print(f"figure written to {plot}")


@campaign_app.command("export", short_help="Write the history and the recommendation as CSV.")
@_friendly
def campaign_export(
    state: Path = typer.Option(..., help="The campaign's state file."),
    out: Path = typer.Option(..., help="CSV to write: one row per experiment (the recommendation beside it)."),
):
    """Write the history (what was set, every measurement, dropped or not, best so far) as CSV, and the
    recommendation to <out>_recommendation.csv."""
    cp = _campaign_io()
    campaign = cp.Campaign.load(state)
    out.parent.mkdir(parents=True, exist_ok=True)
    campaign.history_frame().to_csv(out, index=False)
    rec = out.with_name(f"{out.stem}_recommendation.csv")
    campaign.recommendation_frame().to_csv(rec, index=False)
    console.print(f"{campaign.done} experiment(s) written to {out}, the recommendation to {rec}")


def _print_recommendation(rec, target: str) -> None:
    """The recommendation table of a campaign, in words."""
    for r in rec.itertuples(index=False):
        if r.by_model:
            console.print(f"{r.recommendation}: {r.set}: predicted E[{target} | do] {r.predicted_mean:.4g} "
                          f"[{r.q05:.4g}, {r.q95:.4g}] (90 %), {r.measurements} measurement(s) there")
        else:
            console.print(f"{r.recommendation}: {r.set}: measured mean {r.measured_mean:.4g} over {r.measurements} "
                          "measurement(s) (the method has no model of the response)")
