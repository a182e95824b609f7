"""Each subcommand with a tiny budget."""

import json

import numpy as np
from typer.testing import CliRunner

from acbo.cli import app

runner = CliRunner()


def test_run_shows_the_demo_by_default(tmp_path):
    res = runner.invoke(app, ["run", "--steps", "2", "--plot", str(tmp_path / "new" / "r.png")])
    assert res.exit_code == 0, res.output
    out = res.output.replace("\n", " ")
    assert "best single setting: temperature" in out and "parent_scale" in out and "acbo campaign init" in out
    assert "best of at most two set together: temperature" in out and ", pH = 7.3" in out
    assert (tmp_path / "new" / "r.png").stat().st_size > 0  # a missing folder is made, before any work
    res = runner.invoke(app, ["run", "--steps", "1", "--max-set", "1", "--method", "random", "--plot", str(tmp_path / "r1.png")])
    assert res.exit_code == 0 and "best of at most two" not in res.output, res.output
    res = runner.invoke(app, ["run", "--steps", "1", "--method", "surrogate-ei", "--plot", str(tmp_path / "r2.png")])
    assert res.exit_code == 0 and "best of at most two" not in res.output, res.output  # a one-variable method: one
    res = runner.invoke(app, ["run", "--family", "lin-er-10", "--max-set", "2", "--plot", str(tmp_path / "r3.png")])
    assert res.exit_code == 2 and "--max-set is for the bioreactor demo" in res.output, res.output


def test_run_on_a_family_streams_its_steps(tmp_path):
    res = runner.invoke(app, ["run", "--family", "lin-er-10", "--method", "random", "--steps", "2", "--plot",
                              str(tmp_path / "r.png")])
    assert res.exit_code == 0, res.output
    assert "best experiment" in res.output and res.output.count("\n   1  X") + res.output.count("\n   2  X") == 2
    res = runner.invoke(app, ["run", "--plot", str(tmp_path / "r.txt")])
    assert res.exit_code == 2 and "must be a .png" in res.output


def test_bench(tmp_path):
    res = runner.invoke(app, ["bench", "--methods", "random,oracle", "--families", "small-mixed", "--seeds", "2",
                              "--steps", "2", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(l) for l in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 3  # methods x seeds x (steps + 1)
    assert {"regret", "e_y", "auprc", "time_s"} <= set(rows[0])
    assert (tmp_path / "regret.png").exists() and "oracle" in (tmp_path / "summary.md").read_text()


def test_simulate(tmp_path):
    out = tmp_path / "s.npz"
    res = runner.invoke(app, ["simulate", "--family", "small-mixed", "--n-scms", "2", "--n-obs", "30", "--out", str(out)])
    assert res.exit_code == 0, res.output
    z = np.load(out)
    assert z["data_1"].shape[0] == 30 and z["adjacency_0"].shape[0] == z["data_0"].shape[1]


def test_list_and_errors():
    assert "exact-ts" in runner.invoke(app, ["list"]).output
    res = runner.invoke(app, ["run", "--family", "nope"])
    assert res.exit_code == 2 and "unknown family" in res.output
    res = runner.invoke(app, ["bench", "--methods", "nope"])
    assert res.exit_code == 2 and "unknown method" in res.output


def test_demos_and_method_options(tmp_path):
    res = runner.invoke(app, ["demos", "--family", "small-mixed", "--n-scms", "2", "--shard-size", "1", "--steps", "2",
                              "--workers", "1", "--out", str(tmp_path / "d"), "--option", "dr_regressor=ridge"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "d").glob("shard_*.json"))) == 2
    res = runner.invoke(app, ["run", "--method", "parent_scale", "--steps", "1", "--option", "set_model=nope",
                              "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 2 and "set posterior model" in res.output
    res = runner.invoke(app, ["bench", "--option", "noequals"])
    assert res.exit_code == 2 and "key=value" in res.output


def test_a_command_shows_warnings_as_lines_and_any_other_warning_as_python_does():
    """A user's warning (UserWarning) inside a command becomes one line "warning: ..." on stderr;
    any other warning (numpy's, here) is shown as Python shows it, once, and the command ends (a
    warning shown while warnings were being recorded was recorded again: the command never ended)."""
    import subprocess
    import sys

    code = ("import warnings, numpy as np\n"
            "from acbo.cli import _friendly\n"
            "@_friendly\n"
            "def f():\n"
            "    warnings.warn('a thing for the user', UserWarning)\n"
            "    np.mean([])\n"
            "    return 3\n"
            "print(f())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "3", out
    assert "warning: a thing for the user" in out.stderr and out.stderr.count("RuntimeWarning: Mean of empty slice") == 1
