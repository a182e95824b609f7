"""Batches of experiments: ask(n=q), pending experiments told in any order, kept through
save/load, withdrawn; the kriging believer that chooses a batch's later members; the campaign
commands and the benchmark harness with rounds."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from acbo import CausalOptimizer
from acbo.optimizer import Intervention, Pending
from acbo.bench.runner import make_problem, run_method
from acbo.method import simulate_campaign
from acbo.seeding import generator

from conftest import cli, cli_fails, cli_ok, small_problem


def _opt(method="random", seed=3, **kw):
    scm, frame = small_problem("lin-er-10", 2)
    return scm, CausalOptimizer(frame, target=scm.names()[scm.target[0]], method=method, seed=seed, **kw)


def _measure(scm, iv, t):
    return scm.run_experiment(dict(iv), generator("test", "batch-outcome", t))


def test_a_batch_is_pending_and_told_in_any_order():
    scm, opt = _opt()
    batch = opt.ask(n=4)
    assert len(batch) == 4 and opt.pending_experiments == tuple(batch) and opt.pending == batch[0]
    assert opt.ask() == batch[0] and opt.ask(n=4) == batch  # asking again returns the same ones
    for t, k in enumerate([2, 0, 3, 1]):
        assert opt.tell(batch[k], _measure(scm, batch[k], t)) == batch[k]
        assert batch[k] not in opt.pending_experiments
    assert opt.pending is None and [r.intervention for r in opt.history] == [batch[k] for k in (2, 0, 3, 1)]


def test_ask_tops_up_the_pending_experiments_and_refuses_a_smaller_batch():
    scm, opt = _opt()
    first = opt.ask(n=3)
    opt.tell(first[1], _measure(scm, first[1], 0))
    topped = opt.ask(n=3)  # the two still pending, then one new
    assert topped[:2] == [first[0], first[2]] and len(topped) == 3
    with pytest.raises(ValueError, match="3 experiments are pending, more than n=2"):
        opt.ask(n=2)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            opt.ask(n=bad)


def test_pending_experiments_survive_save_and_load_and_the_next_ask_is_the_same(tmp_path):
    scm, opt = _opt(method="exact-ts")
    batch = opt.ask(n=3)
    opt.tell(batch[2], _measure(scm, batch[2], 0))
    opt.save(tmp_path / "c.acbo")
    back = CausalOptimizer.load(tmp_path / "c.acbo")
    assert back.pending_experiments == opt.pending_experiments == (batch[0], batch[1])
    for o in (opt, back):  # the rest told the other way round, then a new batch
        o.tell(batch[1], _measure(scm, batch[1], 1))
        o.tell(batch[0], _measure(scm, batch[0], 2))
    assert back.ask(n=2) == opt.ask(n=2)


def test_a_tell_outside_the_batch_is_refused_unless_chosen():
    scm, opt = _opt()
    batch = opt.ask(n=3)
    name = next(iter(batch[0]))
    lo, hi = opt.domains[name]
    other = {name: lo + 0.123456 * (hi - lo)}
    with pytest.raises(ValueError, match="is not any of the 3 pending experiments"):
        opt.tell(other, _measure(scm, other, 0))
    assert len(opt.history) == 0 and len(opt.pending_experiments) == 3
    assert opt.tell(other, _measure(scm, other, 0), chosen=True) is None  # the user's own: recorded,
    assert opt.pending_experiments == tuple(batch)                         # the batch still pending
    opt.tell(batch[0], _measure(scm, batch[0], 1), chosen=True)           # chosen and pending: told
    assert opt.pending_experiments == tuple(batch[1:])
    with pytest.raises(ValueError, match="not asked"):
        fresh = _opt()[1]
        fresh.tell(batch[0], _measure(scm, batch[0], 2))


def test_withdraw_takes_pending_experiments_back():
    scm, opt = _opt()
    batch = opt.ask(n=3)
    assert opt.withdraw(dict(batch[1])) == [batch[1]] and opt.pending_experiments == (batch[0], batch[2])
    name = next(iter(batch[0]))
    lo, hi = opt.domains[name]
    with pytest.raises(ValueError, match="is not pending"):
        opt.withdraw({name: lo + 0.5 * (hi - lo)})
    assert opt.withdraw() == [batch[0], batch[2]] and opt.pending is None and opt.history == []
    with pytest.raises(ValueError, match="nothing to withdraw"):
        opt.withdraw()


def test_believed_rows_hold_the_settings_the_prediction_and_the_observational_means():
    """The kriging believer by hand: a pending do(X_j = v) becomes a row with X_j = v (marked
    set), Y at the method's predicted E[Y | do(X_j = v)] on the measured rows, every other variable
    at its observational mean; the measured rows are the buffer's own (``told``)."""
    scm, opt = _opt(method="exact-ts")
    m, buf, p = opt.method, opt.buffer, opt.problem
    j, k = [int(i) for i in torch.nonzero(p.intervenable).flatten()[:2]]
    pending = [{j: float(p.low[j])}, {k: float(p.high[k])}, {j: float(p.high[j])}]
    out = m.believed(buf, pending)
    assert out.believed == 3 and out.n == buf.n + 3 and torch.equal(out.told.values, buf.values)
    mean = buf.observational_stats()[0]
    for r, q in enumerate(pending):
        (var, v), = q.items()
        row, mask = out.values[buf.n + r], out.intervened[buf.n + r]
        assert mask.tolist() == [i == var for i in range(p.d)] and float(row[var]) == v
        want = float(m.predict(buf, var, torch.tensor([v], dtype=torch.float64), draw=False).mean[0])
        assert float(row[p.target]) == pytest.approx(want, rel=1e-12)
        others = [i for i in range(p.d) if i not in (var, p.target)]
        assert torch.equal(row[others], mean[others])


@pytest.mark.parametrize("method", ["amortized", "parent_scale"])
def test_a_believing_method_learns_no_structure_from_its_pending_experiments(method):
    """A batch's believed rows steer where the method asks next, not what it believes of the
    graph (the incremental set posterior and encoding read the measured rows only): the posterior
    is the same before and after asking a batch, and after telling one of it as after telling
    that experiment alone."""
    scm, frame = small_problem("lin-er-10", 4, n_obs=60)
    target = scm.names()[scm.target[0]]
    opts = {"n_bootstrap": 2} if method == "parent_scale" else {}
    opt = CausalOptimizer(frame, target=target, method=method, seed=1, **opts)
    before = opt.posterior().marginals.clone()
    batch = opt.ask(n=3)
    assert torch.equal(opt.posterior().marginals, before)
    assert opt.buffer.believed == 0 and opt.buffer.n == len(frame)
    opt.tell(batch[1], _measure(scm, batch[1], 0))
    alone = CausalOptimizer(frame, target=target, method=method, seed=1, **opts)
    alone.tell(batch[1], _measure(scm, batch[1], 0), chosen=True)
    assert torch.allclose(opt.posterior().marginals, alone.posterior().marginals, atol=1e-6)


def test_a_resumed_batch_asks_what_the_original_asks(tmp_path):
    """Believed rows are computed one pending experiment at a time, so a campaign saved with a
    batch pending and resumed tops it up as the original does, bit for bit."""
    pr = make_problem("test-broad", 2)
    opt = CausalOptimizer(pr.frame, target="Y", method="amortized", seed=4, domains=pr.domains, intervenable=pr.settable)
    opt.ask(n=2)
    opt.save(tmp_path / "c.acbo")
    assert CausalOptimizer.load(tmp_path / "c.acbo").ask(n=4) == opt.ask(n=4)


def test_a_result_that_fits_two_pending_experiments_is_refused():
    """do(B = b) and do(A = a) pending, a row that measured A = a and B = b: which did it answer?
    Refused, not guessed; a row that fits one is matched to it."""
    scm, opt = _opt()
    a, b = opt.problem.names[0], opt.problem.names[1]
    va, vb = (sum(opt.domains[a]) / 2), (sum(opt.domains[b]) / 2)
    opt._pending.extend(Pending(Intervention(iv)) for iv in ({b: vb}, {a: va}))
    row = _measure(scm, {a: va, b: vb}, 0)
    with pytest.raises(ValueError, match="settings of 2 pending experiments"):
        opt.pending_for(row)
    assert opt.pending_for(_measure(scm, {a: va}, 1)) == Intervention({a: va})


def test_a_chosen_tell_leaves_the_last_of_a_batch_pending():
    scm, opt = _opt()
    batch = opt.ask(n=2)
    opt.tell(batch[0], _measure(scm, batch[0], 0))
    name = next(iter(batch[0]))
    lo, hi = opt.domains[name]
    own = {name: lo + 0.31 * (hi - lo)}
    opt.tell(own, _measure(scm, own, 1), chosen=True)
    assert opt.pending_experiments == (batch[1],)  # still running
    single = opt.ask()
    opt.withdraw()
    alone = opt.ask()  # asked on its own: a chosen experiment replaces it
    opt.tell(own, _measure(scm, own, 2), chosen=True)
    assert single == batch[1] and alone is not None and opt.pending is None


def test_exact_ts_does_not_repeat_a_pending_experiment_while_another_improves():
    rng = np.random.default_rng(0)
    x1, x3 = rng.standard_normal(200), rng.standard_normal(200)
    x2 = x1 + rng.standard_normal(200)
    frame = pd.DataFrame({"X1": x1, "X2": x2, "X3": x3, "Y": x1 - x3 + 0.5 * x2 + 0.1 * rng.standard_normal(200)})
    for max_set in (1, 2):
        plate = CausalOptimizer(frame, target="Y", method="exact-ts", max_set=max_set, seed=0).ask(n=3)
        assert len(set(plate)) == 3, plate


def test_surrogate_ei_keeps_a_batch_apart():
    """The network's world model moves little for a believed row, so surrogate-ei's later members
    keep half a grid step away from every pending value of their variable: on the bioreactor its
    greedy choice, temperature at the domain's end, is not asked four times over."""
    from acbo import bioreactor

    obs = pd.DataFrame(bioreactor.observe(60, 0), columns=bioreactor.NAMES)
    opt = CausalOptimizer(obs, target="titer", minimize=False, seed=0, domains=bioreactor.DOMAINS,
                          intervenable=list(bioreactor.SETTABLE), method="surrogate-ei")
    plate = opt.ask(n=4)
    step = (bioreactor.DOMAINS["temperature"][1] - bioreactor.DOMAINS["temperature"][0]) / (opt.method.grid - 1)
    for a in range(4):
        for b in range(a):
            (ja, va), = plate[a].items()
            (jb, vb), = plate[b].items()
            assert ja != jb or abs(va - vb) > step / 2 - 1e-9, plate


@pytest.mark.parametrize("mode", ["believer", "distinct"])
def test_amortized_batch_members_are_in_distinct_cells_of_the_policy_grid(mode):
    """The policy's later draws avoid the (variable, grid cell) pairs of the pending experiments
    (each decided anew, or all drawn from the first decision), and a batch of one is the single
    ask, bit for bit."""
    pr = make_problem("test-broad", 3)
    kw = dict(target="Y", method="amortized", domains=pr.domains, intervenable=pr.settable, batch=mode)
    opt = CausalOptimizer(pr.frame, seed=0, **kw)
    K = opt.method.policy.cfg.grid
    batch = opt.ask(n=8)
    cells = set()
    for iv in batch:
        (name, v), = iv.items()
        lo, hi = opt.domains[name]
        cells.add((name, min(int((v - lo) / (hi - lo) * K), K - 1)))
    assert len(cells) == 8
    one, single = CausalOptimizer(pr.frame, seed=0, **kw).ask(n=1), CausalOptimizer(pr.frame, seed=0, **kw).ask()
    assert one == [single] and single == batch[0]


def _amortized_told(seed=5, n=3, minimize=True):
    """An amortized campaign on a test-broad problem with n of its own experiments told."""
    pr = make_problem("test-broad", seed)
    opt = CausalOptimizer(pr.frame, target="Y", method="amortized", seed=seed, domains=pr.domains,
                          intervenable=pr.settable, minimize=minimize)
    for t in range(n):
        iv = opt.ask()
        opt.tell(iv, pr.scm.run_experiment(dict(iv), generator("test", "batch-believer", t)), accept_outlier=True)
    return opt


@pytest.mark.parametrize("minimize", [True, False])
def test_amortized_believed_means_are_the_world_model_of_the_measured_rows(minimize):
    """A believed row's Y is the conditioned world model's E[Y | do(X_j = v)] on the measured rows,
    as a decision queries it (every settable variable at once, the campaign's memo); read from
    the first decision's fit, without solving the rows again (maximising, the policy's world
    model reads -Y)."""
    from acbo.policy.features import settable_variables, world_domains
    from acbo.surrogate.world import conditioned_world

    opt = _amortized_told(minimize=minimize)
    m, buf, p = opt.method, opt.buffer, opt.problem
    opt.ask()  # the decision that keeps the measured rows' world
    var, _ = settable_variables(m._campaign(buf))
    js = var[0, :3]
    vals = p.low[js].double() + torch.tensor([0.1, 0.55, 0.93], dtype=torch.float64) * (p.high[js] - p.low[js]).double()
    got = m.believed_means(buf, js, vals)
    c = m._campaign(buf)
    belief = m._belief(c, buf)
    every, _, lo, hi = world_domains(c)
    u = ((vals - p.low[js].double()) / (p.high[js] - p.low[js]).double())
    with torch.inference_mode():
        w = conditioned_world(m.surrogate, c.standardised(), belief.tokens, belief.marginals, every, lo, hi,
                              u[None, None, :].expand(1, every.shape[1], 3))
    mean, std = (t[0, p.target] for t in c.observational_stats())
    z = torch.stack([w.mean[0, (every[0] == j).nonzero()[0, 0], k] for k, j in enumerate(js.tolist())])
    sign = 1.0 if p.minimize else -1.0
    assert torch.allclose(got, sign * (mean + std * z.double()), rtol=1e-9, atol=1e-12)


def test_a_believed_row_is_evidence_only_about_the_variable_it_sets():
    """The batch believer's later members read the measured rows' world model, with the pending
    experiments' variables conditioned on their believed rows: every other variable's world is
    the first member's, bit for bit, and the pending variable's is more certain at the pending
    value (its outcome is believed, as a kriging believer does)."""
    opt = _amortized_told()
    m, buf, p = opt.method, opt.buffer, opt.problem
    with torch.inference_mode():
        c = m._campaign(buf)
        kept = m._measured_world(buf, c)
        j = int(buf.intervened[-1].nonzero()[0, 0])  # a variable already measured
        q = int((kept.var == j).nonzero()[0, 0])     # its row in the world model
        K = m.policy.cfg.grid
        v = float(p.low[j]) + (3.5 / K) * float(p.high[j] - p.low[j])  # the centre of grid cell 3
        believed = m.believed(buf, [{j: v}])
        after = m._grid_world(m._campaign(believed), believed, m._measured_world(believed.told))
    before = kept.grid
    others = torch.arange(len(kept.var)) != q
    assert torch.equal(after.mean[:, others], before.mean[:, others])
    assert torch.equal(after.var_f[:, others], before.var_f[:, others])
    assert float(after.var_f[0, q, 3]) < 0.9 * float(before.var_f[0, q, 3])


def test_a_batch_reads_the_network_once(monkeypatch):
    """The batch believer reads the world model's network once per batch (its first member's
    decision, on the measured rows), not once per member: the later members condition the
    first's prior on their believed rows."""
    import acbo.surrogate.world as world

    opt = _amortized_told()
    calls = []
    inner = world.network_prior
    monkeypatch.setattr(world, "network_prior", lambda *a, **k: calls.append(1) or inner(*a, **k))
    batch = opt.ask(n=4)
    assert len(batch) == 4 and len(calls) == 1


def _amortized_pairs_told(seed=0, n=5):
    """An amortized campaign of experiments of up to two variables on a test-joint problem, n told."""
    pr = make_problem("test-joint", seed, max_set=2)
    opt = CausalOptimizer(pr.frame, target="Y", method="amortized", seed=seed, domains=pr.domains,
                          intervenable=pr.settable, max_set=2)
    for t in range(n):
        iv = opt.ask()
        opt.tell(iv, pr.scm.run_experiment(dict(iv), generator("test", "batch-pairs", t)), accept_outlier=True)
    return opt


def test_a_believed_pair_is_predict_set_on_the_kept_world_model():
    """A pending pair's believed Y is what predict_set says (the members' effects added,
    corrected by the measured rows of that pair), read off the batch's kept world model: equal up
    to the float32 rounding of encoding the rows incrementally or afresh."""
    opt = _amortized_pairs_told()
    m, buf, p = opt.method, opt.buffer, opt.problem
    pair = buf.intervened.sum(1) == 2
    assert bool(pair.any())  # a pair measured: its rows correct the additive prior
    i, j = buf.intervened[pair][0].nonzero().flatten().tolist()
    opt.ask()  # the decision that keeps the measured rows' world
    for f in (0.2, 0.7):
        vals = p.low[[i, j]].double() + f * (p.high[[i, j]] - p.low[[i, j]]).double()
        want = float(m.predict_set(buf, [i, j], vals[None], draw=False).mean[0])
        sd = float(buf.values[buf.observational_rows, p.target].std())
        assert m.believed_set_mean(buf, [i, j], vals) == pytest.approx(want, abs=1e-5 * sd)


def test_a_batch_of_pairs_reads_the_network_no_more_than_one_decision(monkeypatch):
    """With experiments of two variables, a batch's later members (their partners and the
    measured pairs' correction included) read the measured rows' world model the first member
    read: the batch makes as many network passes as a single decision."""
    import acbo.surrogate.world as world

    calls = []
    inner = world.network_prior
    monkeypatch.setattr(world, "network_prior", lambda *a, **k: calls.append(1) or inner(*a, **k))
    one = _amortized_pairs_told()
    calls.clear()
    one.ask()
    single = len(calls)
    batch = _amortized_pairs_told()
    calls.clear()
    assert len(batch.ask(n=4)) == 4 and len(calls) == single


def test_a_later_pair_member_keeps_the_first_member_s_measured_pair_blocks():
    """A batch's later member reuses the measured pairs' blocks of the pair table that the first
    member computed where no pending experiment sets either member, and they equal the blocks
    computed afresh on the buffer with the believed rows (to the rounding of reading the kept fit
    rather than solving the rows again)."""
    from acbo.policy.features import GRID_MEAN, GRID_STD
    from acbo.policy.sets import additive_pairs

    opt = _amortized_pairs_told(n=6)
    m, p = opt.method, opt.problem
    measured = {tuple(r.nonzero().flatten().tolist()) for r in opt.buffer.intervened[opt.buffer.intervened.sum(1) == 2]}
    assert len(measured) >= 2
    opt.ask()                                                  # the first member: computes and keeps the blocks
    assert set(m._pair_blocks[1]) == measured
    v = next(j for j in range(p.d) if bool(p.intervenable[j]) and any(j not in q for q in measured))
    pending = [{v: float(p.low[v] + 0.3 * (p.high[v] - p.low[v]))}]
    buf = m.believed(opt.buffer, pending)
    untouched = {q for q in measured if v not in q}
    assert untouched and set(m._kept_pair_blocks(buf, m._measured_world(buf.told), sorted(measured))) == untouched
    tables = []
    with torch.inference_mode():
        for keep in (True, False):
            if not keep:
                m._pair_blocks = None
            c = m._campaign(buf)
            x, _ = m._decide(c, buf)
            pm, pv = additive_pairs(x.grid[..., GRID_MEAN].double(), x.grid[..., GRID_STD].double())
            best = m._measured_pairs(c, buf, pm, pv, torch.full((1,), float("inf"), dtype=torch.float64))
            tables.append((pm, pv, best))
    (pm1, pv1, b1), (pm2, pv2, b2) = tables
    assert torch.allclose(pm1, pm2, atol=1e-6) and torch.allclose(pv1, pv2, atol=1e-6)
    assert torch.isfinite(b1).all() and float(b1) == pytest.approx(float(b2), abs=1e-6)


def test_simulate_campaign_runs_rounds_of_the_batch_and_a_shorter_last_one():
    asked, told = [], []

    def ask(n):
        asked.append(n)
        return [{"X": float(len(told) + i)} for i in range(n)]

    simulate_campaign(ask, lambda iv, t: {"t": t}, lambda iv, s: told.append((iv["X"], s["t"])), 5,
                      lambda *a: None, batch=2)
    assert asked == [2, 2, 1] and [t for _, t in told] == [1, 2, 3, 4, 5]


def test_the_bench_numbers_rounds_and_random_batches_are_its_sequential_draws():
    """Rounds are numbered; random draws a batch's members independently, so a batch of 4 runs
    the sequential campaign's experiments."""
    pr = make_problem("lin-er-10", 1)
    rows, _ = run_method(pr, "random", 6, batch=4)
    assert [r["round"] for r in rows] == [0, 1, 1, 1, 1, 2, 2]
    seq, _ = run_method(pr, "random", 6)
    assert [r["e_y"] for r in seq] == [r["e_y"] for r in rows] and [r["round"] for r in seq] == list(range(7))
    from acbo.bench.report import summary_table

    table = summary_table(pd.DataFrame(rows))
    assert "regret after round 2" in table and "regret after round 3" not in table
    assert "after round" not in summary_table(pd.DataFrame(seq))


@pytest.fixture
def data(tmp_path):
    obs = tmp_path / "obs.csv"
    x = np.linspace(0, 1, 40)
    pd.DataFrame({"A": x, "B": np.sin(7 * x), "Y": np.cos(5 * x) + x}).to_csv(obs, index=False)
    return obs


def test_a_batch_through_the_campaign_commands(tmp_path, data):
    """ask --n 3 writes three rows; a results file with them in another order records all three;
    a file with one row that answers nothing records none; withdraw takes one back."""
    state = tmp_path / "run.acbo"
    cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", state,
               "--budget", "5"))
    lines = cli_ok(cli("campaign", "ask", "--state", state, "--n", "3", "--format", "csv")).splitlines()
    assert len(lines) == 4 and set(lines[0].split(",")) <= {"A", "B"}
    asked = json.loads(cli_ok(cli("campaign", "ask", "--state", state, "--n", "3", "--format", "json")))
    assert len(asked) == 3
    rows = [{"A": 0.5, "B": 0.0, **iv, "Y": 0.1 * k} for k, iv in enumerate(asked)]
    (tmp_path / "bad.csv").write_text(pd.DataFrame(rows[:2] + [{**rows[2], **{k: v + 0.3 for k, v in asked[2].items()}}])
                                      .to_csv(index=False))
    before = state.read_bytes()
    pd.DataFrame([rows[0], rows[1], rows[0]]).to_csv(tmp_path / "dup.csv", index=False)
    cli_fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "dup.csv"),
              "line 4 of")
    assert "answers the same experiment as line 2" in cli(
        "campaign", "tell", "--state", state, "--result", tmp_path / "dup.csv").output.replace("\n", " ")
    pd.DataFrame(rows + rows[:1]).to_csv(tmp_path / "extra.csv", index=False)
    cli_fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "extra.csv"),
              "holds 4 rows but 3 experiment(s) are pending")
    out = cli_fails(cli("campaign", "tell", "--state", state, "--result", tmp_path / "bad.csv"), "line 4 of")
    assert "to within 0.0001 of (|value| + its domain's width)" in out.replace("\n", " ") and "withdraw" in out
    assert state.read_bytes() == before
    pd.DataFrame(rows[::-1][:2]).to_csv(tmp_path / "two.csv", index=False)
    out = cli_ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "two.csv"))
    assert "recorded experiment 2" in out and "1 still pending" in out
    assert "pending 1:" in cli_ok(cli("campaign", "status", "--state", state))
    cli_fails(cli("campaign", "ask", "--state", state, "--n", "5"), "would pass the budget")
    spec = ", ".join(f"{k}={v!r}" for k, v in asked[0].items())
    assert "0 still pending" in cli_ok(cli("campaign", "withdraw", "--state", state, "--intervention", spec))
    cli_fails(cli("campaign", "withdraw", "--state", state), "nothing to withdraw")


def test_an_own_experiment_that_leaves_a_batch_beyond_the_budget_says_so(tmp_path, data):
    """Budget 2, a batch of 2 pending, then an experiment of the user's own: recorded (it was run),
    with a warning that the pending ones now pass the budget by one and what to do."""
    state = tmp_path / "run.acbo"
    cli_ok(cli("campaign", "init", "--data", data, "--target", "Y", "--method", "random", "--state", state,
               "--budget", "2"))
    cli_ok(cli("campaign", "ask", "--state", state, "--n", "2"))
    pd.DataFrame([{"A": 0.5, "B": 0.0, "Y": 0.1}]).to_csv(tmp_path / "own.csv", index=False)
    out = cli_ok(cli("campaign", "tell", "--state", state, "--result", tmp_path / "own.csv", "--intervention", "A=0.5"))
    assert "recorded experiment 1" in out
    assert "the 2 pending ones pass the budget of 2 experiments by 1: withdraw 1 of them" in out.replace("\n", " ")


def test_a_round_the_budget_cannot_pay_for_is_asked_smaller():
    """Costs 1 each and a budget of 6: rounds of 4 run 4, then 2 (a round of 4 no longer fits),
    and the campaign ends with the budget spent."""
    pr = make_problem("lin-er-10", 1)
    costs = {n: 1.0 for n in pr.settable}
    rows, opt = run_method(pr, "random", 12, batch=4, costs=costs, budget_cost=6.0)
    assert [r["round"] for r in rows[1:]] == [1, 1, 1, 1, 2, 2] and opt.spent == 6.0


def test_the_round_summary_carries_a_stopped_campaign_forward():
    """Two methods whose campaigns end after different numbers of rounds (a budget spent): the
    summary's regret by round keeps each stopped campaign's last regret, instead of failing."""
    from acbo.bench.report import summary_table

    rows = [{"family": "f", "seed": s, "method": m, "d": 3, "step": t, "round": (t + 1) // 2, "regret": 1.0 / (t + 1),
             "auprc": 0.5, "mass_true": 0.5, "time_s": 0.001}
            for s in range(3) for m, T in (("a", 8), ("b", 4)) for t in range(T + 1)]
    table = summary_table(pd.DataFrame(rows))
    b = next(line for line in table.splitlines() if line.startswith("| b |") and "±" in line and line.count("|") == 6)
    assert b.split("|")[4].strip().startswith("0.200")  # round 3 and 4: b ended at step 4, regret 1/5


def test_distinct_batches_of_pairs_decide_once():
    """With ``batch="distinct"`` and experiments of up to two variables, a batch's later members are
    drawn from the first member's set action: one decision per batch, and each later member has a
    member in a (variable, grid cell) no earlier member of the batch used (its first member, drawn
    away from the pending cells). With costs each member is decided as with the believer (the
    allowance shrinks with each pending member)."""
    from acbo.policy.method import Amortized

    calls = []
    inner = Amortized._decide
    pr = make_problem("test-joint", 0, max_set=2)
    kw = dict(target="Y", method="amortized", domains=pr.domains, intervenable=pr.settable, max_set=2, batch="distinct")
    opt = CausalOptimizer(pr.frame, seed=0, **kw)
    for t in range(3):
        iv = opt.ask()
        opt.tell(iv, pr.scm.run_experiment(dict(iv), generator("test", "distinct-pairs", t)), accept_outlier=True)
    import unittest.mock as mock
    K = opt.method.policy.cfg.grid
    cell = lambda name, v: (name, min(int((v - opt.domains[name][0]) / (opt.domains[name][1] - opt.domains[name][0]) * K), K - 1))
    with mock.patch.object(Amortized, "_decide", lambda self, *a: calls.append(1) or inner(self, *a)):
        batch = opt.ask(n=6)
    assert len(calls) == 1 and len(batch) == 6 and any(len(iv) == 2 for iv in batch)
    used = set()
    for iv in batch:
        cells = {cell(name, v) for name, v in iv.items()}
        assert cells - used, (iv, used)
        used |= cells
    costly = CausalOptimizer(pr.frame, seed=0, costs={name: 1.0 for name in pr.settable}, **kw)
    calls.clear()
    with mock.patch.object(Amortized, "_decide", lambda self, *a: calls.append(1) or inner(self, *a)):
        assert len(costly.ask(n=3)) == 3
    assert len(calls) == 3
