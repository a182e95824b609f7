"""Every registered method through the one interface."""

import pandas as pd
import pytest
import torch

import acbo
from acbo import CausalOptimizer, Intervention

from conftest import simulate_step, small_problem


def _options(method, scm):
    """The method-specific knowledge a method is given (the oracle: the SCM; CBO: the parents)."""
    if method == "oracle":
        return {"scm": scm}
    if method == "cbo-parents":
        return {"parents": [n for n, p in zip(scm.names(), scm.parents()[0].tolist()) if p]}
    return {}


def _campaign(method, seed, steps=6, family="lin-er-10", n_obs=100):
    scm, frame = small_problem(family, n_obs=n_obs)
    opt = CausalOptimizer(frame, target="Y", method=method, seed=seed, **_options(method, scm))
    asked = []
    for t in range(steps):
        iv = opt.ask()
        asked.append(iv)
        opt.tell(iv, simulate_step(scm, iv, t))
    return opt, asked


@pytest.mark.parametrize("method", sorted(acbo.METHODS))
def test_interventions_are_legal(method):
    for family in ("lin-er-10", "nonlin-er-10"):
        opt, asked = _campaign(method, seed=3, family=family)
        for iv in asked:
            assert isinstance(iv, Intervention) and len(iv) == 1
            (name, v), = iv.items()
            lo, hi = opt.domains[name]
            assert name != "Y" and lo <= v <= hi
        assert len(opt.history) == 6 and opt.buffer.n_int == 6
        best_iv, best_y = opt.best
        assert best_y == min(r.outcome["Y"] for r in opt.history)
        post = opt.posterior()
        assert isinstance(post, acbo.ParentPosterior) and post.marginals[post.target] == 0


@pytest.mark.parametrize("method", sorted(acbo.METHODS))
def test_same_seed_same_trajectory_different_seed_different(method):
    # few observational rows: the posterior is uncertain, so a stochastic method's choices vary
    _, a = _campaign(method, seed=1, n_obs=10)
    _, b = _campaign(method, seed=1, n_obs=10)
    _, c = _campaign(method, seed=2, n_obs=10)
    assert a == b
    if acbo.get_method(method).stochastic:
        assert a != c


@pytest.mark.parametrize("method", sorted(acbo.METHODS))
def test_save_load_resumes_bit_for_bit_over_20_steps(method, tmp_path):
    """After every tell, a campaign saved and loaded asks exactly what the original asks next."""
    scm, frame = small_problem("lin-er-10", n_obs=60)
    opt = CausalOptimizer(frame, target="Y", method=method, seed=5, **_options(method, scm))
    for t in range(20):
        opt.save(tmp_path / "campaign.pt")
        again = CausalOptimizer.load(tmp_path / "campaign.pt")
        assert again.history == opt.history and torch.equal(again.buffer.values, opt.buffer.values)
        saved, loaded = opt.method.state_dict(), again.method.state_dict()
        assert saved.keys() == loaded.keys()
        for k, a in saved.items():  # carried, not recomputed (the order of float additions differs by CPU)
            b = loaded[k]
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, k
        iv = opt.ask()
        assert again.ask() == iv, f"step {t}: {again.ask()} != {iv}"
        opt.tell(iv, simulate_step(scm, iv, t))


def test_maximise_and_restricted_intervenable():
    scm, frame = small_problem("lin-er-10")
    names = list(frame.columns)
    allowed = [n for n in names if n != "Y"][:3]
    for method in sorted(acbo.METHODS):
        opt = CausalOptimizer(frame, target="Y", method=method, minimize=False, intervenable=allowed, seed=0,
                              **_options(method, scm))
        for t in range(4):
            iv = opt.ask()
            assert set(iv) <= set(allowed)
            opt.tell(iv, simulate_step(scm, iv, t))
        assert opt.best[1] == max(r.outcome["Y"] for r in opt.history)


def test_oracle_maximises_correctly():
    scm, frame = small_problem("lin-er-10")
    up = CausalOptimizer(frame, method="oracle", minimize=False, scm=scm).ask()
    down = CausalOptimizer(frame, method="oracle", minimize=True, scm=scm).ask()
    names = list(frame.columns)

    def e(iv):
        (n, v), = iv.items()
        mask = torch.zeros(scm.d, dtype=torch.bool)
        mask[names.index(n)] = True
        return scm.expected_target(mask[None], torch.full((1, scm.d), v))[0, 0].item()

    assert e(up) > scm.observational_mean().item() > e(down)


def test_mapping_input_and_user_domains():
    obs = {"A": [0.0, 1.0, 2.0, 3.0], "Y": [1.0, 0.5, 0.2, 0.1]}
    opt = CausalOptimizer(obs, target="Y", domains={"A": (-5, 5)}, method="random", seed=0)
    assert opt.domains["A"] == (-5.0, 5.0)
    iv = opt.ask()
    assert -5 <= iv["A"] <= 5
    opt.tell(iv, pd.DataFrame([{"A": iv["A"], "Y": 0.0}]))
    assert opt.best == (iv, 0.0)


def test_exact_ts_beats_random_on_a_linear_problem():
    """The posterior drives exact-ts to the optimum; random search does not get there in 8 steps."""
    import numpy as np

    from acbo.bench import BenchConfig, run_bench

    df = run_bench(BenchConfig(methods=("random", "exact-ts"), families=("lin-er-10",), n_seeds=6, steps=8),
                   progress=False)
    last = df[df.step == 8].groupby("method")["regret"].mean()
    assert last["exact-ts"] < 0.5 * last["random"]
    assert np.isfinite(df["auprc"]).all()


def test_oracle_stays_inside_the_float64_domain():
    """The optimum is searched in float32; its setting can round past an observed max."""
    from acbo.bench.runner import make_problem, run_method

    problem = make_problem("cfc-mixed-10", 5)  # its optimum sits at a domain end
    rows, opt = run_method(problem, "oracle", 1, {})
    (name, v), = opt.history[0].intervention.items()
    lo, hi = opt.domains[name]
    assert lo <= v <= hi and rows[-1]["regret"] < 1e-5


@pytest.mark.parametrize("method", sorted(m for m, cls in acbo.METHODS.items() if cls.chooses_sets))
def test_methods_that_choose_sets_ask_legal_sets_and_resume_bit_for_bit(method, tmp_path):
    """Every method that chooses sets, with max_set = 2: each ask an allowed set of one or two
    variables inside their domains; the same seed asks the same; after every tell a saved and
    loaded campaign asks what the original asks, a batch of two included."""
    scm, frame = small_problem("lin-er-10", n_obs=60)
    runs = [CausalOptimizer(frame, target="Y", method=method, seed=5, max_set=2, **_options(method, scm)) for _ in range(2)]
    opt, twin = runs
    for t in range(5):
        opt.save(tmp_path / "campaign.pt")
        again = CausalOptimizer.load(tmp_path / "campaign.pt")
        batch = opt.ask(n=2) if t == 2 else [opt.ask()]
        assert (again.ask(n=2) if t == 2 else [again.ask()]) == batch == (twin.ask(n=2) if t == 2 else [twin.ask()])
        for iv in batch:
            assert tuple(sorted(opt.names.index(n) for n in iv)) in opt.problem.allowed_sets
            assert all(opt.domains[n][0] <= v <= opt.domains[n][1] for n, v in iv.items())
            for o in runs:
                o.tell(iv, simulate_step(scm, iv, t))
