"""Campaigns that survive what users do: one decision thread, a bad number that cannot break the
models, dropping an experiment and bringing it back, spreadsheets' CSVs, a recommendation that is not
the luckiest reading, file permissions, the budget, and the smaller rough edges (issue 27)."""

import hashlib
import io
import os
import stat
import threading

import numpy as np
import pandas as pd
import pytest
import torch

import acbo
from acbo.optimizer import OUTLIER_SPREADS, CausalOptimizer
from conftest import cli, cli_fails, cli_ok

_ok, _fails = cli_ok, cli_fails


def linear_data(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Y = X + 0.3 e (minimise: set X low); W does nothing."""
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"X": x, "W": w, "Y": x + 0.3 * rng.normal(size=n)})


def _told(opt: CausalOptimizer, iv: dict, y: float, **kw) -> None:
    opt.tell(iv, {"X": 0.0, "W": 0.0, **iv, "Y": y}, chosen=True, **kw)


# ----------------------------------------------------------------------------- threads
def test_decisions_and_predictions_run_with_one_thread_and_restore_torchs_setting(monkeypatch):
    opt = CausalOptimizer(linear_data(), target="Y", method="amortized", seed=0)
    seen = []
    propose, predict = opt.method.propose, opt.method.predict
    monkeypatch.setattr(opt.method, "propose", lambda *a: (seen.append(torch.get_num_threads()), propose(*a))[1])
    monkeypatch.setattr(opt.method, "predict", lambda *a, **k: (seen.append(torch.get_num_threads()), predict(*a, **k))[1])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        opt.ask()
        opt.predict("X", [0.0])
        assert seen == [1, 1] and torch.get_num_threads() == 2
        opt.threads = None                                                   # the user's own setting
        opt.predict("X", [0.0])
        assert seen[-1] == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be a positive integer or None"):
        CausalOptimizer(linear_data(), target="Y", method="random", threads=0)


# ----------------------------------------------------------------------------- no value can break the models
@pytest.mark.parametrize("method", ["amortized", "parent_scale", "exact-ts", "surrogate-ei"])
def test_an_absurd_measurement_is_refused_then_accepted_and_the_models_stay_finite(method):
    opt = CausalOptimizer(linear_data(), target="Y", method=method, seed=0)
    iv = dict(opt.ask())
    sample = {"X": 0.1, "W": 0.2, **iv, "Y": 1e20}
    with pytest.raises(ValueError, match="robust spreads.*accept_outlier=True"):
        opt.tell(iv, sample)
    assert opt.history == [] and opt.pending == iv                           # nothing recorded
    opt.tell(iv, sample, accept_outlier=True)
    assert opt.history[-1].outcome["Y"] == 1e20                              # kept as measured
    (clamp,) = opt.clamped
    assert clamp.where == "experiment 1" and clamp.variable == "Y" and clamp.value == 1e20 and np.isfinite(clamp.used)
    assert opt.buffer.values[-1, 2] == clamp.used                            # the models see the bound
    opt.ask()
    assert torch.isfinite(opt.posterior().marginals).all()
    if method != "exact-ts":
        assert np.isfinite(opt.predict("X", [-1.0, 0.0, 1.0]).to_numpy()).all()


def test_the_outlier_rule_and_the_clamp_change_nothing_ordinary():
    opt = CausalOptimizer(linear_data(), target="Y", method="exact-ts", seed=0)
    iv = dict(opt.ask())
    opt.tell(iv, {"X": 0.0, "W": 0.0, **iv, "Y": 50.0})                   # ~150 spreads: far, but not absurd
    assert opt.clamped == [] and opt.buffer.values[-1, 2] == 50.0
    assert OUTLIER_SPREADS == 1e4


def test_drop_rebuilds_the_models_from_the_rest_and_undo_restores_them():
    df = linear_data()
    opt = CausalOptimizer(df, target="Y", method="exact-ts", seed=0)
    for iv, y in (({"X": -1.0}, -1.1), ({"W": 1.0}, -3.0), ({"X": -2.0}, -2.0)):
        _told(opt, iv, y)
    full = opt.posterior().marginals.clone()
    opt.drop(2)
    assert opt.history[1].dropped and len(opt.history) == 3 and opt.buffer.n == len(df) + 2
    without = CausalOptimizer(df, target="Y", method="exact-ts", seed=0)
    for iv, y in (({"X": -1.0}, -1.1), ({"X": -2.0}, -2.0)):
        _told(without, iv, y)
    assert torch.equal(opt.buffer.values, without.buffer.values)
    assert torch.equal(opt.posterior().marginals, without.posterior().marginals)
    assert opt.best == ({"X": -2.0}, -2.0)                                   # the dropped reading is not the best
    with pytest.raises(ValueError, match="experiment 2 is dropped; nothing to drop"):
        opt.drop(2)
    again = CausalOptimizer.from_state(opt.state_dict())                    # survives save and load
    assert again.history[1].dropped and torch.equal(again.buffer.values, opt.buffer.values)
    opt.drop(2, undo=True)
    assert not opt.history[1].dropped and torch.equal(opt.posterior().marginals, full)
    with pytest.raises(ValueError, match="from 1 to 3"):
        opt.drop(4)


# ----------------------------------------------------------------------------- the recommendation
def test_the_recommendation_is_what_the_model_believes_not_the_luckiest_reading():
    opt = CausalOptimizer(linear_data(), target="Y", method="amortized", seed=0)
    for y in (-1.9, -2.1, -2.0, -1.95):
        _told(opt, {"X": -2.0}, y)                                           # the real optimum, measured four times
    _told(opt, {"W": 1.0}, -3.0)                                             # one lucky reading of an ineffective knob
    assert opt.best == ({"W": 1.0}, -3.0)                                    # the best single measurement
    rec = opt.recommend()
    assert rec.model and dict(rec.tried.intervention) == {"X": -2.0} and rec.tried.n == 4
    assert rec.tried.q05 <= rec.tried.mean <= rec.tried.q95 and rec.tried.measured_mean == pytest.approx(-1.9875)
    assert set(rec.anywhere.intervention) == {"X"} and rec.anywhere.mean <= rec.tried.mean + 0.5
    blind = CausalOptimizer(linear_data(), target="Y", method="random", seed=0)
    _told(blind, {"X": -2.0}, -2.0)
    _told(blind, {"X": -2.0}, -1.8)
    _told(blind, {"W": 1.0}, -1.5)
    rec = blind.recommend()                                                  # no model: the best measured mean
    assert not rec.model and rec.anywhere is None and dict(rec.tried.intervention) == {"X": -2.0} and rec.tried.n == 2


def _pair_data(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Y = (A - 1)^2 + (B + 1)^2 + 0.1 e, A and B independent N(0, 1), C does nothing: the best
    experiment sets A = 1 and B = -1 together (minimise)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"A": a, "B": b, "C": c, "Y": (a - 1) ** 2 + (b + 1) ** 2 + 0.1 * rng.normal(size=n)})


@pytest.mark.parametrize("method", ["amortized", "parent_scale"])
def test_the_recommendation_weighs_experiments_that_set_several_variables(method):
    """With max_set=2 the experiments run include pairs: the pair measured best (three times, near
    0) is the one recommended among those run, over a single one (near 4), and the grid anywhere
    covers the measured pair besides each variable (exploration_sets: only A with B, and C alone);
    an experiment of the user's own on a set the campaign does not allow (A, B and C) is not
    predicted. A method without a model of pairs (exact-ts) weighs the single experiments only, and
    with only a pair allowed still recommends a single setting anywhere."""
    kw = dict(target="Y", seed=0, domains={"A": (-2.0, 2.0), "B": (-2.0, 2.0), "C": (-2.0, 2.0)}, max_set=2,
              exploration_sets=[["A", "B"], ["C"]])
    def told(o, iv, y):
        o.tell(iv, {"A": 0.0, "B": 0.0, "C": 0.0, **iv, "Y": y}, chosen=True)

    opt = CausalOptimizer(_pair_data(), method=method, **kw)
    for y in (0.05, -0.02, 0.01):
        told(opt, {"A": 1.0, "B": -1.0}, y)
    told(opt, {"C": 0.5}, 4.1)
    told(opt, {"A": 0.0, "B": 0.0, "C": 0.0}, 2.5)
    rec = opt.recommend(points=11)
    assert dict(rec.tried.intervention) == {"A": 1.0, "B": -1.0} and rec.tried.n == 3
    assert rec.tried.measured_mean == pytest.approx(0.04 / 3)
    assert set(rec.anywhere.intervention) in ({"A", "B"}, {"A"}, {"B"}, {"C"})
    ts = CausalOptimizer(_pair_data(), method="exact-ts", **kw)
    for y in (0.05, -0.02, 0.01):
        told(ts, {"A": 1.0, "B": -1.0}, y)
    told(ts, {"C": 0.5}, 4.1)
    rec = ts.recommend(points=11)
    assert dict(rec.tried.intervention) == {"C": 0.5} and len(rec.anywhere.intervention) == 1
    pairs_only = CausalOptimizer(_pair_data(), method="exact-ts", **{**kw, "exploration_sets": [["A", "B"]]})
    told(pairs_only, {"A": 1.0, "B": -1.0}, 0.0)
    rec = pairs_only.recommend(points=11)
    assert rec.tried is None and len(rec.anywhere.intervention) == 1


def test_predicting_outside_the_domain_says_so_and_an_absurd_domain_is_refused():
    opt = CausalOptimizer(linear_data(), target="Y", method="amortized", seed=0)
    lo, hi = opt.domains["X"]
    with pytest.warns(UserWarning, match="outside its domain"):
        opt.predict("X", [hi + 10.0])
    ts = CausalOptimizer(linear_data(), target="Y", method="surrogate-ts", seed=0)   # it has a model of the response
    assert np.isfinite(ts.predict("X", [0.0]).to_numpy()).all()
    with pytest.raises(ValueError, match="no model of the response"):
        CausalOptimizer(linear_data(), target="Y", method="random").predict("X", [0.0])
    with pytest.raises(ValueError, match="domain of 'X'.*robust spreads"):
        CausalOptimizer(linear_data(), target="Y", method="random", domains={"X": (0.0, 1e20)})


# ----------------------------------------------------------------------------- spreadsheets' CSVs
def test_spreadsheet_csvs_a_bom_spaces_semicolons_decimal_commas_and_quotes(tmp_path):
    df = linear_data(40)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + df.rename(columns={"X": "temperature"}).to_csv(index=False).encode())
    _ok(cli("campaign", "init", "--data", bom, "--target", "Y", "--state", tmp_path / "a.acbo", "--intervenable",
            "temperature", "--method", "random"))
    semi = tmp_path / "semi.csv"
    lines = [" X ; W ; Y "] + [f'"{x:.6f}";{w:.6f};{y:.6f}'.replace(".", ",") for x, w, y in df.to_numpy()]
    semi.write_text("\n".join(lines) + "\n")
    from acbo.campaign import read_observations
    got = read_observations(semi, "Y")
    assert list(got.columns) == ["X", "W", "Y"] and np.allclose(got.to_numpy(), df.to_numpy(), atol=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("X,W,Y\n1,2,3\n4,five,6\n")
    out = _fails(cli("campaign", "init", "--data", bad, "--target", "Y", "--state", tmp_path / "b.acbo"), "five")
    assert out.count("data file") == 1                                        # the prefix once
    opt = CausalOptimizer(df.rename(columns={"X": "\ufeff X "}), target="Y", method="random")
    assert opt.names == ("X", "W", "Y")                                      # the same rule in the API


def test_domains_through_a_pipe(tmp_path):
    from acbo.campaign import read_domains
    fifo = tmp_path / "domains.pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("variable,low,high\nX,-2,2\n"))
    writer.start()
    assert read_domains(fifo) == {"X": (-2.0, 2.0)}
    writer.join()


# ----------------------------------------------------------------------------- the campaign CLI
@pytest.fixture
def campaign_state(tmp_path):
    data = tmp_path / "obs.csv"
    linear_data(60).to_csv(data, index=False)
    state = tmp_path / "run.acbo"
    _ok(cli("campaign", "init", "--data", data, "--target", "Y", "--state", state, "--method", "exact-ts",
            "--budget", "2"))
    return state


def _result(tmp_path, row: dict) -> os.PathLike:
    path = tmp_path / f"r{len(list(tmp_path.glob('r*.csv')))}.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    return path


def test_an_absurd_result_leaves_the_state_file_as_it_was_until_accepted(tmp_path, campaign_state):
    _ok(cli("campaign", "ask", "--state", campaign_state, "--format", "json"))
    from acbo.campaign import Campaign
    iv = dict(Campaign.load(campaign_state).pending)
    before = hashlib.sha256(campaign_state.read_bytes()).hexdigest()
    result = _result(tmp_path, {"X": 0.0, "W": 0.0, "Y": 1e20, **iv})
    _fails(cli("campaign", "tell", "--state", campaign_state, "--result", result), "--accept-outlier")
    assert hashlib.sha256(campaign_state.read_bytes()).hexdigest() == before
    out = _ok(cli("campaign", "tell", "--state", campaign_state, "--result", result, "--accept-outlier"))
    assert "clamped" in out and Campaign.load(campaign_state).log[-1]["accepted_outlier"]
    _ok(cli("campaign", "ask", "--state", campaign_state))                    # the campaign still asks
    status = _ok(cli("campaign", "status", "--state", campaign_state))
    assert "nan" not in status.lower() and "clamped for the models: experiment 1, Y = 1e+20" in status


def test_drop_and_undo_through_the_cli(tmp_path, campaign_state):
    result = _result(tmp_path, {"X": -1.0, "W": 0.0, "Y": -1.0})
    _ok(cli("campaign", "tell", "--state", campaign_state, "--result", result, "--intervention", "X=-1"))
    assert "dropped" in _ok(cli("campaign", "drop", "--state", campaign_state, "--row", "1"))
    status = _ok(cli("campaign", "status", "--state", campaign_state))
    assert "X=-1 (dropped)" in status
    _fails(cli("campaign", "drop", "--state", campaign_state, "--row", "1"), "is dropped; nothing to drop")
    assert "is back" in _ok(cli("campaign", "drop", "--state", campaign_state, "--row", "1", "--undo"))
    _fails(cli("campaign", "drop", "--state", campaign_state, "--row", "5"), "from 1 to 1")


def test_budget_permissions_and_extend(tmp_path, campaign_state):
    os.chmod(campaign_state, 0o600)
    for i in range(2):
        result = _result(tmp_path, {"X": -1.0 - i, "W": 0.0, "Y": -1.0 - i})
        out = _ok(cli("campaign", "tell", "--state", campaign_state, "--result", result, "--intervention", f"X={-1 - i}"))
    assert "(0 left)" in out
    assert stat.S_IMODE(os.stat(campaign_state).st_mode) == 0o600            # a private file stays private
    extra = _result(tmp_path, {"X": -0.5, "W": 0.0, "Y": -0.5})
    _fails(cli("campaign", "tell", "--state", campaign_state, "--result", extra, "--intervention", "X=-0.5"),
           "campaign extend --budget")
    _fails(cli("campaign", "extend", "--state", campaign_state, "--budget", "2"), "extend takes a larger one")
    assert "1 experiment(s) left" in _ok(cli("campaign", "extend", "--state", campaign_state, "--budget", "3"))
    assert "(0 left)" in _ok(cli("campaign", "tell", "--state", campaign_state, "--result", extra, "--intervention",
                                 "X=-0.5"))
    export = tmp_path / "out" / "history.csv"
    _ok(cli("campaign", "export", "--state", campaign_state, "--out", export))
    rec = pd.read_csv(tmp_path / "out" / "history_recommendation.csv")
    assert list(rec["recommendation"]) == ["best experiment run", "best predicted anywhere"]
    assert rec["set"][0] == "X=-2" and rec["measurements"][0] == 1 and rec["by_model"].all()


# ----------------------------------------------------------------------------- smaller rough edges
def test_run_refuses_an_option_it_would_ignore_and_help_is_not_cut():
    _fails(cli("run", "--option", "foo=1"), "give --method too")
    _fails(cli("run", "--method", "random", "--steps", "1", "--option", "foo=1"), "takes no option")
    commands = _ok(cli("--help")).split("Commands:")[1]
    assert "..." not in commands and "Optimise a problem (default: the built-in bioreactor" in commands


def test_a_checksummed_file_with_foreign_objects_gets_our_message_not_torchs_advice(tmp_path):
    from acbo.io import ENVELOPE, load_state
    buf = io.BytesIO()
    torch.save({"kind": "x", "evil": threading.Lock}, buf)                   # not loadable with weights_only
    payload = buf.getvalue()
    path = tmp_path / "wrapped.pt"
    torch.save({"envelope": ENVELOPE, "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}, path)
    with pytest.raises(ValueError) as e:
        load_state(path, "x", 1, "test file")
    assert "weights_only" not in str(e.value) and "Python objects" in str(e.value)


def test_the_public_api_exports_the_recommendation_types():
    assert {"Recommendation", "Suggestion"} <= set(acbo.__all__)


def test_a_row_with_a_stray_cell_and_names_that_trim_to_one_are_refused(tmp_path):
    from acbo.campaign import CampaignError, read_domains, read_results
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("X,W,Y\n5,3,4,1\n")
    with pytest.raises(CampaignError, match="the header has 3 cells but row 2 has 4"):
        read_results(ragged, ("X", "W", "Y"))
    twice = tmp_path / "domains.json"
    twice.write_text('{"X": [0, 1], "X ": [1, 7]}')
    with pytest.raises(CampaignError, match="named more than once"):
        read_domains(twice)
    with pytest.raises(ValueError, match="names 'X' twice"):
        CausalOptimizer(linear_data(), target="Y", method="random", domains={"X": (0, 1), " X": (1, 2)})
    opt = CausalOptimizer(linear_data(), target="Y", method="random")
    with pytest.raises(ValueError, match="names 'Y' twice"):
        opt.tell({"X": 0.0}, {"X": 0.0, "W": 0.0, "Y": 1.0, " Y": 9.0}, chosen=True)
    with pytest.raises(ValueError, match="points must be an integer >= 2"):
        opt.recommend(points=1)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        opt.threads = 0


def test_extending_the_budget_extends_the_policys_horizon(tmp_path):
    data = tmp_path / "obs.csv"
    linear_data(60).to_csv(data, index=False)
    state = tmp_path / "run.acbo"
    _ok(cli("campaign", "init", "--data", data, "--target", "Y", "--state", state, "--budget", "5"))
    _ok(cli("campaign", "extend", "--state", state, "--budget", "8"))
    from acbo.campaign import Campaign
    campaign = Campaign.load(state)
    assert campaign.optimizer.method.options()["horizon"] == 8 and campaign.log[-1]["horizon"] == 8


def test_a_campaign_broken_by_an_absurd_value_before_the_clamp_heals_on_load():
    opt = CausalOptimizer(linear_data(), target="Y", method="amortized", seed=0)
    _told(opt, {"X": -1.0}, -1.0)
    state = opt.state_dict()
    del state["robust_scale"], state["clamped"]                              # as files before the clamp
    state["history"][0][1]["Y"] = 1e20
    state["buffer"]["values"][-1, 2] = 1e20                                  # the raw value in what the models read
    healed = CausalOptimizer.from_state(state)
    assert healed.clamped[0].value == 1e20 and np.isfinite(healed.buffer.values.numpy()).all()
    healed.ask()
    assert torch.isfinite(healed.posterior().marginals).all()
