"""The run skeleton every trainer shares (acbo.training.run), on a toy stage: resume, the budget
stop, the end-of-run rule, process 0's duties, the composed configs on the command line; and each
stage's trainer under the end-of-run rule (a run with no step to take still writes its checkpoint)."""

import json
from pathlib import Path

import pytest
import torch

from acbo.configs import config_from_argv, configure, flat_dict
from acbo.io import atomic_save, load_state
from acbo.training import Loop, OptimConfig, RunConfig, cosine_lr, run_loop

KIND = "toy checkpoint"
DEMOS = Path(__file__).parent / "data" / "demos_sample"


def toy_stage(cfg: RunConfig, calls: dict) -> tuple[torch.nn.Linear, Loop]:
    """A linear model fitted to y = 2x by SGD steps keyed by the step (a resumed run draws the same
    data); every call to the stage's functions is counted in ``calls``."""
    torch.manual_seed(cfg.seed)
    model = torch.nn.Linear(1, 1)
    opt = OptimConfig(lr=0.1, weight_decay=0.0).adamw(model.parameters())

    def step(i: int) -> dict:
        calls["step"] = calls.get("step", 0) + 1
        x = torch.randn(8, 1, generator=torch.Generator().manual_seed(i))
        loss = ((model(x) - 2 * x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss), "lr": opt.param_groups[0]["lr"]}

    def validate() -> dict:
        calls["validate"] = calls.get("validate", 0) + 1
        return {"val_weight": float(model.weight.detach())}

    def save(path, done: int, history: list, elapsed: float) -> None:
        calls["save"] = calls.get("save", []) + [done]
        atomic_save({"kind": KIND, "format_version": 1, "step": done, "history": history, "elapsed_s": elapsed,
                     "train_config": flat_dict(cfg), "state_dict": model.state_dict(), "opt": opt.state_dict()}, path)

    def restore(state: dict) -> float:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["opt"])
        return state["elapsed_s"]

    def read(path):
        return load_state(path, KIND, 1, "toy checkpoint")

    return model, Loop(step=step, validate=validate, save=save, read=read, restore=restore, checkpoint="toy.pt",
                       optimizers=[(opt, 0.1)], models=[model], first_validation=True)


def _run(tmp_path, calls=None, log=None, **kw) -> tuple[torch.nn.Linear, dict, list]:
    cfg = RunConfig(**{"steps": 6, "eval_every": 3, "out": str(tmp_path / "run"), **kw})
    calls = {} if calls is None else calls
    lines = []
    model, loop = toy_stage(cfg, calls)
    run_loop(cfg, cfg, loop, log or lines.append)
    return model, calls, lines


def _state(tmp_path) -> dict:
    return load_state(tmp_path / "run" / "toy.pt", KIND, 1, "toy checkpoint")


def test_a_run_validates_logs_and_saves_on_its_cadence(tmp_path):
    model, calls, lines = _run(tmp_path)
    assert calls == {"validate": 3, "step": 6, "save": [3, 6]}              # the start, steps 3 and 6
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and "val_weight" in log[2] and "val_weight" not in log[1]
    assert [r["lr"] for r in log] == pytest.approx([cosine_lr(0.1, i / 6) for i in range(6)])   # the schedule
    history = _state(tmp_path)["history"]
    assert [h["step"] for h in history] == [0, 3, 6]
    assert abs(history[-1]["val_weight"] - 2) < abs(history[0]["val_weight"] - 2) - 0.3   # it learns
    assert lines[0].startswith("step=0 val_weight=")


def test_an_interrupted_run_resumes_where_its_checkpoint_stands(tmp_path):
    whole, _, _ = _run(tmp_path / "a")

    def interrupt_after_step_4(line: str) -> None:
        if line.startswith("step=4 "):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", log=interrupt_after_step_4)
    assert _state(tmp_path / "b")["step"] == 3                               # the last checkpoint
    resumed, calls, lines = _run(tmp_path / "b")
    assert lines[0] == "resumed from step 3" and calls["step"] == 3          # steps 4, 5, 6 only
    assert torch.equal(resumed.weight, whole.weight)                         # the same run
    again, calls, lines = _run(tmp_path / "b")                               # a finished run: nothing to do
    assert calls == {} and torch.equal(again.weight, whole.weight)
    with pytest.raises(ValueError, match=r"another configuration \(settings \['seed'\]\)"):
        _run(tmp_path / "b", seed=1)


def test_a_spent_budget_stops_the_run_and_the_checkpoint_holds_the_last_step(tmp_path):
    _, calls, lines = _run(tmp_path, max_minutes=1e-9)                      # spent before the first step
    assert "time budget spent at step 0" in lines and "step" not in calls
    assert calls["save"] == [0] and calls["validate"] == 1                   # the start, validated once
    assert _state(tmp_path)["step"] == 0


def test_the_end_of_run_rule_saves_steps_after_the_last_checkpoint(tmp_path):
    _, calls, _ = _run(tmp_path, steps=5, eval_every=4, max_minutes=0.0)
    assert calls["save"] == [4, 5]                                           # step 5 is the last one: validated
    assert [h["step"] for h in _state(tmp_path)["history"]] == [0, 4, 5]
    _, calls, _ = _run(tmp_path / "none", steps=0)                           # no step at all
    assert calls["save"] == [0] and _state(tmp_path / "none")["step"] == 0
    _, calls, _ = _run(tmp_path / "none", steps=0)                           # resumed at step 0: nothing again
    assert calls == {}


def test_only_process_0_validates_logs_and_writes(tmp_path, monkeypatch):
    import acbo.training as training
    monkeypatch.setattr(training, "process_group", lambda device: (1, 2))
    monkeypatch.setattr(training, "from_process_0", lambda stop, progress, world: (False, 0.5))
    broadcast = []
    monkeypatch.setattr(training, "broadcast_params", broadcast.append)
    model, calls, lines = _run(tmp_path, log=lambda line: pytest.fail(f"process 1 logged {line!r}"))
    assert calls == {"step": 6} and len(broadcast) == 1                      # it steps, and takes process 0's start
    assert not (tmp_path / "run" / "toy.pt").exists() and not (tmp_path / "run" / "log.jsonl").exists()


def test_run_config_checks_its_values():
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        RunConfig(steps=-1)
    with pytest.raises(ValueError, match="positive integers.*'eval_every': 0"):
        RunConfig(eval_every=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        OptimConfig(lr=0.0)


# ----------------------------------------------------------------------------- composed configs
def test_composed_configs_on_the_command_line_dotted_short_and_old_names():
    from acbo.e2e.train import E2EConfig
    from acbo.policy.train import PolicyTrainConfig
    cfg = config_from_argv(PolicyTrainConfig, ["--run.steps", "7", "--policy.dim", "32", "--group-size", "3",
                                               "--families", "train-lin,train-nonlin", "--eps-high", "0.3"], "")
    assert (cfg.run.steps, cfg.policy.dim, cfg.design.size, cfg.update.eps_high) == (7, 32, 3, 0.3)
    assert cfg.data.families == ("train-lin", "train-nonlin") and cfg.design.horizon == (10, 20)  # defaults kept
    e2e = config_from_argv(E2EConfig, ["--rounds", "3", "--eps-low", "0.1", "--val.mc", "64"], "")
    assert (e2e.run.steps, e2e.update.eps_low, e2e.val.mc) == (3, 0.1, 64)   # stage 3 sets its clip range
    with pytest.raises(SystemExit):
        config_from_argv(E2EConfig, ["--no-such-setting", "1"], "")
    with pytest.raises(ValueError, match="no setting 'dims'"):
        configure(PolicyTrainConfig, dims=3)


def test_every_training_setting_is_declared_once_with_a_docstring():
    from acbo.configs import settings
    from acbo.e2e.train import E2EConfig
    from acbo.policy.train import PolicyTrainConfig
    from acbo.surrogate.train import SurrogateTrainConfig
    for cls in (SurrogateTrainConfig, PolicyTrainConfig, E2EConfig):
        undocumented = [p for p, (_, doc) in settings(cls()).items() if not doc]
        assert not undocumented, f"{cls.__name__}: settings without a docstring: {undocumented}"
        for old, paths in cls.LEGACY.items():                                # every old flat name has a home
            for path in (paths,) if isinstance(paths, str) else paths:
                assert path in settings(cls()), (cls.__name__, old, path)
    from acbo.e2e.train import E2EConfig
    old = configure(E2EConfig, reward_mc=16)                                 # one old name, two settings today
    assert old.rewards.mc == old.training_queries.mc == 16


# ----------------------------------------------------------------------------- each stage's end-of-run rule
def test_stage1_run_whose_budget_is_spent_still_writes_its_checkpoint(tmp_path):
    from acbo.surrogate.checkpoint import read_checkpoint
    from acbo.surrogate.train import SurrogateTrainConfig, train
    cfg = configure(SurrogateTrainConfig, families=("lin-er-10",), steps=5, batch_size=4, n_obs=(20, 20),
                    n_int=(0, 2), dim=16, heads=2, row_layers=1, var_layers=1, family="lin-er-10", buffers=16,
                    max_minutes=1e-9, out=str(tmp_path / "s"))
    lines = []
    train(cfg, log=lines.append)
    assert "time budget spent at step 0" in lines
    state = read_checkpoint(tmp_path / "s" / "model.pt")
    assert state["step"] == 0 and "val_auprc" in state["history"][-1]


@pytest.mark.parametrize("how", ["bc-only", "budget"])
def test_stage2_run_with_no_grpo_iteration_still_writes_policy_pt(tmp_path, how):
    from acbo.policy.checkpoint import load_policy_checkpoint, read_policy_checkpoint
    from acbo.policy.train import PolicyTrainConfig, train
    extra = dict(iterations=0, bc_demos=str(DEMOS), bc_steps=2) if how == "bc-only" else dict(max_minutes=1e-9)
    cfg = configure(PolicyTrainConfig, families=("train-lin",), batch_size=4, group_size=2, horizon=(2, 2),
                    n_obs=(20, 20), minibatch=16, val_family="lin-er-10", val_campaigns=4, val_horizon=2,
                    reward_mc=16, out=str(tmp_path / "p"), **extra)
    policy = train(cfg, log=lambda s: None)
    state = read_policy_checkpoint(tmp_path / "p" / "policy.pt")
    assert state["step"] == 0 and state["history"][-1]["iteration"] == 0
    saved, _ = load_policy_checkpoint(tmp_path / "p" / "policy.pt")
    assert all(torch.equal(a, b) for a, b in zip(saved.parameters(), policy.parameters()))


def test_every_trainer_setting_added_since_the_first_runs_says_what_old_runs_meant():
    """A setting added to a trainer's config must be in its ADDED_LATER (the value a run written
    before it means), or a run written before it no longer resumes ("written by another
    configuration"): today's settings lie within tests/data/trainer_settings.json's and ADDED_LATER
    (and, stage 2, the placement settings)."""
    import json
    from pathlib import Path

    from acbo.configs import flat_dict
    from acbo.e2e.train import ADDED_LATER as ADDED_3, E2EConfig
    from acbo.policy.train import ADDED_LATER as ADDED_2, PLACEMENT, PolicyTrainConfig

    first = json.loads((Path(__file__).parent / "data" / "trainer_settings.json").read_text())
    for name, cfg, known in (("stage2", PolicyTrainConfig(), {*ADDED_2, *PLACEMENT}), ("stage3", E2EConfig(), set(ADDED_3))):
        new = sorted(set(flat_dict(cfg)) - set(first[name]) - known)
        assert not new, f"{name}: settings {new} are in neither the first runs' settings nor ADDED_LATER"
