"""The broad world: mechanisms per node, noise and root distributions, units, domains,
confounders, ground truth, families."""

import math
from dataclasses import replace

import pytest
import torch

from acbo.scm import SCM, broad_scms, get_family
from acbo.scm import mechanisms as mech
from acbo.seeding import generator

TINY = get_family("train-broad").with_(name="tiny-broad", d_range=(3, 6), n_obs=(40, 80))


# ------------------------------------------------------------------ mechanisms by hand
def _unit(kind, W_rows, c, a, u):
    """Evaluate one node of one kind: W_rows H x p, c/a H, u n x p (B = 1)."""
    H = max(len(W_rows), len(c), len(a), 3)
    p = u.shape[1]
    W = torch.zeros(1, H, p)
    W[0, :len(W_rows)] = torch.tensor(W_rows, dtype=torch.float32)
    cc, aa = torch.zeros(1, H), torch.zeros(1, H)
    cc[0, :len(c)], aa[0, :len(a)] = torch.tensor(c), torch.tensor(a)
    return mech.evaluate(kind, W, cc, aa, u[None])[0]


U = torch.tensor([[0.5, -1.0], [2.0, 0.25]])


def test_each_mechanism_against_hand_computed_values():
    z = U @ torch.tensor([0.6, 0.8])                                                         # w^ . u, unit length
    assert torch.allclose(_unit(mech.LINEAR, [[2.0, -1.0]], [0.0], [1.0], U), U @ torch.tensor([2.0, -1.0]))
    assert torch.allclose(_unit(mech.POLY, [[0.6, 0.8]], [-0.5], [0.1, 1.2, -0.3], U),
                          0.1 * (z - 0.5) + 1.2 * (z - 0.5) ** 2 - 0.3 * (z - 0.5) ** 3)
    assert torch.allclose(_unit(mech.SATURATING, [[1.2, 1.6]], [0.3], [1.0], U), torch.tanh(2 * z + 0.3))
    assert torch.allclose(_unit(mech.PROB, [[0.6, 0.8]], [0.0], [1.0], U), z)
    assert torch.allclose(_unit(mech.PERIODIC, [[1.2, 1.6]], [0.4], [1.0], U), torch.sin(2 * z + 0.4))
    assert torch.allclose(_unit(mech.EXP, [[0.3, 0.4]], [0.0], [1.0], U), torch.exp(0.5 * z))
    assert torch.allclose(_unit(mech.EXP, [[60.0, 80.0]], [0.0], [1.0], U)[1], torch.tensor(math.exp(mech.EXP_MAX)))
    zl = 3 * z - 0.5
    assert torch.allclose(_unit(mech.LOG, [[1.8, 2.4]], [-0.5], [1.0], U), torch.sign(zl) * torch.log1p(zl.abs()))
    inter = _unit(mech.INTERACTION, [[1.0, 0.0], [0.0, 1.0], [0.3, -0.2]], [0.0, 0.0, 0.0], [1.5], U)
    assert torch.allclose(inter, 1.5 * U[:, 0] * U[:, 1] + U @ torch.tensor([0.3, -0.2]))
    mlp = _unit(mech.MLP, [[1.0, 0.0]] * 16, [0.1] * 16, [0.5] * 16, U)
    assert torch.allclose(mlp, 16 * 0.5 * torch.tanh(U[:, 0] + 0.1))
    gp = _unit(mech.GP, [[0.0, 2.0]] * 32, [1.0] * 32, [0.25] * 32, U)
    assert torch.allclose(gp, 32 * 0.25 * torch.cos(2 * U[:, 1] + 1.0))


def test_interaction_parameters_pick_two_distinct_parents():
    A = torch.zeros(1, 4, 4, dtype=torch.bool)
    A[0, [0, 1, 2], 3] = True  # node 3 has three parents; node 1 one parent
    A[0, 0, 1] = True
    kind = torch.full((1, 4), mech.INTERACTION)
    W, c, a, _, _ = mech.sample_node_parameters(generator("int"), A, kind, (mech.LINEAR, mech.INTERACTION))
    one_hot = W[0, 3, :2]                                                                     # 2 x 4
    assert (one_hot.sum(1) == 1).all() and one_hot.argmax(1).unique().numel() == 2
    assert set(one_hot.argmax(1).tolist()) <= {0, 1, 2}
    assert W[0, 1, 0, 0] == 1 and W[0, 1, 1, 0] == 1                                           # one parent: its square
    assert (a[0, :, 0].abs() >= 0.7).all() and (a[0, :, 0].abs() <= 1.5).all()


# ------------------------------------------------------------------ noise and roots
@pytest.mark.parametrize("base", mech.BASES)
def test_each_noise_and_root_distribution(base):
    x = mech.base_noise(base, generator("noise", base), (400_000,), torch.float64)
    assert abs(x.mean().item()) < 0.01 and abs(x.var().item() - 1) < (0.05 if base == "student_t" else 0.01)
    mean_abs = x.abs().mean().item()
    expect = {  # E|X| by hand for each unit-variance law
        "gaussian": math.sqrt(2 / math.pi),
        "laplace": 1 / math.sqrt(2),
        "student_t": 2 / math.pi,  # E|T_3| = 2 sqrt(3) / pi, times the unit-variance scale 1 / sqrt(3)
        "uniform": math.sqrt(3) / 2,
    }
    if base in expect:
        assert mean_abs == pytest.approx(expect[base], rel=0.02)
    if base == "uniform":
        assert x.abs().max() <= math.sqrt(3) + 1e-9
    if base == "bimodal":  # an equal mixture of N(+-0.9, 0.19): few values near 0, modes at +-0.9
        assert (x.abs() < 0.1).float().mean() < 0.05 and abs(x[x > 0].mean().item() - 0.9) < 0.02
    if base == "lognormal":
        m, s = mech.lognormal_moments()
        assert x.min() > -m / s and ((x - x.mean()) ** 3).mean() > 1.0                     # bounded below, skewed
    if base == "student_t":
        assert ((x ** 4).mean() > 8)                                                           # heavy tails (Gaussian: 3)


def test_mixed_noise_columns_follow_their_own_law():
    kind = torch.tensor([[mech.BASES.index("uniform"), mech.BASES.index("gaussian")]])
    x = mech.draw_noise(sorted(set(kind[0].tolist())), kind, generator("mix"), (1, 100_000, 2))
    assert x[0, :, 0].abs().max() <= math.sqrt(3) + 1e-6 and x[0, :, 1].abs().max() > 3


def test_hetero_multiplier_by_hand():
    assert torch.allclose(mech.hetero_multiplier(torch.tensor([0.0, -1.0, 2.0])), torch.tensor([0.5, 1.5, 2.5]) / 1.3)


# ------------------------------------------------------------------ units and bounds
def test_units_are_applied_and_invertible():
    scm = broad_scms(generator("units"), 4, 6, units=(-2.0, 3.0))
    unit_free = replace(scm, loc=torch.zeros_like(scm.loc), scale=torch.ones_like(scm.scale))
    x, u = scm.sample(500, generator("u-x")), unit_free.sample(500, generator("u-x"))
    loc, scale = (scm._to_label(t[:, None]) for t in (scm.loc, scm.scale))                   # B x 1 x d, label order
    assert torch.allclose((x - loc) / scale, u, atol=1e-4, rtol=1e-4)
    assert scale.amax() / scale.amin() > 10                                                    # orders of magnitude
    # an intervention in observed units comes back exactly as set
    v = loc[:, :, 0] + 3 * scale[:, :, 0]
    mask = torch.zeros(1, scm.d, dtype=torch.bool)
    mask[0, 0] = True
    vals = torch.zeros(4, 1, scm.d)
    vals[:, :, 0] = v
    do = scm.sample(3, generator("u-do"), do_mask=mask, do_value=vals)
    assert torch.allclose(do[:, :, 0], v.expand(4, 3), rtol=1e-5)


def test_probability_and_lognormal_variables_stay_in_their_natural_bounds():
    scm = broad_scms(generator("bounds"), 16, 8, mechanisms=("prob", "linear"), roots=("lognormal",))
    x = scm.sample(2000, generator("bounds-x"))
    lower, upper = scm.natural_bounds()
    assert (x >= lower[:, None]).all() and (x <= upper[:, None]).all()
    prob = scm._to_label(((scm.kind == mech.PROB) & scm.A.any(1)).float()[:, None])[:, 0] > 0  # label order
    assert prob.any() and (upper[prob] == 1).all() and (lower[prob] == 0).all()
    assert (lower == 0).sum() > prob.sum()                                                      # log-normal roots: >= 0
    fam = get_family("test-wide-domains").with_(name="wide-bounds", mechanism=("prob", "linear"), roots=("lognormal",))
    scm = fam.sample(generator("wb"), B=16)
    obs = scm.sample(100, generator("wb-x"))
    low, high, can = fam.domains(generator("wb-d"), scm, obs)
    lower, upper = scm.natural_bounds()
    assert (low >= lower).all() and (high <= upper).all() and (low < high).all()
    assert (high - low > (obs.amax(1) - obs.amin(1)) * 1.5)[upper.isinf() & lower.isinf()].float().mean() > 0.9


def test_domains_contain_the_observed_range_and_every_problem_can_move_y():
    fam = get_family("train-broad")
    scm = fam.sample(generator("dom"), B=64)
    obs = scm.sample(200, generator("dom-x"))
    low, high, can = fam.domains(generator("dom-d"), scm, obs)
    assert (low <= obs.amin(1)).all() and (high >= obs.amax(1)).all()
    assert not can[torch.arange(64), scm.target].any()
    assert (can & scm.ancestors()).any(1).all() and can.sum(1).min() >= 1
    assert (can.sum(1) < scm.d - 1).any() and (can.sum(1) == scm.d - 1).any()                  # some restricted, some all
    wider = (high - low) / (obs.amax(1) - obs.amin(1))
    assert (wider > 1.01).float().mean() > 0.5 and wider.max() <= 3 + 1e-4


# ------------------------------------------------------------------ structure
def test_mixed_graphs_and_raw_linear_models():
    scm = broad_scms(generator("mix-g"), 64, 12, mixing=1.0, p_raw_linear=0.25)
    has_parent = scm.A.any(1)
    kinds_per_graph = [len(set(scm.kind[b][has_parent[b]].tolist())) for b in range(64)]
    assert max(kinds_per_graph) >= 4                                                           # mechanisms mixed in a graph
    raw = ~scm.standardised
    assert raw.any() and scm.linear[raw].all() and (scm.noise_std[raw] == 1).all()
    x = scm[torch.nonzero(raw).flatten()[:1]].sample(5000, generator("raw"))[0]
    assert x.var(0).max() > 3                                                                   # variances grow along the order


def test_hidden_confounders_correlate_two_unconnected_nodes():
    A = torch.zeros(1, 3, 3, dtype=torch.bool)
    A[0, 0, 2] = True  # X0 -> Y; X1 is an isolated root, confounded with Y
    scm = SCM.linear_gaussian(A[0], torch.tensor([[0, 0, 1.0], [0, 0, 0], [0, 0, 0]]), [1.0, 1.0, 0.5], target=2)
    conf = torch.zeros(1, 3, 1)
    conf[0, scm.canon[0, 1], 0], conf[0, scm.canon[0, 2], 0] = 1.0, 1.0
    confounded = replace(scm, conf=conf)
    x = confounded.sample(50_000, generator("conf"))[0]
    assert torch.corrcoef(x.T)[1, 2] > 0.4 and abs(torch.corrcoef(scm.sample(50_000, generator("c"))[0].T)[1, 2]) < 0.02
    # do(X1) cuts the latent's path into X1: E[Y | do(X1 = v)] does not depend on v
    e = confounded.expected_target(torch.tensor([[False, True, False]] * 2), torch.tensor([[0, -3.0, 0], [0, 3.0, 0]]))
    assert torch.allclose(e[0, 0], e[0, 1], atol=1e-6)
    fam = get_family("test-confounded")
    assert fam.sample(generator("tc"), B=2).n_latent >= 1


def test_dense_families_keep_small_graphs():
    fam = get_family("train-broad").with_(name="dense-only", graph=("dense",), d_range=(3, 30))
    for s in range(5):
        scm = fam.sample(generator("dense", s), B=4)
        assert scm.d <= 7 and (scm.A.sum((1, 2)).float() / (scm.d * (scm.d - 1) / 2)).mean() > 0.4


# ------------------------------------------------------------------ ground truth
def test_exact_expectation_of_linear_broad_models_matches_monte_carlo():
    scm = broad_scms(generator("lin-mc"), 3, 6, mechanisms=("linear",), mixing=0.0, roots=("uniform", "lognormal"),
                     n_latent=1)
    assert scm.linear.all()
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 2] = True
    vals = torch.full((2, 6), 1.7) * scm._to_label(scm.scale[:, None])[:, :1, :].mean()
    exact = scm.expected_target(mask, vals)
    mc, se = scm._expected_mc(mask, vals, 2, 40_000)
    assert ((exact - mc).abs() <= 4 * se + 1e-5).all()


def test_mixed_batches_split_exact_and_monte_carlo_models():
    scm = broad_scms(generator("split"), 6, 5, p_raw_linear=0.5)
    assert scm.linear.any() and not scm.linear.all()
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = True  # (X1 may be Y itself: then E[Y | do] is 1, exactly)
    vals = torch.ones(2, 5)
    full, se = scm.expected_target(mask, vals, return_se=True)
    for b in range(6):
        one, se_b = scm[b].expected_target(mask, vals, return_se=True)
        assert torch.allclose(one, full[b:b + 1], rtol=1e-5, atol=1e-5) and torch.allclose(se_b, se[b:b + 1], atol=1e-6)
    assert (se[scm.linear] == 0).all() and (se[~scm.linear][:, 1] > 0).all()           # observational: noisy Y


@pytest.mark.parametrize("seed", range(4))
def test_optimum_matches_a_fine_brute_force_grid(seed):
    fam = TINY.with_(name="tiny-nonlinear", p_raw_linear=0.0, mechanism=("poly", "periodic", "saturating", "exp"))
    g = generator("brute", seed)
    scm = fam.sample(g)
    obs = scm.sample(60, g)
    low, high, can = fam.domains(g, scm, obs)
    opt = scm.optimum(low, high, can, n_mc=4000)
    ctx = scm._mc_context(4000)
    best = float("inf")
    for j in torch.nonzero((scm.ancestors() & can)[0]).flatten().tolist():  # 1001 points per settable ancestor
        v = torch.linspace(float(low[0, j]), float(high[0, j]), 1001)
        mask = torch.zeros(1001, scm.d, dtype=torch.bool)
        mask[:, j] = True
        vals = torch.zeros(1, 1001, scm.d)
        vals[0, :, j] = v
        best = min(best, scm._expected_mc(mask, vals, 1001, 4000, ctx)[0].min().item())
    se = float(opt.se[0])
    assert float(opt.value[0]) <= best + 3 * se + 1e-6 * (1 + abs(best))


def test_same_seed_same_world_and_disjoint_streams():
    fam = get_family("train-broad")
    a, b = fam.sample(generator("train", "s", 1), B=3), fam.sample(generator("train", "s", 1), B=3)
    for f in ("A", "kind", "W", "noise_kind", "loc", "scale", "f_loc", "f_scale", "conf"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.equal(a.sample(40, generator("x")), b.sample(40, generator("x")))
    train = [fam.sample(generator("train", "bench", fam.name, s)).sample(20, generator("x", s)) for s in range(5)]
    test = [get_family("test-broad").sample(generator("test", "bench", "test-broad", s)).sample(20, generator("x", s))
            for s in range(5)]
    assert all(not (tr.shape == te.shape and torch.equal(tr, te)) for tr in train for te in test)


def test_batched_and_single_broad_models_agree():
    scm = get_family("train-broad").with_(name="fixed-d", d_range=(8, 8)).sample(generator("bs-b"), B=5)
    x = scm.sample(30, generator("bs-x"))
    for b in range(5):
        one = scm[b]
        assert torch.equal(one.W, scm.W[b:b + 1]) and torch.isfinite(one.sample(30, generator("y"))).all()
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 2] = True
    full = scm.expected_target(mask, torch.ones(1, 8), n_mc=2000)
    for b in range(5):
        assert torch.allclose(scm[b].expected_target(mask, torch.ones(1, 8), n_mc=2000), full[b:b + 1], rtol=1e-5,
                              atol=1e-5)
    assert torch.isfinite(x).all()


def test_format_1_scm_states_still_load():
    scm = get_family("nonlin-hetero-er-10").sample(generator("v1"))
    state = scm.to_dict()
    v1 = {k: state[k] for k in ("A", "label", "target", "W", "c", "a", "f_loc", "f_scale", "noise_std", "loc", "scale",
                                "mc_seed")}
    v1.update(mechanism="gp", noise="hetero", format_version=1)
    again = SCM.from_dict(v1)
    assert torch.equal(again.sample(20, generator("v")), scm.sample(20, generator("v")))


# ------------------------------------------------------------------ every method on broad problems
@pytest.mark.parametrize("method", ["random", "exact-ts", "surrogate-ts", "amortized", "oracle", "parent_scale",
                                    "cbo-parents"])
def test_every_method_on_broad_problems(method):
    from acbo.bench.runner import make_problem, run_method
    from acbo.scm import FAMILIES, register_family

    if TINY.name not in FAMILIES:
        register_family(TINY)
    for seed in range(2):
        problem = make_problem(TINY.name, seed)
        rows, opt = run_method(problem, method, 3)
        for r in rows[1:]:
            lo, hi = problem.domains[r["variable"]]
            assert r["variable"] in problem.settable and lo <= r["value"] <= hi and math.isfinite(r["e_y"])
        assert math.isfinite(problem.y_star) and problem.y_star_se >= 0
