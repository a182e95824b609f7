"""Simulated campaigns that end when a budget in cost units is spent (``design.budget``, issue 29):
what the environment pays and counts, by hand; rollouts that stop a spent campaign's rewards and
updates; validation that reports what the budget bought; the settings refused by name; and the
learning smoke test (a return over the budget teaches the cost head to end lower)."""

import dataclasses

import pytest
import torch

from acbo.configs import configure
from acbo.env import Env
from acbo.policy.checkpoint import load_pretrained_policy, read_policy_checkpoint
from acbo.policy.rollout import BUDGET_CAP, GroupDesign, collect, play
from acbo.policy.train import PolicyTrainConfig, train
from acbo.seeding import generator
from acbo.surrogate import Belief


def _env(costs: list[float], seed: int = 0) -> Env:
    """One train-lin campaign whose settable variables cost ``costs`` in order (the target free)."""
    g = generator("test", "budget-env", seed)
    env = Env.from_family("train-lin", 1, 30, 4, g, n_mc=16)
    s = env.settable[0]
    c = torch.zeros(1, env.d, dtype=torch.float64)
    c[0, s] = torch.tensor(costs, dtype=torch.float64)[: int(s.sum())]
    return dataclasses.replace(env, costs=c)


def test_a_budget_pays_for_what_is_set_and_then_counts_nothing():
    """Costs 1 and 3 on the first two settable variables (the rest 2): mean m; a budget of 2 m.
    Setting the dear one spends 3; then the cheap one; a campaign whose allowance pays for no
    settable variable is spent: its rows are kept, not paid, and its best E[Y | do] stays."""
    env = _env([1.0, 3.0] + [2.0] * 20)
    s = env.settable[0]
    m = float(env.costs[0, s].mean())
    env = env.with_budget(2.0, 12)
    assert env.horizon == 12 and float(env.budget[0]) == pytest.approx(2 * m) and float(env.spent[0]) == 0
    first, second = torch.nonzero(s)[:2, 0].tolist()
    c = env.campaign()
    assert int(c.horizon[0]) == 0 + max(1, round(2 * m / m))
    g = generator("test", "budget-steps")
    env.step(torch.tensor([second]), torch.tensor([0.5]), g)
    assert float(env.spent[0]) == pytest.approx(3.0)
    assert float(env.allowance()[0]) == pytest.approx(2 * m - 3)
    assert int(env.campaign().horizon[0]) == 1 + max(1, round((2 * m - 3) / m))
    while bool(env.live()[0]):
        env.step(torch.tensor([first]), torch.tensor([0.5]), g)
    assert float(env.allowance()[0]) < 1.0 <= float(env.allowance()[0]) + 1.0
    spent, best, n = float(env.spent[0]), float(env.best[0]), env.step_count
    e_y = env.step(torch.tensor([first]), torch.tensor([-1e3]), g)  # far out: would be a new best if it counted
    assert float(env.spent[0]) == spent and float(env.best[0]) == best and env.step_count == n + 1
    assert float(e_y[0]) < best
    rep = env.repeat(3)
    assert torch.equal(rep.spent, env.spent.repeat(3)) and torch.equal(rep.budget, env.budget.repeat(3))


def test_a_budget_needs_costs_and_a_cap_above_the_experiments_made():
    env = Env.from_family("train-lin", 2, 30, 4, generator("test", "budget-bad"), n_mc=16)
    with pytest.raises(ValueError, match="needs costs"):
        env.with_budget(3.0, 10)
    env = env.with_costs(1.0, 10.0, generator("test", "budget-bad-costs"))
    with pytest.raises(ValueError, match="got 0.0 and 10"):
        env.with_budget(0.0, 10)
    with pytest.raises(ValueError, match="got 3.0 and 0"):
        env.with_budget(3.0, 0)
    assert torch.isinf(env.allowance()).all() and env.live().all()


@pytest.fixture(scope="module")
def pair():
    return load_pretrained_policy()


def test_a_budget_rollout_draws_within_the_allowance_and_keeps_only_what_a_budget_paid_for(pair):
    """Trajectory groups of campaigns with budgets: every experiment paid for is within the
    allowance at its step; the rollout runs until every budget is spent (within the cap); a spent
    campaign's steps carry no reward and are not in the rollout (whose decisions are the paid
    ones, in order); its log-probabilities are those of the restricted draw (the update starts at
    ratio 1)."""
    policy, surrogate = pair
    policy = policy.with_cost_head().eval()
    g = generator("test", "budget-rollout")
    env = Env.from_family("train-lin", 3, 30, 4, g, n_mc=16).with_costs(1.0, 10.0, g).with_budget(4.0, 4 * BUDGET_CAP)
    design = GroupDesign(mode="trajectory", size=2, horizon=(4, 4), costs=(1.0, 10.0), budget=True)
    env = env.repeat(2)
    start = env.allowance().clone()
    weights = {"improvement": 1.0, "outcome": 0.0, "info_gain": 0.0, "parent": 0.0, "cost": 0.0}
    batch, comps = collect(policy, surrogate, env, design, weights, g)
    assert not env.live().any() or env.step_count == env.horizon
    B, T = env.B, env.step_count
    assert comps["paid"].shape == (T, B, 1)
    var = env.intervened[:, -T:].float().argmax(2).T                                              # T x B: what each step set
    cost = env.costs.gather(1, var.T).T                                                          # T x B
    live = torch.zeros(T, B, dtype=torch.bool)
    spent = torch.zeros(B, dtype=torch.float64)
    for t in range(T):
        live[t] = (env.settable & (env.costs <= (start - spent)[:, None] * (1 + 1e-9))).any(1)
        assert bool((cost[t][live[t]] <= (start - spent)[live[t]] + 1e-9).all())
        spent = spent + torch.where(live[t], cost[t], 0.0)
    assert torch.allclose(spent, env.spent) and bool((env.spent <= start + 1e-9).all())
    assert torch.equal(comps["paid"][:, :, 0] > 0, live) and not live.all() and live[0].all()
    assert torch.equal(batch.var[:, 0], var[live]) and batch.allowed.shape[0] == int(live.sum())
    assert bool((comps["improvement"][:, :, 0][~live] == 0).all())
    idx = torch.arange(batch.var.shape[0])
    with torch.no_grad():
        logp = batch.log_prob(batch.drawn_from(policy(batch.x), idx), idx)
    assert torch.allclose(logp, batch.logp, atol=1e-4)


def test_validation_with_a_budget_reports_what_it_bought(pair):
    policy, surrogate = pair
    policy = policy.with_cost_head().eval()
    g = generator("test", "budget-play")
    env = Env.from_family("train-lin", 4, 30, 5, g, n_mc=16).with_costs(1.0, 10.0, g).with_budget(5.0, 5 * BUDGET_CAP)
    y_star = env.scm.optimum(env.low, env.high, intervenable=env.intervenable).value
    out = play(policy, surrogate, env, y_star, generator("test", "budget-play-draws"))
    assert 1 <= out["val_experiments"] <= 5 * BUDGET_CAP and 0 < out["val_spend"]
    assert out["val_experiments"] * out["val_spend"] <= 5.0 + 1e-6  # spent within the budget of 5 mean costs
    assert env.step_count == 0 and float(env.spent.sum()) == 0  # the environment handed in is left as it was


@pytest.mark.parametrize("kw, message", [
    ({"design.budget": True}, "needs design.costs"),
    ({"design.budget": True, "design.costs": (1.0, 10.0), "policy.grid": 4}, "mode 'trajectory'"),
    ({"design.budget": True, "design.costs": (1.0, 10.0), "policy.grid": 4, "design.mode": "trajectory",
      "design.max_set": 2}, "max_set 1"),
])
def test_bad_budget_settings_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        configure(PolicyTrainConfig, kw)


def test_a_return_over_the_budget_teaches_the_cost_head_to_end_lower(tmp_path):
    """The learning smoke test of budget campaigns: rewarded for each experiment's E[Y | do] below
    Y's observational mean, a campaign's return adds up what its budget bought, and GRPO on the
    cost head alone lowers the validation campaigns' regret at the budget's end. Seeds 0, 1, 2 of
    this configuration: regret 0.41 -> 0.21, 0.39 -> 0.25, 0.35 -> 0.21; experiments bought 5.00
    -> 5.69, 5.44 -> 5.31, 5.38 -> 5.38 (more experiments is not what it learns everywhere)."""
    cfg = configure(PolicyTrainConfig, {
        "policy.grid": 4, "policy.world": "conditioned", "design.costs": (1.0, 10.0), "trainable": "cost_head",
        "design.budget": True, "design.mode": "trajectory", "rewards.improvement": 0.0, "rewards.outcome": 1.0,
        "rewards.info_gain": 0.0, "rewards.parent": 0.0, "update.epochs": 4},
        families=("train-lin",), iterations=12, batch_size=8, group_size=4, horizon=(3, 3), n_obs=(40, 40),
        minibatch=64, val_family="lin-er-10", val_campaigns=16, val_horizon=3, val_every=12, reward_mc=32, lr=3e-2,
        out=str(tmp_path / "run"))
    train(cfg, log=lambda s: None)
    hist = read_policy_checkpoint(tmp_path / "run" / "policy.pt")["history"]
    seen = [(h["val_experiments"], h["val_regret_T"]) for h in hist]
    assert hist[-1]["val_regret_T"] < hist[0]["val_regret_T"] - 0.1, seen


def test_common_noise_gives_a_groups_copies_the_same_measurement_luck():
    """``Env.repeat(G, common_noise=True)``: the copies of a campaign that run the same
    experiment measure the same row (each step's outcome noise is the group's first copy's), while
    different campaigns, and copies without common noise, measure their own; a copy that runs a
    different experiment still moves (the noise is shared, not the row)."""
    g = generator("test", "common-noise")
    env = Env.from_family("train-broad", 2, 30, 4, g, n_mc=16)
    j = int(torch.nonzero(env.settable[0] & env.settable[1])[0, 0])
    k = int(torch.nonzero(env.settable[0] & env.settable[1])[1, 0])
    common, own = env.repeat(3, common_noise=True), env.repeat(3)
    assert common.noise_of.tolist() == [0, 0, 0, 3, 3, 3] and own.noise_of is None
    var = torch.tensor([j, j, k, j, j, k])
    for e in (common, own):
        e.step(var, torch.full((6,), 0.3, dtype=torch.float64), generator("test", "common-noise-step"))
    rows = common.values[:, -1]                                                                   # 6 x d
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[3], rows[4])
    assert not torch.equal(rows[0], rows[3]) and not torch.equal(rows[0], rows[2])
    reach = env.scm.adjacency[0].float()                                                         # d x d: i -> j
    for _ in range(env.d):
        reach = ((reach + reach @ reach) > 0).float()
    apart = ~(reach[j] > 0) & ~(reach[k] > 0)                                                     # moved by neither
    apart[[j, k]] = False
    assert bool(apart.any()) and torch.equal(rows[0, apart], rows[2, apart])  # the same luck where neither reaches
    rows = own.values[:, -1]
    assert not torch.equal(rows[0], rows[1]) and not torch.equal(rows[0, apart], rows[2, apart])
    with pytest.raises(ValueError, match="copies already"):
        common.repeat(2)
    with pytest.raises(ValueError, match="needs design.mode 'trajectory'"):
        GroupDesign(mode="candidates", common_noise=True)


def test_a_policy_gone_nan_stops_a_rollout_with_what_it_came_from(pair):
    """A NaN weight (or input) makes the logits NaN: the rollout stops with the campaigns, input
    fields and parameters at fault named, not with torch.multinomial's 'probability tensor
    contains either inf, nan or element < 0'."""
    import copy

    from acbo.policy.rollout import policy_step

    policy, surrogate = pair
    policy = copy.deepcopy(policy).eval()
    name, param = next(iter(policy.named_parameters()))
    with torch.no_grad():
        param.fill_(float("nan"))
    g = generator("test", "nan-rollout")
    env = Env.from_family("train-lin", 2, 30, 3, g, n_mc=16)
    with pytest.raises(FloatingPointError, match=f"non-finite parameters \\['{name}'\\]"):
        policy_step(policy, surrogate, env, Belief.of(surrogate, env.campaign()), g)
