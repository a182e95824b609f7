import math

import numpy as np
import pytest
import torch
from scipy import stats

from acbo.posterior import ExactPosteriorConfig, ParentPosterior, exact_posterior, sample_weights
from acbo.posterior.exact import enumerate_sets, log_size_uniform_prior
from acbo.scm import SCM, get_family
from acbo.seeding import generator


def _standardise(x, obs_rows):
    ref = x[obs_rows]
    return (x - ref.mean(0)) / ref.std(0, ddof=1)


def _dense_log_evidence(Z_S, y, cfg):
    """Directly on the n x n covariance: independent of the p x p Woodbury route."""
    n = len(y)
    K = cfg.sigma_theta**2 * Z_S @ Z_S.T
    if cfg.noise_var is not None:
        return stats.multivariate_normal(np.zeros(n), K + cfg.noise_var * np.eye(n)).logpdf(y)
    # sigma^2 ~ IG(a0, b0), theta | sigma^2 ~ N(0, sigma^2 st^2 I): y ~ t_{2 a0}(0, (b0 / a0)(I + K))
    return stats.multivariate_t(np.zeros(n), cfg.b0 / cfg.a0 * (np.eye(n) + K), df=2 * cfg.a0).logpdf(y)


@pytest.mark.parametrize("noise_var", [None, 0.5])
def test_two_variable_posterior_matches_dense_computation(noise_var):
    # X -> Y with 6 rows, one of them interventional on X
    x = np.array([[0.3, 1.0], [-1.2, -1.9], [0.8, 1.1], [2.0, 3.9], [-0.4, -0.2], [1.5, 2.4]])
    mask = np.zeros_like(x, dtype=bool)
    mask[5, 0] = True
    cfg = ExactPosteriorConfig(noise_var=noise_var)
    post = exact_posterior(torch.tensor(x), torch.tensor(mask), target=1, names=["X", "Y"], cfg=cfg)
    Z = _standardise(x, ~mask.any(1))
    le_empty = _dense_log_evidence(np.zeros((6, 0)), Z[:, 1], cfg)
    le_x = _dense_log_evidence(Z[:, [0]], Z[:, 1], cfg)
    # prior uniform over sizes {0, 1}: 1/2 each
    p_x = 1 / (1 + math.exp(le_empty - le_x))
    assert post.marginals[0].item() == pytest.approx(p_x, rel=1e-9)
    assert post.marginals[1].item() == 0.0
    assert post.prob_of(torch.tensor([True, False])) == pytest.approx(p_x, rel=1e-9)


def test_three_variable_posterior_with_target_interventions_excluded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    x[:, 2] += 0.9 * x[:, 0]
    mask = np.zeros_like(x, dtype=bool)
    mask[10, 1] = True  # interventional row on X1: kept
    mask[11, 2] = True  # Y intervened: excluded
    cfg = ExactPosteriorConfig()
    post = exact_posterior(torch.tensor(x), torch.tensor(mask), target=2, cfg=cfg)
    Z = _standardise(x, ~mask.any(1))[:11]
    sets = [(), (0,), (1,), (0, 1)]
    prior = [1 / 3, 1 / 6, 1 / 6, 1 / 3]  # uniform over sizes 0, 1, 2, then over sets of a size
    logw = np.array([math.log(p) + _dense_log_evidence(Z[:, list(s)], Z[:, 2], cfg) for s, p in zip(sets, prior)])
    probs = np.exp(logw - logw.max())
    probs /= probs.sum()
    for s, p in zip(sets, probs):
        member = torch.zeros(3, dtype=torch.bool)
        member[list(s)] = True
        assert post.prob_of(member) == pytest.approx(p, rel=1e-8)
    assert post.marginals[0].item() == pytest.approx(probs[1] + probs[3], rel=1e-8)
    assert post.entropy() == pytest.approx(-(probs * np.log(probs)).sum(), rel=1e-8)


def test_concentrates_on_true_parents_as_n_grows():
    scm = get_family("lin-er-10").sample(generator("conc"))
    truth = scm.parents()[0]
    t = int(scm.target[0])
    masses = []
    for n in (20, 200, 5000):
        x = scm.sample(n, generator("conc", n))[0]
        # interventions on every non-target variable separate parents from children
        mask = torch.zeros(n, 10, dtype=torch.bool)
        rows = torch.arange(n)
        cols = torch.tensor([j for j in range(10) if j != t])[rows % 9]
        mask[rows, cols] = True
        xi = scm.sample(n, generator("conc-i", n), do_mask=mask[None], do_value=torch.randn(1, n, 10) * 2)[0]
        post = exact_posterior(torch.cat([x, xi]), torch.cat([torch.zeros_like(mask), mask]), t)
        masses.append(post.prob_of(truth))
    assert masses[-1] > 0.95 and masses[-1] >= masses[0]


def test_screening_keeps_the_parents_at_large_d():
    scm = get_family("lin-er-50").sample(generator("screen"))
    x = scm.sample(2000, generator("screen-x"))[0]
    post = exact_posterior(x, torch.zeros_like(x, dtype=torch.bool), int(scm.target[0]),
                           cfg=ExactPosteriorConfig(max_candidates=15))
    assert post.sets.shape[1] == 50
    considered = post.sets.any(dim=0)
    assert considered.sum() <= 15
    assert (considered | ~scm.parents()[0]).all()  # every true parent survived screening


def test_enumerate_and_prior():
    sets = enumerate_sets(4, 2)
    assert sets.shape == (1 + 4 + 6, 2) and (sets[0] == -1).all()
    sizes = (sets >= 0).sum(1)
    p = log_size_uniform_prior(sizes, 4, 2).exp()
    assert p.sum().item() == pytest.approx(1.0)
    assert p[0].item() == pytest.approx(1 / 3) and p[1].item() == pytest.approx(1 / 12)


def test_sample_weights_recovers_coefficients():
    A = torch.tensor([[0, 1], [0, 0]])
    scm = SCM.linear_gaussian(A, torch.tensor([[0.0, 2.0], [0.0, 0.0]]), noise_std=[1.0, 0.1], target=1)
    x = scm.sample(5000, generator("w"))[0].double()
    mask = torch.zeros_like(x, dtype=torch.bool)
    draws = torch.stack([sample_weights(x, mask, 1, torch.tensor([True, False]), generator("w", i)) for i in range(50)])
    # standardised weight = corr(X, Y) ~ 2 / sqrt(4 + 0.01)
    assert draws.mean().item() == pytest.approx(2 / math.sqrt(4.01), abs=0.01)
    assert draws.std().item() < 0.01


def test_parent_posterior_sampling_and_factorised_form():
    sets = torch.tensor([[True, False, False], [False, True, False]])
    post = ParentPosterior.from_sets(["A", "B", "Y"], 2, sets, torch.log(torch.tensor([0.25, 0.75])))
    assert torch.equal(post.map_set(), torch.tensor([False, True, False]))
    draws = post.sample(4000, generator("ps"))
    assert draws[:, 1].float().mean().item() == pytest.approx(0.75, abs=0.03)
    assert post.top(1) == [(("B",), pytest.approx(0.75))]
    fac = ParentPosterior.from_marginals(["A", "B", "Y"], 2, torch.tensor([0.5, 0.9, 0.3]))
    assert fac.marginals[2] == 0
    assert fac.entropy() == pytest.approx(math.log(2) - 0.9 * math.log(0.9) - 0.1 * math.log(0.1))
    assert fac.prob_of(torch.tensor([False, True, False])) == pytest.approx(0.45)
    assert not fac.sample(100, generator("f"))[:, 2].any()


def test_top_sets_of_a_factorised_posterior_by_hand():
    post = ParentPosterior.from_marginals(["a", "b", "Y"], 2, torch.tensor([0.9, 0.3, 0.0]))
    top = post.top(5)  # only 4 sets exist
    assert [s for s, _ in top] == [("a",), ("a", "b"), (), ("b",)]
    assert [p for _, p in top] == pytest.approx([0.63, 0.27, 0.07, 0.03], abs=1e-6)
    # agrees with prob_of, and is exact beyond the 12 cheapest flips' reach for small k
    g = torch.Generator().manual_seed(0)
    names = [f"X{i}" for i in range(15)] + ["Y"]
    post = ParentPosterior.from_marginals(names, 15, torch.cat([torch.rand(15, generator=g), torch.zeros(1)]))
    for s, p in post.top(4):
        mask = torch.tensor([n in s for n in names])
        assert p == pytest.approx(post.prob_of(mask), rel=1e-5)
    probs = [p for _, p in post.top(4)]
    assert probs == sorted(probs, reverse=True)
    with pytest.raises(ValueError, match="positive integer"):
        post.top(0)
