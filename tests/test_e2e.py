"""Stage 3: the curriculum (the ladder of families and the rule that climbs it) and the trainer."""

import json
import math
from dataclasses import asdict

import pytest
import torch

from acbo.e2e import Curriculum, CurriculumState
from acbo.scm import get_family
from acbo.seeding import generator


def test_the_last_level_is_the_base_world():
    c = Curriculum("train-broad", levels=4)
    last, base = asdict(c.family(3)), asdict(get_family("train-broad"))
    assert last.pop("name") == "train-broad@4of4"
    base.pop("name")
    assert last == base
    assert asdict(Curriculum(levels=1).family(0)) == {**base, "name": "train-broad@1of1"}


def test_the_first_level_by_hand():
    # train-broad: d 3-30, degree 1-3, 9 mechanisms, noise 0.01-3 log-uniform, n_obs 20-1000, width 1-3
    f = Curriculum("train-broad", levels=4).family(0)                # a quarter of the way
    assert f.d_range == (3, 10)                                      # 3 + 27 / 4 = 9.75
    assert f.expected_degree == (1.0, 1.5)
    assert f.mechanism == ("linear", "poly", "saturating")           # ceil(9 / 4)
    assert f.noise_std == (0.01, pytest.approx(0.01 * 300 ** 0.25))  # log-linear
    assert f.n_obs == (755, 1000)                                    # 1000 - 980 / 4
    assert f.domain_width == (1.0, 1.5)
    # what the base holds out stays out, and everything else is the base's
    assert f.n_latent == (0, 0) and "interaction" not in f.mechanism and f.units == get_family("train-broad").units


def test_every_axis_opens_level_by_level_and_every_level_draws():
    c = Curriculum(levels=5)
    fams = [c.family(k) for k in range(5)]
    for a, b in zip(fams, fams[1:]):
        assert a.d_range[1] <= b.d_range[1] and a.expected_degree[1] <= b.expected_degree[1]
        assert set(a.mechanism) <= set(b.mechanism) and a.noise_std[1] <= b.noise_std[1]
        assert a.n_obs[0] >= b.n_obs[0] and a.domain_width[1] <= b.domain_width[1]
    assert len({f.name for f in fams}) == 5                          # each level its own seed streams
    for k, f in enumerate(fams):
        scm = f.sample(generator("test", "curriculum", k), B=2)
        assert f.d_range[0] <= scm.d <= f.d_range[1]


def test_a_level_is_passed_after_patience_evaluations_in_a_row():
    c = Curriculum(levels=3, threshold=0.3, patience=2, max_steps=100)
    s, why = c.advance(CurriculumState(), 10, 0.2)
    assert s == CurriculumState(0, 10, 1) and why == ""
    s, why = c.advance(s, 10, 0.5)                                   # a miss resets the count
    assert s == CurriculumState(0, 20, 0) and why == ""
    s, _ = c.advance(s, 10, 0.3)                                     # at the threshold counts
    s, _ = c.advance(s, 5)                                           # no evaluation: the count stays
    assert s == CurriculumState(0, 35, 1)
    s, why = c.advance(s, 10, 0.1)
    assert s == CurriculumState(1, 0, 0) and why == "passed"


def test_the_schedule_moves_a_level_that_is_not_passed_and_the_last_is_kept():
    c = Curriculum(levels=2, threshold=0.1, patience=1, max_steps=30)
    s, why = c.advance(CurriculumState(), 20, 0.9)
    assert why == "" and s.level == 0
    s, why = c.advance(s, 10, 0.9)
    assert s == CurriculumState(1, 0, 0) and why == "schedule"
    s, why = c.advance(s, 1000, 0.0)                                 # the last level is never left
    assert s == CurriculumState(1, 1000, 1) and why == ""


def test_the_state_round_trips_and_bad_input_is_named():
    s = CurriculumState(2, 17, 1)
    assert CurriculumState.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="exactly the keys"):
        CurriculumState.from_dict({"level": 1})
    with pytest.raises(ValueError, match="non-negative integers"):
        CurriculumState.from_dict({"level": -1, "steps": 0, "passes": 0})
    with pytest.raises(ValueError, match="classic one"):
        Curriculum("lin-er-10")
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        Curriculum(levels=0)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        Curriculum(patience=0)
    with pytest.raises(ValueError, match=r"level must be an integer in \[0, 3\]"):
        Curriculum().family(4)
    with pytest.raises(ValueError, match="finite number"):
        Curriculum().advance(CurriculumState(), 1, float("nan"))
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        Curriculum().advance(CurriculumState(), -1)


# ----------------------------------------------------------------------------- the trainer
TINY = dict(levels=2, threshold=10.0, patience=1, level_rounds=50, rounds=4, batch_size=4, group_size=2,
            horizon=(2, 2), minibatch=16, reward_mc=16, query_vars=2, query_values=4, val_campaigns=4,
            val_horizon=2, val_every=2, val_mc=64)


def _tiny(tmp_path, **kw):
    from acbo.configs import configure
    from acbo.e2e.train import E2EConfig
    out = str(tmp_path / kw.pop("folder", "run"))
    return configure(E2EConfig, **{**TINY, **kw, "out": out})


def test_a_tiny_stage3_run_trains_both_models_and_climbs(tmp_path):
    from acbo.e2e.train import read_e2e_checkpoint, train
    from acbo.policy.checkpoint import load_policy_checkpoint, load_pretrained_policy
    policy0, surrogate0 = load_pretrained_policy()
    policy, surrogate = train(_tiny(tmp_path), log=lambda s: None)
    for before, after, what in ((policy0, policy, "policy"), (surrogate0, surrogate, "surrogate")):
        moved = [n for (n, p0), p1 in zip(before.named_parameters(), after.parameters()) if not torch.equal(p0, p1)]
        assert moved, f"no {what} parameter changed"
    state = read_e2e_checkpoint(tmp_path / "run" / "e2e.pt")
    assert state["step"] == 4 and state["curriculum"]["level"] == 1       # threshold 10: passed at round 2
    rounds = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r.get("advanced") for r in rounds] == [None, "passed", None, None]
    assert rounds[0]["family"] == "train-broad@1of2" and rounds[2]["family"] == "train-broad@2of2"
    assert all(k in rounds[1] for k in ("policy_loss", "policy_clip_frac", "surrogate_loss", "val_auprc",
                                        "val_regret_T", "val_y_star_se", "reward_mean", "zero_var_groups", "elapsed_s"))
    # the exported pair is the trained one and loads as any policy checkpoint
    p, s = load_policy_checkpoint(tmp_path / "run" / "policy.pt")
    assert all(torch.equal(a, b) for a, b in zip(p.parameters(), policy.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(s.parameters(), surrogate.parameters()))


@pytest.mark.parametrize("grid, lr", [(0, 3e-3), (8, 1e-2)])
def test_a_tiny_stage3_run_improves_both_models_validation_metrics(tmp_path, grid, lr):
    """Both models from scratch (a fresh surrogate with the world-model head, a fresh policy), 40
    rounds on the first level: the policy's regret on the validation campaigns and the surrogate's
    AUPRC on the validation buffers both improve."""
    from conftest import fresh_surrogate

    from acbo.e2e.train import read_e2e_checkpoint, train
    from acbo.policy.checkpoint import save_policy
    from acbo.policy.model import Policy, PolicyConfig
    from acbo.surrogate.model import SurrogateConfig
    surrogate = fresh_surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=2, queries=True))
    torch.manual_seed(0)
    save_policy(tmp_path / "pair" / "policy.pt", Policy(PolicyConfig(token_dim=32, dim=32, grid=grid)), surrogate, 0)
    cfg = _tiny(tmp_path, levels=4, threshold=-10.0, level_rounds=1000, rounds=40, batch_size=12, group_size=6,
                horizon=(4, 4), reward_mc=32, val_campaigns=32, val_horizon=4, val_every=40,
                init=str(tmp_path / "pair" / "policy.pt"), policy_lr=lr, surrogate_lr=1e-3, surrogate_steps=2)
    train(cfg, log=lambda s: None)
    first, last = read_e2e_checkpoint(tmp_path / "run" / "e2e.pt")["history"]
    assert (first["round"], last["round"]) == (0, 40) and first["level"] == last["level"] == 1
    assert last["val_regret_mean"] < first["val_regret_mean"] - 0.05, (first, last)
    assert last["val_auprc"] > first["val_auprc"] + 0.05, (first, last)


@pytest.mark.parametrize("grid", [0, 4])
def test_an_interrupted_stage3_run_resumes_where_it_stopped(tmp_path, grid):
    from acbo.e2e.train import train
    whole = train(_tiny(tmp_path, folder="whole", grid=grid), log=lambda s: None)

    def stop_after_round_2(line: str) -> None:
        if line.startswith("round=2 "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_tiny(tmp_path, folder="cut", grid=grid), log=stop_after_round_2)
    lines = []
    resumed = train(_tiny(tmp_path, folder="cut", grid=grid), log=lines.append)
    assert lines[0] == "resumed from round 2 on level 2"
    for a, b in zip(whole, resumed):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="another configuration"):
        train(_tiny(tmp_path, folder="cut", grid=grid, surrogate_lr=1e-3), log=lambda s: None)


def test_a_run_whose_budget_ends_before_its_first_round_still_writes_its_pair(tmp_path):
    from acbo.e2e.train import read_e2e_checkpoint, train
    from acbo.policy.checkpoint import load_policy_checkpoint
    lines = []
    policy, surrogate = train(_tiny(tmp_path, max_minutes=1e-9), log=lines.append)
    assert "time budget spent at round 0" in lines
    assert read_e2e_checkpoint(tmp_path / "run" / "e2e.pt")["step"] == 0
    p, s = load_policy_checkpoint(tmp_path / "run" / "policy.pt")
    assert all(torch.equal(a, b) for a, b in zip(p.parameters(), policy.parameters()))


def test_stage3_config_refuses_bad_values(tmp_path):
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        _tiny(tmp_path, rounds=0)
    with pytest.raises(ValueError, match="classic one"):
        _tiny(tmp_path, base="lin-er-10")
    with pytest.raises(ValueError, match="horizon"):
        _tiny(tmp_path, horizon=(3, 2))
    with pytest.raises(ValueError, match="grid must be 0"):
        _tiny(tmp_path, grid=1)
    with pytest.raises(ValueError, match="only read by a new grid policy"):
        _tiny(tmp_path, surrogate="some.pt")
    with pytest.raises(ValueError, match=r"val_chunks \(5\) must be at most val_campaigns \(4\)"):
        _tiny(tmp_path, val_chunks=5)


def test_the_validation_spans_several_graph_sizes(tmp_path):
    """The level's validation campaigns come in val_chunks batches, each drawing its own d; the
    regret is the campaign-weighted mean over the batches."""
    from acbo.e2e.curriculum import Curriculum
    from acbo.e2e.train import validate, validation
    from acbo.policy.checkpoint import load_pretrained_policy
    fam = Curriculum("train-broad", 1).family(0)
    cfg = _tiny(tmp_path, levels=1, val_campaigns=10, val_chunks=5)
    campaigns, buffers, se = validation(cfg, fam)
    assert [env.B for env, _ in campaigns] == [2, 2, 2, 2, 2] and [b.parents.shape[0] for b in buffers] == [2] * 5
    assert len({env.d for env, _ in campaigns}) > 1 and se >= 0
    policy, surrogate = load_pretrained_policy()
    out = validate(policy, surrogate, (campaigns, buffers, se), 0)
    parts = [validate(policy, surrogate, ([c], [b], se), 0)["val_regret_T"] for c, b in zip(campaigns, buffers)]
    assert 0 <= out["val_regret_T"] and 0 <= out["val_auprc"] <= 1
    assert min(parts) <= out["val_regret_T"] <= max(parts)


def test_a_grid_run_needs_a_surrogate_with_the_world_model_head(tmp_path):
    from acbo.e2e.train import train
    from acbo.surrogate import save_checkpoint
    from acbo.surrogate.model import Surrogate, SurrogateConfig
    save_checkpoint(tmp_path / "no-head.pt", Surrogate(SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1)), 0)
    with pytest.raises(ValueError, match="no world-model head"):
        train(_tiny(tmp_path, grid=4, surrogate=str(tmp_path / "no-head.pt")), log=lambda s: None)


def test_the_stage3_recipe_runs_at_a_tiny_size(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from acbo.policy.checkpoint import load_policy_checkpoint
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["bash", str(root / "benchmarks" / "train_stage3.sh"), str(tmp_path / "s3"), "1", "cpu"], cwd=root,
                   env={**os.environ, "SIZE": "tiny", "PY": sys.executable}, check=True, capture_output=True)
    policy, surrogate = load_policy_checkpoint(tmp_path / "s3" / "policy.pt")
    assert policy.cfg.grid == 4 and surrogate.cfg.queries


def test_the_one_command_cpu_recipe_trains_everything_from_scratch_and_resumes_by_stage(tmp_path):
    """benchmarks/train_all_cpu.sh at a tiny size: a surrogate from a random start, stage 3 on it,
    phase 2 on stage 3's pair; a second call finds every stage done and trains nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from acbo.e2e.train import read_e2e_checkpoint
    from acbo.policy.checkpoint import load_policy_checkpoint
    from acbo.surrogate import load_pretrained
    root, out = Path(__file__).resolve().parents[1], tmp_path / "all"
    run = lambda: subprocess.run(["bash", str(root / "benchmarks" / "train_all_cpu.sh"), str(out), "1"], cwd=root,
                                 env={**os.environ, "SIZE": "tiny", "PY": sys.executable}, check=True,
                                 capture_output=True, text=True).stdout
    run()
    assert read_e2e_checkpoint(out / "stage3" / "e2e.pt")["train_config"]["surrogate"] == str(out / "surrogate" / "model.pt")
    assert read_e2e_checkpoint(out / "stage3-ft" / "e2e.pt")["train_config"]["init_pair"] == str(out / "stage3" / "policy.pt")
    policy, surrogate = load_policy_checkpoint(out / "stage3-ft" / "policy.pt")
    shipped = load_pretrained()
    assert policy.cfg.grid == 4 and surrogate.cfg.queries
    assert not torch.equal(surrogate.embed[0].weight, shipped.embed[0].weight)  # not the packaged weights
    again = run()
    assert again.count("done before, skipped") == 3, again


def test_play_counts_only_the_campaigns_where_intervening_can_help():
    """A campaign whose optimum is (up to Monte Carlo noise) not intervening at all would divide
    noise by noise; play leaves it out of the regret and says how many counted."""
    from acbo.env import Env
    from acbo.policy.checkpoint import load_pretrained_policy
    from acbo.policy.rollout import play
    from acbo.seeding import generator
    policy, surrogate = load_pretrained_policy()
    env = Env.from_family("lin-er-20", 4, 50, 2, generator("test", "play-gap", 0))
    y_star = env.scm.optimum(env.low, env.high).value
    whole = play(policy, surrogate, env, y_star, generator("test", "play", 0))
    assert whole["val_counted"] == 4 and 0 <= whole["val_regret_T"] <= 1
    y_star = y_star.clone()
    y_star[0] = env.y_obs[0] + 1.0           # MC error put y* above not intervening
    y_star[1] = env.y_obs[1] - 1e-9 * env.y_scale[1]
    some = play(policy, surrogate, env, y_star, generator("test", "play", 0))
    assert some["val_counted"] == 2 and 0 <= some["val_regret_T"] <= 1
    y_star[2:] = env.y_obs[2:]
    assert math.isnan(play(policy, surrogate, env, y_star, generator("test", "play", 0))["val_regret_T"])
