"""The ``acbo`` command line: run, bench, simulate, list."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Amortized causal Bayesian optimization.")
console = Console()


def _friendly(fn):
    """Turn a ValueError (bad input) into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2) from None

    return wrapper


def _split(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _value(text: str):
    """An option value from the command line: int, float, true/false, or the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _options(items: list[str], with_method: bool) -> dict:
    """Parse repeated ``--option [method.]key=value`` into {method: {key: value}} or {key: value}."""
    out: dict = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option takes {'method.' if with_method else ''}key=value, got {item!r}")
        if with_method:
            method, dot, opt = key.partition(".")
            if not dot or not opt:
                raise ValueError(f"--option takes method.key=value, got {item!r}")
            out.setdefault(method, {})[opt] = _value(val)
        else:
            out[key] = _value(val)
    return out


@app.command()
@_friendly
def run(
    family: str = typer.Option("lin-er-10", help="Built-in problem family (see `acbo list`)."),
    method: str = typer.Option("amortized", help="Method (see `acbo list`)."),
    steps: int = typer.Option(20, min=1, help="Number of interventions."),
    seed: int = typer.Option(0, min=0, help="Problem and method seed."),
    plot: Path = typer.Option(Path("acbo_run.png"), help="Where to write the regret plot."),
    option: list[str] = typer.Option(None, help="Method option key=value (repeatable), e.g. set_model=rff."),
):
    """Optimise one built-in problem with one method: trajectory, posterior, best intervention."""
    from acbo.bench.runner import make_problem, run_method
    from acbo.method import get_method

    get_method(method)
    problem = make_problem(family, seed)
    console.print(f"[bold]{family}[/] seed {seed}: d = {problem.scm.d} ({problem.scm.mechanism}), "
                  f"{len(problem.frame)} observational rows, target Y, method [bold]{method}[/]")
    rows, opt = run_method(problem, method, steps, _options(option, with_method=False))
    table = Table("step", "do", "Y", "E[Y|do]", "best", "regret", "ms")
    for r in rows[1:]:
        table.add_row(str(r["step"]), f"{r['variable']}={r['value']:.3f}", f"{r['y']:.3f}", f"{r['e_y']:.3f}",
                      f"{r['best_e']:.3f}", f"{r['regret']:.3f}", f"{1000 * r['time_s']:.1f}")
    console.print(table)
    post = opt.posterior()
    truth = tuple(n for n, t in zip(problem.names, problem.truth.tolist()) if t)
    console.print(f"posterior over pa(Y) (true parents: {', '.join(truth)}):")
    for names, p in post.top(5):
        console.print(f"  P({{{', '.join(names)}}}) = {p:.3f}")
    iv, y = opt.best
    console.print(f"best experiment: {iv} measured Y = {y:.3f}; E[Y] observational {problem.e_obs:.3f}, "
                  f"optimum y* = {problem.y_star:.3f}, final regret {rows[-1]['regret']:.3f}")
    import pandas as pd

    from acbo.bench.report import plot_regret

    plot_regret(pd.DataFrame(rows), plot)
    console.print(f"plot written to {plot}")


@app.command()
@_friendly
def bench(
    methods: str = typer.Option("random,exact-ts,oracle", help="Comma-separated method names."),
    families: str = typer.Option("lin-er-10,lin-er-20,nonlin-er-10", help="Comma-separated family names."),
    seeds: int = typer.Option(30, min=1, help="Problems (SCMs) per family."),
    first_seed: int = typer.Option(0, min=0, help="First seed."),
    steps: int = typer.Option(20, min=1, help="Interventions per run (T)."),
    n_obs: int = typer.Option(0, min=0, help="Observational rows (0: the family's budget)."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    out: Path = typer.Option(Path("runs/bench"), help="Output folder (results.jsonl, summary.md, regret.png)."),
    option: list[str] = typer.Option(None, help="Method option method.key=value (repeatable), "
                                                "e.g. parent_scale.dr_regressor=mlp."),
):
    """Benchmark methods x families x seeds; writes JSONL, a summary table and a plot."""
    from acbo.bench.runner import BenchConfig, run_bench
    from acbo.bench.report import summary_table

    cfg = BenchConfig(methods=_split(methods), families=_split(families), n_seeds=seeds, first_seed=first_seed,
                      steps=steps, n_obs=n_obs or None, workers=workers, method_options=_options(option, with_method=True))
    df = run_bench(cfg, out=out)
    console.print(summary_table(df))
    console.print(f"results in {out}/")


@app.command()
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
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    console.print(f"wrote {n_scms} SCMs of {family} to {out}")


@app.command()
@_friendly
def demos(
    family: str = typer.Option(..., help="Family the SCMs are drawn from (train stream)."),
    n_scms: int = typer.Option(..., min=1, help="Number of demonstrations."),
    out: Path = typer.Option(..., help="Output folder (shards; an interrupted run resumes here)."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
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
    done = collect_demos(cfg, out, workers=workers)
    secs = time.perf_counter() - t0
    n_new = sum(min(shard_size, n_scms - k * shard_size) for k in done)
    per = f", {secs / n_new:.2f} s per SCM ({workers} workers)" if n_new else ""
    console.print(f"{len(done)} new shard(s) in {out} ({cfg.n_shards} in all){per}")


@app.command("eval-surrogate")
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
    frames = [summarise(evaluate(model, fam, buffers, n_obs, k, expert=expert))
              for fam in _split(families) for k in (int(x) for x in _split(n_int))]
    table = pd.concat(frames)
    console.print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        table.to_csv(out, index=False)


@app.command()
@_friendly
def families(
    names: str = typer.Option("test-broad,test-interactions,test-heavy-tail,test-wide-domains,test-confounded",
                              "--families", help="Comma-separated families (their test streams: the benchmark's problems)."),
    problems: int = typer.Option(50, min=1, help="Problems per family."),
    steps: int = typer.Option(10, min=1, help="T of random search's regret."),
    workers: int = typer.Option(2, min=1, help="Worker processes."),
    out: Path = typer.Option(None, help="Also write the report (report.md) and the facts per problem (facts.csv) to this folder."),
):
    """The family report: where the optima lie, whether the best variable is a parent, scales, random's and the oracle's regret."""
    from acbo.bench.families import family_report, report_table
    from acbo.scm import get_family

    fams = list(_split(names))
    for f in fams:
        get_family(f)
    df = family_report(fams, problems, steps, workers)
    table = report_table(df, steps)
    typer.echo(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "facts.csv", index=False)
        (out / "report.md").write_text(table)
        console.print(f"report and facts per problem in {out}/")


@app.command("list")
def list_():
    """Registered methods and families."""
    import acbo
    from acbo.scm import FAMILIES

    console.print("methods: " + ", ".join(sorted(acbo.METHODS)))
    table = Table("family", "world", "graph", "mechanism", "noise", "d", "n_obs")
    for f in FAMILIES.values():
        n_obs = f.n_obs if isinstance(f.n_obs, int) else f"{f.n_obs[0]}-{f.n_obs[1]}"
        noise = f.noise if isinstance(f.noise, str) else "/".join(f.noise)
        table.add_row(f.name, "classic" if f.classic else "broad", "/".join(f.graph), "/".join(dict.fromkeys(f.mechanism)),
                      noise, f"{f.d_range[0]}-{f.d_range[1]}", str(n_obs))
    console.print(table)


def main() -> None:  # pragma: no cover
    sys.exit(app())
