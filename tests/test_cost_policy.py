"""A policy that reads costs (issue 29, item 6): the cost features by hand, the cost head (at zero
the per-unit rule, unread without costs), simulated campaigns with costs, training the head, and
the amortized method reading costs through it."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from acbo import CausalOptimizer
from acbo.configs import configure
from acbo.e2e.train import E2EConfig
from acbo.env import Env
from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy, read_policy_checkpoint, save_policy
from acbo.policy.features import COST_FLOOR, N_COST_FEATURES, cost_features
from acbo.policy.model import Policy, PolicyConfig
from acbo.policy.rollout import GroupDesign, training_cost_features
from acbo.policy.train import PolicyTrainConfig, train
from acbo.seeding import generator


def test_cost_features_by_hand():
    """Two valid variables of costs (1, 3) in both cells and an invalid one: c_bar = 2; log(c /
    c_bar) = log 0.5, log 1.5; share of an allowance of 8: 1/8, 3/8; log(1 + 8 / 2) = log 5.
    Without a budget (inf) the 3 steps left buy 3 c_bar = 6: shares 1/6, 1/2, log(1 + 3). A free
    variable reads COST_FLOOR mean costs. The invalid variable reads zero."""
    cost = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [7.0, 7.0]]], dtype=torch.float64)
    valid = torch.tensor([[True, True, False]])
    f = cost_features(cost, valid, torch.tensor([8.0], dtype=torch.float64), torch.tensor([3]))
    assert f.shape == (1, 3, 2, N_COST_FEATURES)
    want = torch.tensor([[math.log(0.5), 1 / 8, math.log(5)], [math.log(1.5), 3 / 8, math.log(5)], [0.0, 0.0, 0.0]])
    assert torch.allclose(f[0, :, 0], want.float())
    assert torch.equal(f[0, :, 0], f[0, :, 1])
    f = cost_features(cost, valid, torch.tensor([math.inf], dtype=torch.float64), torch.tensor([3]))
    assert torch.allclose(f[0, :2, 0, 1:], torch.tensor([[1 / 6, math.log(4)], [1 / 2, math.log(4)]]))
    free = cost_features(cost * torch.tensor([0.0, 1.0, 1.0])[None, :, None], valid,
                         torch.tensor([8.0], dtype=torch.float64), torch.tensor([3]))
    assert float(free[0, 0, 0, 0]) == pytest.approx(math.log(COST_FLOOR))


@pytest.fixture(scope="module")
def pair():
    return load_pretrained_policy()


def _campaign(pair, seed=0):
    """A small simulated campaign (one SCM) and the shipped surrogate's belief about it."""
    from acbo.surrogate import Belief

    env = Env.from_family("train-joint", 1, 50, 5, generator("test", "cost-policy", seed), n_mc=32)
    c = env.campaign()
    return env, c, Belief.of(pair[1], c)


def test_an_untrained_cost_head_is_the_per_unit_rule_and_is_not_read_without_costs(pair):
    """The shipped policy with a cost head at zero gives, with costs, the shipped policy's logits
    less log(c / c_bar) per cell: its probabilities divided by each cell's cost (the rule the
    method applies to a policy without the head); a trained head adds a term that differs between
    cells. Without costs the policy with any cost head gives the
    shipped policy's logits bit for bit."""
    from acbo.policy.decide import decide

    policy, surrogate = pair
    env, c, belief = _campaign(pair)
    headed = policy.with_cost_head().eval()
    assert headed.cfg.cost_head and not policy.cfg.cost_head
    env = env.with_costs(1.0, 10.0, generator("test", "cost-policy-costs"))
    cost = training_cost_features(env, policy.cfg.grid)
    x, dist = decide(policy, c, belief, surrogate)
    xc, dist_c = decide(headed, c, belief, surrogate, cost=cost)
    ok = torch.isfinite(dist.logits)
    assert torch.equal(ok, torch.isfinite(dist_c.logits)) and int(ok[0].any(1).sum()) >= 3
    cell = env.costs[:, :, None].expand_as(dist.logits)
    c_bar = env.costs[env.settable].mean()
    assert torch.allclose((dist_c.logits - dist.logits)[ok].double(), -torch.log(cell / c_bar)[ok], atol=1e-5)
    with torch.no_grad():
        headed.cost_head.mlp[-1].bias.fill_(0.3)
        headed.cost_head.mlp[-1].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    trained = decide(headed, c, belief, surrogate, cost=cost)[1]
    learned = (trained.logits - dist_c.logits)[ok]
    assert float(learned.max() - learned.min()) > 0.1  # a learned term that differs between cells
    assert torch.equal(decide(headed, c, belief, surrogate)[1].logits, dist.logits)


def test_costs_of_simulated_campaigns():
    """Drawn per campaign in [low, high] for the settable variables, 0 for the others (the target);
    relative costs average 1 over the settable ones (1 each without costs); repeated campaigns
    keep theirs; a bad range is refused."""
    g = generator("test", "env-costs")
    env = Env.from_family("train-joint", 3, 40, 4, g, n_mc=16)
    assert env.costs is None and torch.equal(env.relative_costs(), env.settable.double())
    env = env.with_costs(2.0, 5.0, g)
    s = env.settable
    assert bool(((env.costs[s] >= 2.0) & (env.costs[s] <= 5.0)).all()) and bool((env.costs[~s] == 0).all())
    rel = env.relative_costs()
    assert torch.allclose((rel * s).sum(1) / s.sum(1), torch.ones(3, dtype=torch.float64))
    assert torch.equal(env.repeat(2).costs, env.costs.repeat_interleave(2, 0))
    with pytest.raises(ValueError, match=r"0 < low <= high, got \(5.0, 2.0\)"):
        env.with_costs(5.0, 2.0, g)


@pytest.mark.parametrize("kw, message", [
    ({"trainable": "cost_head"}, "needs design.costs"),
    ({"trainable": "heads"}, "trainable must be one of"),
    ({"design.costs": (3.0, 1.0)}, "design.costs must be"),
    ({"design.costs": 5}, r"design.costs must be .* got 5"),
    ({"design.costs": (1, "a")}, "design.costs must be"),
    ({"design.costs": (1.0, 10.0), "policy.grid": 0}, "grid >= 2"),
    ({"design.costs": (1.0, 10.0), "policy.grid": 4, "trainable": "cost_head", "bc.folder": "demos", "bc.steps": 5},
     "demonstrations"),
])
def test_bad_cost_training_settings_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        configure(PolicyTrainConfig, kw)


def test_stage_3_refuses_costs():
    with pytest.raises(ValueError, match="stage 3 trains without costs"):
        configure(E2EConfig, {"design.costs": (1.0, 10.0)})


def _tiny(tmp_path, **kw) -> PolicyTrainConfig:
    base = dict(families=("train-lin",), iterations=1, batch_size=6, group_size=4, horizon=(3, 3), n_obs=(40, 40),
                minibatch=64, val_family="lin-er-10", val_campaigns=6, val_horizon=3, val_every=1, reward_mc=32,
                out=str(tmp_path / "run"))
    base.update(kw)
    return configure(PolicyTrainConfig, {"policy.grid": 4, "policy.world": "conditioned", "design.costs": (1.0, 10.0),
                                         "trainable": "cost_head"}, **base)


def test_training_only_the_cost_head_leaves_the_rest_and_survives_a_checkpoint(tmp_path):
    """With trainable 'cost_head' one iteration moves the cost head and nothing else; the
    checkpoint holds the head and loads it; validation reports the spend."""
    cfg = _tiny(tmp_path, **{"rewards.cost": 1.0, "lr": 1e-2})
    from acbo.policy.train import frozen_surrogate, starting_policy

    start = starting_policy(cfg, frozen_surrogate("", "cpu"))
    before = {k: v.clone() for k, v in start.state_dict().items()}
    policy = train(cfg, log=lambda s: None)
    after = policy.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.startswith("cost_head.") for k in moved), moved
    state = read_policy_checkpoint(tmp_path / "run" / "policy.pt")
    assert state["model_config"]["cost_head"] and "val_spend" in state["history"][-1]
    loaded = load_policy_checkpoint(tmp_path / "run" / "policy.pt")[0]
    assert torch.equal(loaded.cost_head.mlp[-1].weight, after["cost_head.mlp.2.weight"])


def test_a_dear_experiment_teaches_the_cost_head_to_spend_less(tmp_path):
    """The learning smoke test of the cost head: with each experiment's cost (over the mean) worth
    far more than the rest of the reward, GRPO on the head alone lowers the mean cost of the
    validation campaigns' experiments (runs of this configuration with seeds 0, 1, 2: 0.73 -> 0.40,
    0.79 -> 0.41, 0.70 -> 0.49 mean costs; the rule's weight went from 1 to about 2)."""
    cfg = _tiny(tmp_path, iterations=12, val_every=12, batch_size=8, lr=1e-1, val_campaigns=16,
                **{"rewards.cost": 10.0, "update.epochs": 4})
    train(cfg, log=lambda s: None)
    hist = read_policy_checkpoint(tmp_path / "run" / "policy.pt")["history"]
    assert hist[-1]["val_spend"] < hist[0]["val_spend"] - 0.15, [h["val_spend"] for h in hist]


def _twins(n=200, seed=0):
    """Y = X1 + X2 + noise, X1 and X2 independent N(0, 1): setting either is as good as the other."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    return pd.DataFrame({"X1": x1, "X2": x2, "Y": x1 + x2 + 0.3 * rng.standard_normal(n)})


def test_the_method_reads_costs_through_the_cost_head(tmp_path, pair):
    """A pair whose policy has a cost head at zero chooses as the shipped pair with the per-unit
    rule (the same distribution, so the rule is not applied twice); with a head that adds +50 to
    the dear variable's cells it sets the dear variable, where the rule alone sets the cheap one."""
    policy, surrogate = pair
    headed = policy.with_cost_head()
    path = tmp_path / "zero" / "policy.pt"
    path.parent.mkdir()
    save_policy(path, headed, surrogate, 0)
    costs = {"X1": 20.0, "X2": 1.0}
    dists = []
    for ckpt in (None, str(path)):
        opt = CausalOptimizer(_twins(), target="Y", method="amortized", seed=0, costs=costs, checkpoint=ckpt)
        m, buf = opt.method, opt.buffer
        x, dist = m._decide(m._campaign(buf), buf)
        dists.append(torch.softmax(m._restricted(x, dist, buf, []).logits.flatten(1), 1))
    assert torch.allclose(dists[0], dists[1], atol=1e-6)
    with torch.no_grad():  # the head reads the cost feature: +50 per unit of log(c / c_bar) (X1 the dear one)
        headed.cost_head.mlp[0].weight.zero_()
        headed.cost_head.mlp[0].bias.zero_()
        headed.cost_head.mlp[0].weight[0, -N_COST_FEATURES] = 1.0
        headed.cost_head.mlp[-1].weight.zero_()
        headed.cost_head.mlp[-1].weight[0, 0] = 50.0
    dear = tmp_path / "dear" / "policy.pt"
    dear.parent.mkdir()
    save_policy(dear, headed, surrogate, 0)
    for ckpt, want in ((None, "X2"), (str(dear), "X1")):
        opt = CausalOptimizer(_twins(), target="Y", method="amortized", seed=0, costs=costs, checkpoint=ckpt)
        assert list(opt.ask()) == [want]


def test_cost_training_settings_from_the_command_line():
    """A setting whose default is None takes a comma-separated tuple, a single value, or none."""
    from acbo.configs import config_from_argv

    cfg = config_from_argv(PolicyTrainConfig, ["--design.costs", "1,10", "--trainable", "cost_head", "--policy.grid", "4"],
                           "test")
    assert cfg.design.costs == (1, 10) and cfg.trainable == "cost_head"
    assert config_from_argv(PolicyTrainConfig, ["--design.costs", "none"], "test").design.costs is None


def test_pairs_per_unit_cost_do_not_depend_on_the_units(pair):
    """An experiment that may set two variables is chosen the same with costs in any units: the
    world model's partner is per unit of the mean cost, as in training (here costs 1e8 times
    apart; read in the user's units, every pair's EI per unit cost fell under the floor and the
    choice changed)."""
    from acbo.bench.runner import make_problem

    p = make_problem("test-joint", 2)
    base = {name: 1.0 + i for i, name in enumerate(p.settable)}
    asked = []
    for scale in (1.0, 1e8):
        opt = CausalOptimizer(p.frame, target="Y", method="amortized", seed=0, domains=p.domains,
                              intervenable=p.settable, max_set=2, costs={k: v * scale for k, v in base.items()})
        asked.append([dict(opt.ask(3)[i]) for i in range(3)])
    assert asked[0] == asked[1]
