"""Stage 2: rewards, GRPO maths, the action distribution, the incremental encoder, BC, training,
checkpoints."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from acbo.configs import configure
from acbo.buffer import CampaignBatch
from acbo.env import Env
from acbo.io import read_raw_state
from acbo.policy.bc import bc_loss, load_demo_batch
from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint, save_policy
from acbo.policy.features import campaign_features
from acbo.policy.decide import policy_input
from acbo.policy.grpo import clipped_objective, group_advantages, kl_k3
from acbo.policy.model import ActionDist, Policy, PolicyConfig
from acbo.policy.rewards import combine, improvement, information_gain, outcome_gain, parent_hit, posterior_entropy
from acbo.policy.train import PolicyTrainConfig, train
from acbo.seeding import generator
from acbo.surrogate import Belief, Encoding, load_pretrained
from acbo.surrogate.model import Surrogate, SurrogateConfig
from conftest import fresh_surrogate

DEMOS = Path(__file__).parent / "data" / "demos_sample"


@pytest.fixture(scope="module")
def surrogate():
    return load_pretrained()


def _env(B=3, d=6, n_obs=30, T=5, seed=0, family="lin-er-10"):
    from acbo.scm import get_family

    g = generator("test", "policy-unit", seed)
    scm = get_family(family).with_(d_range=(d, d)).sample(g, B)
    return Env.reset(scm, n_obs, T, g, n_mc=64), g


# ------------------------------------------------------------------ rewards (hand-computed)
def test_information_gain_by_hand():
    before = torch.tensor([[0.5, 0.5, 0.0]])
    after = torch.tensor([[0.9, 0.5, 0.0]])
    mask = torch.tensor([[True, True, True]])
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert posterior_entropy(before, mask).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert information_gain(before, after, mask).item() == pytest.approx(h(0.5) - h(0.9), abs=1e-6)  # 0.3681
    # padding variables do not count
    assert information_gain(before, after, torch.tensor([[False, True, True]])).item() == pytest.approx(0.0, abs=1e-7)


def test_optimisation_and_parent_rewards_by_hand():
    best, scale = torch.tensor([1.0]), torch.tensor([2.0])
    assert improvement(best, torch.tensor([[0.5, 1.5]]), scale).tolist() == [[0.25, 0.0]]
    assert outcome_gain(torch.tensor([0.0]), torch.tensor([[-1.0, 1.0]]), scale).tolist() == [[0.5, -0.5]]
    parents = torch.tensor([[False, True, False]])
    assert parent_hit(torch.tensor([[1, 0, 2]]), parents).tolist() == [[1.0, 0.0, 0.0]]
    comps = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([10.0, 0.0])}
    assert combine(comps, {"a": 1.0, "b": 0.5}).tolist() == [6.0, 2.0]
    assert combine(comps, {"a": 1.0, "c": 0.0}).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="not computed"):
        combine(comps, {"c": 1.0})
    with pytest.raises(ValueError, match="every reward weight is 0"):
        combine(comps, {"a": 0.0})


# ------------------------------------------------------------------ GRPO maths (hand-computed)
def test_group_advantages_by_hand():
    adv, informative = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]]))
    assert adv.tolist() == [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert informative.tolist() == [True, False]
    adv, _ = group_advantages(torch.tensor([[0.0, 4.0]]), scale_by_std=True)
    assert adv[0].tolist() == pytest.approx([-2 / math.sqrt(8), 2 / math.sqrt(8)], abs=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.zeros(3, 1))


def test_clipped_objective_by_hand():
    lp_old = torch.zeros(3)
    logp = torch.log(torch.tensor([1.5, 0.5, 1.1]))
    adv = torch.tensor([1.0, -1.0, 1.0])
    loss, frac = clipped_objective(logp, lp_old, adv, eps_low=0.2, eps_high=0.28)
    # min(r A, clip(r) A): 1.5 -> 1.28 (clipped); 0.5 with A<0 -> clip 0.8 gives -0.8 (clipped); 1.1 -> 1.1
    assert loss.item() == pytest.approx(-(1.28 - 0.8 + 1.1) / 3, abs=1e-6)
    assert frac.item() == pytest.approx(2 / 3)
    loss, frac = clipped_objective(logp, lp_old, adv, 0.2, 0.28, weight=torch.tensor([0.0, 0.0, 1.0]))
    assert loss.item() == pytest.approx(-1.1, abs=1e-6) and frac.item() == 0.0


def test_kl_k3():
    a = torch.tensor([0.3, -1.0])
    assert kl_k3(a, a).abs().max().item() == 0.0
    assert (kl_k3(a, a + torch.tensor([0.5, -0.5])) > 0).all()
    d = 0.5
    assert kl_k3(torch.tensor([0.0]), torch.tensor([d])).item() == pytest.approx(math.exp(d) - d - 1)


# ------------------------------------------------------------------ the action distribution
def _dist(B=4, D=5):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, D, generator=g)
    logits[:, 0] = float("-inf")  # e.g. the target
    logits[0, 3] = float("-inf")  # e.g. not intervenable
    alpha = 1 + torch.rand(B, D, generator=g) * 3
    beta = 1 + torch.rand(B, D, generator=g) * 3
    low, high = -torch.rand(B, D, generator=g), 1 + torch.rand(B, D, generator=g)
    return ActionDist(logits, alpha, beta, low, high)


def test_masked_actions_never_sampled():
    dist = _dist()
    var, u = dist.sample(torch.Generator().manual_seed(1), k=2000)
    assert (var != 0).all() and (var[0] != 3).all()
    assert ((u > 0) & (u < 1)).all()
    assert torch.isfinite(dist.log_prob(var, u)).all()


def test_log_prob_matches_the_sampled_actions():
    dist = _dist()
    var, u = dist.sample(torch.Generator().manual_seed(2), k=7)
    value = dist.value(var, u)
    lo, hi = dist.low.gather(1, var), dist.high.gather(1, var)
    assert torch.allclose((value - lo) / (hi - lo), u, atol=1e-6)
    ref = (torch.log_softmax(dist.var_logits, 1).gather(1, var)
           + torch.distributions.Beta(dist.alpha.gather(1, var), dist.beta.gather(1, var)).log_prob(u)
           - torch.log(hi - lo))
    assert torch.allclose(dist.log_prob(var, u), ref, atol=1e-5)
    # the value part integrates to one over the domain (a density on the data's scale)
    grid = torch.linspace(1e-4, 1 - 1e-4, 20001)
    j = torch.tensor([[1]])
    dens = torch.stack([dist.log_prob(j, g.view(1, 1))[0, 0] - torch.log_softmax(dist.var_logits, 1)[0, 1] for g in grid[::400]])
    assert torch.isfinite(dens).all()
    w = float(dist.high[0, 1] - dist.low[0, 1])
    full = torch.distributions.Beta(dist.alpha[0, 1], dist.beta[0, 1]).log_prob(grid).exp()
    assert float(torch.trapezoid(full / w, grid * w)) == pytest.approx(1.0, abs=1e-3)


def test_sampling_is_seeded_and_mode_is_valid():
    dist = _dist()
    a = dist.sample(torch.Generator().manual_seed(5), 3)
    b = dist.sample(torch.Generator().manual_seed(5), 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    var, u = dist.mode()
    assert torch.isfinite(dist.var_logits.gather(1, var[:, None])).all() and ((u > 0) & (u < 1)).all()


# ------------------------------------------------------------------ encoder, features, model
@pytest.mark.parametrize("which", ["shipped", "pair-bias"])
def test_incremental_encoding_equals_a_full_pass(surrogate, which):
    if which == "pair-bias":
        surrogate = fresh_surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=2), pair_bias=True).eval()
    env, g = _env()
    full_before = Encoding.of(surrogate, env.campaign())
    var = torch.tensor([[1, 2], [0, 3], [4, 5]])
    var = torch.where(var == env.scm.target[:, None], (var + 1) % env.d, var)
    value = torch.randn(3, 2, generator=g, dtype=env.values.dtype)
    rows, mask = env.outcomes(var, value, g)
    # scoring candidates one at a time = appending each and re-encoding everything
    cand = full_before.marginals_with(surrogate, rows, mask)                                  # B x 2 x d
    for k in range(2):
        e = Env(**{**env.__dict__})
        e.append(rows[:, k:k + 1], mask[:, k:k + 1], torch.zeros(3))
        m_full, tok_full = Encoding.of(surrogate, e.campaign()).readout(surrogate)
        assert torch.allclose(cand[:, k], m_full, atol=1e-5)
        m_inc, tok_inc = full_before.add(surrogate, rows[:, k:k + 1], mask[:, k:k + 1]).readout(surrogate)
        assert torch.allclose(m_inc, m_full, atol=1e-5) and torch.allclose(tok_inc, tok_full, atol=1e-4)


def test_features_by_hand():
    # 2 variables (X0, Y=1), 3 observational rows, then do(X0 = 2) twice with Y = -1 then Y = 0
    v = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [2.0, -1.0], [0.0, 0.0]], dtype=torch.float64)[None]
    iv = torch.zeros(1, 5, 2, dtype=torch.bool)
    iv[0, 3:, 0] = True
    c = CampaignBatch(v, iv, torch.ones(1, 5, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool),
                 torch.tensor([[False, True]]), torch.tensor([[0.0, -1.0]]), torch.tensor([[2.0, 3.0]]),
                 torch.tensor([[True, False]]), torch.tensor([2]), torch.tensor([10]))
    var, glob = campaign_features(c, torch.tensor([[0.7, 0.0]]))
    # obs stats of Y: mean 1, std 1 -> measured Y standardised: -2 (at X0=2, u=1) and -1 (at X0=0, u=0)
    x0 = var[0, 0]
    assert x0[0].item() == pytest.approx(0.7)
    assert x0[7].item() == pytest.approx(math.log(3))          # log(1 + 2 settings)
    assert x0[9].item() == pytest.approx(-2.0)                  # lowest Y when X0 was set
    assert x0[10].item() == pytest.approx(-1.5)                 # mean
    assert x0[11].item() == pytest.approx(-1.0)                 # last
    assert x0[12].item() == pytest.approx(1.0) and x0[13].item() == pytest.approx(0.0)  # positions
    assert x0[14].item() == pytest.approx(-1.0)                 # slope of Y on the position
    assert glob[0, 0].item() == pytest.approx(-2.0)             # best so far
    assert glob[0, 1].item() == pytest.approx(0.2) and glob[0, 2].item() == pytest.approx(0.8)


@pytest.mark.parametrize("grid, costs", [(0, False), (8, False), (8, True)])
def test_policy_is_equivariant_over_variables(surrogate, grid, costs):
    from acbo.policy.rollout import training_cost_features

    env, g = _env(B=2, d=7)
    env.step(torch.tensor([1, 2]), torch.tensor([0.5, -0.5], dtype=env.values.dtype), g)
    c = env.campaign()
    cost = training_cost_features(env.with_costs(1.0, 10.0, g), grid) if costs else None
    x = policy_input(c, Belief.of(surrogate, c), surrogate, grid, cost=cost)
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim, grid=grid, cost_head=costs)).eval()
    if grid:  # the zero-initialised last layers, randomised as after training
        torch.nn.init.normal_(policy.cell_head[-1].weight, std=0.5)
    if costs:
        torch.nn.init.normal_(policy.cost_head.mlp[-1].weight, std=0.5)
    perm = torch.randperm(7)
    px = type(x)(x.tokens[:, perm], x.var_feats[:, perm], x.glob, x.valid[:, perm], x.var_mask[:, perm],
                 x.low[:, perm], x.high[:, perm], x.grid[:, perm], x.cost[:, perm])
    a, b = policy(x), policy(px)
    assert torch.allclose(a.var_logits[:, perm], b.var_logits, atol=1e-5)
    assert torch.allclose(a.alpha[:, perm], b.alpha, atol=1e-5)


def test_env_steps_and_tracks_the_best():
    env, g = _env(B=2, d=5, T=3)
    var = (env.scm.target + 1) % env.d
    lo = env.low.gather(1, var[:, None])[:, 0]
    e_y = env.step(var, lo, g)
    assert env.values.shape[1] == 31 and env.intervened[:, -1].sum().item() == 2 and env.step_count == 1
    assert torch.equal(env.best, torch.minimum(env.y_obs, e_y))
    exact = env.scm.expected_target(env.intervened[:, -1:], env.values[:, -1:])[:, 0]
    assert torch.allclose(e_y, exact)  # linear: exact E[Y | do]
    rep = env.repeat(3)
    assert rep.B == 6 and torch.equal(rep.values[3], env.values[1])


# ------------------------------------------------------------------ BC, training, checkpoints
def test_behaviour_cloning_fits_the_expert(surrogate):
    demos = load_demo_batch(DEMOS, surrogate)
    assert len(demos) > 0 and demos.x.valid.gather(1, demos.var).all()
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim))
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    first = bc_loss(policy, demos)["loss"].item()
    for _ in range(40):
        loss = bc_loss(policy, demos)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bc_loss(policy, demos)["loss"].item() < first - 0.5


def _tiny(tmp_path, **kw) -> PolicyTrainConfig:
    base = dict(families=("train-lin",), iterations=1, batch_size=6, group_size=4, horizon=(4, 4), n_obs=(30, 30),
                minibatch=64, val_family="lin-er-10", val_campaigns=8, val_horizon=4, val_every=1, reward_mc=32,
                out=str(tmp_path / "run"))
    base.update(kw)
    return configure(PolicyTrainConfig, **base)


@pytest.mark.parametrize("mode", ["candidates", "trajectory"])
def test_one_grpo_update_changes_every_parameter(tmp_path, mode):
    cfg = _tiny(tmp_path, mode=mode)
    torch.manual_seed(cfg.run.seed)
    before = Policy(dataclasses.replace(cfg.policy, token_dim=load_pretrained().cfg.dim))
    after = train(cfg, log=lambda s: None)
    for (name, p0), p1 in zip(before.named_parameters(), after.parameters()):
        assert not torch.equal(p0, p1), f"{name} did not change"


def test_tiny_training_run_improves_validation_regret(tmp_path):
    cfg = _tiny(tmp_path, iterations=30, val_every=30, batch_size=12, group_size=6, lr=3e-3, val_campaigns=32)
    train(cfg, log=lambda s: None)
    hist = read_policy_checkpoint(tmp_path / "run" / "policy.pt")["history"]
    assert hist[0]["iteration"] == 0 and hist[-1]["iteration"] == 30
    assert hist[-1]["val_regret_mean"] < hist[0]["val_regret_mean"] - 0.05


def test_training_resumes_and_rejects_another_config(tmp_path):
    cfg = _tiny(tmp_path, iterations=2)
    train(cfg, log=lambda s: None)
    logs = []
    train(cfg, log=logs.append)  # finished: nothing to redo
    assert read_policy_checkpoint(tmp_path / "run" / "policy.pt")["step"] == 2
    with pytest.raises(ValueError, match="another configuration"):
        train(_tiny(tmp_path, iterations=3, lr=1e-2), log=lambda s: None)
    with pytest.raises(ValueError, match="another configuration"):  # shards change the data stream
        train(_tiny(tmp_path, shards=2), log=lambda s: None)
    # where the rollouts run is not what they compute: a run may resume with other workers
    train(_tiny(tmp_path, iterations=2, rollout_workers=2), log=logs.append)
    assert read_policy_checkpoint(tmp_path / "run" / "policy.pt")["step"] == 2


def test_a_run_written_with_the_old_flat_config_resumes(tmp_path):
    from acbo.configs import flat_dict
    from acbo.policy.train import ADDED_LATER
    from acbo.training import resume
    cfg = _tiny(tmp_path, iterations=1)
    train(cfg, log=lambda s: None)
    ckpt = tmp_path / "run" / "policy.pt"
    old = read_policy_checkpoint(ckpt)
    flat = flat_dict(cfg)  # the config as a run before shards and grids wrote it: flat names
    flat_name = {**{p: p for p in flat if "." not in p}, **{path: name for name, path in cfg.LEGACY.items()}}
    old["train_config"] = {flat_name[p]: v for p, v in flat.items()
                           if p in flat_name and p not in ("data.shards", "policy.grid")}
    assert "iterations" in old["train_config"] and "run" not in old["train_config"]
    assert resume(ckpt, cfg, lambda _: old, cfg.LEGACY, ADDED_LATER)["step"] == 1
    with pytest.raises(ValueError, match="another configuration"):
        resume(ckpt, cfg, lambda _: old, cfg.LEGACY)
    old["train_config"]["lr"] = 1.0
    with pytest.raises(ValueError, match=r"another configuration \(settings \['optim.lr'\]\)"):
        resume(ckpt, cfg, lambda _: old, cfg.LEGACY, ADDED_LATER)


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        _tiny(tmp_path, mode="bandit")
    with pytest.raises(ValueError, match="group_size"):
        _tiny(tmp_path, group_size=1)
    with pytest.raises(ValueError, match="iterations"):
        _tiny(tmp_path, iterations=0)
    with pytest.raises(ValueError, match="unknown family"):
        _tiny(tmp_path, families=("no-such-family",))
    with pytest.raises(ValueError, match="need bc_demos"):
        train(_tiny(tmp_path, bc_steps=5), log=lambda s: None)


def test_checkpoint_round_trip_and_clear_errors(tmp_path, surrogate):
    torch.manual_seed(3)
    policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim)).eval()
    path = tmp_path / "p.pt"
    save_policy(path, policy, surrogate, 7)
    assert (tmp_path / "surrogate.pt").exists()  # the folder holds the pair
    p2, s2 = load_policy_checkpoint(path)
    env, _ = _env()
    c = env.campaign()
    for pol, sur in ((policy, surrogate), (p2, s2)):
        out = pol(policy_input(c, Belief.of(sur, c)))
        if pol is policy:
            ref = out
    assert torch.equal(ref.var_logits, out.var_logits) and torch.equal(ref.alpha, out.alpha)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable policy checkpoint"):
        load_policy_checkpoint(tmp_path / "junk.pt")
    from acbo.surrogate.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "s.pt", Surrogate(SurrogateConfig(dim=16, heads=2)), 0)
    with pytest.raises(ValueError, match="not an acbo policy checkpoint"):
        load_policy_checkpoint(tmp_path / "s.pt")
    state = read_raw_state(path)
    state["format_version"] = 1
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format version 1.*embeds a copy of its surrogate"):
        load_policy_checkpoint(tmp_path / "old.pt")
    state["format_version"] = 2
    state["model_config"]["dim"] = 32
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_policy_checkpoint(tmp_path / "bad.pt")
    # a pair is checked by content: another surrogate (given, or in the pair's file) is refused
    other = fresh_surrogate(surrogate.cfg)
    with pytest.raises(ValueError, match="trained with the surrogate of digest .* not a model pair"):
        load_policy_checkpoint(path, surrogate=other)
    save_checkpoint(tmp_path / "surrogate.pt", other, 0)
    with pytest.raises(ValueError, match="not a model pair"):
        load_policy_checkpoint(path)
    (tmp_path / "surrogate.pt").unlink()
    with pytest.raises(ValueError, match="surrogate .* is missing"):
        load_policy_checkpoint(path)


def test_shipped_pair_loads_and_names_its_surrogate():
    from acbo.io import packaged_path
    from acbo.policy.checkpoint import load_pretrained_policy
    from acbo.surrogate import surrogate_digest

    policy, sur = load_pretrained_policy()
    with packaged_path("policy.pt", "policy") as p:
        state = read_policy_checkpoint(p)
    assert state["surrogate_sha256"] == surrogate_digest(sur) and state["optimizer"] is None


def test_the_shipped_policy_reads_the_shipped_surrogate():
    """One pair: the shipped policy names, by digest, the very surrogate load_pretrained() returns
    (surrogate.pt), it reads that surrogate's world model, and no other surrogate file is shipped."""
    from acbo.io import packaged_path
    from acbo.policy.checkpoint import load_pretrained_policy
    from acbo.surrogate import surrogate_digest

    policy, sur = load_pretrained_policy()
    with packaged_path("policy.pt", "policy") as p:
        state = read_policy_checkpoint(p)
        shipped = sorted(f.name for f in Path(p).parent.glob("*.pt"))
    assert state["surrogate_file"] == "surrogate.pt" and shipped == ["policy.pt", "surrogate.pt"]
    assert surrogate_digest(sur) == surrogate_digest(load_pretrained()) == state["surrogate_sha256"]
    assert policy.cfg.grid > 0 and sur.cfg.queries


def test_amortized_decisions_reuse_the_encoding(surrogate):
    """The method's incremental state gives the same posterior as a fresh method on the same data."""
    from acbo import CausalOptimizer

    from conftest import simulate_step, small_problem

    scm, frame = small_problem("lin-er-10", n_obs=60)
    opt = CausalOptimizer(frame, target="Y", method="amortized", seed=0, horizon=5)
    for t in range(4):
        iv = opt.ask()
        opt.tell(iv, simulate_step(scm, iv, t))
    fresh = CausalOptimizer(frame, target="Y", method="amortized", seed=0, horizon=5)
    fresh.buffer = opt.buffer.copy()
    assert torch.allclose(opt.posterior().marginals, fresh.posterior().marginals, atol=1e-5)
    with pytest.raises(ValueError, match="horizon"):
        CausalOptimizer(frame, target="Y", method="amortized", horizon=0)


def test_command_line_entry_point(tmp_path, capsys):
    from acbo.policy.train import main

    main(["--families", "train-lin", "--iterations", "1", "--batch-size", "4", "--group-size", "2", "--horizon", "3,3",
          "--n-obs", "20,20", "--val-family", "lin-er-10", "--val-campaigns", "4", "--val-horizon", "3",
          "--reward-mc", "16", "--design.scale-by-std", "true", "--design.mode", "trajectory",
          "--out", str(tmp_path / "cli")])  # old flat flags and dotted ones
    state = read_policy_checkpoint(tmp_path / "cli" / "policy.pt")
    design = state["train_config"]["design"]
    assert design["scale_by_std"] is True and design["horizon"] == (3, 3) and design["mode"] == "trajectory"
    assert state["train_config"]["run"]["steps"] == 1 and state["train_config"]["val"]["family"] == "lin-er-10"
    assert "val_regret_T" in capsys.readouterr().out


def test_bc_warm_start_kl_reference_and_auxiliary_loss(tmp_path):
    cfg = _tiny(tmp_path, iterations=1, bc_demos=str(DEMOS), bc_steps=3, bc_coef=0.5, beta=0.05)
    logs = []
    train(cfg, log=logs.append)
    assert any(line.startswith("bc step=3") and "expert_agreement=" in line for line in logs)
    rec = [line for line in logs if line.startswith("iteration=1 ")][0]
    fields = dict(kv.split("=", 1) for kv in rec.split())
    assert float(fields["kl"]) >= 0.0 and float(fields["bc"]) > 0.0


def test_trainers_and_env_take_family_objects(tmp_path):
    """A curriculum hands trainers modified, unregistered families."""
    from acbo.scm import FAMILIES, get_family
    from acbo.surrogate.train import SurrogateTrainConfig
    from acbo.surrogate.train import train as train_surrogate

    small = get_family("train-lin").with_(name="curriculum-lin-4", d_range=(4, 4))
    assert small.name not in FAMILIES
    env = Env.from_family(small, 3, 20, 2, generator("fam-obj"))
    assert env.d == 4
    policy = train(_tiny(tmp_path, families=(small,), val_family=small), log=lambda s: None)
    assert isinstance(policy, Policy)
    cfg = configure(SurrogateTrainConfig, families=(small,), steps=2, batch_size=4, n_obs=(20, 20), n_int=(0, 2), dim=16, heads=2,
                    row_layers=1, var_layers=1, family=small, buffers=16, eval_every=2,
                    out=str(tmp_path / "s"))
    train_surrogate(cfg, log=lambda s: None)
    train_surrogate(cfg, log=lambda s: None)  # resumes: the stored config (a dict) matches the Family object
    with pytest.raises(ValueError, match="registered name or an acbo.Family"):
        _tiny(tmp_path, families=(3,))


def test_collected_campaigns_become_a_surrogate_training_batch(surrogate):
    """What stage 3 needs: the rows a policy collected, labelled, and one surrogate step on them."""
    from acbo.policy.rollout import GroupDesign, collect
    from acbo.surrogate.train import SurrogateLoss, surrogate_step

    env, g = _env(B=3, d=5, n_obs=25, T=3)
    torch.manual_seed(0)
    policy = Policy(PolicyConfig(token_dim=surrogate.cfg.dim)).eval()
    collect(policy, surrogate, env, GroupDesign("candidates", 2), {"improvement": 1.0}, g)
    batch = env.training_batch()
    assert batch.raw.shape == (3, 28, 5) and int(batch.batch.intervened.any(2).sum()) == 9
    assert torch.equal(batch.parents, env.scm.parents()) and batch.linear.all()
    model = fresh_surrogate(SurrogateConfig(dim=16, heads=2, row_layers=1, var_layers=1), pair_bias=True)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = surrogate_step(model, opt, batch, SurrogateLoss(w_truth=1.0, w_exact=1.0))
    assert {"truth", "exact", "loss", "grad_norm"} <= set(terms)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
