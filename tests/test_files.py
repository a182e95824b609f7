"""State files (checkpoints, saved campaigns): checksummed, written atomically; a damaged,
truncated or tampered file is refused with a clear message; training killed while writing a
checkpoint resumes from the last complete one and ends where an uninterrupted run ends."""

import os

import pytest
import torch

from acbo.configs import configure
from acbo.io import ENVELOPE
from acbo.surrogate import load_surrogate
from acbo.surrogate.checkpoint import read_checkpoint
from acbo.surrogate.train import SurrogateTrainConfig, make_validation, train

CFG = dict(families=("lin-er-10",), steps=6, batch_size=4, n_obs=(30, 30), n_int=(0, 2), dim=16, heads=2,
           row_layers=1, var_layers=1, val_family="lin-er-10", val_buffers=16, eval_every=2, lr=1e-3)


def test_checkpoints_carry_a_checksum_and_damage_is_refused(tmp_path):
    train(configure(SurrogateTrainConfig, **{**CFG, "steps": 2}, out=str(tmp_path / "run")), log=lambda s: None)
    path = tmp_path / "run" / "model.pt"
    wrapped = torch.load(path, weights_only=True)
    assert wrapped["envelope"] == ENVELOPE and len(wrapped["sha256"]) == 64
    tampered = dict(wrapped, payload=wrapped["payload"].clone())
    tampered["payload"][len(tampered["payload"]) // 2] ^= 1  # one bit of the weights
    torch.save(tampered, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="damaged: its checksum does not match"):
        read_checkpoint(tmp_path / "tampered.pt")
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable surrogate checkpoint"):
        read_checkpoint(tmp_path / "truncated.pt")
    load_surrogate(path)  # the intact file still loads


def test_training_killed_while_writing_a_checkpoint_resumes_identically(tmp_path, monkeypatch):
    whole = train(configure(SurrogateTrainConfig, **CFG, out=str(tmp_path / "whole")), log=lambda s: None)
    cfg = configure(SurrogateTrainConfig, **CFG, out=str(tmp_path / "killed"))
    real_replace, calls = os.replace, []

    def dies_on_the_second_checkpoint(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the write of step 4's checkpoint: its temporary file is complete, not renamed
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, log=lambda s: None)
    monkeypatch.setattr(os, "replace", real_replace)
    assert read_checkpoint(tmp_path / "killed" / "model.pt")["step"] == 2  # the last complete checkpoint
    assert not list((tmp_path / "killed").glob(".*.tmp"))                  # no half-written leftovers
    resumed = train(cfg, log=lambda s: None)
    val = make_validation(cfg)[0]
    with torch.no_grad():
        assert torch.equal(resumed(val.batch), whole(val.batch))  # the same data stream from step 2 on
