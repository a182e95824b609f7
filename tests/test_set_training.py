"""Training the set action (issue 29, item 4): simulated campaigns that set pairs, the policy's
stop head, the cost term, GRPO on set actions, and its learning smoke test."""

import numpy as np
import pytest
import torch

from acbo.configs import configure
from acbo.env import Env
from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint, save_policy
from acbo.policy.model import GridActionDist, Policy, PolicyConfig
from acbo.policy.rewards import experiment_cost, parent_hit
from acbo.policy.rollout import GroupDesign
from acbo.policy.sets import SetActionDist
from acbo.policy.train import PolicyTrainConfig, train
from acbo.seeding import generator
from acbo.surrogate import load_pretrained


@pytest.fixture(scope="module")
def surrogate():
    return load_pretrained().eval()


def _two_variable_action(stop=None) -> SetActionDist:
    """D = 2 variables, K = 1 cell each (uniform positions), domains [0, 1]; first-member logits
    (0, 1); partner logits: from X0, X1 at 0.5 or stop at 0; from X1, X0 at 0 or stop at 1."""
    logits = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    ones = torch.ones(1, 2, 1, dtype=torch.float64)
    first = GridActionDist(logits, ones, ones, torch.zeros(1, 2, dtype=torch.float64),
                           torch.ones(1, 2, dtype=torch.float64), stop)
    inf = float("-inf")
    partner = torch.tensor([[[inf, 0.5, 0.0], [0.0, inf, 1.0]]], dtype=torch.float64)
    return SetActionDist(first, partner)


def test_the_stop_head_biases_stop_exactly_by_hand():
    """With stop biases (b0, b1) = (2, -1): q(stop | X0) = e^(0 + 2) / (e^0.5 + e^2), q(stop | X1) =
    e^(1 - 1) / (e^0 + e^0); p({X0, X1}) sums both orders; the three probabilities sum to 1."""
    act = _two_variable_action(torch.tensor([[[2.0], [-1.0]]], dtype=torch.float64))
    e = np.exp
    pi = np.array([1.0, e(1.0)]) / (1 + e(1.0))
    stop0, stop1 = e(2.0) / (e(0.5) + e(2.0)), 1.0 / 2.0
    want = {(0,): pi[0] * stop0, (1,): pi[1] * stop1, (0, 1): pi[0] * (1 - stop0) + pi[1] * (1 - stop1)}
    assert sum(want.values()) == pytest.approx(1.0)
    for members, p in want.items():
        var = torch.tensor([[members[0], members[-1]]])
        u = torch.tensor([[0.4, 0.7 if len(members) == 2 else 0.4]], dtype=torch.float64)
        assert float(act.log_prob(var, u, torch.tensor([len(members)]))[0].exp()) == pytest.approx(p, rel=1e-9)
    no_bias = _two_variable_action()
    var, u, n = torch.tensor([[0, 0]]), torch.tensor([[0.4, 0.4]], dtype=torch.float64), torch.tensor([1])
    assert float(no_bias.log_prob(var, u, n).exp()) == pytest.approx(pi[0] * 1 / (e(0.5) + 1), rel=1e-9)


def _random_action(B=2, D=3, K=2, seed=3) -> SetActionDist:
    """Random first-member logits, a random stop head, uniform positions in each cell (Beta(1, 1)),
    domains [0, 1], random partner logits (another variable, or stop)."""
    g = torch.Generator().manual_seed(seed)
    ones = torch.ones(B, D, K, dtype=torch.float64)
    low = torch.zeros(B, D, dtype=torch.float64)
    first = GridActionDist(torch.randn(B, D, K, generator=g, dtype=torch.float64), ones, ones, low, low + 1,
                           torch.randn(B, D, K, generator=g, dtype=torch.float64))
    partner = torch.randn(B, D * K, D * K + 1, generator=g, dtype=torch.float64)
    same = torch.arange(D).repeat_interleave(K)
    partner[:, :, :-1] = partner[:, :, :-1].masked_fill(same[:, None] == same[None, :], float("-inf"))  # a partner is another variable
    return SetActionDist(first, partner)


def test_the_set_action_with_a_stop_head_is_a_distribution():
    """D = 3, K = 2, uniform positions: the density is constant in each cell, so an experiment's
    probability is exp(log_prob) times the cells' widths (1/K per member). Summed over every single
    cell and every unordered pair of cells of two variables — scored as B x k blocks — it is 1."""
    act = _random_action()
    B, D, K = act.first.logits.shape
    centre = lambda c: (c % K + 0.5) / K
    cells = range(D * K)
    exps = [(a, a) for a in cells] + [(a, b) for a in cells for b in cells if a // K < b // K]
    var = torch.tensor([[a // K, b // K] for a, b in exps]).expand(B, -1, -1)                   # B x k x 2
    u = torch.tensor([[centre(a), centre(b)] for a, b in exps], dtype=torch.float64).expand(B, -1, -1)
    n = torch.tensor([1 if a == b else 2 for a, b in exps]).expand(B, -1)
    mass = act.log_prob(var, u, n).exp() * (1.0 / K) ** n                                      # B x k
    assert torch.allclose(mass.sum(1), torch.ones(B, dtype=torch.float64), atol=1e-12)
    for j in (0, 7, 17):  # a block scores each experiment as a decision of one does
        assert torch.allclose(act.log_prob(var[:, j], u[:, j], n[:, j]), act.log_prob(var, u, n)[:, j])


def test_k_sampled_experiments_per_decision_follow_the_action():
    """sample(generator, k): B x k experiments, a single written as its variable twice; the
    sampled share of singles matches the action's probability of a single."""
    act = _random_action(B=1)
    var, u, n = act.sample(torch.Generator().manual_seed(0), 20000)
    assert var.shape == (1, 20000, 2) and u.shape == (1, 20000, 2) and n.shape == (1, 20000)
    assert bool(((n == 1) == (var[..., 0] == var[..., 1])).all())
    p_first = act.first._flat().exp()[0]                                                        # DK
    p_stop = torch.stack([act._partner_logp(torch.tensor([[c]]))[0, 0, -1].exp() for c in range(p_first.numel())])
    want = float((p_first * p_stop).sum())
    got = float((n == 1).double().mean())
    assert abs(got - want) < 4 * (want * (1 - want) / 20000) ** 0.5
    assert torch.allclose(act.value(var, u), u.double())


def test_a_rollout_of_set_actions_scores_its_actions_as_the_update_will():
    """The update recomputes each set action's log-probability from the rollout's stored partner
    rows: under the policy that acted, it equals the rollout's own (ratio 1), and its gradient
    is finite for singles and pairs alike (the stop head's parameters get one)."""
    from acbo.policy.checkpoint import load_pretrained_policy
    from acbo.policy.rollout import collect

    shipped, surrogate = load_pretrained_policy()
    policy = shipped.with_stop_head()
    env = Env.from_family("train-joint", 3, 40, 3, generator("test", "set-rollout"), 32)
    weights = {"improvement": 1.0, "outcome": 0.1, "info_gain": 0.0, "parent": 0.1, "cost": 0.1}
    batch, comps = collect(policy, surrogate, env, GroupDesign(size=4, max_set=2), weights, generator("test", "set-rollout", 1))
    assert batch.var.shape == (9, 4, 2) and batch.partner_rows.shape[:3] == (9, 4, 2)
    assert torch.equal(comps["cost"][..., :].flatten(), -batch.members.reshape(3, 3, 4).float().flatten())
    idx = torch.arange(9)
    logp = batch.log_prob(policy(batch.x.index(idx)), idx)
    assert torch.allclose(logp, batch.logp, atol=1e-5)
    logp.sum().backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and policy.stop_head.weight.grad is not None


def test_the_env_runs_experiments_on_sets_by_hand(chain3):
    """X1 -> X2 -> Y, X1 -> Y (0.8, 1.5, -0.5): with X2 set too, X1 moves Y by -0.5 per unit; a
    member written twice is one variable set once; the appended row holds both settings."""
    g = generator("test", "env-sets")
    env = Env.reset(chain3, 50, 3, g)
    both = lambda a, b: env.expected(torch.tensor([[[0, 1]]]), torch.tensor([[[a, b]]], dtype=torch.float64))
    assert float(both(1.0, 0.0) - both(0.0, 0.0)) == pytest.approx(-0.5, abs=1e-6)
    assert float(both(0.0, 1.0) - both(0.0, 0.0)) == pytest.approx(1.5, abs=1e-6)
    twice = env.expected(torch.tensor([[[0, 0]]]), torch.tensor([[[1.0, 1.0]]], dtype=torch.float64))
    once = env.expected(torch.tensor([[0]]), torch.tensor([[1.0]], dtype=torch.float64))
    assert torch.allclose(twice, once)
    e_y = env.step(torch.tensor([[0, 1]]), torch.tensor([[2.0, -1.0]], dtype=torch.float64), g)
    assert env.intervened[0, -1].tolist() == [True, True, False]
    assert env.values[0, -1, :2].tolist() == [2.0, -1.0]
    assert float(e_y[0]) == pytest.approx(float(both(2.0, -1.0)[0, 0]), abs=1e-6)


def test_parent_reward_and_cost_of_sets_by_hand():
    """A pair scores the share of its members that are parents; a single written twice scores as
    itself; the cost term is minus the variables set (without costs), or minus the sum of their
    costs over the mean cost."""
    parents = torch.tensor([[True, False, True]])
    var = torch.tensor([[[0, 1], [0, 2], [1, 1], [2, 2]]])
    assert parent_hit(var, parents).tolist() == [[0.5, 1.0, 0.0, 1.0]]
    var = torch.tensor([[[0, 0], [0, 2], [1, 2]]])
    members = torch.tensor([[1, 2, 2]])
    assert experiment_cost(var, torch.ones(1, 3), members).tolist() == [[-1.0, -2.0, -2.0]]
    relative = torch.tensor([[0.5, 2.0, 0.25]])
    assert experiment_cost(var, relative, members).tolist() == [[-0.5, -0.75, -2.25]]
    assert experiment_cost(torch.tensor([[1, 0]]), relative).tolist() == [[-2.0, -0.5]]


def test_a_stop_head_starts_at_zero_and_survives_a_checkpoint(tmp_path, surrogate):
    """with_stop_head keeps every weight and the actions (the head's bias is 0 everywhere), and a
    saved policy with the head loads with it; a policy without a grid cannot have one."""
    from acbo.policy.decide import decide
    from acbo.bench.runner import make_problem
    from acbo.buffer import CampaignBatch
    from acbo.surrogate import Belief

    torch.manual_seed(0)
    plain = Policy(PolicyConfig(token_dim=surrogate.cfg.dim, grid=4, world="conditioned")).eval()
    head = plain.with_stop_head().eval()
    assert head.cfg.stop_head and plain.with_stop_head() is not plain and head.with_stop_head() is head
    p = make_problem("test-joint", 0)
    x = torch.tensor(p.frame.to_numpy(), dtype=torch.float32)[None]
    t = list(p.frame.columns).index("Y")
    low, high = x.amin(1), x.amax(1)
    c = CampaignBatch.of_rows(x, torch.zeros_like(x, dtype=torch.bool), torch.tensor([t]), low, high, 0, 10,
                              torch.arange(x.shape[2]) != t)
    with torch.no_grad():
        xin, a = decide(plain, c, Belief.of(surrogate, c), surrogate)
        b = head(xin)
    assert torch.equal(a.logits, b.logits) and a.stop is None and bool((b.stop == 0).all())
    save_policy(tmp_path / "policy.pt", head, surrogate, 0)
    back, _ = load_policy_checkpoint(tmp_path / "policy.pt", surrogate=surrogate)
    assert back.cfg.stop_head and torch.equal(back.stop_head.weight, head.stop_head.weight)
    with pytest.raises(ValueError, match="stop_head"):
        PolicyConfig(stop_head=True)


def test_the_amortized_method_follows_its_stop_head(tmp_path, surrogate):
    """A stop head whose bias is +50 everywhere makes every experiment a single; at -50, every
    experiment of a campaign that allows pairs sets two."""
    from acbo import CausalOptimizer
    from acbo.bench.runner import make_problem
    from acbo.policy.checkpoint import load_pretrained_policy

    shipped, pair_surrogate = load_pretrained_policy()
    policy = shipped.with_stop_head()
    p = make_problem("test-joint", 1)
    for bias, members in ((50.0, {1}), (-50.0, {2})):
        with torch.no_grad():
            policy.stop_head.bias.fill_(bias)
        path = tmp_path / f"policy{bias:+.0f}.pt"  # a file per bias: loaded pairs are shared by path
        save_policy(path, policy, pair_surrogate, 0)
        opt = CausalOptimizer(p.frame, target="Y", method="amortized", seed=0, domains=p.domains,
                              intervenable=p.settable, max_set=2, checkpoint=str(path))
        seen = set()
        for t in range(3):
            iv = opt.ask()
            seen.add(len(iv))
            opt.tell(iv, p.scm.run_experiment(dict(iv), generator("test", "stop-head", t)), accept_outlier=True)
        assert seen == members


def _tiny(tmp_path, grid: int = 4, world: str = "conditioned", cost: float = 0.0, **kw) -> PolicyTrainConfig:
    base = dict(families=("train-joint",), iterations=1, batch_size=6, group_size=4, horizon=(3, 3), n_obs=(40, 40),
                minibatch=64, val_family="train-joint", val_campaigns=6, val_horizon=3, val_every=1, reward_mc=32,
                out=str(tmp_path / "run"))
    base.update(kw)
    return configure(PolicyTrainConfig, {"policy.grid": grid, "policy.world": world, "design.max_set": 2,
                                         "rewards.cost": cost}, **base)


def test_a_costly_second_variable_teaches_the_policy_to_set_one(tmp_path):
    """The learning smoke test of set actions: with every variable costing a unit worth far more
    than the rest of the reward, GRPO on the set action drives the share of experiments that set
    two down in the validation campaigns (the stop head and the first member's choice learn; since
    the world model reads pair rows as evidence about each member it starts more slowly: a run of
    this configuration validating every 4 iterations gave 0.94, 0.92, 0.81, 0.60, 0.31)."""
    cfg = _tiny(tmp_path, iterations=16, val_every=16, batch_size=8, lr=1e-2, val_campaigns=16, cost=1.0)
    policy = train(cfg, log=lambda s: None)
    hist = read_policy_checkpoint(tmp_path / "run" / "policy.pt")["history"]
    assert policy.cfg.stop_head
    assert hist[0]["val_pair_frac"] > 0.5
    assert hist[-1]["val_pair_frac"] < hist[0]["val_pair_frac"] - 0.3


def test_set_training_rolls_out_in_workers_as_in_one_process(tmp_path):
    """Rollout workers build the policy's own architecture (its grid and stop head) and roll out
    the same campaigns: one iteration with two workers trains the weights one process trains."""
    one = train(_tiny(tmp_path / "one"), log=lambda s: None)
    two = train(_tiny(tmp_path / "two", rollout_workers=2), log=lambda s: None)
    assert one.cfg.stop_head and two.cfg == one.cfg
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.equal(a, b), name


def test_set_training_is_configured_or_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="max_set must be 1 or 2"):
        GroupDesign(max_set=3)
    with pytest.raises(ValueError, match="world model"):
        _tiny(tmp_path, grid=0, world="network")
    with pytest.raises(ValueError, match="stop_head"):
        configure(PolicyTrainConfig, {"policy.grid": 4, "policy.stop_head": True})
    from acbo.e2e.train import E2EConfig

    with pytest.raises(ValueError, match="stage 2"):
        configure(E2EConfig, {"design.max_set": 2})
