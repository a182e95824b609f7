"""Data-parallel stage-1 training: two processes under torchrun (gloo, CPU) train what one process
does with the same shards, to float rounding (the gradients are summed in another order)."""

import os
import subprocess
import sys

import pytest

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


def test_two_processes_train_what_one_does(tmp_path):
    alone = train(SurrogateTrainConfig(**ARGS, out=str(tmp_path / "one")), log=lambda s: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "acbo.surrogate.train", *_argv(ARGS, tmp_path / "two")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    two = read_checkpoint(tmp_path / "two" / "model.pt")
    assert two["step"] == 3
    ref = alone.state_dict()
    diff = max(float((two["state_dict"][k] - ref[k]).abs().max()) for k in ref)
    print(f"largest weight difference, 2 processes vs 1: {diff:.3g}")
    assert diff <= TOLERANCE
    # the log is written once (process 0), with the loss terms averaged over both processes' shards
    lines = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and '"draw"' in lines[0]


def test_shards_must_divide_the_batch():
    with pytest.raises(ValueError, match="shards must be a positive integer dividing batch_size 4"):
        SurrogateTrainConfig(**{**ARGS, "shards": 3})
