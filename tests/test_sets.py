"""Experiments that set several variables at once: the simulator, the optimizer's max_set and
exploration sets, random search over sets, and the benchmark harness with y* over sets."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from acbo import CausalOptimizer
from acbo.bench.runner import BenchConfig, make_problem, run_bench
from acbo.method import build_method
from acbo.scm import SCM
from acbo.seeding import generator

from conftest import small_problem


def test_a_set_intervention_in_the_simulator_by_hand(chain3):
    """X1 -> X2 -> Y, X1 -> Y (weights 0.8, 1.5, -0.5). Setting X1 alone moves Y by
    -0.5 + 0.8 * 1.5 = 0.7 per unit; setting X1 and X2 together cuts the path through X2, so X1
    moves Y by -0.5 and X2 by 1.5; the sample holds the set values exactly."""
    e = lambda iv: chain3.expected_outcome(iv)
    assert e({"X1": 1.0}) - e({"X1": 0.0}) == pytest.approx(0.7, abs=1e-5)
    assert e({"X1": 1.0, "X2": 0.0}) - e({"X1": 0.0, "X2": 0.0}) == pytest.approx(-0.5, abs=1e-5)
    assert e({"X1": 0.0, "X2": 1.0}) - e({"X1": 0.0, "X2": 0.0}) == pytest.approx(1.5, abs=1e-5)
    row = chain3.run_experiment({"X1": 2.5, "X2": -1.25}, generator("test", "set-row"))
    assert row["X1"] == 2.5 and row["X2"] == -1.25


def test_max_set_one_asks_what_one_variable_at_a_time_asks():
    """The default, max_set=1 and the method's single-variable proposal give the same
    trajectory, bit for bit."""
    scm, frame = small_problem("lin-er-10", 3)
    a = CausalOptimizer(frame, target=scm.names()[scm.target[0]], method="random", seed=5)
    b = CausalOptimizer(frame, target=scm.names()[scm.target[0]], method="random", seed=5, max_set=1)
    g = torch.Generator()
    g.set_state(a._gen.get_state())
    for t in range(6):
        ia, ib = a.ask(), b.ask()
        i, v = a.method.propose(a.buffer, g)
        assert dict(ia) == dict(ib) == {a.names[i]: v}
        row = scm.run_experiment(ia, generator("test", "set-one", t))
        a.tell(ia, row)
        b.tell(ib, row)


def test_random_search_over_sets_keeps_to_the_allowed_sets(tmp_path):
    scm, frame = small_problem("lin-er-10", 1)
    y = scm.names()[scm.target[0]]
    settable = [n for n in scm.names() if n != y]
    opt = CausalOptimizer(frame, target=y, method="random", seed=2, max_set=2)
    sizes = []
    for t in range(40):
        iv = opt.ask()
        assert 1 <= len(iv) <= 2 and set(iv) <= set(settable)
        for n, v in iv.items():
            lo, hi = opt.domains[n]
            assert lo <= v <= hi
        sizes.append(len(iv))
        opt.tell(iv, scm.run_experiment(iv, generator("test", "set-random", t)))
    # each allowed set equally likely: 9 singles and 36 pairs of 9 settable variables
    assert 0.6 < sizes.count(2) / len(sizes) < 0.95
    # saved and loaded, the campaign keeps its sets and asks what it would have, after a tell too
    opt.save(tmp_path / "c.acbo")
    back = CausalOptimizer.load(tmp_path / "c.acbo")
    assert back.problem.max_set == 2
    for t in range(3):
        iv = opt.ask()
        assert back.ask() == iv
        row = scm.run_experiment(iv, generator("test", "set-resume", t))
        opt.tell(iv, row)
        back.tell(iv, row)
    # exploration sets: only those
    allowed = [[settable[0], settable[1]], [settable[2]]]
    opt = CausalOptimizer(frame, target=y, method="random", seed=2, max_set=2, exploration_sets=allowed)
    seen = set()
    for t in range(12):
        iv = opt.ask()
        seen.add(tuple(sorted(iv)))
        opt.tell(iv, scm.run_experiment(iv, generator("test", "set-explore", t)))
    assert seen == {tuple(sorted(allowed[0])), (allowed[1][0],)}
    opt.save(tmp_path / "e.acbo")
    assert CausalOptimizer.load(tmp_path / "e.acbo").problem.sets == opt.problem.sets


@pytest.mark.parametrize("kwargs, match", [
    ({"max_set": 0}, "max_set must be a positive integer"),
    ({"max_set": True}, "max_set must be a positive integer"),
    ({"max_set": 99}, "only 9 variables may be set"),
    ({"max_set": 2, "exploration_sets": [["X0", "nope"]]}, "may not be set"),
    ({"max_set": 1, "exploration_sets": [["X0", "X1"]]}, "more than max_set=1"),
    ({"max_set": 2, "exploration_sets": [["X0", "X0"]]}, "repeats a variable"),
    ({"max_set": 2, "exploration_sets": [[]]}, "is empty"),
    ({"max_set": 2, "exploration_sets": "X0"}, "list of lists"),
    ({"max_set": 2, "exploration_sets": []}, "exploration_sets is empty"),
    # without max_set (taken from the largest set) the set itself is named, not a max_set it implies
    ({"exploration_sets": [[]]}, "exploration set \\[\\]: it is empty"),
    ({"exploration_sets": [["X0", "X1", "X2", "X3", "X4", "X5", "X6", "X7", "X8", "nope"]]}, "\\['nope'\\] may not be set"),
])
def test_bad_sets_are_refused_by_name(kwargs, match):
    scm, frame = small_problem("lin-er-10", 1)
    y = scm.names()[scm.target[0]]
    frame = frame.rename(columns={n: f"X{i}" for i, n in enumerate(c for c in frame.columns if c != y)})
    with pytest.raises(ValueError, match=match):
        CausalOptimizer(frame, target=y, method="random", **kwargs)


def test_methods_that_set_one_variable_refuse_sets():
    scm, frame = small_problem("lin-er-10", 1)
    y = scm.names()[scm.target[0]]
    able = "\\['amortized', 'cbo-parents', 'exact-ts', 'parent_scale', 'random'\\]"
    for method in ("surrogate-ei", "surrogate-ts"):
        with pytest.raises(ValueError, match=f"sets one variable per experiment.*methods that choose sets: {able}"):
            CausalOptimizer(frame, target=y, method=method, max_set=2)
    opt = CausalOptimizer(frame, target=y, method="random", max_set=2)
    with pytest.raises(ValueError, match="sets one variable per experiment"):
        build_method("surrogate-ei", opt.problem, {})


def test_thompson_sampling_sets_both_causes_at_their_best_ends():
    """Y = 2 X1 - 3 X2 + noise (independent roots, domains [-1, 1]): minimised, the best pair is
    do(X1 = -1, X2 = 1), twice as good as either alone; once the posterior knows both parents,
    exact-ts with max_set=2 asks for exactly that pair."""
    A = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.1], target=2)
    frame = pd.DataFrame(scm.sample(300, generator("test", "ts-set"))[0].double().numpy(), columns=scm.names())
    opt = CausalOptimizer(frame, target="Y", method="exact-ts", seed=0, max_set=2,
                          domains={"X1": (-1.0, 1.0), "X2": (-1.0, 1.0)})
    asks = []
    for t in range(6):
        iv = opt.ask()
        asks.append(dict(iv))
        opt.tell(iv, scm.run_experiment(iv, generator("test", "ts-set", t)))
    assert asks[-1] == {"X1": -1.0, "X2": 1.0}
    assert sum(a == {"X1": -1.0, "X2": 1.0} for a in asks) >= 4


def test_the_bench_scores_sets_against_y_star_over_sets(tmp_path):
    """A linear family: y* over pairs is below (or at) y* over single variables, the rows name
    the sets, and regret is read against the set optimum; single-variable methods are refused."""
    one, two = make_problem("lin-er-10", 0), make_problem("lin-er-10", 0, max_set=2)
    assert two.y_star <= one.y_star + 1e-9 and two.y_star_set and 1 <= len(two.y_star_set) <= 2
    assert (two.y_star_variable, two.y_star_setting) == (one.y_star_variable, one.y_star_setting)
    with pytest.raises(ValueError, match="set one variable per experiment"):
        BenchConfig(methods=("random", "surrogate-ei"), families=("lin-er-10",), max_set=2)
    cfg = BenchConfig(methods=("random",), families=("lin-er-10",), n_seeds=2, steps=4, max_set=2)
    df = run_bench(cfg, out=tmp_path / "b", progress=False)
    steps = df[df.step > 0]
    assert steps.variable.str.contains(r"\+").any()
    assert (steps.regret >= -1e-6).all() and (df.y_star <= one.y_star + 1e-9).any()
    # a folder written before max_set existed (its config lacks it) resumes as max_set = 1
    cfg1 = BenchConfig(methods=("random",), families=("lin-er-10",), n_seeds=1, steps=2)
    run_bench(cfg1, out=tmp_path / "old", progress=False)
    path = tmp_path / "old" / "config.json"
    old = json.loads(path.read_text())
    del old["max_set"]
    path.write_text(json.dumps(old))
    run_bench(BenchConfig(methods=("random",), families=("lin-er-10",), n_seeds=2, steps=2), out=tmp_path / "old",
              progress=False)


def test_max_set_follows_the_largest_exploration_set():
    scm, frame = small_problem("lin-er-10", 1)
    y = scm.names()[scm.target[0]]
    names = [n for n in scm.names() if n != y]
    opt = CausalOptimizer(frame, target=y, method="random", exploration_sets=[names[:3], names[3:4]])
    assert opt.problem.max_set == 3 and len(opt.problem.allowed_sets) == 2


def test_thompson_sampling_over_sets_maximises_and_keeps_to_exploration_sets():
    """Y = 2 X1 - 3 X2 + X3 (independent roots, domains [-1, 1]) maximised, with only {X1, X2}
    and {X3} allowed: the pair at (1, -1) is the best allowed experiment, and every ask is one of
    the allowed sets."""
    A = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
    W = torch.tensor([[0.0, 0, 0, 2.0], [0, 0, 0, -3.0], [0, 0, 0, 1.0], [0, 0, 0, 0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 1.0, 0.1], target=3)
    frame = pd.DataFrame(scm.sample(300, generator("test", "ts-set-max"))[0].double().numpy(), columns=scm.names())
    dom = {n: (-1.0, 1.0) for n in ("X1", "X2", "X3")}
    opt = CausalOptimizer(frame, target="Y", method="exact-ts", seed=0, minimize=False, domains=dom,
                          exploration_sets=[["X1", "X2"], ["X3"]])
    asks = []
    for t in range(6):
        iv = opt.ask()
        assert set(iv) in ({"X1", "X2"}, {"X3"})
        asks.append(dict(iv))
        opt.tell(iv, scm.run_experiment(iv, generator("test", "ts-set-max", t)))
    assert asks[-1] == {"X1": 1.0, "X2": -1.0}


def test_the_bench_caps_max_set_at_the_settable_variables():
    """A small family where some problems have fewer settable variables than max_set: each
    campaign sets at most what it may."""
    problem = next(p for p in (make_problem("small-mixed", s, max_set=3) for s in range(20)) if len(p.settable) < 3)
    from acbo.bench.runner import run_method
    rows, opt = run_method(problem, "random", 3)
    assert opt.problem.max_set == len(problem.settable) and len(rows) == 4


def test_acbo_bench_max_set_on_the_command_line(tmp_path):
    from conftest import cli, cli_fails, cli_ok

    cli_ok(cli("bench", "--methods", "random", "--families", "lin-er-10", "--seeds", "1", "--steps", "3",
               "--workers", "1", "--max-set", "2", "--out", tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["max_set"] == 2
    cli_fails(cli("bench", "--methods", "surrogate-ei", "--families", "lin-er-10", "--seeds", "1", "--max-set", "2",
                  "--out", tmp_path / "c"), "set one variable per experiment")


def test_the_set_residual_gp_by_hand():
    """One row at the query point: whatever the length scale, each discrepancy beta gives the
    scalar Bayes update with v = amp^2 + beta^2 (mean v r / (v + n), variance v n / (v + n)),
    weighted by the row's marginal likelihood N(r; 0, v + n) times beta's prior weight; far away,
    the prior (amp^2 + beta^2, averaged by those weights)."""
    from acbo.surrogate.conditioning import DISCREPANCIES, DISCREPANCY_PRIOR, set_residual

    u = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    at = torch.tensor([[0.3, 0.6], [50.0, 50.0]], dtype=torch.float64)
    amp2, n, r = 4.0, 1.0, 2.0
    mean, var = set_residual(u, torch.tensor([r], dtype=torch.float64), torch.tensor([amp2 ** 0.5], dtype=torch.float64),
                             n, at, torch.tensor([amp2 ** 0.5, amp2 ** 0.5], dtype=torch.float64))
    vs = np.array([amp2 + b ** 2 for b in DISCREPANCIES])
    w = np.array(DISCREPANCY_PRIOR) * np.exp(-0.5 * r ** 2 / (vs + n)) / np.sqrt(vs + n)
    w /= w.sum()
    m_b, v_b = vs * r / (vs + n), vs * n / (vs + n)
    want_mean = (w * m_b).sum()
    assert mean[0].item() == pytest.approx(want_mean) and var[0].item() == pytest.approx((w * (v_b + m_b ** 2)).sum() - want_mean ** 2)
    assert mean[1].item() == pytest.approx(0.0, abs=1e-12) and var[1].item() == pytest.approx((w * vs).sum())


def _set_problem(seed: int = 3):
    pr = make_problem("test-broad", seed)
    opt = CausalOptimizer(pr.frame, target="Y", method="amortized", seed=0, domains=pr.domains, intervenable=pr.settable)
    return pr, opt, pr.settable[:2]


def test_a_set_prediction_without_set_rows_adds_the_single_effects():
    """Before any experiment that sets both, E[Y | do(A = a, B = b)] is the single predictions'
    effects added: E[Y | do(A = a)] + E[Y | do(B = b)] - Y's observational mean."""
    pr, opt, (a, b) = _set_problem()
    (la, ha), (lb, hb) = opt.domains[a], opt.domains[b]
    pts = np.array([[la, lb], [ha, hb], [(la + ha) / 2, (lb + hb) / 3]])
    both = opt.predict([a, b], pts, quantity="expectation")
    y0 = float(opt.buffer.observational_stats()[0][opt.problem.target])
    added = (opt.predict(a, pts[:, 0], quantity="expectation")["mean"].to_numpy()
             + opt.predict(b, pts[:, 1], quantity="expectation")["mean"].to_numpy() - y0)
    assert np.allclose(both["mean"].to_numpy(), added, rtol=1e-9, atol=1e-9 * abs(y0))
    assert list(both.columns[:2]) == [a, b]
    with pytest.raises(ValueError, match="settings of 2 numbers each"):
        opt.predict([a, b], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no model of experiments that set several"):
        CausalOptimizer(pr.frame, target="Y", method="exact-ts", domains=pr.domains, intervenable=pr.settable).predict([a, b], pts)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_measurements_of_a_set_pull_its_prediction(seed):
    """As for one variable (tests/test_learning_world.py): n = 1 … 16 measurements of do(A = a0,
    B = b0), 2.5 spreads above Y's observational mean (noise sd known to the test: 0.3 of Y's
    spread): from n = 4 the predicted E[Y | do] there lies within 3 sd / sqrt(n) of their average,
    and its std shrinks from n = 4 on and ends below where it started."""
    pr, opt, (a, b) = _set_problem(seed)
    (la, ha), (lb, hb) = opt.domains[a], opt.domains[b]
    x0 = {a: la + 0.3 * (ha - la), b: lb + 0.7 * (hb - lb)}
    y = pr.frame["Y"].to_numpy()
    sd = 0.3 * y.std()
    draws = y.mean() + 2.5 * y.std() + sd * np.random.default_rng(0).standard_normal(16)
    stds = [float(opt.predict([a, b], [[x0[a], x0[b]]], quantity="expectation").iloc[0]["std"])]
    for n in range(1, 17):
        row = pr.scm.run_experiment(x0, generator("test", "set-pull", n))
        opt.tell(x0, {**row, "Y": float(draws[n - 1])}, chosen=True, accept_outlier=True)
        if n in (1, 2, 4, 8, 16):
            pred = opt.predict([a, b], [[x0[a], x0[b]]], quantity="expectation").iloc[0]
            stds.append(float(pred["std"]))
            if n >= 4:
                assert abs(float(pred["mean"]) - draws[:n].mean()) <= 3 * sd / np.sqrt(n), (n, float(pred["mean"]))
    assert stds[3] > stds[4] > stds[5] and stds[5] < stds[0], stds


def test_set_values_must_be_one_setting_per_row():
    """Q x k, one setting per row: k x Q (transposed) or Q x 2k is refused, not reshaped."""
    pr, opt, (a, b) = _set_problem()
    (la, ha), (lb, hb) = opt.domains[a], opt.domains[b]
    good = np.array([[la, lb], [ha, hb], [la, hb]])
    assert len(opt.predict([a, b], good)) == 3 and len(opt.predict([a, b], [la, lb])) == 1
    for bad in (good.T, np.hstack([good, good])):
        with pytest.raises(ValueError, match="settings of 2 numbers each"):
            opt.predict([a, b], bad)


def test_multilinear_interpolation_by_hand():
    """On a 3 x 3 grid over [0, 1]^2 with values 10 a + b at the points (a, b) (a, b in 0, 1, 2:
    the first axis slowest), the value at (0.25, 0.75) is 10 * 0.5 + 1.5 = 6.5; at grid points it
    is the grid's value; one axis is :func:`interpolate`."""
    from acbo.experts.causal_gp import grid_points, interpolate, interpolate_grid

    pts = grid_points(2, 3)
    assert pts.shape == (9, 2) and pts[1].tolist() == [0.0, 0.5]
    values = torch.tensor([10.0 * a + b for a in range(3) for b in range(3)], dtype=torch.float64)
    x = torch.tensor([[0.25, 0.75], [0.5, 1.0], [1.0, 0.0]], dtype=torch.float64)
    assert interpolate_grid(x, values).tolist() == pytest.approx([6.5, 12.0, 20.0])
    u = torch.rand(7, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    line = torch.arange(5, dtype=torch.float64) ** 2
    assert torch.equal(interpolate_grid(u, line), interpolate(u[:, 0], line))


def _bowl(n: int = 300):
    """Y = (X1 - 0.5)^2 + (X2 + 0.8)^2 + 0.1 e, X1, X2 ~ U(-2, 2), a third variable Z unrelated:
    the best experiment sets both causes at their interior optimum (E[Y] = 0, against 1.33 for
    the best single one)."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n)
    y = (x1 - 0.5) ** 2 + (x2 + 0.8) ** 2 + 0.1 * rng.standard_normal(n)
    return pd.DataFrame({"X1": x1, "X2": x2, "Z": rng.standard_normal(n), "Y": y})


def test_the_expert_sets_both_causes_at_their_interior_optimum():
    """PARENT_SCALE over sets (max_set = 2): its exploration sets are the pairs and singles of the
    believed parents (never Z), and EI over them picks the pair, near (0.5, -0.8), first; its set
    predictive there is near 0 and higher at the domain's corner."""
    opt = CausalOptimizer(_bowl(), target="Y", method="parent_scale", seed=0, max_set=2)
    iv = opt.ask()
    assert set(iv) == {"X1", "X2"}
    assert abs(iv["X1"] - 0.5) < 0.3 and abs(iv["X2"] + 0.8) < 0.3, dict(iv)
    assert set(opt.method.last_decision["ei"]) == {"X1", "X2", "X1+X2"}
    pred = opt.predict(["X2", "X1"], [[-0.8, 0.5], [2.0, -2.0]], quantity="expectation")
    assert abs(float(pred["mean"][0])) < 0.4 and float(pred["mean"][1]) > 5.0, pred


def test_the_expert_keeps_to_exploration_sets_and_believes_pending_sets():
    """With only {X1, X2} and {Z} allowed, every ask of PARENT_SCALE is one of them (Z is outside
    the believed parents, so the pair); a batch of 3 believes its pending pairs through the set
    predictive and does not ask the same pair twice."""
    opt = CausalOptimizer(_bowl(), target="Y", method="parent_scale", seed=0, exploration_sets=[["X1", "X2"], ["Z"]])
    batch = opt.ask(n=3)
    assert all(set(iv) == {"X1", "X2"} for iv in batch)
    assert len({tuple(sorted(dict(iv).items())) for iv in batch}) == 3


def _three_variable_action():
    """D = 3 variables, K = 1 cell each (uniform position: Beta(1, 1)), domains [0, 1]: the first
    member's probabilities are softmax(logits); the partner table is given."""
    from acbo.policy.model import GridActionDist
    from acbo.policy.sets import SetActionDist

    logits = torch.tensor([[[0.0], [1.0], [-1.0]]], dtype=torch.float64)                         # 1 x 3 x 1
    ones = torch.ones(1, 3, 1, dtype=torch.float64)
    first = GridActionDist(logits, ones, ones, torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64))
    inf = float("-inf")
    partner = torch.tensor([[[inf, 0.5, 0.0, 1.0],                                                # first X0: X1, X2 or stop
                             [0.0, inf, inf, 0.0],                                                # first X1: X0 or stop
                             [2.0, inf, inf, inf]]], dtype=torch.float64)                         # first X2: X0 only
    return SetActionDist(first, partner)


def test_the_set_action_has_exact_log_probabilities_by_hand():
    """pi = softmax(0, 1, -1); a pair sums both orders: p({X0, X1}) = pi0 q(X1 | X0) + pi1 q(X0 | X1),
    p({X0, X2}) = pi0 q(X2 | X0) + pi2 q(X0 | X2); a single is pi_j q(stop | j); the positions'
    densities are 1 (uniform on [0, 1]). The probabilities sum to 1 and sampling agrees."""
    act = _three_variable_action()
    e = np.exp
    pi = np.array([1.0, e(1.0), e(-1.0)]) / (1 + e(1.0) + e(-1.0))
    q0 = np.array([0.0, e(0.5), 1.0, e(1.0)]) / (e(0.5) + 1 + e(1.0))
    q1 = np.array([1.0, 0, 0, 1.0]) / 2
    want = {(0, 1): pi[0] * q0[1] + pi[1] * q1[0], (0, 2): pi[0] * q0[2] + pi[2] * 1.0,
            (0,): pi[0] * q0[3], (1,): pi[1] * q1[3]}
    assert sum(want.values()) == pytest.approx(1.0)
    for members, p in want.items():
        var = torch.tensor([[members[0], members[-1]]])
        u = torch.tensor([[0.3, 0.8 if len(members) == 2 else 0.3]], dtype=torch.float64)
        assert float(act.log_prob(var, u, torch.tensor([len(members)]))[0].exp()) == pytest.approx(p, rel=1e-9)
    gen = torch.Generator().manual_seed(0)
    counts = {k: 0 for k in want}
    for _ in range(4000):
        var, u, n = act.sample(gen)
        counts[tuple(sorted(var[0, :int(n[0])].tolist()))] += 1
    for k, p in want.items():
        assert abs(counts[k] / 4000 - p) < 0.03, (k, counts[k] / 4000, p)


def test_pair_logits_score_the_added_effects_by_hand():
    """Two variables, one cell each: E[Y | do] -1 (sd 0.5) and -2 (sd 0.5), incumbent 0: the pair's
    mean is -3 with sd sqrt(0.5); its logit is log(EI + floor) / temperature with EI of that
    Gaussian below 0; a pair that may not be set, or a single, is -inf."""
    from acbo.experts.causal_gp import expected_improvement
    from acbo.policy.features import EI_FLOOR
    from acbo.policy.sets import additive_pairs, pair_logits

    mean = torch.tensor([[[-1.0], [-2.0]]], dtype=torch.float64)
    std = torch.full((1, 2, 1), 0.5, dtype=torch.float64)
    pm, pv = additive_pairs(mean, std)
    assert pm[0, 0, 1] == -3.0 and pv[0, 0, 1] == pytest.approx(0.5)
    ok = torch.tensor([[[False, True], [True, False]]])
    logits = pair_logits(mean, std, pm, pv, torch.zeros(1, dtype=torch.float64), ok, torch.tensor([[True, False]]),
                         temperature=0.5)
    ei = float(expected_improvement(torch.tensor(-3.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64).sqrt(), 0.0))
    assert float(logits[0, 0, 1]) == pytest.approx(np.log(ei + EI_FLOOR) / 0.5)
    single = float(expected_improvement(torch.tensor(-1.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), 0.0))
    assert float(logits[0, 0, 2]) == pytest.approx(np.log(single + EI_FLOOR) / 0.5)
    assert logits[0, 0, 0] == float("-inf") and logits[0, 1, 2] == float("-inf")


def test_amortized_chooses_pairs_within_the_allowed_sets():
    """The shipped pair with max_set = 2 on the bowl: every ask is an allowed set of one or two; with
    exploration sets only those; a batch of 3 with the pending pairs believed; sets of three are
    refused by name."""
    frame = _bowl()
    opt = CausalOptimizer(frame, target="Y", method="amortized", seed=0, max_set=2)
    for t in range(4):
        iv = opt.ask()
        assert 1 <= len(iv) <= 2
        row = {"X1": iv.get("X1", 0.0), "X2": iv.get("X2", 0.0), "Z": iv.get("Z", 0.0)}
        opt.tell(iv, {**row, "Y": (row["X1"] - 0.5) ** 2 + (row["X2"] + 0.8) ** 2})
    assert any(len(r.intervention) == 2 for r in opt.history)
    batch = opt.ask(n=3)
    assert len(batch) == 3 and all(1 <= len(iv) <= 2 for iv in batch)
    only = CausalOptimizer(frame, target="Y", method="amortized", seed=0, exploration_sets=[["X1", "X2"], ["Z"]])
    for _ in range(3):
        assert set(only.ask()) in ({"X1", "X2"}, {"Z"})
        only.withdraw()
    with pytest.raises(ValueError, match="at most two variables per experiment"):
        CausalOptimizer(frame, target="Y", method="amortized", max_set=3)


def test_sink2_puts_y_where_two_parents_meet_and_draws_as_sink():
    """The sink2 rule picks a sink with two or more parents where there is one (else a node with
    two or more parents), drawing the same random numbers as ``sink``."""
    from acbo.scm.graphs import pick_target

    A = torch.zeros(2, 4, 4, dtype=torch.bool)
    A[0, 0, 1] = A[0, 0, 2] = A[0, 1, 2] = A[0, 2, 3] = True   # 3 is the only sink (one parent); 2 has two parents
    A[1, 0, 3] = A[1, 1, 3] = A[1, 0, 2] = True                 # sinks 2 (one parent) and 3 (two)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    _, t2 = pick_target(g1, A, "sink2")
    _, t1 = pick_target(g2, A, "sink")
    assert t2.tolist() == [2, 3] and t1[0] == 3
    assert torch.equal(g1.get_state(), g2.get_state())


def test_test_joint_problems_need_two_variables_set():
    """On test-joint's first problems the best pair beats the best single intervention: its y*
    over pairs lies below y* over single variables by a good share of the gain."""
    shares = []
    for seed in range(3):
        one, two = make_problem("test-joint", seed), make_problem("test-joint", seed, max_set=2)
        shares.append((one.y_star - two.y_star) / (one.e_obs - two.y_star))
    assert max(shares) > 0.2 and min(shares) >= -1e-6, shares


@pytest.mark.parametrize("minimize", [True, False])
def test_amortized_scores_measured_pairs_as_its_set_predictive_does(minimize):
    """The pair decision's fast path (the campaign's own encoding, one world-model pass for every
    measured pair) gives what ``predict_set`` gives at the policy's grid cells, on the data as the
    policy reads them (maximising, -Y: the set predictive of a campaign minimising -Y), and lowers
    the incumbent to the best posterior at a measured pair."""
    from acbo.policy.decide import decide
    from acbo.policy.features import GRID_MEAN, GRID_STD, grid_positions
    from acbo.policy.sets import additive_pairs

    sign = 1.0 if minimize else -1.0
    frame = _bowl()
    runs = [CausalOptimizer(frame, target="Y", method="amortized", seed=0, max_set=2, minimize=minimize),
            CausalOptimizer(frame.assign(Y=sign * frame["Y"]), target="Y", method="amortized", seed=0, max_set=2)]
    for t, iv in enumerate([{"X1": 0.0, "X2": 0.0}, {"X1": 1.0, "X2": -1.0}, {"X1": 0.0, "X2": 0.0}, {"X2": 1.5}]):
        y = (iv.get("X1", 0.0) - 0.5) ** 2 + (iv.get("X2", 0.0) + 0.8) ** 2 + 0.1 * t
        for opt, s in zip(runs, (1.0, sign)):
            opt.tell(iv, {"X1": iv.get("X1", 0.0), "X2": iv.get("X2", 0.0), "Z": 0.0, "Y": s * y}, chosen=True)
    opt, reference = runs
    m = opt.method
    with torch.inference_mode():
        c = m._campaign(opt.buffer)
        x, _ = decide(m.policy, c, m._belief(c, opt.buffer), m.surrogate, m._memo)
        mean, std = x.grid[..., GRID_MEAN].double(), x.grid[..., GRID_STD].double()
        pm, pv = additive_pairs(mean, std)
        best = m._measured_pairs(c, opt.buffer, pm, pv, torch.full((1,), float("inf"), dtype=torch.float64))
    K = mean.shape[2]
    at = grid_positions(K, torch.float64)
    (l1, h1), (l2, h2) = opt.domains["X1"], opt.domains["X2"]
    pts = torch.cartesian_prod(l1 + (h1 - l1) * at, l2 + (h2 - l2) * at)
    want = reference.method.predict_set(reference.buffer, [0, 1], pts, draw=False)        # minimising sign * Y
    y_mean, y_std = (float(t[3]) for t in reference.buffer.observational_stats())
    got = pm[0, :K, K:2 * K].reshape(-1) * y_std + y_mean
    assert torch.allclose(got, want.mean, atol=1e-3 * y_std), (got - want.mean).abs().max()
    assert torch.allclose(pv[0, :K, K:2 * K].reshape(-1).sqrt() * y_std, want.std, atol=1e-3 * y_std)
    assert torch.equal(pm[0, K:2 * K, :K], pm[0, :K, K:2 * K].T)
    settings = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    at_rows = (reference.method.predict_set(reference.buffer, [0, 1], settings, draw=False).mean - y_mean) / y_std
    assert float(best[0]) == pytest.approx(float(at_rows.min()), abs=1e-3)


def test_amortized_with_pairs_only_and_costs_keeps_to_what_it_may_set():
    """Exploration sets of pairs only (no single variable alone) and a budget that pays for one
    pair at a time: every ask is an allowed pair, and the campaign stops when the budget is spent."""
    from acbo.costs import BudgetSpent

    opt = CausalOptimizer(_bowl(), target="Y", method="amortized", seed=0,
                          exploration_sets=[["X1", "X2"], ["X1", "Z"]], costs={"X1": 1.0, "X2": 2.0, "Z": 1.0},
                          budget_cost=6.0)
    asked = []
    with pytest.raises(BudgetSpent):
        for _ in range(5):
            iv = opt.ask()
            asked.append(set(iv))
            opt.tell(iv, {"X1": iv.get("X1", 0.0), "X2": iv.get("X2", 0.0), "Z": iv.get("Z", 0.0), "Y": 1.0})
    assert asked and all(s in ({"X1", "X2"}, {"X1", "Z"}) for s in asked) and opt.spent <= 6.0


def test_the_set_action_log_probability_with_cells_and_a_partner_the_policy_excludes():
    """D = 2, K = 2 cells, Beta(2, 1) positions, domains [0, 2] and [0, 1]; the first member may
    not be X1's second cell (a pending experiment's cell), but the partner categorical may pick
    it. By hand: a pair {(X0, cell 0, u = 0.2), (X1, cell 1, u = 0.75)} can only be drawn X0 first;
    its density is pi(X0 cell 0) Beta(2, 1)(0.4) K / 2 x q(X1 cell 1 | X0 cell 0) Beta(2, 1)(0.5) K / 1."""
    from acbo.policy.model import GridActionDist
    from acbo.policy.sets import SetActionDist

    logits = torch.tensor([[[0.0, 1.0], [0.5, float("-inf")]]], dtype=torch.float64)               # 1 x 2 x 2
    alpha = torch.full((1, 2, 2), 2.0, dtype=torch.float64)
    beta = torch.ones(1, 2, 2, dtype=torch.float64)
    first = GridActionDist(logits, alpha, beta, torch.zeros(1, 2, dtype=torch.float64),
                           torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    inf = float("-inf")
    partner = torch.tensor([[[inf, inf, 0.0, 2.0, 1.0],      # X0 cell 0: X1 cell 0, X1 cell 1, stop
                             [inf, inf, 1.0, inf, 0.0],      # X0 cell 1: X1 cell 0 or stop
                             [0.0, 0.0, inf, inf, inf],      # X1 cell 0: X0 either cell
                             [0.0, 0.0, inf, inf, inf]]], dtype=torch.float64)
    act = SetActionDist(first, partner)
    e = np.exp
    pi = np.array([1.0, e(1.0), e(0.5)]) / (1 + e(1.0) + e(0.5))                                   # X0c0, X0c1, X1c0
    q = e(2.0) / (1 + e(2.0) + e(1.0))
    beta21 = lambda r: 2 * r                                                                        # Beta(2, 1) density
    want = pi[0] * beta21(0.4) * 2 / 2 * q * beta21(0.5) * 2 / 1
    got = act.log_prob(torch.tensor([[0, 1]]), torch.tensor([[0.2, 0.75]], dtype=torch.float64), torch.tensor([2]))
    assert torch.isfinite(got).all() and float(got[0].exp()) == pytest.approx(want, rel=1e-9)


def test_amortized_batches_of_pairs_and_its_fallback():
    """With max_set = 2, ``batch="distinct"`` decides every member as the believer does (each an
    allowed set: never one variable alone where the exploration sets hold only pairs); when no
    allowed pair is affordable the decision is a random allowed set, not a failure."""
    sets = [["X1", "X2"], ["X1", "Z"]]
    opt = CausalOptimizer(_bowl(), target="Y", method="amortized", seed=0, exploration_sets=sets, batch="distinct")
    assert all(set(iv) in ({"X1", "X2"}, {"X1", "Z"}) for iv in opt.ask(n=3))
    costs = CausalOptimizer(_bowl(), target="Y", method="amortized", seed=0, exploration_sets=sets,
                            costs={"X1": 1.0, "X2": 2.0, "Z": 1.0})
    m = costs.method
    m.allowance = 0.5  # pays for no pair
    choice = m.ask_set(costs.buffer, torch.Generator().manual_seed(0))
    assert tuple(sorted(choice)) in costs.problem.allowed_sets


def test_the_expert_refuses_sets_beyond_its_grids():
    frame = _bowl().assign(W=np.arange(300.0) % 7, V=np.arange(300.0) % 5)
    with pytest.raises(ValueError, match="at most 3 variables per experiment"):
        CausalOptimizer(frame, target="Y", method="parent_scale", max_set=4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_measurements_of_a_pair_teach_each_member_s_own_effect(seed):
    """Rows that set A and B together are evidence about A's own effect once B's is known: with
    B's effect measured alone 16 times (1 spread below Y's observational mean), n = 1 … 16 rows of
    do(A = a0, B = b0) whose Y adds A's effect (2.5 spreads above) to B's pull E[Y | do(A = a0)]
    from more than 5 sd away to within 3 sd sqrt(1 / n + 1 / 16) of A's effect from n = 8 (noise
    sd 0.3 of Y's spread, known to the test; B's 16 rows add their own error)."""
    pr, opt, (a, b) = _set_problem(seed)
    (la, ha), (lb, hb) = opt.domains[a], opt.domains[b]
    a0, b0 = la + 0.3 * (ha - la), lb + 0.7 * (hb - lb)
    y = pr.frame["Y"].to_numpy()
    sd, rng = 0.3 * y.std(), np.random.default_rng(seed)
    effect_a, effect_b = 2.5 * y.std(), -1.0 * y.std()
    for n in range(16):
        row = pr.scm.run_experiment({b: b0}, generator("test", "pair-teaches-b", n))
        opt.tell({b: b0}, {**row, "Y": float(y.mean() + effect_b + sd * rng.standard_normal())}, chosen=True,
                 accept_outlier=True)
    mean_a = lambda: float(opt.predict(a, [a0], quantity="expectation").iloc[0]["mean"])
    assert abs(mean_a() - (y.mean() + effect_a)) > 5 * sd
    for n in range(1, 17):
        row = pr.scm.run_experiment({a: a0, b: b0}, generator("test", "pair-teaches-a", n))
        ys = y.mean() + effect_a + effect_b + sd * rng.standard_normal()
        opt.tell({a: a0, b: b0}, {**row, "Y": float(ys)}, chosen=True, accept_outlier=True)
        if n >= 8:
            bound = 3 * sd * np.sqrt(1 / n + 1 / 16)
            assert abs(mean_a() - (y.mean() + effect_a)) <= bound, (n, (mean_a() - y.mean() - effect_a) / sd)


def test_set_rows_by_hand():
    """:func:`acbo.surrogate.world.set_rows` on a campaign with a row that sets A and B: for A,
    Y there less B's effect (B's world model, conditioned on the rows that set it alone, at the
    value B was set to) with B's variance of E[Y | do] as extra noise, and the same for B; a
    variable read twice (padding) counts once; a row that sets a variable outside those read is
    left out."""
    from acbo.buffer import PaddedBatch
    from acbo.surrogate.world import measurements, set_rows, world_at, world_given, world_prior

    pr, opt, (a, b) = _set_problem(1)
    names = list(pr.frame.columns)
    ia, ib, t = names.index(a), names.index(b), names.index("Y")
    (la, ha), (lb, hb) = opt.domains[a], opt.domains[b]
    opt.tell({b: lb + 0.2 * (hb - lb)}, pr.scm.run_experiment({b: lb + 0.2 * (hb - lb)}, generator("test", "by-hand", 0)),
             chosen=True, accept_outlier=True)
    setting = {a: la + 0.6 * (ha - la), b: lb + 0.9 * (hb - lb)}
    opt.tell(setting, pr.scm.run_experiment(setting, generator("test", "by-hand", 1)), chosen=True, accept_outlier=True)
    buf = opt.buffer
    model = opt.method.surrogate
    batch = PaddedBatch.of_buffers([buf], [t], standardise=True)
    logits, tokens = model.encode(batch)
    mean, std = buf.observational_stats()
    for var in (torch.tensor([[ia, ib]]), torch.tensor([[ia, ib, ia]])):
        low, high = opt.problem.low[var[0]].double(), opt.problem.high[var[0]].double()
        lo, hi = ((low - mean[var[0]]) / std[var[0]])[None], ((high - mean[var[0]]) / std[var[0]])[None]
        prior = world_prior(model, batch, tokens, torch.sigmoid(logits.double()), var, lo, hi)
        Q = var.shape[1]
        _, fit = world_given(prior, torch.arange(Q), *measurements(batch, var), torch.full((Q, 1), 0.5, dtype=torch.float64))
        rows = set_rows(prior, fit, batch, var)
        z = lambda j: (setting[names[j]] - float(mean[j])) / float(std[j])
        u = torch.tensor([[(setting[a] - la) / (ha - la)], [(setting[b] - lb) / (hb - lb)]], dtype=torch.float64)
        w = world_at(prior, fit.select(torch.tensor([0, 1])), u)                                    # 1 x 2 x 1
        y_row = (float(buf.values[-1, t]) - float(mean[t])) / float(std[t])
        for q, other in ((0, 1), (1, 0)):
            assert bool(rows.mask[q, 0]) and rows.x[q, 0] == pytest.approx(z(var[0, q]), rel=1e-5)
            assert float(rows.y[q, 0]) == pytest.approx(y_row - float(w.mean[0, other, 0]), rel=1e-5, abs=1e-6)
            assert float(rows.extra[q, 0]) == pytest.approx(float(w.var_f[0, other, 0]), rel=1e-6)
        if Q == 3:
            assert not bool(rows.mask[2].any())                                                      # padding counts once
        assert set_rows(prior, fit, batch, var[:, :1]) is None                                       # B not read: left out
        n = buf.n
        assert set_rows(prior, fit, batch, var, since=n) is None                                     # only rows from n on
        assert torch.equal(set_rows(prior, fit, batch, var, since=n - 1).y, rows.y)
