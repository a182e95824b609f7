import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from acbo.scm import SCM, get_family
from acbo.seeding import generator

# one intra-op thread per test process: the suite runs in parallel processes (pytest -n), and
# oversubscribed threads make small tensor ops orders of magnitude slower
torch.set_num_threads(1)


@pytest.fixture
def chain3() -> SCM:
    """X0 -> X1 -> Y(=2), X0 -> Y; hand-set weights, means and noise."""
    A = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.8, -0.5], [0.0, 0.0, 1.5], [0.0, 0.0, 0.0]])
    return SCM.linear_gaussian(A, W, noise_std=[1.0, 0.5, 0.3], target=2, mean=[1.0, -2.0, 3.0])


def small_problem(family: str = "lin-er-10", seed: int = 0, n_obs: int = 100):
    """An SCM of the family (B = 1) and an observational frame with its names."""
    g = generator("test", "unit", family, seed)
    scm = get_family(family).sample(g)
    x = scm.sample(n_obs, g)[0].double()
    return scm, pd.DataFrame(x.numpy(), columns=scm.names())


def fresh_surrogate(cfg, pair_bias: bool = False):
    """A surrogate with seed-0 weights; with the pair path, its zero-initialised output layers
    are randomised (as after training) so that the path actually changes the output."""
    import dataclasses

    from acbo.surrogate.model import Surrogate

    torch.manual_seed(0)
    m = Surrogate(dataclasses.replace(cfg, pair_bias=pair_bias))
    if pair_bias:
        for layer in (m.pair_attn[-1], m.pair_head[-1]):
            torch.nn.init.normal_(layer.weight, std=0.5)
    return m


def simulate_step(scm: SCM, iv, seed: int) -> dict:
    """One measurement of every variable under do(iv), as the user would report it."""
    return scm.run_experiment(iv, generator("outcome", seed))


_runner = CliRunner()


def cli(*args):
    """The ``acbo`` command line, run in this process (every argument as a string)."""
    from acbo.cli import app

    return _runner.invoke(app, [str(a) for a in args])


def cli_ok(res):
    """The output of a command that must succeed."""
    assert res.exit_code == 0, res.output
    return res.output


def cli_fails(res, message):
    """The output of a command that must be refused cleanly: exit 2, no traceback, ``message`` in it."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and message in res.output.replace("\n", " "), res.output
    return res.output
