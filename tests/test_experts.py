import math

import numpy as np
import pytest
import torch
from scipy import stats

from acbo.experts import (CandidateSetPosterior, DRConfig, SetPosteriorConfig, average_models, blr_predictive,
                          blr_rank1_update, do_effect, expected_improvement, fit_dr_prior)
from acbo.experts.causal_gp import fit_set_gp, interpolate, maximise_ei
from acbo.experts.drcfs import by_correct, one_sided_paired_t
from acbo.scm import SCM
from acbo.seeding import generator


def test_blr_predictive_and_rank1_update_by_hand():
    # 2 weights, prior N(0, I), sigma_y = 1; point phi = (1, 2), y = 3
    mu, Sigma = torch.zeros(1, 2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[None]
    phi = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    m, v = blr_predictive(mu, Sigma, phi, 1.0)
    assert m.item() == 0.0 and v.item() == pytest.approx(1 + 1 + 4)
    mu2, S2 = blr_rank1_update(mu, Sigma, phi, 3.0, 1.0)
    # posterior precision I + phi phiᵀ; covariance = I - phi phiᵀ / 6; mean = cov phi y
    cov = torch.eye(2, dtype=torch.float64) - phi.T @ phi / 6
    assert torch.allclose(S2[0], cov) and torch.allclose(mu2[0], (cov @ phi[0]) * 3)
    m2, v2 = blr_predictive(mu2, S2, phi, 1.0)
    assert m2.item() == pytest.approx(15 / 6) and v2.item() == pytest.approx(1 + 5 / 6)


def test_set_posterior_scores_before_adding_and_prefers_the_true_set():
    # Y = 2 X1 + noise; candidate sets {X1} and {X2} with prior 1/2 each
    gen = generator("sp")
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    x[:, 2] = 2 * x[:, 0] + 0.1 * torch.randn(50, generator=gen, dtype=torch.float64)
    sets = torch.tensor([[True, False, False], [False, True, False]])
    post = CandidateSetPosterior(sets, torch.tensor([0.5, 0.5]), x, 2, gen)
    new = torch.tensor([1.5, -0.3, 3.0], dtype=torch.float64)
    z = new - post.mean  # Y is centred, inputs standardised
    phi = post.features(new[None])[:, 0]
    m, v = blr_predictive(post.mu, post.Sigma, phi, 1.0)
    expected = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)) + torch.distributions.Normal(m, v.sqrt()).log_prob(z[2])
    expected = (expected - torch.logsumexp(expected, 0)).exp()
    post.update(new)
    assert torch.allclose(post.probs, expected)
    for i in range(30):
        row = torch.randn(3, generator=gen, dtype=torch.float64)
        row[2] = 2 * row[0]
        post.update(row)
    assert len(post.probs) == 1 and post.probs[0] == 1.0  # {X2} fell below 1e-4 and was pruned


def test_rff_set_posterior_runs_and_ignores_target_interventions():
    gen = generator("rff")
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    x[:, 2] = 3 * torch.sin(2 * x[:, 0])
    post = CandidateSetPosterior(torch.tensor([[True, False, False], [False, True, False]]), torch.tensor([0.5, 0.5]),
                                 x, 2, gen, SetPosteriorConfig(model="rff"))
    before = post.probs.clone()
    post.update(torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64), y_intervened=True)
    assert torch.equal(post.probs, before)
    for v in torch.linspace(-2, 2, 20, dtype=torch.float64):
        post.update(torch.tensor([float(v), 0.3, 3 * math.sin(2 * float(v))], dtype=torch.float64))
    assert post.probs[0] > 0.9


def test_model_averaging_law_of_total_variance():
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    means = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    var = torch.tensor([[0.5], [1.0]], dtype=torch.float64)
    m, v = average_models(w, means, var)
    # m = 0.25 + 2.25 = 2.5; v = (0.125 + 0.75) + (0.25 * 1 + 0.75 * 9) - 6.25 = 0.875 + 0.75
    assert m.item() == pytest.approx(2.5) and v.item() == pytest.approx(0.875 + 0.75)


def test_expected_improvement_at_known_points():
    ei = expected_improvement(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]), best=0.0)
    # u = 0: EI = phi(0); u = -0.5: EI = 2 (-0.5 Phi(-0.5) + phi(-0.5))
    assert ei[0].item() == pytest.approx(stats.norm.pdf(0))
    assert ei[1].item() == pytest.approx(2 * (-0.5 * stats.norm.cdf(-0.5) + stats.norm.pdf(-0.5)))


def test_interpolate_on_grid():
    vals = torch.tensor([0.0, 10.0, 30.0])
    assert interpolate(torch.tensor([0.0, 0.25, 0.75, 1.0, 1.5]), vals).tolist() == [0.0, 5.0, 20.0, 30.0, 30.0]


def test_do_calculus_average_matches_the_closed_form_not_the_conditional():
    # X0 -> X1, X0 -> Y, X1 -> Y (X0 confounds X1 and Y)
    A = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.9, 2.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 0.5, 0.2], target=2)
    x = scm.sample(300, generator("do-gp"))[0].double()
    mean, std = x.mean(0), x.std(0)
    Z = (x[:, :2] - mean[:2]) / std[:2]
    y = (x[:, 2] - mean[2]) / std[2]
    gp = fit_set_gp(Z, y)
    grid_raw = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    m, v = do_effect(gp, Z, 1, (grid_raw - mean[1]) / std[1])
    # closed form in raw units, averaging over the observed X0 as the do-calculus does:
    # E[Y | do(X1 = g)] = 1.0 g + 2.0 mean(X0); standardised
    truth = (grid_raw + 2.0 * mean[0] - mean[2]) / std[2]
    assert torch.allclose(m, truth, atol=0.08)
    # the observational conditional E[Y | X1 = g] has slope 1 + 2 * 0.9 / (0.81 + 0.25): clearly different
    cond = (grid_raw * (1 + 2 * 0.9 / 1.06) - mean[2]) / std[2]
    assert (m - cond).abs().max() > 0.5
    assert (v > 0).all()


def test_causal_gp_ei_prefers_the_better_end():
    prior = torch.linspace(1.0, -1.0, 101, dtype=torch.float64)  # the prior believes x = 1 is best
    x01, ei = maximise_ei(prior, torch.full((101,), 0.01, dtype=torch.float64), torch.zeros(0, 1, dtype=torch.float64),
                          torch.zeros(0, dtype=torch.float64), best=0.0, seed=0)
    assert x01.tolist() == pytest.approx([1.0]) and ei > 0
    xs = torch.tensor([[0.0], [0.5], [1.0]], dtype=torch.float64)
    x01, ei = maximise_ei(prior, torch.full((101,), 0.01, dtype=torch.float64), xs, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64),
                          best=-1.0, seed=0)
    assert float(x01[0]) > 0.8


def test_causal_gp_ei_over_a_pair_finds_the_corner_the_prior_believes_best():
    """A prior over [0, 1]^2 (21 x 21 grid) falling towards (1, 0): with no data EI's argmax is
    that corner; with three measurements that agree with the prior it stays near it."""
    from acbo.experts.causal_gp import grid_points

    pts = grid_points(2, 21)
    prior = pts[:, 1] - pts[:, 0]                                                               # best at (1, 0)
    var = torch.full((441,), 0.01, dtype=torch.float64)
    x01, ei = maximise_ei(prior, var, torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.float64), 0.0, 0)
    assert x01.tolist() == pytest.approx([1.0, 0.0]) and ei > 0
    xs = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    x01, _ = maximise_ei(prior, var, xs, xs[:, 1] - xs[:, 0], -1.0, 0)
    assert float(x01[0]) > 0.8 and float(x01[1]) < 0.2, x01


def test_a_floor_on_the_causal_gps_scale_keeps_the_expert_off_an_end_it_measured_poor():
    """The bioreactor, maximising titer: the expert's third experiment sets temperature 40 (E[titer]
    -14, against 13.7 at 31.75). Fitted freely, sigma_f^2 of the causal GP collapses (the causal
    prior's mean explains the rows), expected improvement underflows everywhere and its maximiser
    returns to 40 for every later experiment; with ``min_outputscale`` the fit keeps sigma_f^2 at
    or above the floor and the expert stays near its best."""
    import pandas as pd

    from acbo import CausalOptimizer, bioreactor
    import acbo.experts.causal_gp as cg

    floor = 0.01  # without it (0.0, the default) temperatures 4-7 are all 40
    obs = pd.DataFrame(bioreactor.observe(60, 0), columns=bioreactor.NAMES)
    opt = CausalOptimizer(obs, target="titer", minimize=False, seed=0, domains=bioreactor.DOMAINS,
                          intervenable=list(bioreactor.SETTABLE), method="parent_scale", min_outputscale=floor)
    temps = []
    for t in range(7):
        iv = opt.ask()
        temps.append(iv.get("temperature"))
        opt.tell(iv, bioreactor.experiment(dict(iv), seed=t + 1), accept_outlier=True)
    assert temps.count(40.0) <= 1 and all(v is None or v == 40.0 or abs(v - 31.75) < 2 for v in temps), temps
    b = opt.buffer
    x = opt.method._unit((0,), b.values[opt.method._exactly(b, (0,))][:, [0]])
    gp = cg.causal_gp(x, torch.linspace(-1.0, 1.0, len(x), dtype=torch.float64), torch.zeros(51, dtype=torch.float64),
                      torch.full((51,), 1e-4, dtype=torch.float64), floor)
    assert float(gp.covar_module.kernels[0].outputscale.detach()) >= floor * (1 - 1e-6)  # gpytorch holds it in float32
    with pytest.raises(ValueError, match="min_outputscale must be a finite number >= 0, got -1"):
        CausalOptimizer(obs, target="titer", method="parent_scale", min_outputscale=-1.0)


def test_t_test_and_by_correction_match_scipy():
    rng = np.random.default_rng(0)
    d = rng.normal(0.2, 1.0, size=(3, 50))
    p = one_sided_paired_t(torch.tensor(d))
    assert np.allclose(p, stats.ttest_1samp(d, 0.0, axis=1, alternative="greater").pvalue)
    ps = np.array([0.01, 0.02, 0.03, 0.5])
    # BY: p_(i) * m * c(m) / i, monotone from the top; c(4) = 1 + 1/2 + 1/3 + 1/4
    c = 1 + 1 / 2 + 1 / 3 + 1 / 4
    expected = np.minimum.accumulate((ps * 4 * c / np.arange(1, 5))[::-1])[::-1].clip(max=1)
    assert np.allclose(by_correct(ps), expected)


@pytest.mark.parametrize("cfg", [DRConfig(variant="dr2", regressor="ridge"),
                                 DRConfig(variant="dr1", regressor="mlp", hidden=32, max_epochs=200, n_bootstrap=4)])
def test_dr_prior_finds_strong_parents(cfg):
    # Y = X0 - X1 + small noise, X2 irrelevant
    gen = generator("dr")
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    x[:, 3] = x[:, 0] - x[:, 1] + 0.3 * torch.randn(200, generator=gen, dtype=torch.float64)
    prior = fit_dr_prior(x, 3, generator("dr-fit"), cfg)
    assert prior.probs.sum().item() == pytest.approx(1.0)
    marg = (prior.probs[:, None] * prior.sets.double()).sum(0)
    assert marg[0] > 0.9 and marg[1] > 0.9 and marg[3] == 0
    if cfg.regressor == "ridge":  # the MLP variants are liberal at this n (see drcfs' docstring)
        assert marg[2] < 0.5
    assert prior.selected.shape == (cfg.n_bootstrap, 4)


def test_dr_prior_is_reproducible_and_falls_back_to_singletons():
    x = torch.randn(60, 3, generator=generator("fb"), dtype=torch.float64)  # Y independent of everything
    a = fit_dr_prior(x, 2, generator("fb-fit"), DRConfig(regressor="ridge", variant="dr2"))
    b = fit_dr_prior(x, 2, generator("fb-fit"), DRConfig(regressor="ridge", variant="dr2"))
    assert torch.equal(a.sets, b.sets) and torch.equal(a.probs, b.probs)
    if not a.selected.any():
        assert a.sets.tolist() == [[True, False, False], [False, True, False]] and a.probs.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("variant", ["dr2", "dr1"])
def test_ridge_out_of_fold_equals_one_regression_per_model(variant):
    # reference: for every resample, fold and model, a separate ridge solve on that fold's training
    # rows (dr2: feature i deleted; dr1: the full fit, X_i set to 0 at prediction), intercept unpenalised
    from acbo.experts.drcfs import _ridge_out_of_fold
    gen = generator("ridge-oof")
    B, K, n, p, lam = 2, 3, 12, 3, 0.7
    Xb = torch.randn(B, n, p, generator=gen, dtype=torch.float64)
    yb = torch.randn(B, n, generator=gen, dtype=torch.float64)
    fold = torch.randint(K, (B, n), generator=gen)
    test = fold[:, None, :] == torch.arange(K)[None, :, None]
    got = _ridge_out_of_fold(Xb, yb, ~test, test, variant, lam)
    want = np.zeros((B, p + 1, n))
    for b in range(B):
        for k in range(K):
            tr, te = (~test[b, k]).numpy(), test[b, k].numpy()
            for m in range(p + 1):
                cols = [j for j in range(p) if variant == "dr1" or j != m - 1]
                A = np.c_[Xb[b].numpy()[:, cols], np.ones(n)]
                pen = np.diag([lam] * len(cols) + [0.0])
                beta = np.linalg.solve(A[tr].T @ A[tr] + pen, A[tr].T @ yb[b].numpy()[tr])
                T = A.copy()
                if variant == "dr1" and m > 0:
                    T[:, cols.index(m - 1)] = 0.0
                want[b, m, te] = (T @ beta)[te]
    assert np.allclose(got.numpy(), want, atol=1e-7)


def test_dr_prior_refuses_a_size_that_does_not_fit(monkeypatch):
    import acbo.experts.drcfs as dr
    from acbo.experts.drcfs import prior_bytes
    x = torch.randn(300, 6, generator=generator("big"), dtype=torch.float64)
    cfg = DRConfig(variant="dr1", regressor="mlp", hidden=16, n_bootstrap=2)
    monkeypatch.setattr(dr, "available_bytes", lambda: prior_bytes(300, 6, cfg) - 1)
    with pytest.raises(ValueError, match=r"300 observational rows of 6 variables needs about .* GiB.*ridge"):
        fit_dr_prior(x, 5, generator("big-fit"), cfg)
    # the estimate grows with n and d, the ridge path far slower than the networks' copies
    ridge = DRConfig(variant="dr2", regressor="ridge")  # parent_scale's default
    assert prior_bytes(1000, 100, ridge) < prior_bytes(1000, 100, DRConfig(regressor="mlp")) / 10
    assert prior_bytes(2000, 50, ridge) > prior_bytes(1000, 50, ridge)
    monkeypatch.setattr(dr, "available_bytes", lambda: None)  # unknown: no refusal
    fit_dr_prior(x[:40], 5, generator("big-fit"), ridge)


def test_bad_expert_options():
    with pytest.raises(ValueError, match="DR variant"):
        DRConfig(variant="dr3")
    with pytest.raises(ValueError, match="regressor"):
        DRConfig(regressor="forest")
    with pytest.raises(ValueError, match="set posterior model"):
        SetPosteriorConfig(model="tree")
    with pytest.raises(ValueError, match="at least 10 observational rows"):
        fit_dr_prior(torch.randn(5, 3), 2, generator("x"))


def test_do_effect_in_chunks_equals_one_pass(monkeypatch):
    import acbo.experts.causal_gp as cg

    x = torch.randn(60, 2, generator=generator("chunk"), dtype=torch.float64)
    y = x[:, 0] - 0.5 * x[:, 1] ** 2
    gp = fit_set_gp(x, y)
    grid = torch.linspace(-2, 2, 11, dtype=torch.float64)
    whole = do_effect(gp, x, 0, grid)
    monkeypatch.setattr(cg, "DO_CHUNK", 60 * 60 * 3)  # three grid points at a time
    parts = cg.do_effect(gp, x, 0, grid)
    assert torch.allclose(whole[0], parts[0], atol=1e-10) and torch.allclose(whole[1], parts[1], atol=1e-10)


def test_causal_gps_use_a_seeded_subset_of_large_observational_data():
    import pandas as pd

    from acbo import CausalOptimizer

    A = torch.tensor([[0, 1], [0, 0]])
    scm = SCM.linear_gaussian(A, torch.tensor([[0.0, 2.0], [0.0, 0.0]]), noise_std=[1.0, 0.3], target=1)
    frame = pd.DataFrame(scm.sample(500, generator("rows"))[0].double().numpy(), columns=scm.names())
    a = CausalOptimizer(frame, method="cbo-parents", parents=["X1"], max_rows=100, seed=3)
    b = CausalOptimizer(frame, method="cbo-parents", parents=["X1"], max_rows=100, seed=3)
    assert a.ask() == b.ask()
    rows = a.method.gp_rows(a.buffer)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100 and rows.max() < 500
    small = CausalOptimizer(frame.iloc[:80], method="cbo-parents", parents=["X1"], max_rows=100)
    small.ask()
    assert torch.equal(small.method.gp_rows(small.buffer), torch.arange(80))
    with pytest.raises(ValueError, match="max_rows must be an integer >= 10"):
        CausalOptimizer(frame, method="parent_scale", max_rows=5)


def test_marginal_posterior_matches_botorch():
    from acbo.experts.causal_gp import marginal_posterior

    x = torch.randn(40, 3, generator=generator("mp"), dtype=torch.float64)
    y = torch.sin(x[:, 0]) + 0.3 * x[:, 1]
    gp = fit_set_gp(x, y)
    q = torch.randn(25, 3, generator=generator("mp-q"), dtype=torch.float64)
    mean, var = marginal_posterior(gp, q)
    post = gp.posterior(q[:, None, :])
    assert torch.allclose(mean, post.mean.flatten(), atol=1e-8) and torch.allclose(var, post.variance.flatten(), atol=1e-8)
