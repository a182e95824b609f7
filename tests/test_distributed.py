"""Data-parallel training (stage 1 and stage 2): two processes under torchrun (gloo, CPU) train
what one process does with the same shards, to float rounding (the gradients are summed in
another order)."""

import os
import subprocess
import sys

import pytest

from acbo.configs import configure
from acbo.policy.checkpoint import read_policy_checkpoint
from acbo.policy.train import PolicyTrainConfig
from acbo.policy.train import train as train_policy
from acbo.surrogate.checkpoint import read_checkpoint
from acbo.surrogate.train import SurrogateTrainConfig, train

TOLERANCE = 1e-5
"""Largest absolute difference allowed between the weights of the two runs after three steps."""

ARGS = dict(families=("lin-er-10", "nonlin-er-10"), steps=3, batch_size=4, n_obs=(30, 30), n_int=(0, 2), dim=16,
            heads=2, row_layers=1, var_layers=1, pair_bias=True, queries=True, query_stats=True, query_vars=2,
            query_values=4, query_mc=8, val_family="lin-er-10", val_buffers=16, eval_every=3, shards=2, lr=1e-3)


def _argv(cfg: dict, out) -> list[str]:
    flags = []
    for k, v in {**cfg, "out": str(out)}.items():
        v = ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)
        flags += [f"--{k.replace('_', '-')}", v]
    return flags


POLICY_ARGS = dict(families=("train-lin",), iterations=3, batch_size=4, group_size=4, horizon=(3, 3), n_obs=(30, 30),
                   minibatch=16, dim=16, layers=1, heads=2, val_family="lin-er-10", val_campaigns=4, val_horizon=3,
                   val_every=3, reward_mc=16, shards=2, lr=1e-3)


def _torchrun(module: str, args: dict, out) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", module, *_argv(args, out)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def _largest_difference(got: dict, want: dict, what: str) -> float:
    diff = max(float((got[k] - want[k]).abs().max()) for k in want)
    print(f"largest {what} difference, 2 processes vs 1: {diff:.3g}")
    return diff


@pytest.mark.xdist_group("multi-process")
def test_two_processes_train_what_one_does(tmp_path):
    alone = train(configure(SurrogateTrainConfig, **ARGS, out=str(tmp_path / "one")), log=lambda s: None)
    _torchrun("acbo.surrogate.train", ARGS, tmp_path / "two")
    two = read_checkpoint(tmp_path / "two" / "model.pt")
    assert two["step"] == 3
    assert _largest_difference(two["state_dict"], alone.state_dict(), "weight") <= TOLERANCE
    # the log is written once (process 0), with the loss terms averaged over both processes' shards
    lines = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"draw"' in lines[0]


def test_shards_must_divide_the_batch():
    with pytest.raises(ValueError, match="shards must be a positive integer dividing batch_size 4"):
        configure(SurrogateTrainConfig, **{**ARGS, "shards": 3})


@pytest.mark.xdist_group("multi-process")
def test_two_processes_train_the_policy_one_does(tmp_path):
    alone = train_policy(configure(PolicyTrainConfig, **POLICY_ARGS, out=str(tmp_path / "one")), log=lambda s: None)
    _torchrun("acbo.policy.train", POLICY_ARGS, tmp_path / "two")
    two = read_policy_checkpoint(tmp_path / "two" / "policy.pt")
    assert two["step"] == 3
    assert _largest_difference(two["state_dict"], alone.state_dict(), "policy weight") <= TOLERANCE
    # one log line per iteration, from process 0; GRPO steps were taken
    lines = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all('"updates": 0' not in line for line in lines)
    # the shards change the data stream, not its size: 2 shards of 2 campaigns each
    assert max(float((p - q).abs().max()) for p, q in zip(alone.parameters(), _one_shard(tmp_path).parameters())) > 0


def _one_shard(tmp_path):
    return train_policy(configure(PolicyTrainConfig, **{**POLICY_ARGS, "shards": 1}, out=str(tmp_path / "single")), log=lambda s: None)


def test_policy_shards_must_divide_batch_and_minibatch():
    with pytest.raises(ValueError, match="shards must be a positive integer dividing batch_size 4 and minibatch 16"):
        configure(PolicyTrainConfig, **{**POLICY_ARGS, "shards": 3})


@pytest.mark.xdist_group("multi-process")
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_rollout_workers_train_what_one_process_does(tmp_path, backend):
    if backend == "ray":
        pytest.importorskip("ray")
    args = {**POLICY_ARGS, "iterations": 2, "val_every": 2}
    alone = train_policy(configure(PolicyTrainConfig, **args, out=str(tmp_path / "one")), log=lambda s: None)
    pooled = train_policy(configure(PolicyTrainConfig, **args, rollout_workers=2, backend=backend, out=str(tmp_path / "pool")),
                          log=lambda s: None)
    diff = max(float((p - q).abs().max()) for p, q in zip(alone.parameters(), pooled.parameters()))
    print(f"largest policy weight difference, rollouts in 2 {backend} workers vs here: {diff:.3g}")
    assert diff <= TOLERANCE


def test_rollout_workers_are_for_the_cpu():
    with pytest.raises(ValueError, match="rollout workers run on the CPU"):
        configure(PolicyTrainConfig, **{**POLICY_ARGS, "rollout_workers": 2, "device": "cuda"})
    with pytest.raises(ValueError, match="backend must be one of"):
        configure(PolicyTrainConfig, **{**POLICY_ARGS, "backend": "dask"})
