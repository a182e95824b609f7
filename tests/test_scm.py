import itertools
import math

import pytest
import torch

from acbo.scm import FAMILIES, SCM, get_family, sample_graph, topological_order
from acbo.scm.graphs import pick_target
from acbo.seeding import generator


def test_same_seed_same_scms_and_data():
    fam = get_family("nonlin-er-10")
    a, b = fam.sample(generator("s", 1), B=3), fam.sample(generator("s", 1), B=3)
    for f in ("A", "label", "target", "W", "f_loc", "f_scale"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.equal(a.sample(50, generator("x", 0)), b.sample(50, generator("x", 0)))
    c = fam.sample(generator("s", 2), B=3)
    assert not torch.equal(a.W, c.W)


def test_train_and_test_streams_differ():
    fam = get_family("lin-er-10")
    assert not torch.equal(fam.sample(generator("train", 0)).W, fam.sample(generator("test", 0)).W)


@pytest.mark.parametrize("kind", ["er", "sf", "chain", "fork", "collider"])
def test_graph_priors_are_dags_with_a_parented_target(kind):
    g = generator("g", kind)
    A = sample_graph(kind, g, 16, 12, 2.0)
    assert A.shape == (16, 12, 12) and not A.tril().any()  # canonical order: strictly upper
    A, t = pick_target(g, A)
    assert A[torch.arange(16), :, t].any(dim=1).all()


def test_er_expected_degree():
    A = sample_graph("er", generator("deg"), 400, 20, 3.0)
    mean_degree = 2 * A.sum(dim=(1, 2)).float().mean() / 20
    assert abs(mean_degree - 3.0) < 0.1


def test_target_is_not_always_a_sink():
    scm = get_family("lin-er-20").sample(generator("sink"), B=64)
    has_child = scm.adjacency[torch.arange(64), scm.target, :].any(dim=1)
    assert 0 < has_child.float().mean() < 1


@pytest.mark.parametrize("kind", ["er", "sf", "chain", "fork", "collider"])
def test_sink_rule_puts_a_parented_target_with_no_child(kind):
    A = sample_graph(kind, generator("g", kind), 32, 8, 2.0)
    A_any, t_any = pick_target(generator("t"), A)
    A_sink, t_sink = pick_target(generator("t"), A, rule="sink")
    rows = torch.arange(32)
    assert torch.equal(A_any, A_sink)                                   # same draws, same added edges
    assert A_sink[rows, :, t_sink].any(dim=1).all() and not A_sink[rows, t_sink, :].any()


def test_sink_families_and_bad_target_rule():
    scm = get_family("lin-er-20-sink").sample(generator("sink"), B=16)
    assert not scm.adjacency[torch.arange(16), scm.target, :].any()
    with pytest.raises(ValueError, match="target rule 'last'"):
        get_family("lin-er-10").with_(target="last")
    with pytest.raises(ValueError, match="unknown target rule"):
        pick_target(generator("t"), torch.zeros(1, 3, 3, dtype=torch.bool), rule="leaf")


def test_labelling_hides_the_order():
    scm = get_family("lin-er-10").sample(generator("lab"), B=64)
    assert (scm.label != torch.arange(10)).any(dim=1).float().mean() > 0.9
    # label-space adjacency is acyclic and consistent with the canonical one
    for b in range(4):
        topological_order(scm.adjacency[b])
        assert scm.adjacency[b].sum() == scm.A[b].sum()


def test_intervened_variables_take_values_and_only_descendants_shift(chain3):
    # chain3: X0 -> X1 -> Y, X0 -> Y. do(X1 = 5): X1 == 5, X0 unchanged in law, Y shifts.
    g0, g1 = generator("do", 0), generator("do", 0)
    obs = chain3.sample(20000, g0)[0]
    mask = torch.tensor([False, True, False])
    do = chain3.sample(20000, g1, do_mask=mask, do_value=torch.tensor([0.0, 5.0, 0.0]))[0]
    assert torch.all(do[:, 1] == 5.0)
    assert torch.equal(do[:, 0], obs[:, 0])  # non-descendant: same noise, same values
    # E[Y | do(X1=5)] = 3 + 1.5 * (5 - (-2)) - 0.5 * (E[X0] - 1) = 13.5
    assert abs(do[:, 2].mean().item() - 13.5) < 0.02
    assert abs(obs[:, 2].mean().item() - 3.0) < 0.02


def test_per_sample_interventions_and_soft_shift(chain3):
    g = generator("ps")
    mask = torch.zeros(1, 4, 3, dtype=torch.bool)
    mask[0, 1, 0] = True
    mask[0, 3, 1] = True
    vals = torch.full((1, 4, 3), 7.0)
    x = chain3.sample(4, g, do_mask=mask, do_value=vals)[0]
    assert x[1, 0] == 7.0 and x[3, 1] == 7.0 and x[0, 0] != 7.0
    a = chain3.sample(5000, generator("sh"))[0]
    b = chain3.sample(5000, generator("sh"), shift=torch.tensor([2.0, 0.0, 0.0]))[0]
    assert torch.allclose(b[:, 0] - a[:, 0], torch.tensor(2.0))
    # the shift propagates: Y moves by -0.5 * 2 + 1.5 * 0.8 * 2 = 1.4
    assert torch.allclose((b[:, 2] - a[:, 2]).mean(), torch.tensor(1.4), atol=1e-4)


def test_linear_gaussian_covariance_matches_analytic(chain3):
    x = chain3.sample(200_000, generator("cov"))[0].double()
    W = torch.tensor([[0.0, 0.8, -0.5], [0.0, 0.0, 1.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    D = torch.diag(torch.tensor([1.0, 0.25, 0.09], dtype=torch.float64))
    M = torch.linalg.inv(torch.eye(3, dtype=torch.float64) - W.T)  # x - mu = M eps
    analytic = M @ D @ M.T
    assert torch.allclose(torch.cov(x.T), analytic, rtol=0.03, atol=0.01)


def test_expected_target_exact_for_linear_matches_monte_carlo():
    scm = get_family("lin-er-10").sample(generator("emc"), B=2)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, 1] = mask[1, 4] = True  # third row: no intervention
    vals = torch.full((3, 10), 1.5)
    exact = scm.expected_target(mask, vals)                                     # B x 3
    mc = torch.stack([scm.sample(100_000, generator("emc", k), do_mask=mask[k], do_value=vals[k])
                      .gather(2, scm.target[:, None, None].expand(2, 100_000, 1)).mean(dim=(1, 2)) for k in range(3)], 1)
    assert torch.allclose(exact, mc, atol=0.03)
    assert torch.allclose(exact[:, 2], scm.observational_mean(), atol=1e-5)


def test_expected_target_monte_carlo_is_deterministic_and_unbiased():
    scm = get_family("mlp-er-10").sample(generator("mlp-e"))
    e1, e2 = scm.observational_mean(), scm.observational_mean()
    assert torch.equal(e1, e2)  # common random numbers
    y = scm.sample(200_000, generator("mlp-s"))[0, :, int(scm.target[0])]
    assert abs(e1.item() - y.mean().item()) < 4 * y.std().item() / math.sqrt(10_000)


def test_optimum_of_a_hand_built_linear_scm():
    # Y = 3 + 2 (X1 - 0) - 3 (X2 - 1) + noise; X1 in [-1, 2], X2 in [0, 4], roots.
    A = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.1], target=2, mean=[0.0, 1.0, 3.0])
    opt = scm.optimum(torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([2.0, 4.0, 0.0]))
    # do(X1=-1): 3 - 2 = 1;  do(X2=4): 3 - 9 = -6  -> y* = -6 at X2 = 4
    assert opt.value.item() == pytest.approx(-6.0, abs=1e-5)
    assert opt.variable.item() == 1 and opt.setting.item() == pytest.approx(4.0)
    only_x1 = scm.optimum(torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([2.0, 4.0, 0.0]),
                          intervenable=torch.tensor([True, False, False]))
    assert only_x1.value.item() == pytest.approx(1.0, abs=1e-5) and only_x1.setting.item() == pytest.approx(-1.0)


def test_optimum_of_a_batch_has_one_setting_per_model():
    # a batch of linear models and a mixed batch (linear and nonlinear models split and rejoined):
    # every field of the optimum is one value per model, and the setting is the chosen variable's
    # end of its domain (linear) or inside it
    for fam in (get_family("lin-er-10"), get_family("train-broad").with_(d_range=(4, 6), p_raw_linear=0.5)):
        scm = fam.sample(generator("test", "optimum-batch", fam.name), B=12)
        low, high = -torch.ones(12, scm.d), torch.ones(12, scm.d) * 2
        opt = scm.optimum(low, high)
        for field in (opt.value, opt.variable, opt.setting, opt.se):
            assert field.shape == (12,)
        chosen_low, chosen_high = low.gather(1, opt.variable[:, None])[:, 0], high.gather(1, opt.variable[:, None])[:, 0]
        assert ((opt.setting >= chosen_low - 1e-9) & (opt.setting <= chosen_high + 1e-9)).all()
        lin = torch.tensor(scm._cache["linear"])
        at_end = (opt.setting == chosen_low) | (opt.setting == chosen_high)
        assert at_end[lin].all()


def test_nonlinear_optimum_matches_a_fine_grid():
    scm = get_family("nonlin-er-10").sample(generator("nl-opt"))
    x = scm.sample(200, generator("nl-obs"))[0]
    lo, hi = x.amin(0), x.amax(0)
    opt = scm.optimum(lo[None], hi[None])
    anc = torch.nonzero(scm.ancestors()[0]).flatten()
    best = float("inf")
    for j in anc.tolist():  # brute force: 201 points per ancestor, same CRN estimator
        v = torch.linspace(float(lo[j]), float(hi[j]), 201)
        mask = torch.zeros(201, 10, dtype=torch.bool)
        mask[:, j] = True
        vals = torch.zeros(201, 10)
        vals[:, j] = v
        best = min(best, scm.expected_target(mask, vals).min().item())
    assert opt.value.item() <= best + 1e-3
    assert opt.value.item() < scm.observational_mean().item()


def test_batched_and_single_models_agree():
    scm = get_family("nonlin-er-10").sample(generator("bs"), B=3)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 3] = True
    vals = torch.full((2, 10), 0.7)
    full = scm.expected_target(mask, vals)
    for b in range(3):
        assert torch.allclose(scm[b].expected_target(mask, vals), full[b:b + 1], atol=1e-5)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_samples_finite_data(name):
    scm = get_family(name).sample(generator("fam", name), B=2)
    x = scm.sample(64, generator("fam-x", name))
    assert torch.isfinite(x).all() and x.std(dim=1).min() > 0


def test_state_dict_round_trip():
    scm = get_family("nonlin-er-10").sample(generator("rt"))
    again = SCM.from_dict(scm.to_dict())
    assert torch.equal(scm.sample(10, generator("a")), again.sample(10, generator("a")))
    bad = scm.to_dict()
    bad["format_version"] = 99
    with pytest.raises(ValueError, match="format version"):
        SCM.from_dict(bad)


def test_cuda_sampling_matches_cpu_layout():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    scm = get_family("lin-er-20").sample(generator("cuda", device="cuda"), B=8)
    x = scm.sample(100, generator("cx", device="cuda"))
    assert x.device.type == "cuda" and torch.isfinite(x).all()


def test_set_optimum_of_hand_built_linear_scms():
    """Y = 3 + 2 X1 - 3 (X2 - 1): the pair at its corners beats either alone (3 - 2 - 9 = -8 < -6).
    With a mediator, X1 -> X2 -> Y and X1 -> Y (X2 = X1 + noise): do(X1 = a) moves Y by 2a - 3a,
    do(X2 = b) by -3b; do(X1 = a, X2 = b) gives 3 + 2a - 3b with X2's mean taken away."""
    A = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.1], target=2, mean=[0.0, 1.0, 3.0])
    lo, hi = torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([2.0, 4.0, 0.0])
    one = scm.set_optimum(lo, hi, max_set=1)
    assert one.value.item() == pytest.approx(-6.0, abs=1e-5) and one.mask[0].tolist() == [False, True, False]
    two = scm.set_optimum(lo, hi, max_set=2)
    assert two.value.item() == pytest.approx(-8.0, abs=1e-5)
    assert two.mask[0].tolist() == [True, True, False]
    assert two.setting[0, :2].tolist() == pytest.approx([-1.0, 4.0]) and two.se.item() == 0.0
    # a mediator: Y = 2 X1 - 3 X2 (+ means), X2 = X1 + noise
    A = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, -3.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.1], target=2, mean=[0.0, 0.0, 0.0])
    lo, hi = torch.tensor([-1.0, -1.0, 0.0]), torch.tensor([1.0, 2.0, 0.0])
    mask = torch.tensor([[True, False, False], [False, True, False], [True, True, False]])
    vals = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 2.0, 0.0]])
    assert scm.expected_target(mask, vals)[0].tolist() == pytest.approx([-1.0, -6.0, -8.0], abs=1e-5)
    assert scm.set_optimum(lo, hi, max_set=1).value.item() == pytest.approx(-6.0, abs=1e-5)
    assert scm.set_optimum(lo, hi, max_set=2).value.item() == pytest.approx(-8.0, abs=1e-5)
    # exploration sets: only the pair, or only X1
    assert scm.set_optimum(lo, hi, 2, sets=[(1, 0)]).value.item() == pytest.approx(-8.0, abs=1e-5)
    assert scm.set_optimum(lo, hi, 2, sets=[(0,)]).value.item() == pytest.approx(-1.0, abs=1e-5)


def test_set_optimum_with_max_set_one_is_the_single_variable_optimum():
    for fam in ("lin-er-10", "nonlin-er-10"):
        scm = get_family(fam).sample(generator("test", "set-opt-one", fam), B=3)
        low, high = -torch.ones(3, scm.d), torch.ones(3, scm.d) * 2
        a, b = scm.optimum(low, high, n_mc=2000), scm.set_optimum(low, high, 1, n_mc=2000)
        assert torch.equal(a.value, b.value) and torch.equal(a.se, b.se)
        rows = torch.arange(3)
        assert b.mask.sum(1).tolist() == [1, 1, 1] and torch.equal(b.mask.float().argmax(1), a.variable)
        assert torch.equal(b.setting[rows, a.variable], a.setting)


def test_nonlinear_set_optimum_matches_brute_force_over_pairs():
    """Two variables at once on nonlinear SCMs: the grid-and-coordinate search is within a small
    margin of a 33 x 33 brute-force grid over every pair of ancestors (the same CRN estimator),
    and never worse than the best single variable."""
    for seed in range(2):
        scm = get_family("nonlin-er-10").sample(generator("test", "set-opt-nl", seed))
        x = scm.sample(200, generator("test", "set-opt-nl-obs", seed))[0]
        lo, hi = x.amin(0), x.amax(0)
        n_mc = 1000
        two = scm.set_optimum(lo[None], hi[None], 2, n_mc=n_mc)
        one = scm.set_optimum(lo[None], hi[None], 1, n_mc=n_mc)
        assert two.value.item() <= one.value.item() + 1e-9
        anc = torch.nonzero(scm.ancestors()[0]).flatten().tolist()
        t = torch.linspace(0, 1, 33)
        a, b = torch.meshgrid(t, t, indexing="ij")
        brute = one.value.item()
        for i, j in itertools.combinations(anc, 2):
            mask = torch.zeros(33 * 33, scm.d, dtype=torch.bool)
            mask[:, [i, j]] = True
            vals = torch.zeros(33 * 33, scm.d)
            vals[:, i] = lo[i] + (hi[i] - lo[i]) * a.flatten()
            vals[:, j] = lo[j] + (hi[j] - lo[j]) * b.flatten()
            brute = min(brute, scm.expected_target(mask, vals, n_mc=n_mc).min().item())
        spread = scm.observational_mean().item() - brute
        assert two.value.item() <= brute + 0.02 * abs(spread) + 1e-6
        assert two.mask.sum().item() in (1, 2)


def test_set_optimum_refuses_bad_sets():
    scm = get_family("lin-er-10").sample(generator("test", "set-opt-bad"))
    low, high = -torch.ones(scm.d), torch.ones(scm.d)
    for bad in ([(0, 0)], [(0, 1, 2)], [(0, 99)], [()]):
        with pytest.raises(ValueError, match="exploration set"):
            scm.set_optimum(low, high, 2, sets=bad)
    with pytest.raises(ValueError, match="max_set"):
        scm.set_optimum(low, high, 0)


def test_set_optimum_of_a_mixed_batch_is_each_model_alone():
    """Linear and nonlinear models in one batch are searched apart and rejoined in order."""
    fam = get_family("train-broad").with_(d_range=(4, 5), p_raw_linear=0.5)
    scm = fam.sample(generator("test", "set-opt-mixed"), B=4)
    assert 0 < sum(scm._cache["linear"]) < 4
    low, high = -torch.ones(4, scm.d), torch.ones(4, scm.d)
    both = scm.set_optimum(low, high, 2, n_mc=500)
    for b in range(4):
        one = scm[b].set_optimum(low[b:b + 1], high[b:b + 1], 2, n_mc=500)
        assert torch.equal(both.mask[b], one.mask[0])
        assert torch.allclose(both.value[b], one.value[0], atol=1e-5)
        assert torch.allclose(both.setting[b], one.setting[0], atol=1e-5)


def test_exploration_sets_with_a_variable_that_is_not_an_ancestor_of_y():
    """X1, X2 -> Y -> C (C a child of Y): a set holding C acts as the set without it, a set of C
    alone leaves Y at its observational mean, and neither is skipped when only such sets are
    allowed."""
    A = torch.tensor([[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    W = torch.tensor([[0.0, 0, 2.0, 0], [0, 0, -3.0, 0], [0, 0, 0, 1.0], [0, 0, 0, 0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.1, 0.1], target=2, mean=[0.0, 1.0, 3.0, 0.0])
    lo, hi = torch.tensor([-1.0, 0.0, 0.0, -5.0]), torch.tensor([2.0, 4.0, 0.0, 5.0])
    can = torch.tensor([True, True, False, True])
    with_child = scm.set_optimum(lo, hi, 2, can, sets=[(0, 3)])
    assert with_child.value.item() == pytest.approx(1.0, abs=1e-5)        # do(X1 = -1): 3 - 2
    child = scm.set_optimum(lo, hi, 1, can, sets=[(3,)])
    assert child.value.item() == pytest.approx(3.0, abs=1e-5)             # Y's observational mean
    assert scm.set_optimum(lo, hi, 2, can, sets=[(3,), (0, 1)]).value.item() == pytest.approx(-8.0, abs=1e-5)


def test_the_bioreactor_needs_temperature_and_ph_together_for_its_best():
    """The built-in bioreactor: the best single setting is temperature near 32 (E[titer] near 13.8);
    the best pair sets temperature near 34 and pH near 7.4 together (near 17.8), far above any single
    setting; pH alone at 7.4 or temperature alone at 34 gives no such titer."""
    from acbo import bioreactor

    var, value, single = bioreactor.optimum()
    setting, best = bioreactor.set_optimum()
    assert var == "temperature" and abs(value - 32) < 0.6 and abs(single - 13.8) < 0.2
    assert set(setting) == {"temperature", "pH"} and abs(setting["temperature"] - 34.2) < 0.6
    assert abs(setting["pH"] - 7.39) < 0.05 and best > single + 3.5
    assert bioreactor.expected_titer({"pH": setting["pH"]}) < single
    assert bioreactor.expected_titer({"temperature": setting["temperature"]}) < single
