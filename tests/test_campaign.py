"""acbo campaign, driven through the real command-line entry point on small CSVs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import cli, cli_fails, cli_ok

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bioreactor"
_ok, _fails = cli_ok, cli_fails


def _lab(iv: dict, seed: int, out: Path) -> Path:
    spec = ", ".join(f"{k}={v!r}" for k, v in iv.items())
    subprocess.run([sys.executable, str(EXAMPLE / "lab.py"), "--set", spec, "--seed", str(seed), "--out", str(out)],
                   check=True)
    return out


@pytest.fixture
def data(tmp_path):
    obs = tmp_path / "obs.csv"
    pd.DataFrame({"A": np.linspace(0, 1, 30), "B": np.sin(np.arange(30.0)), "Y": np.cos(np.arange(30.0))}).to_csv(obs, index=False)
    return obs


def _init(tmp_path, data, *extra):
    state = tmp_path / "run.acbo"
    _ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", state, *extra))
    return state


def test_a_campaign_through_every_command(tmp_path, data):
    state = _init(tmp_path, data, "--budget", "3")
    first = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    again = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    assert first == again and set(first) <= {"A", "B"}                                  # pending: the same one
    assert "still pending" in _ok(cli("campaign", "ask", "--state", state))
    (name, v), = first.items()
    row = {"A": 0.5, "B": 0.1, "Y": 0.3, name: v}
    pd.DataFrame([row]).to_csv(tmp_path / "m.csv", index=False)
    assert "recorded experiment 1" in _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"))
    _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"), "no experiment is pending")
    own = {"A": 0.9, "B": 0.2, "Y": -1.0}
    pd.DataFrame([own]).to_csv(tmp_path / "own.csv", index=False)
    _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "own.csv", "--intervention", "A=0.9"))
    out = _ok(cli("campaign", "status", "--state", state, "--plot", tmp_path / "figs" / "status.png"))
    assert "best single measurement: do(A=0.9) measured Y = -1" in out and (tmp_path / "figs" / "status.png").stat().st_size > 0
    assert "no model of the response" in out                                           # random
    _ok(cli("campaign", "export", "--state", state, "--out", tmp_path / "h.csv"))
    hist = pd.read_csv(tmp_path / "h.csv")
    assert list(hist["step"]) == [1, 2] and hist["best_so_far"].iloc[-1] == -1.0 and list(hist.columns)[2:5] == ["A", "B", "Y"]
    _ok(cli("campaign", "ask", "--state", state))
    pd.DataFrame([{**own, "A": 0.1}]).to_csv(tmp_path / "third.csv", index=False)
    _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "third.csv", "--intervention", "A=0.1"))
    _fails(cli("campaign", "ask", "--state", state), "budget of 3 experiments is spent")


def test_bad_data_are_reported_all_at_once_with_columns_and_rows(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("A,B,C,Y\n1,x,5,1\n2,2,5,nan\n3,3,5,inf\n")
    out = _fails(cli("campaign", "init", "--data", bad, "--target", "Y", "--state", tmp_path / "s"), "column 'B'")
    assert "rows [2]" in out and "column 'Y'" in out and "rows [3, 4]" in out
    good = tmp_path / "g.csv"
    good.write_text("A,C,Y\n1,5,1\n2,5,2\n3,5,4\n")
    _fails(cli("campaign", "init", "--data", good, "--target", "Y", "--state", tmp_path / "s"), "constant columns ['C']")
    _fails(cli("campaign", "init", "--data", good, "--target", "Z", "--state", tmp_path / "s"), "no column named 'Z'")
    (tmp_path / "dup.csv").write_text("A,A,Y\n1,2,3\n4,5,6\n")
    _fails(cli("campaign", "init", "--data", tmp_path / "dup.csv", "--target", "Y", "--state", tmp_path / "s"),
           "duplicate column names ['A']")
    (tmp_path / "one.csv").write_text("A,Y\n1,2\n")
    _fails(cli("campaign", "init", "--data", tmp_path / "one.csv", "--target", "Y", "--state", tmp_path / "s"), "at least 2 rows")
    _fails(cli("campaign", "init", "--data", tmp_path / "nope.csv", "--target", "Y", "--state", tmp_path / "s"), "does not exist")
    (tmp_path / "empty.csv").write_text("")
    _fails(cli("campaign", "init", "--data", tmp_path / "empty.csv", "--target", "Y", "--state", tmp_path / "s"), "is empty")
    assert not (tmp_path / "s").exists()


def test_bad_domains_options_and_an_existing_state(tmp_path, data):
    d1 = tmp_path / "d.json"
    d1.write_text('{"A": [1, 0]}')
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--domains", d1, "--state", tmp_path / "s"),
           "needs finite low < high")
    d2 = tmp_path / "d.csv"
    d2.write_text("variable,low,high\nA,0,zz\n")
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--domains", d2, "--state", tmp_path / "s"), "column 'high'")
    d3 = tmp_path / "ok.csv"
    d3.write_text("variable,low,high\nA,-5,5\nQ,0,1\n")
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--domains", d3, "--state", tmp_path / "s"),
           "unknown variable 'Q'")
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--option", "foo=1",
               "--state", tmp_path / "s"), "takes no option(s) ['foo']")
    state = _init(tmp_path, data)
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--state", state), "exists already")


@pytest.mark.parametrize("content,message", [
    ("A,B\n0.5,0.1\n", "missing columns ['Y']"),
    ("A,B,Y,Z\n0.5,0.1,1,2\n", "unknown columns ['Z']"),
    ("A,B,Y\n0.5,0.1,x\n", "column 'Y'"),
    ("A,B,Y\n0.5,0.1,nan\n", "not a finite number"),
    ("A,B,Y\n0.5,0.1,inf\n", "not a finite number"),
    ("A,B,Y\n0.5,0.1,1\n0.5,0.2,2\n", "holds 2 rows but 1 experiment(s) are pending"),  # two rows, one pending
    ("A,B,Y\nSET,0.1,1\n", "column 'A'"),
])
def test_a_bad_result_changes_nothing(tmp_path, data, content, message):
    state = _init(tmp_path, data)
    iv = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    (name, v), = iv.items()
    content = content.replace("SET", "x")
    (tmp_path / "r.csv").write_text(content)
    before = state.read_bytes()
    _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "r.csv"), message)
    assert state.read_bytes() == before


def test_a_result_measured_at_another_value_than_set_is_refused(tmp_path, data):
    state = _init(tmp_path, data)
    iv = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    (name, v), = iv.items()
    pd.DataFrame([{"A": 0.5, "B": 0.1, "Y": 1.0, name: v + 0.25}]).to_csv(tmp_path / "r.csv", index=False)
    before = state.read_bytes()
    _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "r.csv"), "but the intervention set")
    _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "r.csv", "--intervention", "A=99"),
           "outside its domain")
    _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "r.csv", "--intervention", "A:1"), "NAME=VALUE")
    assert state.read_bytes() == before


def test_corrupt_truncated_and_foreign_state_files_are_refused(tmp_path, data):
    state = _init(tmp_path, data)
    raw = state.read_bytes()
    cases = {"truncated": raw[:-10], "corrupted": raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:], "not an acbo": b"hello\n",
             "header is damaged": raw[:14] + b"{not json\n" + raw[raw.index(b"\n", 14) + 1:]}
    for message, content in cases.items():
        bad = tmp_path / f"{message.split()[0]}.acbo"
        bad.write_bytes(content)
        _fails(cli("campaign", "status", "--state", bad), message)
    _fails(cli("campaign", "ask", "--state", tmp_path / "missing.acbo"), "no campaign state")


@pytest.mark.parametrize("step", ["write", "fsync", "rename"])
def test_a_crash_at_any_step_of_the_write_keeps_the_previous_state(tmp_path, data, step):
    from acbo.campaign import Campaign

    state = _init(tmp_path, data)
    before = state.read_bytes()
    campaign = Campaign.load(state)
    campaign.ask()
    with pytest.raises(OSError, match="simulated crash"):
        campaign.save(state, crash_at=step)
    assert state.read_bytes() == before                                                  # still the previous state
    _ok(cli("campaign", "status", "--state", state))
    iv = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))   # the campaign goes on
    (name, v), = iv.items()
    pd.DataFrame([{"A": 0.5, "B": 0.1, "Y": 0.3, name: v}]).to_csv(tmp_path / "m.csv", index=False)
    _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"))


def test_concurrent_commands_cannot_both_apply(tmp_path, data):
    from acbo.campaign import locked

    state = _init(tmp_path, data)
    iv = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    (name, v), = iv.items()
    pd.DataFrame([{"A": 0.5, "B": 0.1, "Y": 0.3, name: v}]).to_csv(tmp_path / "m.csv", index=False)
    before = state.read_bytes()
    with locked(state):  # another shell is in the middle of a tell
        _fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"), "being changed by another")
    assert state.read_bytes() == before
    _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"))


def test_the_example_through_the_cli_follows_the_python_api(tmp_path):
    """Ten experiments on examples/bioreactor, results from its lab script: the command line and
    the Python API with the same seed ask exactly the same things."""
    from acbo import CausalOptimizer
    from acbo.campaign import read_domains

    state = tmp_path / "bio.acbo"
    _ok(cli("campaign", "init", "--data", EXAMPLE / "observational.csv", "--target", "titer", "--maximize",
            "--domains", EXAMPLE / "domains.json", "--intervenable", "temperature,pH,feed_rate", "--budget", "10",
            "--seed", "3", "--state", state))
    via_cli = []
    for t in range(10):
        iv = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
        via_cli.append(iv)
        _ok(cli("campaign", "tell", "--state", state, "--result", _lab(iv, t, tmp_path / f"m{t}.csv")))
    opt = CausalOptimizer(pd.read_csv(EXAMPLE / "observational.csv"), target="titer", minimize=False, seed=3,
                          domains=read_domains(EXAMPLE / "domains.json"), intervenable=["temperature", "pH", "feed_rate"],
                          horizon=10)
    for t in range(10):
        iv = opt.ask()
        assert dict(iv) == via_cli[t], t
        opt.tell(iv, pd.read_csv(_lab(dict(iv), t, tmp_path / f"p{t}.csv")))


def test_a_campaign_that_sets_two_variables_at_once(tmp_path, data):
    """--exploration-set A,B: every ask sets both (max_set follows the set), a tell of the pair is
    recorded, status and export show it, and a set the campaign may not set is refused at init."""
    state = _init(tmp_path, data, "--exploration-set", "A,B")
    asked = json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    assert set(asked) == {"A", "B"}
    csv = _ok(cli("campaign", "ask", "--state", state, "--format", "csv")).splitlines()
    assert csv[0] == "A,B"
    pd.DataFrame([{**asked, "Y": 0.25}]).to_csv(tmp_path / "m.csv", index=False)
    assert "recorded experiment 1" in _ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "m.csv"))
    _ok(cli("campaign", "export", "--state", state, "--out", tmp_path / "h.csv"))
    assert pd.read_csv(tmp_path / "h.csv")["set"].iloc[0].startswith("A=")
    assert "do(A=" in _ok(cli("campaign", "status", "--state", state, "--plot", tmp_path / "s.png"))
    assert set(json.loads(_ok(cli("campaign", "ask", "--state", state, "--format", "json")))) == {"A", "B"}
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", tmp_path / "x",
               "--exploration-set", "A,Y"), "may not be set")
    _fails(cli("campaign", "init", "--data", data, "--target", "Y", "--state", tmp_path / "y", "--max-set", "2",
               "--method", "surrogate-ei"), "sets one variable per experiment")
    _ok(cli("campaign", "init", "--data", data, "--target", "Y", "--state", tmp_path / "z", "--max-set", "2"))
    assert 1 <= len(json.loads(_ok(cli("campaign", "ask", "--state", tmp_path / "z", "--format", "json")))) <= 2
