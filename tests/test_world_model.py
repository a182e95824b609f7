"""The world model: predictive distributions, the query head, its training, predict(), surrogate-ei."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from acbo.configs import configure
from acbo.io import read_raw_state
from acbo.predictive import BarDistribution, GaussianMixture, asinh_edges
from acbo.scm import SCM, get_family
from acbo.seeding import generator

COLLIDER = get_family("lin-er-10").with_(name="tiny-collider-3", graph=("collider",), d_range=(3, 3), n_obs=60)


# ------------------------------------------------------------------ predictive maths by hand
def _bar():
    return BarDistribution(torch.tensor([0.25, 0.75]), torch.tensor([0.0, 1.0, 3.0]))


def test_bar_distribution_by_hand():
    bar = _bar()
    assert bar.mean.item() == pytest.approx(0.25 * 0.5 + 0.75 * 2.0)
    second = 0.25 * 1 / 3 + 0.75 * (1 + 3 + 9) / 3
    assert bar.std.item() == pytest.approx(math.sqrt(second - 1.625 ** 2))
    assert bar.cdf(torch.tensor(2.0)).item() == pytest.approx(0.625)
    assert bar.quantile(0.25).item() == pytest.approx(1.0) and bar.quantile(0.625).item() == pytest.approx(2.0)
    assert bar.quantiles((0.25, 0.625, 0.0)).tolist() == pytest.approx([1.0, 2.0, 0.0])  # one CDF, several levels
    assert bar.nll(torch.tensor(0.5)).item() == pytest.approx(-math.log(0.25))
    assert bar.nll(torch.tensor(2.0)).item() == pytest.approx(-math.log(0.75 / 2))
    # EI(best = 1): only the first bin lies below, E[1 - U(0, 1)] = 1/2
    assert bar.expected_improvement(torch.tensor(1.0)).item() == pytest.approx(0.125)
    assert bar.expected_improvement(torch.tensor(4.0)).item() == pytest.approx(4.0 - 1.625)


@pytest.mark.parametrize("y", [-1.0, 0.3, 1.0, 2.5, 5.0])
def test_bar_crps_matches_numeric_integration(y):
    bar = _bar()
    t = torch.linspace(-3, 8, 200_001, dtype=torch.float64)
    F = torch.tensor([bar.cdf(torch.tensor(v)).item() for v in t[::1000]], dtype=torch.float64)
    F = torch.from_numpy(np.interp(t.numpy(), t[::1000].numpy(), F.numpy()))
    numeric = torch.trapezoid((F - (t >= y).double()) ** 2, t).item()
    assert bar.crps(torch.tensor(y)).item() == pytest.approx(numeric, abs=2e-3)


def test_gaussian_mixture_by_hand():
    n = GaussianMixture.normal(torch.tensor(0.0), torch.tensor(1.0))
    assert n.expected_improvement(torch.tensor(0.0)).item() == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-6)
    assert n.quantile(0.975).item() == pytest.approx(1.959964, abs=1e-5)
    crps0 = 2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi)  # closed form of the normal CRPS at its mean
    assert n.crps(torch.tensor(0.0)).item() == pytest.approx(crps0, abs=1e-4)
    mix = GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([-1.0, 1.0]), torch.tensor([0.5, 0.5]))
    assert mix.mean.item() == pytest.approx(0.0) and mix.std.item() == pytest.approx(math.sqrt(1.25))
    assert mix.quantile(0.5).item() == pytest.approx(0.0, abs=1e-6) and mix.cdf(torch.tensor(0.0)).item() == pytest.approx(0.5)
    shifted = n.affine(torch.tensor(10.0), torch.tensor(3.0))
    assert shifted.mean.item() == 10.0 and shifted.std.item() == pytest.approx(3.0)
    bar = _bar().affine(torch.tensor(5.0), torch.tensor(2.0))
    assert bar.mean.item() == pytest.approx(5 + 2 * 1.625) and bar.quantile(0.25).item() == pytest.approx(7.0)


def test_asinh_edges_cover_far_values_with_fine_bins_near_zero():
    e = asinh_edges(64)
    assert torch.all(e[1:] > e[:-1]) and torch.allclose(e, -e.flip(0)) and e[-1] > 40
    widths = e[1:] - e[:-1]
    assert widths[32] < 0.2 < widths[-1]


# ------------------------------------------------------------------ the query head
def _tiny_model(queries=True, seed=0):
    from acbo.surrogate import Surrogate, SurrogateConfig

    torch.manual_seed(seed)
    return Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=queries)).eval()


def test_queries_are_equivariant_and_independent_of_each_other():
    from acbo.surrogate.data import sample_buffers

    model = _tiny_model()
    data = sample_buffers("lin-er-10", 2, 40, 5, generator("q-eq"))
    _, tok = model.encode(data.batch)
    var = torch.tensor([[1, 3], [0, 2]])
    z = torch.randn(2, 2, 4, generator=generator("qz"))
    draw, mean = model.query(data.batch, tok, var, z)
    # a query's answer does not depend on the other queries asked with it
    alone = model.query(data.batch, tok, var[:, :1], z[:, :1, :2])[1]
    assert torch.allclose(alone, mean[:, :1, :2], atol=1e-5)
    # permuting the variables of the buffer permutes nothing about the answers
    perm = torch.randperm(10, generator=generator("qp"))
    from acbo.buffer import PaddedBatch

    b = data.batch
    pb = PaddedBatch(b.values[:, :, perm], b.intervened[:, :, perm], b.row_mask, b.var_mask[:, perm], b.target[:, perm])
    _, ptok = model.encode(pb)
    inv = perm.argsort()
    pmean = model.query(pb, ptok, inv[var], z)[1]
    assert torch.allclose(pmean, mean, atol=1e-4)
    # and permuting the rows changes nothing either
    rows = torch.randperm(45, generator=generator("qr"))
    rb = PaddedBatch(b.values[:, rows], b.intervened[:, rows], b.row_mask[:, rows], b.var_mask, b.target)
    assert torch.allclose(model.query(rb, model.encode(rb)[1], var, z)[1], mean, atol=1e-4)


def test_context_keeps_every_intervention_and_at_most_max_context_observations():
    from dataclasses import replace

    from acbo.surrogate.data import sample_buffers

    model = _tiny_model()
    model.cfg = replace(model.cfg, max_context=16)
    data = sample_buffers("lin-er-10", 2, 100, 7, generator("ctx"))
    idx, keep = model.context(data.batch)
    kept = idx[keep.bool()].reshape(2, -1) if keep.all() else None
    assert int(keep.sum(1).max()) <= 16 + 7
    is_int = data.batch.intervened.any(2).gather(1, idx) & keep
    assert (is_int.sum(1) == 7).all()                               # every interventional row
    assert ((keep & ~is_int).sum(1) == 16).all() and kept is not None  # evenly spaced observations


def test_world_model_learns_the_bayes_optimal_predictive(tmp_path):
    """On collider graphs X1, X2 -> Y (linear-Gaussian, Y a sink, parents independent) the exact
    BLR predictive is the Bayes answer; a short training run must move the mean head towards it."""
    from acbo.posterior.exact import exact_predictive
    from acbo.surrogate import Surrogate
    from acbo.surrogate.data import sample_buffers, sample_queries
    from acbo.surrogate.train import SurrogateTrainConfig, train

    cfg = configure(SurrogateTrainConfig, families=(COLLIDER,), steps=300, batch_size=16, n_obs=(40, 80), n_int=(0, 6), dim=32,
                    heads=4, row_layers=1, var_layers=1, queries=True, vars=2, values=8, lr=2e-3,
                    family=COLLIDER, buffers=16, eval_every=300, out=str(tmp_path / "wm"))

    def rmse(model):
        g = generator("test", "wm-smoke")
        err, n = 0.0, 0
        data = sample_buffers(COLLIDER, 16, 60, 5, g)
        q = sample_queries(data, 2, 8, g, n_mc=1)
        with torch.no_grad():
            _, tok = model.encode(data.batch)
            m = model.predictive(model.query(data.batch, tok, q.var, q.z)[1]).mean
        for b in range(16):
            raw, iv, t = data.raw[b].double(), data.batch.intervened[b], int(data.scm.target[b])
            mu, sd = raw[:60, t].mean(), raw[:60, t].std()
            for i in range(2):
                j = int(q.var[b, i])
                xs = raw[:60, j].mean() + raw[:60, j].std() * q.z[b, i].double()
                ref = (exact_predictive(raw, iv, t, j, xs, draw=False).mean - mu) / sd
                err, n = err + float(((ref - m[b, i].double()) ** 2).sum()), n + 8
        return math.sqrt(err / n)

    torch.manual_seed(cfg.run.seed)
    before = rmse(Surrogate(cfg.model).eval())
    after = rmse(train(cfg, log=lambda s: None))
    assert after < 0.5 * before and after < 0.8, (before, after)  # measured: 1.92 -> 0.51 at 400 steps


def test_checkpoints_with_and_without_the_head(tmp_path):
    from acbo.surrogate import load_surrogate, save_checkpoint
    from acbo.surrogate.data import sample_buffers

    model = _tiny_model()
    save_checkpoint(tmp_path / "wm.pt", model, 1)
    again = load_surrogate(tmp_path / "wm.pt")
    data = sample_buffers("lin-er-10", 1, 30, 2, generator("rt"))
    var, z = torch.tensor([[0]]), torch.zeros(1, 1, 3)
    with torch.no_grad():
        a = model.query(data.batch, model.encode(data.batch)[1], var, z)
        b = again.query(data.batch, again.encode(data.batch)[1], var, z)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    state = read_raw_state(tmp_path / "wm.pt")  # legacy files (no checksum) are written back below
    for k in ("queries", "n_bins", "max_context"):  # a checkpoint from before the world model
        del state["model_config"][k]
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith(("ctx_", "query_", "q_", "kv",
                                                                                               "draw_", "mean_"))}
    torch.save(state, tmp_path / "old.pt")
    old = load_surrogate(tmp_path / "old.pt")
    assert not old.cfg.queries
    with pytest.raises(ValueError, match="no world-model head"):
        old.query(data.batch, old.encode(data.batch)[1], var, z)


def test_fine_tuning_adds_the_head_to_a_checkpoint_without_it(tmp_path):
    from acbo.surrogate import save_checkpoint
    from acbo.surrogate.train import SurrogateTrainConfig, train

    plain = _tiny_model(queries=False)
    save_checkpoint(tmp_path / "plain.pt", plain, 0)
    cfg = configure(SurrogateTrainConfig, families=(COLLIDER,), steps=2, batch_size=4, n_obs=(20, 20), n_int=(0, 2), dim=32, heads=4,
                    row_layers=1, var_layers=1, queries=True, init=str(tmp_path / "plain.pt"), lr=1e-12,
                    family=COLLIDER, buffers=16, eval_every=2, out=str(tmp_path / "ft"))
    logs = []
    tuned = train(cfg, log=logs.append)
    assert tuned.cfg.queries and any("val_mean_rmse=" in line for line in logs)


# ------------------------------------------------------------------ predict()
LEARNED_HEADS = ("amortized", "surrogate-ei")
"""Methods whose measurement and E[Y | do] predictives are two separately trained heads: that the
second is the narrower holds only as well as the training taught it (BENCHMARKS.md: coverage of each)."""


def _problem():
    A = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.0, 1.5], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.3], target=2, mean=[0.0, 4.0, 10.0])
    return scm, pd.DataFrame(scm.sample(150, generator("pred"))[0].double().numpy(), columns=scm.names())


@pytest.mark.parametrize("method", ["exact-ts", "surrogate-ts", "parent_scale", "cbo-parents", "amortized", "surrogate-ei"])
def test_predict_shapes_units_and_bad_inputs(method):
    from acbo import CausalOptimizer

    scm, frame = _problem()
    opts = {"parents": ["X1", "X2"]} if method == "cbo-parents" else {}
    opt = CausalOptimizer(frame, method=method, seed=0, intervenable=["X1", "X2"], **opts)
    df = opt.predict("X2", [2.0, 4.0, 6.0])
    assert list(df.columns) == ["value", "mean", "std", "q05", "q50", "q95"] and len(df) == 3
    assert np.isfinite(df.to_numpy()).all() and (df["std"] > 0).all()
    assert (df["q05"] <= df["q50"]).all() and (df["q50"] <= df["q95"]).all()
    assert abs(df["mean"].iloc[1] - 10.0) < 3.0                       # observed units: Y lives around 10
    e = opt.predict("X2", [2.0, 6.0], quantity="expectation")
    assert np.isfinite(e.to_numpy()).all() and (e["std"] > 0).all()
    if method not in LEARNED_HEADS:  # one model of Y: no noise in E[Y | do], so never wider
        assert (e["std"] <= opt.predict("X2", [2.0, 6.0])["std"] + 1e-9).all()
    with pytest.raises(ValueError, match="unknown variable"):
        opt.predict("X9", [1.0])
    with pytest.raises(ValueError, match="not intervenable"):
        opt.predict("Y", [1.0])
    with pytest.raises(ValueError, match="finite"):
        opt.predict("X1", [1.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        opt.predict("X1", [])
    with pytest.raises(ValueError, match="numbers"):
        opt.predict("X1", ["a"])
    with pytest.raises(ValueError, match="quantity"):
        opt.predict("X1", [1.0], quantity="mode")


def test_exact_predictive_scales_with_the_units_of_y():
    from acbo import CausalOptimizer

    _, frame = _problem()
    big = frame.assign(Y=1000 * frame["Y"] - 5)
    a = CausalOptimizer(frame, method="exact-ts").predict("X2", [2.0, 6.0])
    b = CausalOptimizer(big, method="exact-ts").predict("X2", [2.0, 6.0])
    assert np.allclose(b["mean"], 1000 * a["mean"] - 5, rtol=1e-6) and np.allclose(b["std"], 1000 * a["std"], rtol=1e-6)


@pytest.mark.parametrize("method", ["random", "oracle"])
def test_methods_without_a_response_model_say_so(method):
    from acbo import CausalOptimizer

    scm, frame = _problem()
    opt = CausalOptimizer(frame, method=method, **({"scm": scm} if method == "oracle" else {}))
    with pytest.raises(ValueError, match="has no model of the response; methods with one: .*exact-ts"):
        opt.predict("X1", [0.0])


def test_surrogate_ei_options_and_a_known_best():
    from acbo import CausalOptimizer

    _, frame = _problem()
    with pytest.raises(ValueError, match="grid must be an integer >= 2"):
        CausalOptimizer(frame, method="surrogate-ei", grid=1)
    opt = CausalOptimizer(frame, method="surrogate-ei", seed=0)
    iv = opt.ask()
    (name, v), = iv.items()
    lo, hi = opt.domains[name]
    assert name in ("X1", "X2") and lo <= v <= hi


def test_query_statistics_by_hand():
    """Two variables X (index 0) and Y (index 1): four observational rows on y = 2x, two rows where
    X was set on y = 1 + 3x. By hand (RIDGE = 0.01 scales with the row count): b_obs = Σxy / (Σx² +
    0.01 n) = 20 / (10 + 0.04); the set rows' line through (0, 1) and (1, 4) at z = 2 is 7; the
    kernel average at z = 1 is dominated by the row at x = 1."""
    from acbo.buffer import PaddedBatch
    from acbo.surrogate.model import KERNEL_WIDTH, RIDGE, query_statistics

    xs = torch.tensor([-2.0, -1.0, 1.0, 2.0, 0.0, 1.0])
    ys = torch.tensor([-4.0, -2.0, 2.0, 4.0, 1.0, 4.0])
    values = torch.stack([xs, ys], 1)[None]                                                   # 1 x 6 x 2
    intervened = torch.zeros(1, 6, 2, dtype=torch.bool)
    intervened[0, 4:, 0] = True
    batch = PaddedBatch(values, intervened, torch.ones(1, 6, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool),
                        torch.tensor([[False, True]]))
    f = query_statistics(batch, torch.tensor([[0]]), torch.tensor([[[2.0, 1.0]]]))[0, 0].double()  # K x 9
    b_obs = 20 / (10 + RIDGE * 4)
    assert f[0, 0] == pytest.approx(2 * b_obs, rel=1e-6)            # z * b_obs
    assert f[0, 1] == pytest.approx(2 * 20 / (10 + RIDGE * 4), rel=1e-6)  # one regressor: b_all = b_obs
    dx = torch.tensor([-0.5, 0.5])
    b_set = float((dx * torch.tensor([1.0, 4.0])).sum() / ((dx * dx).sum() + RIDGE * 2))
    assert f[0, 2] == pytest.approx(2.5 + b_set * (2 - 0.5), rel=1e-6)  # the set rows' line at z = 2
    assert f[0, 3] == pytest.approx(0.5)                                # n_j / (n_j + 2)
    w = torch.exp(-0.5 * ((torch.tensor([0.0, 1.0]) - 1.0) / KERNEL_WIDTH) ** 2)
    assert f[1, 4] == pytest.approx(float((w * torch.tensor([1.0, 4.0])).sum() / w.sum()), rel=1e-6)
    assert f[1, 5] == pytest.approx(math.log1p(float(w.sum())), rel=1e-6)
    assert f[0, 6:].tolist() == pytest.approx([b_obs, b_obs, b_set], rel=1e-6)


def test_the_memo_keeps_the_observational_slopes_only_while_they_hold():
    """Queries through a context memo equal queries without one while a campaign grows by
    interventional rows, and after an observational value changes, an observational row is added
    beyond max_context, and an observational row outside the context changes (the statistics'
    output layer made non-zero, so that they reach the predictive)."""
    from acbo.buffer import PaddedBatch
    from acbo.surrogate import Surrogate, SurrogateConfig
    from acbo.surrogate.model import ContextMemo

    torch.manual_seed(0)
    model = Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=True, query_stats=True,
                                      max_context=4)).eval()
    torch.nn.init.normal_(model.stat_embed[-1].weight)
    g = generator("test", "memo-slopes")
    x = torch.randn(4, 3, generator=g)
    x[:, 2] = 2 * x[:, 0] - x[:, 1]
    values, intervened = x, torch.zeros(4, 3, dtype=torch.bool)

    def append(v, iv, row, setting):
        flags = torch.zeros(1, 3, dtype=torch.bool)
        if setting is not None:
            flags[0, setting] = True
        return torch.cat([v, torch.tensor([row])]), torch.cat([iv, flags])

    values, intervened = append(values, intervened, [1.0, 0.0, 2.0], 0)
    steps = []
    for change in ("start", "interventional", "interventional", "observational value", "observational row",
                   "outside the context"):
        if change == "interventional":
            values, intervened = append(values, intervened, [0.0, -1.0, 1.0], 1)
        elif change == "observational value":
            values = values.clone()
            values[1, 0] += 0.5
        elif change == "observational row":
            values, intervened = append(values, intervened, [0.3, 0.2, 0.4], None)
        elif change == "outside the context":  # 5 observational rows, 4 in the context: row 1 is left out
            values = values.clone()
            values[1, 1] -= 0.7
        steps.append((values.clone(), intervened.clone()))
    memo = ContextMemo()
    var, z = torch.tensor([[0, 1]]), torch.tensor([[[-1.0, 0.5], [0.0, 2.0]]])
    target = torch.tensor([[False, False, True]])
    for v, iv in steps:
        n = v.shape[0]
        batch = PaddedBatch(v[None], iv[None], torch.ones(1, n, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool),
                            target)
        tokens = model.encode(batch)[1]
        with torch.no_grad():
            fresh, memoised = model.query(batch, tokens, var, z), model.query(batch, tokens, var, z, memo)
        assert torch.allclose(memoised[1], fresh[1], atol=1e-5) and torch.allclose(memoised[0], fresh[0], atol=1e-5)
    assert 1 not in model.context(batch)[0][0].tolist()                 # the last change was outside the context


def test_query_statistics_start_as_the_model_without_them(tmp_path):
    """Switched on when fine-tuning a world model, the statistics path is zero-initialised: the
    predictive is unchanged until training moves it."""
    from acbo.surrogate import Surrogate, SurrogateConfig
    from acbo.surrogate.data import sample_buffers, sample_queries

    torch.manual_seed(0)
    plain = Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=True)).eval()
    stats = Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1, queries=True, query_stats=True)).eval()
    missing, unexpected = stats.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("stat_embed") for k in missing)
    g = generator("test", "stats-start")
    data = sample_buffers(COLLIDER, 4, 30, 3, g)
    q = sample_queries(data, 2, 5, g, n_mc=1)
    with torch.no_grad():
        a = plain.query(data.batch, plain.encode(data.batch)[1], q.var, q.z)
        b = stats.query(data.batch, stats.encode(data.batch)[1], q.var, q.z)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="query_stats needs the world model"):
        SurrogateConfig(query_stats=True)
