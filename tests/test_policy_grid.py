"""The policy that reads the world model: its grid features by hand, its action distribution, and
the method and training paths it runs through."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from acbo.buffer import CampaignBatch
from acbo.policy.features import EI_FLOOR, grid_features, grid_positions, incumbent
from acbo.policy.model import GridActionDist, Policy, PolicyConfig
from acbo.policy.decide import policy_input
from acbo.surrogate import Belief, load_pretrained


@pytest.fixture(scope="module")
def surrogate():
    return load_pretrained().eval()


def _three_variables(with_intervention: bool = True) -> CampaignBatch:
    """X0, X1, Y (the target): four observational rows, then do(X0 = 2.5) measured once."""
    rows = [[0.0, 1.0, 0.5], [2.0, 0.0, 1.5], [0.0, 2.0, -0.5], [2.0, 1.0, 2.5]]
    if with_intervention:
        rows.append([2.5, 0.7, -1.0])
    v = torch.tensor(rows, dtype=torch.float64)[None]
    N = v.shape[1]
    iv = torch.zeros(1, N, 3, dtype=torch.bool)
    if with_intervention:
        iv[0, 4, 0] = True
    return CampaignBatch(v, iv, torch.ones(1, N, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool),
                    torch.tensor([[False, False, True]]), torch.tensor([[-1.0, 0.0, 0.0]], dtype=torch.float64),
                    torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64), torch.tensor([[True, True, False]]),
                    torch.tensor([1]), torch.tensor([10]))


def _bar_by_hand(logits: torch.Tensor, edges: torch.Tensor, best: float) -> dict[str, float]:
    """Mean, std, EI and the 0.1 / 0.9 quantiles of a piecewise-uniform density, by integrating it
    on a fine grid (not the closed forms the library uses)."""
    p = torch.softmax(logits.detach().double(), 0)
    e = edges.double()
    ts, dens = [], []
    for i in range(len(p)):
        t = torch.linspace(float(e[i]), float(e[i + 1]), 201, dtype=torch.float64)[:-1] + (e[i + 1] - e[i]) / 400
        ts.append(t)
        dens.append(torch.full_like(t, float(p[i] / (e[i + 1] - e[i]))))
    t, f = torch.cat(ts), torch.cat(dens)
    w = torch.cat([torch.full((200,), float((e[i + 1] - e[i]) / 200), dtype=torch.float64) for i in range(len(p))])
    mass = f * w
    mean = float((mass * t).sum())
    std = math.sqrt(float((mass * (t - mean) ** 2).sum()))
    ei = float((mass * (best - t).clamp_min(0)).sum())
    cdf = mass.cumsum(0)
    q = lambda a: float(t[int(torch.searchsorted(cdf, torch.tensor(a, dtype=torch.float64)))])
    return {"mean": mean, "std": std, "ei": ei, "q10": q(0.1), "q90": q(0.9)}


def test_grid_features_by_hand_on_three_variables(surrogate):
    c = _three_variables()
    K = 4
    belief = Belief.of(surrogate, c)
    feats = grid_features(surrogate, c, belief.tokens, K)                                     # 1 x 3 x 4 x 8
    assert feats.shape == (1, 3, K, 8)
    assert torch.equal(feats[0, 2], torch.zeros(K, 8))                                        # the target: nothing
    # observational stats by hand: X0 {0, 2, 0, 2} -> mean 1, std sqrt(4/3); X1 {1, 0, 2, 1} -> 1, sqrt(2/3);
    # Y {0.5, 1.5, -0.5, 2.5} -> mean 1, std sqrt(5/3)
    m = torch.tensor([1.0, 1.0, 1.0])
    s = torch.tensor([math.sqrt(4 / 3), math.sqrt(2 / 3), math.sqrt(5 / 3)])
    u = torch.tensor([0.125, 0.375, 0.625, 0.875])
    assert torch.allclose(grid_positions(K), u)
    lows, highs = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 2.0])
    batch = c.standardised()
    # the incumbent: the mean head's E[Y | do(X0 = 2.5)] (z = 1.5 / sqrt(4/3)), or 0 if that is lower
    # (X0 = 2.5 is grid point k = 3 of X0's domain (-1, 3))
    _, mean_logits = surrogate.query(batch, belief.tokens, torch.tensor([[0]]),
                                     torch.tensor([[[1.5 / math.sqrt(4 / 3)]]], dtype=torch.float32))
    mu_done = _bar_by_hand(mean_logits[0, 0, 0], surrogate.edges, 0.0)["mean"]
    best = min(0.0, mu_done)
    # X0 = 2.5 is grid point k = 3 of (-1, 3): the incumbent read off the grid is the query's value there
    assert float(feats[0, 0, 3, 1]) == pytest.approx(mu_done, abs=1e-4)
    # off the grid: linear interpolation between the two nearest points (flat beyond the outer ones)
    mu = torch.tensor([[[-0.4, -0.2, 0.1, 0.3], [0.5, -0.9, 0.0, 0.2], [9.0, 9.0, 9.0, 9.0]]], dtype=torch.float64)
    c_off = CampaignBatch(c.values.clone(), c.intervened, c.row_mask, c.var_mask, c.target, c.low, c.high,
                     c.intervenable, c.step, c.horizon)
    c_off.values[0, 4, 0] = 0.25                                  # u = 1.25 / 4 = 0.3125 -> between k = 0 and 1
    assert float(incumbent(c_off, mu)[0]) == pytest.approx(-0.4 * 0.25 + -0.2 * 0.75, abs=1e-9)
    c_off.values[0, 4, 0] = 3.0                                   # the domain's end: the last point's mean
    assert float(incumbent(c_off, mu)[0]) == 0.0                  # 0.3 > 0: doing nothing is better
    c_off.values[0, 4, 0] = -1.0                                  # the other end: flat beyond the first point
    assert float(incumbent(c_off, mu)[0]) == pytest.approx(-0.4, abs=1e-9)
    for j in range(2):
        x = lows[j] + (highs[j] - lows[j]) * u                                                # the grid, by hand
        z = ((x - m[j]) / s[j]).float()
        draw, mean_l = surrogate.query(batch, belief.tokens, torch.tensor([[j]]), z[None, None])
        for k in range(K):
            f = _bar_by_hand(mean_l[0, 0, k], surrogate.edges, best)
            meas = _bar_by_hand(draw[0, 0, k], surrogate.edges, best)
            got = feats[0, j, k].double()
            assert float(got[0]) == pytest.approx(float(u[k]))
            assert float(got[1]) == pytest.approx(f["mean"], abs=2e-3)
            assert float(got[2]) == pytest.approx(f["std"], abs=2e-3)
            assert float(got[3]) == pytest.approx(meas["q10"], abs=0.05)
            assert float(got[4]) == pytest.approx(meas["q90"], abs=0.05)
            assert float(got[5]) == pytest.approx(f["ei"], abs=2e-3)
            assert float(got[6]) == pytest.approx(math.log(float(got[5]) + EI_FLOOR), abs=1e-5)
            assert float(got[7]) == pytest.approx(best - f["mean"], abs=2e-3)
    # a variable that cannot be set is not queried (zeros); the others' features do not change
    c_fixed = CampaignBatch(c.values, c.intervened, c.row_mask, c.var_mask, c.target, c.low, c.high,
                       torch.tensor([[True, False, False]]), c.step, c.horizon)
    f_fixed = grid_features(surrogate, c_fixed, belief.tokens, K)
    assert torch.equal(f_fixed[0, 1], torch.zeros(K, 8)) and torch.allclose(f_fixed[0, 0], feats[0, 0], atol=1e-6)
    # no intervention yet: the incumbent is doing nothing (Y's observational mean, 0 in standard units)
    c0 = _three_variables(with_intervention=False)
    assert float(incumbent(c0, mu)[0]) == 0.0


def test_an_untrained_grid_policy_samples_cells_in_proportion_to_ei(surrogate):
    c = _three_variables()
    x = policy_input(c, Belief.of(surrogate, c), surrogate, 4)
    torch.manual_seed(0)
    dist = Policy(PolicyConfig(token_dim=surrogate.cfg.dim, grid=4))(x)
    ei = x.grid[0, :2, :, 5].double() + EI_FLOOR                                               # X0, X1 x 4 cells
    probs = torch.softmax(dist.logits[0].reshape(-1).double(), 0).reshape(3, 4)
    assert torch.allclose(probs[:2], ei / ei.sum(), atol=1e-5)
    assert float(probs[2].sum()) == 0.0                                                        # never the target


def _grid_dist(B=2, D=3, K=4) -> GridActionDist:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, D, K, generator=g)
    logits[:, 0] = float("-inf")                       # e.g. the target
    alpha = 1 + 3 * torch.rand(B, D, K, generator=g)
    beta = 1 + 3 * torch.rand(B, D, K, generator=g)
    low = -torch.rand(B, D, generator=g, dtype=torch.float64)
    return GridActionDist(logits, alpha, beta, low, low + 1 + torch.rand(B, D, generator=g, dtype=torch.float64))


def test_the_grid_density_is_exact_and_integrates_to_one():
    dist = _grid_dist()
    B, D, K = dist.logits.shape
    var, u = dist.sample(torch.Generator().manual_seed(1), k=5)
    # by hand: log softmax over (variable, cell) + log Beta(r) + log K - log width, r = u K - cell
    cell = torch.floor(u.double() * K).long()
    r = u.double() * K - cell
    flat = torch.log_softmax(dist.logits.reshape(B, -1), 1)
    ref = (flat.gather(1, var * K + cell)
           + torch.distributions.Beta(dist.alpha.reshape(B, -1).gather(1, var * K + cell),
                                      dist.beta.reshape(B, -1).gather(1, var * K + cell)).log_prob(r.float())
           + math.log(K) - torch.log(dist.high.gather(1, var) - dist.low.gather(1, var)).float())
    assert torch.allclose(dist.log_prob(var, u), ref, atol=1e-4)
    # sum over variables of the integral over the value = 1 (the density is in the data's units)
    one = GridActionDist(*(t[:1] for t in (dist.logits, dist.alpha, dist.beta, dist.low, dist.high)))
    t = torch.linspace(0, 1, 40001, dtype=torch.float64)[1:-1]
    total = 0.0
    for j in (1, 2):
        lp = one.log_prob(torch.full((1, len(t)), j), t[None].float())[0].double()
        lo, hi = float(one.low[0, j]), float(one.high[0, j])
        total += float(torch.trapezoid(lp.exp(), lo + t * (hi - lo)))
    assert total == pytest.approx(1.0, abs=2e-3)


def test_grid_samples_follow_the_cell_probabilities_and_entropy_is_the_expected_surprise():
    dist = _grid_dist(B=1)
    var, u = dist.sample(torch.Generator().manual_seed(2), k=40000)
    assert (var != 0).all() and ((u > 0) & (u < 1)).all()
    K = dist.logits.shape[2]
    idx = var * K + torch.floor(u * K).long()
    freq = torch.bincount(idx[0], minlength=3 * K).double() / idx.shape[1]
    probs = torch.softmax(dist.logits[0].reshape(-1).double(), 0)
    assert torch.allclose(freq, probs, atol=0.01)
    # the entropy over (variable, position in the domain) = E[-log density], the density in units of u
    log_u_density = dist.log_prob(var, u) + torch.log(dist.high.gather(1, var) - dist.low.gather(1, var)).float()
    assert float(dist.entropy()[0]) == pytest.approx(float(-log_u_density.mean()), abs=0.03)
    j, mu = dist.mode()
    assert int(j[0] * K + torch.floor(mu[0] * K).long()) == int(probs.argmax())
    a = dist.sample(torch.Generator().manual_seed(5), 3)
    b = dist.sample(torch.Generator().manual_seed(5), 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_grid_config_and_inputs_are_checked(surrogate):
    with pytest.raises(ValueError, match="grid must be 0"):
        PolicyConfig(grid=1)
    with pytest.raises(ValueError, match="grid must be 0"):
        PolicyConfig(grid=-2)
    c = _three_variables()
    x = policy_input(c, Belief.of(surrogate, c), surrogate, 4)
    with pytest.raises(ValueError, match="reads 8 grid points"):
        Policy(PolicyConfig(token_dim=surrogate.cfg.dim, grid=8))(x)
    from acbo.surrogate.model import Surrogate, SurrogateConfig
    no_head = Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=False)).eval()
    with pytest.raises(ValueError, match="world-model head"):
        policy_input(c, Belief.of(no_head, c), no_head, 4)


def test_the_amortized_method_runs_a_grid_policy_pair(tmp_path, surrogate):
    import acbo
    from acbo.policy.checkpoint import load_policy_checkpoint, save_policy

    torch.manual_seed(0)
    policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim, grid=8))
    save_policy(tmp_path / "policy.pt", policy, surrogate, 0)
    p2, s2 = load_policy_checkpoint(tmp_path / "policy.pt")
    assert p2.cfg.grid == 8
    r = np.random.default_rng(0)
    x1 = r.normal(size=100)
    df = pd.DataFrame({"X1": x1, "X2": r.normal(size=100), "Y": 2 * x1 + r.normal(size=100) * 0.1})
    opt = acbo.CausalOptimizer(df, target="Y", method="amortized", checkpoint=str(tmp_path / "policy.pt"), seed=0)
    for _ in range(3):
        iv = opt.ask()
        (name, value), = iv.items()
        lo, hi = opt.domains[name]
        assert lo <= value <= hi
        sample = {"X1": value if name == "X1" else 0.0, "X2": value if name == "X2" else 0.0}
        sample["Y"] = 2 * sample["X1"]
        opt.tell(iv, sample)


def test_the_context_memo_gives_the_same_grid_features_as_recomputing(surrogate):
    """Over a campaign (B = 3, rows added step by step, one intervention setting Y itself) the
    memo's features equal those computed from scratch; a different campaign in the same memo is
    recomputed, not read from it."""
    from acbo.env import Env
    from acbo.seeding import generator
    from acbo.surrogate.model import ContextMemo
    g = generator("test", "memo", 0)
    env = Env.from_family("test-broad", 3, 60, 4, g)
    memo = ContextMemo()
    for t in range(4):
        c = env.campaign()
        tokens = Belief.of(surrogate, c).tokens
        fresh = grid_features(surrogate, c, tokens, 8)
        assert torch.allclose(grid_features(surrogate, c, tokens, 8, memo), fresh, atol=1e-5)
        target = int(c.target[0].float().argmax())
        var = torch.tensor([target if t == 2 else t % 2, t % 2, 1])          # step 2 sets Y in campaign 0
        env.step(var, env.low.gather(1, var[:, None])[:, 0] + 0.3, g)
    other = Env.from_family("test-broad", 3, 60, 4, generator("test", "memo", 1)).campaign()
    tokens = Belief.of(surrogate, other).tokens
    assert torch.allclose(grid_features(surrogate, other, tokens, 8, memo), grid_features(surrogate, other, tokens, 8),
                          atol=1e-5)
