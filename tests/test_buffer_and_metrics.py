import dataclasses
import math

import pytest
import torch

from acbo.metrics import average_precision, f1_score, mean_ci, normalised_regret
from acbo.buffer import Buffer, PaddedBatch


def test_buffer_keeps_arrival_order_and_grows():
    buf = Buffer(3, capacity=2)
    buf.add(torch.arange(6.0).reshape(2, 3))
    buf.add(torch.tensor([9.0, 9.0, 9.0]), torch.tensor([False, True, False]))
    buf.add(torch.ones(5, 3))
    assert buf.n == 8 and buf.n_obs == 7 and buf.n_int == 1
    assert buf.values[2].tolist() == [9.0, 9.0, 9.0] and buf.intervened[2].tolist() == [False, True, False]
    assert Buffer.from_state(buf.state_dict()).values.equal(buf.values)


def test_buffer_rejects_bad_rows():
    buf = Buffer(2)
    with pytest.raises(ValueError, match="NaN"):
        buf.add(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="shape"):
        buf.add(torch.ones(2, 3))
    assert buf.n == 0


def test_pad_batch_masks_and_standardises():
    a, b = Buffer(2), Buffer(3)
    a.add(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    b.add(torch.randn(4, 3))
    batch = PaddedBatch.of_buffers([a, b], targets=[1, 0])
    assert batch.values.shape == (2, 4, 3)
    assert batch.row_mask.tolist() == [[True, True, False, False], [True] * 4]
    assert batch.var_mask.tolist() == [[True, True, False], [True] * 3]
    assert batch.values[0, :2, 0].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert (batch.values[0, 2:] == 0).all() and (batch.values[0, :, 2] == 0).all()
    assert batch.target[0].tolist() == [False, True, False]


def test_average_precision_hand_values():
    # ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): AP = (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.9], [0, 1]) == 1.0
    # a tie between a positive and a negative at the top: precision 1/2 at recall 1
    assert average_precision([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(average_precision([0.5], [0]))


def test_f1_regret_and_ci():
    assert f1_score([1, 1, 0], [1, 0, 1]) == pytest.approx(0.5)
    assert f1_score([0, 0], [0, 0]) == 1.0
    assert normalised_regret(-2.0, -4.0, 0.0) == pytest.approx(0.5)
    assert math.isnan(normalised_regret(1.0, 0.0, 0.0))
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))


def test_bench_saves_each_task_and_resumes(tmp_path):
    import json

    from acbo.bench.runner import BenchConfig, run_bench

    cfg = BenchConfig(methods=("random",), families=("lin-er-10",), n_seeds=3, steps=2)
    full = run_bench(cfg, progress=False)
    out = tmp_path / "b"
    run_bench(cfg, out, progress=False)
    log = (out / "tasks.jsonl").read_text().splitlines()
    assert len(log) == 3
    # simulate a crash: one finished task lost, one line cut short
    (out / "tasks.jsonl").write_text(log[0] + "\n" + log[1][:20] + "\n")
    (out / "results.jsonl").unlink()
    again = run_bench(cfg, out, progress=False)
    assert len((out / "tasks.jsonl").read_text().splitlines()) == 4  # two tasks redone
    cols = ["family", "seed", "step", "variable", "value", "e_y", "regret"]
    assert again[cols].equals(full[cols])
    assert len(json.loads((out / "tasks.jsonl").read_text().splitlines()[-1])["rows"]) == 3
    import pytest

    with pytest.raises(ValueError, match="another benchmark configuration"):
        run_bench(BenchConfig(methods=("random",), families=("lin-er-10",), n_seeds=3, steps=3), out, progress=False)
    # more seeds extend the run: only the new seeds are computed, the old ones are read back
    more = run_bench(dataclasses.replace(cfg, n_seeds=4), out, progress=False)
    assert len((out / "tasks.jsonl").read_text().splitlines()) == 5
    assert more.loc[more["seed"] < 3, cols].reset_index(drop=True).equals(full[cols])
    assert sorted(more["seed"].unique()) == [0, 1, 2, 3]
