"""The conditioning maths (acbo.surrogate.conditioning) against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from acbo.surrogate import conditioning as C


def test_interpolate_by_hand():
    values = torch.tensor([[0.0, 1.0, 4.0]], dtype=torch.float64)
    u = torch.tensor([[0.25, 0.75, 1.5, -1.0, 0.5]], dtype=torch.float64)
    assert torch.allclose(C.interpolate(values, u), torch.tensor([[0.5, 2.5, 4.0, 0.0, 1.0]], dtype=torch.float64))


def test_local_linear_is_exact_on_a_line_and_matches_a_weighted_fit():
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)[None]
    mask = torch.ones_like(x, dtype=torch.bool)
    at = torch.tensor([[-1.0, 0.3, 1.7]], dtype=torch.float64)
    est, var, spread = C.local_linear(x, 2 + 3 * x, mask, at, torch.tensor([0.5], dtype=torch.float64))
    assert torch.allclose(est, 2 + 3 * at, atol=1e-10) and float(var.max()) < 1e-20 and float(spread.max()) < 1e-20
    # a curved response: the intercept of the kernel-weighted least-squares line at each point
    rng = np.random.default_rng(0)
    xs = rng.normal(size=60)
    ys = np.sin(2 * xs) + 0.1 * rng.normal(size=60)
    h, a = 0.4, 0.2
    w = np.exp(-0.5 * ((xs - a) / h) ** 2)
    X = np.c_[np.ones_like(xs), xs - a]
    beta = np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * ys))
    ell = (np.linalg.solve(X.T @ (w[:, None] * X), (w[:, None] * X).T))[0]   # the equivalent kernel
    n_eff = w.sum() ** 2 / (w ** 2).sum()
    sigma2 = (w * (ys - X @ beta) ** 2).sum() / w.sum() * n_eff / (n_eff - 2)
    est, var, spread = C.local_linear(torch.tensor(xs)[None], torch.tensor(ys)[None], torch.ones(1, 60, dtype=torch.bool),
                                      torch.tensor([[a]], dtype=torch.float64), torch.tensor([h], dtype=torch.float64))
    assert float(est[0, 0]) == pytest.approx(beta[0], rel=1e-9)
    assert float(spread[0, 0]) == pytest.approx(sigma2, rel=1e-9)
    assert float(var[0, 0]) == pytest.approx(sigma2 * (ell ** 2).sum(), rel=1e-9)


def test_local_linear_marks_points_the_data_do_not_reach():
    x = torch.tensor([[0.0, 0.1, 0.2, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False]])
    est, var, _ = C.local_linear(x, x, mask, torch.tensor([[0.1, 30.0]], dtype=torch.float64),
                                 torch.tensor([0.1], dtype=torch.float64))
    assert float(var[0, 1]) == C.FAR and float(est[0, 1]) == 0.0


def test_local_linear_needs_three_effective_rows():
    """Two rows near the point and the rest far: about two effective rows, too few for a line and
    its spread: marked absent; four rows near it are enough."""
    h = torch.tensor([0.1], dtype=torch.float64)
    at = torch.tensor([[0.0]], dtype=torch.float64)
    x = torch.tensor([[-0.01, 0.01, 5.0, 6.0]], dtype=torch.float64)
    _, var, _ = C.local_linear(x, x, torch.ones_like(x, dtype=torch.bool), at, h)
    assert float(var[0, 0]) == C.FAR
    x3 = torch.tensor([[-0.01, 0.01, 0.02, -0.02]], dtype=torch.float64)
    _, var3, _ = C.local_linear(x3, x3 ** 2, torch.ones_like(x3, dtype=torch.bool), at, h)
    assert float(var3[0, 0]) < C.FAR


def test_one_row_conditioning_by_hand_for_every_setting():
    """One measurement r at u0 with noise s2: posterior mean A^2 / (A^2 + s2) r, variance
    A^2 - A^4 / (A^2 + s2), marginal likelihood N(r; 0, A^2 + s2) with A^2 = s0^2 + beta^2; at
    another point u1 the covariance is A A' rho(u1 - u0)."""
    u = torch.tensor([[0.3]], dtype=torch.float64)
    r, s2, s0 = 1.2, 0.5, 0.4
    us = torch.tensor([[0.3, 0.45]], dtype=torch.float64)
    mean, var, fit = C.gp_components(u, torch.tensor([[r]], dtype=torch.float64), torch.tensor([[s2]], dtype=torch.float64),
                                     torch.tensor([[False]]), torch.tensor([[True]]), torch.tensor([[s0]], dtype=torch.float64),
                                     us, torch.tensor([[s0, 0.7]], dtype=torch.float64))
    logml = fit.logml
    ls, beta, tau, _ = C.components()
    for c in range(len(ls)):
        A2 = s0 ** 2 + float(beta[c]) ** 2
        A1 = math.sqrt(0.7 ** 2 + float(beta[c]) ** 2)
        rho = math.exp(-0.5 * (0.15 / float(ls[c])) ** 2)
        assert float(mean[0, c, 0]) == pytest.approx(A2 / (A2 + s2) * r, rel=1e-10)
        assert float(var[0, c, 0]) == pytest.approx(A2 - A2 ** 2 / (A2 + s2), rel=1e-10)
        k = A1 * math.sqrt(A2) * rho
        assert float(mean[0, c, 1]) == pytest.approx(k / (A2 + s2) * r, rel=1e-10)
        assert float(var[0, c, 1]) == pytest.approx(A1 ** 2 - k * k / (A2 + s2), rel=1e-10)
        assert float(logml[0, c]) == pytest.approx(-0.5 * r * r / (A2 + s2) - 0.5 * math.log(2 * math.pi * (A2 + s2)),
                                                    rel=1e-10)


def test_observational_rows_share_an_offset_of_amplitude_tau():
    """Two observational estimates at the same place: their covariance adds tau^2 (the shared
    offset), so their marginal likelihood is a bivariate normal with that covariance."""
    u = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    r = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    noise = torch.tensor([[0.1, 0.2]], dtype=torch.float64)
    s0 = torch.tensor([[0.2, 0.2]], dtype=torch.float64)
    logml = C.gp_components(u, r, noise, torch.tensor([[True, True]]), torch.tensor([[True, True]]), s0,
                            u[:, :1], s0[:, :1])[2].logml
    ls, beta, tau, _ = C.components()
    for c in range(len(ls)):
        a2 = 0.04 + float(beta[c]) ** 2 + float(tau[c]) ** 2
        cov = np.array([[a2 + 0.1, a2], [a2, a2 + 0.2]])
        x = r[0].numpy()
        want = -0.5 * x @ np.linalg.solve(cov, x) - 0.5 * np.log(np.linalg.det(cov)) - math.log(2 * math.pi)
        assert float(logml[0, c]) == pytest.approx(want, rel=1e-10)


def _random_rows(g: torch.Generator, V: int, M: int, K: int, noise_floor: float, amp_floor: float):
    """Random GP inputs, V x M rows and V x K queries: (u, r, noise, observed, amp, u_star, amp_star)."""
    rand = lambda *shape: torch.rand(*shape, generator=g, dtype=torch.float64)
    u, r = rand(V, M), torch.randn(V, M, generator=g, dtype=torch.float64)
    noise, obs = noise_floor + rand(V, M), torch.rand(V, M, generator=g) < 0.5
    return u, r, noise, obs, amp_floor + rand(V, M), rand(V, K), amp_floor + rand(V, K)


def test_padding_rows_change_nothing():
    g = torch.Generator().manual_seed(1)
    V, M, K = 3, 5, 4
    u, r, noise, obs, amp, us, amps = _random_rows(g, V, M, K, noise_floor=0.1, amp_floor=0.0)
    mask = torch.ones(V, M, dtype=torch.bool)
    base = C.gp_average(u, r, noise, obs, mask, amp, us, amps, torch.ones(V, dtype=torch.float64))
    pad = lambda t, v: torch.cat([t, torch.full((V, 2), v, dtype=t.dtype)], 1)
    padded = C.gp_average(pad(u, 0.37), pad(r, 9.0), pad(noise, 1e-3), pad(obs, True), pad(mask, False),
                          pad(amp, 5.0), us, amps, torch.ones(V, dtype=torch.float64))
    for a, b in zip(base[:4], padded[:4]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_the_average_is_the_moment_matched_mixture():
    u = torch.tensor([[0.1, 0.6]], dtype=torch.float64)
    r = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    args = (u, r, torch.tensor([[0.2, 0.3]], dtype=torch.float64), torch.tensor([[False, True]]),
            torch.tensor([[True, True]]), torch.tensor([[0.3, 0.5]], dtype=torch.float64),
            torch.tensor([[0.2, 0.9]], dtype=torch.float64), torch.tensor([[0.4, 0.4]], dtype=torch.float64))
    mean_c, var_c, fit = C.gp_components(*args)
    logml = fit.logml
    logw = C.components()[3]
    w = np.exp((logml + logw).numpy()[0] - np.logaddexp.reduce((logml + logw).numpy()[0]))
    mean, var_f, var_y, lml, _ = C.gp_average(*args, torch.tensor([0.25], dtype=torch.float64))
    m = (w[:, None] * mean_c[0].numpy()).sum(0)
    v = (w[:, None] * (var_c[0].numpy() + mean_c[0].numpy() ** 2)).sum(0) - m ** 2
    assert np.allclose(mean[0].numpy(), m) and np.allclose(var_f[0].numpy(), v)
    assert np.allclose(var_y[0].numpy(), v + 0.25)
    assert float(lml[0]) == pytest.approx(float(np.logaddexp.reduce((logml + logw).numpy()[0])))


def test_no_effect_update_by_hand():
    p = torch.tensor([0.5, 0.5, 0.9], dtype=torch.float64)
    log_effect = torch.log(torch.tensor([1.0, 5.0, 0.1], dtype=torch.float64))
    new = C.no_effect_update(p, log_effect, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(new, torch.tensor([0.5, 0.5, 0.09 / 0.19], dtype=torch.float64))
    third = C.no_effect_update(torch.tensor([0.5]), torch.log(torch.tensor([1 / 3])), torch.zeros(1))
    assert float(third[0]) == pytest.approx(0.25)


def test_null_likelihood_and_replicate_noise_by_hand():
    y = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    want = -0.5 * (0.25 + 1.0) - math.log(2 * math.pi)
    assert float(C.null_log_likelihood(y, mask)[0]) == pytest.approx(want)
    # two replicates at u = 0.2 (mean 1), one alone at 0.7: one degree of freedom, SS = 2
    u = torch.tensor([[0.2, 0.2, 0.7]], dtype=torch.float64)
    y = torch.tensor([[0.0, 2.0, 5.0]], dtype=torch.float64)
    got = C.replicate_noise(u, y, torch.ones(1, 3, dtype=torch.bool), torch.tensor([0.5], dtype=torch.float64))
    assert float(got[0]) == pytest.approx((C.NOISE_PRIOR_ROWS * 0.5 + 2.0) / (C.NOISE_PRIOR_ROWS + 1))


def test_overlap_counts_neighbouring_windows():
    at = torch.tensor([[0.0, 10.0, 10.1]], dtype=torch.float64)
    got = C.overlap(at, torch.tensor([0.1], dtype=torch.float64))
    e = math.exp(-0.01 / 0.04)
    assert torch.allclose(got, torch.tensor([[1.0, 1 + e, 1 + e]], dtype=torch.float64))


def test_adjusted_removes_a_confounders_linear_effect():
    """Z -> X, Z -> Y, X -> Y: Y = 2 X + 3 Z exactly, X = Z + e. The unadjusted slope of Y on X is
    2 + 3 cov(X, Z) / var(X) (about 3.5 here); after adjusting, Y - 3 (Z - mean Z) = 2 X + 3 mean Z."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 400, generator=g, dtype=torch.float64)
    x = z + torch.randn(1, 400, generator=g, dtype=torch.float64)
    y = 2 * x + 3 * z
    mask = torch.ones(1, 400, dtype=torch.bool)
    ya = C.adjusted(x, y, z[..., None], mask, ridge=0.0)
    assert torch.allclose(ya, 2 * x + 3 * z.mean(), atol=1e-8)
    slope = lambda v: float(((x - x.mean()) * (v - v.mean())).sum() / ((x - x.mean()) ** 2).sum())
    assert abs(slope(y) - (2 + 3 * float(((x - x.mean()) * (z - z.mean())).sum() / ((x - x.mean()) ** 2).sum()))) < 1e-9
    assert abs(slope(ya) - 2.0) < 1e-8
    # the default ridge shrinks gamma a little, not away
    assert abs(slope(C.adjusted(x, y, z[..., None], mask)) - 2.0) < 0.05


def test_adjusted_with_nothing_to_adjust_for_and_padding():
    """A covariate column of zeros leaves y as it is; rows outside the mask change nothing."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 50, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x) + 0.1 * torch.randn(2, 50, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 50, dtype=torch.bool)
    assert torch.equal(C.adjusted(x, y, torch.zeros(2, 50, 1, dtype=torch.float64), mask), y)
    z = x[..., None] ** 2 + torch.randn(2, 50, 1, generator=g, dtype=torch.float64)
    full = C.adjusted(x, y, z, mask)
    pad = lambda t, v: torch.cat([t, torch.full_like(t[:, :7], v)], 1)
    padded = C.adjusted(pad(x, 9.0), pad(y, -4.0), pad(z, 5.0), pad(mask, False))
    assert torch.allclose(padded[:, :50], full, atol=1e-10)


def test_cv_bandwidth_picks_narrow_for_a_sharp_dip_and_wide_for_a_noisy_line():
    """Leave-one-out cross-validation: a narrow dip with little noise needs the smallest of the
    candidates; a straight line under heavy noise, the largest."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 300, generator=g, dtype=torch.float64)
    e = torch.randn(2, 300, generator=g, dtype=torch.float64)
    y = torch.stack([-3 * torch.exp(-0.5 * ((x[0] - 0.3) / 0.15) ** 2) + 0.05 * e[0], 0.2 * x[1] + 2.0 * e[1]])
    mask = torch.ones(2, 300, dtype=torch.bool)
    assert C.OBS_BANDWIDTHS == (0.5, 1.0, 2.0)
    assert C.cv_bandwidth(x, y, mask).tolist() == [0, 2]
    assert C.cv_bandwidth(x, y, mask, points=300, fit_rows=300).tolist() == [0, 2]
    # rows outside the mask are neither fitted nor scored
    pad = lambda t, v: torch.cat([t, torch.full_like(t[:, :30], v)], 1)
    assert C.cv_bandwidth(pad(x, 0.3), pad(y, 50.0), pad(mask, False)).tolist() == [0, 2]


def test_the_fit_predicts_what_the_solve_gives():
    """gp_predict at new points, from gp_average's fit (no rows solved again), is gp_average's mean
    and variance there: the batch believer reads believed means this way; a fit without the
    settings' weights is refused."""
    g = torch.Generator().manual_seed(3)
    V, M, K = 4, 6, 5
    u, r, noise, obs, amp, us, amps = _random_rows(g, V, M, K, noise_floor=0.05, amp_floor=0.2)
    mask = torch.rand(V, M, generator=g) < 0.8
    mean, var_f, _, _, fit = C.gp_average(u, r, noise, obs, mask, amp, us, amps, torch.ones(V, dtype=torch.float64))
    for got, want in zip(C.gp_predict(fit, us, amps), (mean, var_f)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    pick = torch.tensor([2, 0])
    for got, want in zip(C.gp_predict(fit.select(pick), us[pick], amps[pick]), (mean[pick], var_f[pick])):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        C.gp_predict(C.gp_components(u, r, noise, obs, mask, amp, us, amps)[2], us, amps)
