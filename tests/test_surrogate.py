import dataclasses

import pytest
import torch

from acbo.configs import configure
from acbo.buffer import Buffer, PaddedBatch
from acbo.seeding import generator
from acbo.surrogate import Surrogate, SurrogateConfig, load_pretrained, load_surrogate, read_checkpoint, save_checkpoint
from acbo.surrogate.data import sample_buffers
from acbo.surrogate.train import SurrogateLoss, SurrogateTrainConfig, losses, make_validation, train, validation_auprc
from conftest import fresh_surrogate

SMALL = SurrogateConfig(dim=32, heads=4, row_layers=1, var_layers=1)


def make_model(cfg: SurrogateConfig = SMALL, pair_bias: bool = False) -> Surrogate:
    return fresh_surrogate(cfg, pair_bias)


@pytest.fixture(params=[False, True], ids=["no-pair-bias", "pair-bias"])
def model(request):
    return make_model(pair_bias=request.param).eval()


@pytest.fixture
def data():
    return sample_buffers("lin-er-10", 3, 40, 6, generator("sur-test"))


def test_permuting_variables_permutes_the_output(model, data):
    b = data.batch
    perm = torch.randperm(10, generator=generator("perm"))
    permuted = PaddedBatch(b.values[:, :, perm], b.intervened[:, :, perm], b.row_mask, b.var_mask[:, perm], b.target[:, perm])
    assert torch.allclose(model(permuted), model(b)[:, perm], atol=1e-5)


def test_permuting_samples_leaves_the_output_unchanged(model, data):
    b = data.batch
    perm = torch.randperm(b.values.shape[1], generator=generator("perm-s"))
    permuted = PaddedBatch(b.values[:, perm], b.intervened[:, perm], b.row_mask[:, perm], b.var_mask, b.target)
    assert torch.allclose(model(permuted), model(b), atol=1e-5)


def test_padding_does_not_change_the_output(model, data):
    raw, inter = data.raw, data.batch.intervened
    targets = data.scm.target.tolist()
    small = Buffer(10)
    small.add(raw[0, :20].double(), inter[0, :20])  # fewer rows, padded up to the others
    big = [small] + [Buffer(10) for _ in range(2)]
    for i in (1, 2):
        big[i].add(raw[i].double(), inter[i])
    alone = model(PaddedBatch.of_buffers([small], [targets[0]]))
    together = model(PaddedBatch.of_buffers(big, targets))
    assert torch.allclose(alone[0], together[0], atol=1e-5)
    # fewer variables: a d = 10 buffer padded to D = 12 by a wider one
    wide = Buffer(12)
    wide.add(torch.randn(30, 12, dtype=torch.float64))
    mixed = model(PaddedBatch.of_buffers([small, wide], [targets[0], 3]))
    assert torch.allclose(mixed[0, :10], alone[0], atol=1e-5) and torch.isinf(mixed[0, 10:]).all()


@pytest.mark.parametrize("pair_bias", [False, True])
def test_row_chunking_gives_the_same_output(data, pair_bias):
    a = make_model(pair_bias=pair_bias).eval()
    b = Surrogate(dataclasses.replace(SMALL, row_chunk=7, pair_bias=pair_bias)).eval()
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a(data.batch), b(data.batch), atol=1e-5)


def test_target_and_padding_are_never_parents(model, data):
    logits = model(data.batch)
    assert torch.isinf(logits[data.batch.target]).all()


@pytest.mark.parametrize("pair_bias", [False, True])
def test_one_update_changes_every_parameter(data, pair_bias):
    m = make_model(pair_bias=pair_bias)
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.0)  # no decay: only gradients move them
    losses(m, data, SurrogateLoss(w_truth=1.0))["loss"].backward()
    no_grad = [k for k, v in m.named_parameters() if v.grad is None or not v.grad.abs().sum() > 0]
    assert not no_grad
    opt.step()
    unchanged = [k for k, v in m.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged


def test_pair_features_by_hand():
    from acbo.surrogate.model import RIDGE, pair_features

    # 3 standardised variables with correlation matrix R (n = 1 row of "cross" = R): the partial
    # correlation of (0, 1) given 2 is (r01 - r02 r12) / sqrt((1 - r02^2)(1 - r12^2))
    R = torch.tensor([[1.0, 0.5, 0.3], [0.5, 1.0, 0.4], [0.3, 0.4, 1.0]])
    mask = torch.tensor([[True, True, True, False]])                                          # a padding variable
    cross = torch.zeros(1, 4, 4)
    cross[0, :3, :3] = 10 * R
    f = pair_features(cross, torch.tensor([10.0]), mask)[0]                                   # 4 x 4 x 5
    Rr = R.double() + RIDGE * torch.eye(3, dtype=torch.float64)                               # the ridge shrinks it a little
    r01, r02, r12 = Rr[0, 1] / Rr[0, 0], Rr[0, 2] / Rr[0, 0], Rr[1, 2] / Rr[0, 0]
    partial = (r01 - r02 * r12) / torch.sqrt((1 - r02**2) * (1 - r12**2))
    assert f[0, 1, 0].item() == pytest.approx(0.5) and f[1, 0, 0].item() == pytest.approx(0.5)
    assert f[0, 1, 1].item() == pytest.approx(float(partial), abs=1e-5)
    assert f[0, 0, 4].item() == 1.0 and f[0, 0, :4].abs().sum().item() == 0.0                 # self pairs
    assert f[3].abs().sum().item() == 0.0 and f[:, 3].abs().sum().item() == 0.0               # padding


def test_a_fresh_pair_path_leaves_the_model_unchanged(data):
    torch.manual_seed(0)
    plain = Surrogate(SMALL).eval()
    torch.manual_seed(0)
    paired = Surrogate(dataclasses.replace(SMALL, pair_bias=True)).eval()
    paired.load_state_dict(plain.state_dict(), strict=False)
    assert torch.allclose(paired(data.batch), plain(data.batch), atol=1e-5)


def test_tiny_training_run_improves_validation_auprc(tmp_path):
    cfg = configure(SurrogateTrainConfig, families=("lin-er-10",), steps=200, batch_size=16, n_obs=(100, 100), n_int=(0, 5),
                    lr=1e-3, dim=64, row_layers=1, var_layers=1, family="lin-er-10", buffers=32,
                    eval_every=100, out=str(tmp_path / "run"))
    torch.manual_seed(cfg.run.seed)
    untrained = Surrogate(cfg.model)
    before = validation_auprc(untrained, make_validation(cfg))
    trained = train(cfg, log=lambda s: None)
    after = validation_auprc(trained, make_validation(cfg))
    assert after > before + 0.15  # measured: 0.49 -> 0.79
    # the checkpoint rebuilds the model exactly, and resuming a finished run changes nothing
    again = load_surrogate(tmp_path / "run" / "model.pt")
    resumed = train(cfg, log=lambda s: None)
    val = make_validation(cfg)[0]
    with torch.no_grad():
        assert torch.equal(again(val.batch), trained(val.batch))
        assert torch.equal(resumed(val.batch), trained(val.batch))
    assert read_checkpoint(tmp_path / "run" / "model.pt")["step"] == 200
    with pytest.raises(ValueError, match="another configuration"):
        train(configure(cfg, lr=5e-4), log=lambda s: None)


def test_fine_tuning_starts_from_the_init_checkpoint(tmp_path):
    cfg = configure(SurrogateTrainConfig, families=("lin-er-10",), steps=1, batch_size=4, n_obs=(30, 30), n_int=(0, 2),
                    lr=1e-9, family="lin-er-10", buffers=16, eval_every=1, init="pretrained",
                    pair_bias=True, queries=True, query_stats=True, out=str(tmp_path / "ft"))
    tuned = train(cfg, log=lambda s: None)
    shipped = load_pretrained()
    val = make_validation(cfg)[0]
    with torch.no_grad():  # one step at a negligible learning rate: (almost) the shipped model
        assert torch.allclose(tuned(val.batch), shipped(val.batch), atol=1e-4)
    with pytest.raises(ValueError, match="another architecture.*'dim': \\(64, 32\\)"):
        train(configure(cfg, dim=32, out=str(tmp_path / "ft2")), log=lambda s: None)
    with pytest.raises(ValueError, match="another architecture.*'pair_bias': \\(True, False\\)"):
        train(configure(cfg, pair_bias=False, out=str(tmp_path / "ft3")), log=lambda s: None)
    with pytest.raises(ValueError, match="world-model head: pass --queries true"):
        train(configure(cfg, queries=False, query_stats=False, out=str(tmp_path / "ft5")), log=lambda s: None)
    with pytest.raises(ValueError, match="pass --query-stats true"):
        train(configure(cfg, query_stats=False, out=str(tmp_path / "ft6")), log=lambda s: None)
    # a checkpoint without the pair path gets one, zero-initialised: the start is that checkpoint
    plain = make_model()
    save_checkpoint(tmp_path / "plain.pt", plain, 0)
    small = configure(cfg, init=str(tmp_path / "plain.pt"), dim=32, row_layers=1, var_layers=1,
                                steps=1, lr=1e-12, out=str(tmp_path / "ft4"))
    tuned_plain = train(small, log=lambda s: None)
    with torch.no_grad():
        assert torch.allclose(tuned_plain(val.batch), plain.eval()(val.batch), atol=1e-4)
    with pytest.raises(ValueError, match="positive integers.*'steps': 0"):
        configure(small, steps=0)
    with pytest.raises(ValueError, match="n_obs must be a range"):
        configure(small, n_obs=(300, 50))


def test_checkpoint_round_trip_and_bad_files(model, data, tmp_path):
    save_checkpoint(tmp_path / "m.pt", model, step=3)
    again = load_surrogate(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(again(data.batch), model(data.batch))
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(ValueError, match="not a readable surrogate checkpoint"):
        load_surrogate(tmp_path / "junk.pt")
    state = read_checkpoint(tmp_path / "m.pt")
    state["format_version"] = 0
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format version 0"):
        load_surrogate(tmp_path / "old.pt")
    state["format_version"] = 1
    state["model_config"] = dict(state["model_config"], dim=48)
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="do not fit the model config"):
        load_surrogate(tmp_path / "mismatch.pt")
    torch.save({"kind": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an acbo surrogate checkpoint"):
        load_surrogate(tmp_path / "other.pt")


def test_shipped_checkpoint_loads_without_network_and_gives_a_posterior():
    from acbo.surrogate import load_pretrained, surrogate_posterior

    model = load_pretrained()
    data = sample_buffers("lin-er-10", 1, 100, 3, generator("shipped"))
    buf = Buffer(10)
    buf.add(data.raw[0].double(), data.batch.intervened[0])
    post = surrogate_posterior(model, buf, int(data.scm.target[0]), [f"X{j}" for j in range(10)])
    assert post.marginals[post.target] == 0 and ((post.marginals >= 0) & (post.marginals <= 1)).all()
    assert read_checkpoint(__import__("acbo.checkpoints", fromlist=["x"]).__path__[0] + "/surrogate.pt")["optimizer"] is None


def test_demonstration_buffers_and_training_on_them(tmp_path):
    from pathlib import Path

    from acbo.demonstrations import iter_demos
    from acbo.surrogate.data import load_demo_buffers
    from acbo.surrogate.train import SurrogateTrainConfig, train

    folder = Path(__file__).parent / "data" / "demos_sample"
    demos = list(iter_demos(folder))
    bufs = load_demo_buffers(str(folder))
    assert len(bufs) == sum(len(d.arrays["n_rows"]) for d in demos)
    first = demos[0]
    n0 = int(first.arrays["n_rows"][0])
    assert int(bufs.batch.row_mask[0].sum()) == n0 and int(bufs.batch.target[0].nonzero()) == first.meta["target"]
    assert torch.allclose(bufs.expert[0, : first.meta["d"]], torch.from_numpy(first.arrays["post_marginals"][0]).float())
    drawn = bufs.sample(4, torch.Generator().manual_seed(0))
    batch, parents = drawn.batch, drawn.parents
    assert batch.values.shape[0] == 4 and (parents & ~batch.var_mask).sum() == 0 and drawn.expert.shape == parents.shape
    obs = (batch.row_mask & ~batch.intervened.any(2))[..., None] & batch.var_mask[:, None]
    means = (batch.values * obs).sum(1) / obs.sum(1).clamp_min(1)
    assert means.abs().max() < 1e-4  # standardised by the observational rows
    cfg = configure(SurrogateTrainConfig, families=("train-lin",), steps=4, batch_size=4, n_obs=(20, 20), n_int=(0, 2),
                    buffers=16, eval_every=4, folder=str(folder), every=2, w_expert=1.0,
                    dim=16, heads=2, row_layers=1, var_layers=1, out=str(tmp_path / "s"))
    logs = []
    train(cfg, log=logs.append)
    assert any("expert=" in line for line in logs)
    with pytest.raises(ValueError, match="go together"):
        train(configure(SurrogateTrainConfig, steps=1, folder=str(folder), out=str(tmp_path / "t")), log=lambda s: None)
