"""What experiments cost: the cost of an experiment by hand, the campaign's spend and budget in
cost units, choices per unit cost (built so that costs must change them), and the commands."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from acbo import CausalOptimizer
from acbo.costs import BudgetSpent, Costs, previous_settings
from acbo.policy.model import GridActionDist
from acbo.seeding import generator

from conftest import cli, cli_fails, cli_ok


def _twins(n=200, seed=0):
    """Y = X1 + X2 + noise with X1, X2 independent N(0, 1): setting either is as good as the other."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    return pd.DataFrame({"X1": x1, "X2": x2, "Y": x1 + x2 + 0.3 * rng.standard_normal(n)})


def _outcome(iv, t):
    rng = np.random.default_rng(t)
    x1 = iv.get("X1", rng.standard_normal())
    x2 = iv.get("X2", rng.standard_normal())
    return {"X1": x1, "X2": x2, "Y": x1 + x2 + 0.3 * rng.standard_normal()}


def test_the_cost_of_an_experiment_by_hand():
    c = Costs(torch.tensor([2.0, 5.0, 0.0], dtype=torch.float64), torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64))
    prev = torch.tensor([1.0, -1.0, 3.0], dtype=torch.float64)
    assert c.of({0: 4.0}, prev) == 2.0 + 0.5 * 3.0
    assert c.of({0: 0.0, 1: 7.0}, prev) == 2.0 + 0.5 * 1.0 + 5.0
    grid = c.of_settings(torch.tensor([0, 1]), torch.tensor([[1.0, 3.0], [0.0, 9.0]], dtype=torch.float64), prev)
    assert grid.tolist() == [[2.0, 3.0], [5.0, 5.0]] and c.moves


def test_experiments_start_where_the_last_one_left_the_system():
    opt = CausalOptimizer(_twins(), method="random", costs={"X1": 1, "X2": 1})
    assert torch.allclose(previous_settings(opt.buffer), opt.buffer.observational_stats()[0].double())
    opt.tell({"X1": 1.5}, {"X1": 1.5, "X2": 0.25, "Y": 2.0}, chosen=True)
    assert previous_settings(opt.buffer).tolist() == [1.5, 0.25, 2.0]


def test_spend_is_recorded_saved_and_the_budget_stops_asks(tmp_path):
    opt = CausalOptimizer(_twins(), method="random", seed=2, domains={"X1": (-3, 3), "X2": (-3, 3)},
                          costs={"X1": 3.0, "X2": 1.0}, move_costs={"X1": 0.5}, budget_cost=10.0)
    prev = float(previous_settings(opt.buffer)[0])
    assert opt.cost({"X1": prev + 2.0}) == pytest.approx(4.0) and opt.cost({"X2": 0.0}) == 1.0
    opt.tell({"X1": prev + 2.0}, {"X1": prev + 2.0, "X2": 0.0, "Y": 1.0}, chosen=True)
    assert opt.spent == pytest.approx(4.0) and opt.history[0].cost == pytest.approx(4.0)
    opt.save(tmp_path / "c.acbo")
    back = CausalOptimizer.load(tmp_path / "c.acbo")
    assert back.spent == opt.spent and back.budget_cost == 10.0 and back.cost({"X2": 0.0}) == 1.0
    while True:  # random is told nothing of the costs: it runs until its choice is beyond what is left
        try:
            iv = opt.ask()
        except BudgetSpent as e:
            assert "spent" in str(e) or ("left" in str(e) and "does not weigh costs, ask again for another draw" in str(e))
            break
        opt.tell(iv, _outcome(iv, len(opt.history)))
    assert opt.spent <= 10.0 and opt.pending is None


def test_a_batch_is_charged_what_it_was_priced_at_when_asked():
    """Moves cost: a batch's members are priced from where the system stood when they were asked,
    and charged that when told, in any order: the spend never passes the budget."""
    opt = CausalOptimizer(_twins(), method="random", seed=3, domains={"X1": (-3, 3), "X2": (-3, 3)},
                          costs={"X1": 1.0, "X2": 1.0}, move_costs={"X1": 1.0, "X2": 1.0}, budget_cost=5.0)
    while True:
        try:
            batch = opt.ask(n=2)
        except BudgetSpent:
            break
        prices = [opt.cost(iv) for iv in batch]
        for t, iv in enumerate(reversed(batch)):
            opt.tell(iv, _outcome(iv, t))
        assert [r.cost for r in opt.history[-2:]] == prices[::-1]
    assert opt.spent <= 5.0 + 1e-9


def test_moves_start_from_the_last_experiment_told_dropped_or_not():
    opt = CausalOptimizer(_twins(), method="random", domains={"X1": (-3, 3), "X2": (-3, 3)},
                          costs={"X1": 1.0, "X2": 1.0}, move_costs={"X1": 1.0})
    opt.tell({"X1": 2.5}, {"X1": 2.5, "X2": 0.0, "Y": 2.5}, chosen=True)
    opt.drop(1)
    assert opt.cost({"X1": 2.5}) == 1.0 and opt.cost({"X1": 0.5}) == 3.0


def test_a_choice_beyond_the_allowance_is_moved_until_it_pays():
    """Moving X1 costs 1 per unit; with 1.5 left and a fixed cost of 1, random's draw of X1 lands
    within 0.5 of where the last experiment left it."""
    opt = CausalOptimizer(_twins(), method="random", seed=0, domains={"X1": (-3, 3)}, intervenable=["X1"],
                          costs={"X1": 1.0}, move_costs={"X1": 1.0}, budget_cost=3.5)
    opt.tell({"X1": 0.0}, {"X1": 0.0, "X2": 0.0, "Y": 0.0}, chosen=True)
    opt.tell({"X1": 0.0}, {"X1": 0.0, "X2": 0.0, "Y": 0.0}, chosen=True)
    for _ in range(10):
        iv = opt.ask()
        assert abs(iv["X1"]) <= 0.5 + 1e-9
        opt.withdraw()


def test_a_batch_beyond_the_budget_is_refused_whole_and_changes_nothing():
    opt = CausalOptimizer(_twins(), method="exact-ts", seed=1, costs={"X1": 2.0, "X2": 2.0}, budget_cost=5.0)
    state = opt._gen.get_state()
    with pytest.raises(BudgetSpent, match="only 2 of the 3 asked fit"):
        opt.ask(n=3)  # two fit, the third does not
    assert opt.pending is None and torch.equal(opt._gen.get_state(), state)
    assert len(opt.ask(n=2)) == 2


@pytest.mark.parametrize("method,options", [("amortized", {}), ("amortized", {"cost_rule": "ei"}), ("exact-ts", {}),
                                            ("parent_scale", {})])
def test_the_last_experiment_a_rounded_budget_pays_for_is_chosen(method, options):
    """A budget of 0.5 and X2 at 0.1: after four experiments on X2 what is left is 0.5 - 0.4 =
    0.09999999999999998 in floating point, which pays for X2 (acbo.costs.pays: the campaign and
    every method read the same rule); X1, at 3, it does not. The fifth ask sets X2 (a method that
    read the allowance exactly would find nothing it may set, fall back on its unrestricted choice,
    and be refused), and then the budget is spent."""
    opt = CausalOptimizer(_weighted(2.0), method=method, seed=0, domains={"X1": (-2, 2), "X2": (-2, 2)},
                          costs={"X1": 3.0, "X2": 0.1}, budget_cost=0.5, **options)
    for t in range(4):
        opt.tell({"X2": -1.0 + 0.5 * t}, _outcome({"X2": -1.0 + 0.5 * t}, t), chosen=True)
    assert opt.budget_cost - opt.spent < 0.1
    for k in range(5):
        if k:
            opt.withdraw()
        iv = opt.ask()
        assert set(iv) == {"X2"}
    opt.tell(iv, _outcome(iv, 4))
    with pytest.raises(BudgetSpent, match="spent"):
        opt.ask()


def test_a_move_within_a_rounded_allowance_stays_where_the_last_experiment_left_it():
    """X2 costs 0.1 to set and 1 per unit moved, a budget of 0.5: after four experiments that leave
    X2 where it stood, what is left (0.09999999999999998) pays for setting X2 with no move, up to rounding
    (acbo.costs.pays), so random's draw is brought back to where X2 was, not left where it fell and
    refused."""
    opt = CausalOptimizer(_twins(), method="random", seed=0, domains={"X1": (-3, 3), "X2": (-3, 3)},
                          costs={"X1": 3.0, "X2": 0.1}, move_costs={"X2": 1.0}, budget_cost=0.5)
    x2 = float(previous_settings(opt.buffer)[1])  # where X2 stands before any experiment: no move
    for t in range(4):
        opt.tell({"X2": x2}, {"X1": 0.0, "X2": x2, "Y": 0.0}, chosen=True)
    assert opt.budget_cost - opt.spent < 0.1
    for _ in range(5):
        iv = opt.ask()
        assert set(iv) == {"X2"} and iv["X2"] == x2, iv
        opt.withdraw()


def _weighted(w1: float) -> pd.DataFrame:
    """Observations of Y = w1 X1 + X2 + noise, X1 and X2 independent N(0, 1)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal(200), rng.standard_normal(200)
    return pd.DataFrame({"X1": x1, "X2": x2, "Y": w1 * x1 + x2 + 0.3 * rng.standard_normal(200)})


@pytest.mark.parametrize("method,options", [("exact-ts", {}), ("amortized", {"cost_rule": "ei"})])
def test_costs_change_what_is_chosen_per_unit_gain(method, options):
    """Y = 2 X1 + X2 + noise over the same domains, X1 costing 20 times as much as X2. Not told the
    costs, the method sets X1 (it moves Y twice as far); told them, the cheap X2, whose gain per
    unit cost (Thompson sampling's sampled gain, the world model's expected improvement) is ten
    times X1's."""
    def cheap_share(aware: bool) -> float:
        opt = CausalOptimizer(_weighted(2.0), method=method, seed=0, domains={"X1": (-2, 2), "X2": (-2, 2)},
                              costs={"X1": 20.0, "X2": 1.0}, cost_aware=aware, **options)
        picks = []
        for t in range(8):
            iv = opt.ask()
            picks.append("X2" in iv)
            out = _outcome(iv, t)
            opt.tell(iv, {**out, "Y": out["Y"] + out["X1"]})  # Y = 2 X1 + X2 + noise
        return float(np.mean(picks))

    aware, blind = cheap_share(True), cheap_share(False)
    assert blind <= 0.25 and aware >= 0.75, (aware, blind)


def test_costs_change_the_policys_choice():
    """The default rule divides the policy's probabilities by the costs: over 40 first decisions on
    Y = X1 + X2 + noise, making X1 twenty times dearer than X2 moves decisions to X2, making X2
    the dearer one moves them to X1, against the same decisions told no costs."""
    def x2_share(costs: dict | None) -> float:
        opt = CausalOptimizer(_weighted(1.0), method="amortized", seed=0, domains={"X1": (-2, 2), "X2": (-2, 2)},
                              costs=costs or {"X1": 1.0, "X2": 1.0}, cost_aware=costs is not None)
        picks = []
        for _ in range(40):
            picks.append("X2" in opt.ask())
            opt.withdraw()
        return float(np.mean(picks))

    blind, x1_dear, x2_dear = x2_share(None), x2_share({"X1": 20.0, "X2": 1.0}), x2_share({"X1": 1.0, "X2": 20.0})
    assert x1_dear >= blind + 0.25 and x2_dear <= blind - 0.25, (blind, x1_dear, x2_dear)


def test_the_choice_per_unit_cost_by_hand():
    """Two variables, two cells each: EI (world model) [[0.4, 1.0], [0.3, 0.6]], costs [[1, 4],
    [1, 1]]: per unit cost 0.4, 0.25 | 0.3, 0.6, so the second variable. With the second variable
    at cost 3 and an allowance of 2 it is unaffordable, and of the first only the cell costing 1
    is kept. The policy's draw is then confined to the kept cells."""
    from acbo.policy.decide import per_unit_cost
    from acbo.policy.features import EI_FLOOR, LOG_EI, N_GRID_FEATURES
    from acbo.policy.model import PolicyInput

    ei = torch.tensor([[[0.4, 1.0], [0.3, 0.6]]], dtype=torch.float64) - EI_FLOOR
    grid = torch.zeros(1, 2, 2, N_GRID_FEATURES, dtype=torch.float64)
    grid[..., LOG_EI] = torch.log(ei + EI_FLOOR)
    x = PolicyInput(*(torch.zeros(1) for _ in range(3)), torch.tensor([[True, True]]), torch.ones(1, 2, dtype=torch.bool),
                    torch.zeros(1, 2), torch.ones(1, 2), grid, torch.zeros(1, 2, 0, 3))
    cost = torch.tensor([[[1.0, 4.0], [1.0, 1.0]]], dtype=torch.float64)
    assert per_unit_cost(x, cost).tolist() == [[[False, False], [True, True]]]
    assert per_unit_cost(x, cost * torch.tensor([1.0, 3.0])[None, :, None], allowance=2.0).tolist() == \
        [[[True, False], [False, False]]]  # the second variable now costs 3: beyond the allowance
    logits = torch.log(torch.tensor([[[0.2, 0.3], [0.4, 0.1]]], dtype=torch.float64))
    ones = torch.ones(1, 2, 2)
    d = GridActionDist(logits, ones, ones, torch.zeros(1, 2), torch.ones(1, 2))
    p = torch.softmax(d.restricted(per_unit_cost(x, cost)).logits.reshape(-1), 0)
    assert torch.allclose(p.float(), torch.tensor([0.0, 0.0, 0.8, 0.2]))
    nothing = torch.zeros(1, 2, 2, dtype=torch.bool)
    assert torch.equal(d.restricted(nothing).logits, d.logits)  # nothing kept: as it was


@pytest.mark.parametrize("kw,message", [
    ({"costs": {"X1": 1.0}}, "gives no cost for ['X2']"),
    ({"costs": {"X1": 1.0, "X2": 0.0}}, "must be finite and > 0"),
    ({"costs": {"X1": 1.0, "X2": "a"}}, "must be a number"),
    ({"costs": {"X1": 1.0, "X2": 1.0, "Y": 1.0}}, "may not be set"),
    ({"costs": [1, 2]}, "mapping name -> cost"),
    ({"move_costs": {"X1": 1.0}}, "need costs"),
    ({"costs": {"X1": 1, "X2": 1}, "move_costs": {"X1": -1.0}}, "must be finite and >= 0"),
    ({"costs": {"X1": 1, "X2": 1}, "budget_cost": 0}, "budget_cost must be finite and > 0"),
    ({"costs": {"X1": 1, "X2": 1}, "cost_aware": "yes"}, "cost_aware must be True or False"),
    ({"costs": {"X1": 3, "X2": 2}, "budget_cost": 1.5}, "budget_cost 1.5 cannot pay for any experiment: the cheapest "
                                                        "allowed one costs 2"),
])
def test_bad_costs_are_refused_by_name(kw, message):
    """And a method that does not weigh costs says so when given them."""
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CausalOptimizer(_twins(), method="random", **kw)
    with pytest.raises(ValueError, match="no costs"):
        CausalOptimizer(_twins(), method="random").cost({"X1": 0.0})
    with pytest.warns(UserWarning, match="does not weigh costs"):
        CausalOptimizer(_twins(), method="random", costs={"X1": 1.0, "X2": 2.0})


def test_costs_through_the_campaign_commands(tmp_path):
    data = tmp_path / "obs.csv"
    _twins(60).to_csv(data, index=False)
    state = tmp_path / "run.acbo"
    cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", state,
               "--cost", "X1=4,X2=1", "--budget-cost", "6"))
    iv = json.loads(cli_ok(cli("campaign", "ask", "--state", state, "--format", "json")))
    pd.DataFrame([{**_outcome(iv, 0), **iv}]).to_csv(tmp_path / "r.csv", index=False)
    cli_ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "r.csv"))
    out = cli_ok(cli("campaign", "status", "--state", state, "--plot", tmp_path / "status.png"))
    assert "spent" in out and "of the budget of 6" in out and (tmp_path / "status.png").stat().st_size > 0
    cli_ok(cli("campaign", "export", "--state", state, "--out", tmp_path / "h.csv"))
    assert pd.read_csv(tmp_path / "h.csv")["spent"].iloc[0] in (1.0, 4.0)
    cli_fails(cli("campaign", "init", "--data", data, "--target", "Y", "--state", tmp_path / "x", "--cost", "X1=1"),
              "gives no cost for ['X2']")


def test_the_commands_show_what_a_batch_commits_and_raise_a_budget_in_cost_units(tmp_path):
    """A batch's prices in `ask` and `status` (committed, not yet spent); `extend --budget-cost`
    raises a spent budget so that asks go on (a smaller one refused); the flags' mistakes named
    as flags: a name given twice, a number that is not one, a budget without costs."""
    data = tmp_path / "obs.csv"
    _twins(60).to_csv(data, index=False)
    state = tmp_path / "run.acbo"
    cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "exact-ts", "--state", state,
               "--cost", "X1=4", "--cost", "X2=1", "--budget-cost", "2"))
    out = cli_ok(cli("campaign", "ask", "--state", state, "--n", "2"))
    assert out.count("(costs 1)") == 2
    assert "spent 0 of the budget of 2 (cost units); 2 committed to the 2 pending" in cli_ok(
        cli("campaign", "status", "--state", state)).replace("\n", " ")
    cli_fails(cli("campaign", "ask", "--state", state, "--n", "3"), "extend --budget-cost")
    cli_fails(cli("campaign", "extend", "--state", state, "--budget-cost", "1"), "is 2 already")
    cli_fails(cli("campaign", "extend", "--state", state), "needs --budget (experiments) or --budget-cost")
    assert "budget 7 in cost units: 7 not spent; 2 committed" in cli_ok(
        cli("campaign", "extend", "--state", state, "--budget-cost", "7")).replace("\n", " ")
    assert len(json.loads(cli_ok(cli("campaign", "ask", "--state", state, "--n", "3", "--format", "json")))) == 3
    for flags, message in ((["--cost", "X1=1,X2=2", "--cost", "X2=3"], "--cost gives 'X2' twice (2 and 3)"),
                           (["--cost", "X1=1,X2=abc"], "--cost value of 'X2' is not a number: 'abc'"),
                           (["--budget-cost", "3"], "--move-cost and --budget-cost need --cost")):
        cli_fails(cli("campaign", "init", "--data", data, "--target", "Y", "--state", tmp_path / "x", *flags), message)
    with pytest.raises(ValueError, match="no budget in cost units to extend"):
        CausalOptimizer(_twins(), method="random").extend_budget_cost(3.0)
    plain = tmp_path / "plain.acbo"
    cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", plain, "--budget", "2"))
    before = plain.read_bytes()
    cli_fails(cli("campaign", "extend", "--state", plain, "--budget", "3", "--budget-cost", "5"),
              "no budget in cost units to extend")
    assert plain.read_bytes() == before  # all or nothing: the budget of experiments is not raised either
    out = cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state",
                     tmp_path / "r.acbo", "--cost", "X1=4,X2=1", "--budget-cost", "3"))
    assert "warning: method 'random' does not weigh costs" in out and "Traceback" not in out
    pd.DataFrame([{"X1": 1.0, "X2": 0.0, "Y": 1.0}]).to_csv(tmp_path / "own.csv", index=False)
    out = cli_ok(cli("campaign", "tell", "--state", tmp_path / "r.acbo", "--result", tmp_path / "own.csv",
                     "--intervention", "X1=1"))  # the user's own experiment: recorded, and the overrun said
    assert "recorded experiment 1" in out and "spent 4, over its budget of 3" in out.replace("\n", " ")


def test_the_bench_with_costs_reports_regret_against_spend(tmp_path):
    """acbo bench --costs 1,10 --budget-cost 3: each problem's variables get costs, campaigns stop
    at the budget, and the summary gives regret at each spend up to it; bad settings are refused."""
    from acbo.bench.report import summary_table
    from acbo.bench.runner import BenchConfig

    out = cli_ok(cli("bench", "--methods", "random,exact-ts", "--families", "lin-er-10", "--seeds", "2", "--steps", "8",
                     "--workers", "1", "--costs", "1,10", "--budget-cost", "3", "--out", tmp_path / "b"))
    assert "regret at a spend of 2 mean costs" in out and "regret at a spend of 5 mean costs" not in out
    df = pd.read_json(tmp_path / "b" / "results.jsonl", lines=True)
    assert (df["cost"] <= 3 * df["cost_unit"] + 1e-9).all() and df["cost_unit"].notna().all()
    assert "spend" not in summary_table(df.drop(columns=["cost_unit"]))
    with pytest.raises(ValueError, match="costs must be"):
        BenchConfig(costs=(5.0, 1.0))
    with pytest.raises(ValueError, match="budget_cost needs costs"):
        BenchConfig(budget_cost=3.0)
    cli_fails(cli("bench", "--families", "lin-er-10", "--costs", "1", "--out", tmp_path / "c"), "--costs is LOW,HIGH")
