"""Property-based tests of the public API (hypothesis): whatever a user hands over, the answer is
a working optimizer or a clear ValueError / TypeError, never a crash, a silent NaN or a state
changed by a refused call. The number of examples per property is printed by
``pytest --hypothesis-show-statistics`` and recorded in BENCHMARKS.md."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import acbo
from acbo import CausalOptimizer
from acbo.scm import SCM

REFUSED = (ValueError, TypeError)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# cells: ordinary numbers, and the ones that break naive code
ODD = st.sampled_from([0.0, 1e-300, -1e-300, 1e300, -1e300, 1e-12, 1e12, float("nan"), float("inf"), float("-inf")])
CELLS = st.one_of(st.floats(-10, 10, allow_nan=False), st.floats(-10, 10, allow_nan=False), st.integers(-5, 5), ODD)
NAMES = st.one_of(st.sampled_from(["Y", "X1", "X2", "a b", ""]), st.integers(0, 2))


@st.composite
def frames(draw):
    """(DataFrame of 0-8 rows and 1-4 columns, a target name): names possibly duplicated or not
    strings, cells possibly NaN, inf, huge or tiny, columns possibly constant or of object dtype."""
    n, d = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 8, 8])), draw(st.sampled_from([1, 2, 3, 3, 4, 4]))
    usual = st.just(["Y", "X1", "X2", "X3"][:d])
    names = draw(st.one_of(usual, usual, usual, st.lists(NAMES, min_size=d, max_size=d)))
    cols = []
    for _ in range(d):
        kind = draw(st.sampled_from(["numbers", "numbers", "numbers", "ordinary", "ordinary", "constant", "objects",
                                     "bools"]))
        if kind == "ordinary":
            cols.append(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)))
        elif kind == "numbers":
            cols.append(draw(st.lists(CELLS, min_size=n, max_size=n)))
        elif kind == "constant":
            cols.append([draw(CELLS)] * n)
        elif kind == "objects":
            cols.append(draw(st.lists(st.one_of(st.text(max_size=2), st.floats(-1, 1)), min_size=n, max_size=n)))
        else:
            cols.append(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    frame = pd.DataFrame(dict(enumerate(cols)))
    frame.columns = names
    return frame, draw(st.one_of(st.sampled_from(names), NAMES))


@st.composite
def nearly_valid_frames(draw):
    """(DataFrame of 3-8 rows of Y, X1, X2 in ordinary numbers with at most one odd cell, "Y"):
    the inputs a user usually brings, where acceptance must be the rule."""
    n = draw(st.integers(3, 8))
    x = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    if draw(st.booleans()):
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, 2))] = draw(ODD)
    return pd.DataFrame(x, columns=["Y", "X1", "X2"]), "Y"


def _check_working(opt: CausalOptimizer) -> None:
    """An accepted optimizer asks a legal, finite experiment and reports a finite posterior."""
    iv = opt.ask()
    (name, v), = iv.items()
    lo, hi = opt.domains[name]
    assert math.isfinite(v) and lo <= v <= hi, (iv, lo, hi)
    assert torch.isfinite(opt.posterior().marginals).all()


@FAST
@given(data=st.one_of(frames(), nearly_valid_frames()), seed=st.one_of(st.integers(0, 3), st.integers(0, 3), st.just(-1), st.just(True), st.just(1.5)))
def test_any_frame_gives_an_optimizer_or_a_clear_error(data, seed):
    frame, target = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant columns are warned about: allowed
        try:
            opt = CausalOptimizer(frame, target=target, method="random", seed=seed)
        except REFUSED as e:
            assert str(e)  # a message that says something
            event(f"refused: {type(e).__name__}: {' '.join(str(e).split()[:4])}")
            return
    event("accepted")
    _check_working(opt)


@st.composite
def arguments(draw):
    """domains / intervenable for the three variables X1, X2, Y: well formed or not."""
    name = st.sampled_from(["X1", "X2", "Y", "Q"])
    bound = st.one_of(st.floats(-5, 5), st.sampled_from([float("nan"), float("inf"), "a", None]))
    domains = draw(st.one_of(st.none(), st.dictionaries(name, st.one_of(st.tuples(bound, bound), st.just(3.0)),
                                                        max_size=3)))
    intervenable = draw(st.one_of(st.none(), st.just("X1"), st.lists(name, max_size=3)))
    minimize = draw(st.one_of(st.booleans(), st.just("no")))
    return domains, intervenable, minimize


def _data(seed: int, n: int = 12) -> tuple[SCM, pd.DataFrame]:
    A = torch.tensor([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.8, 1.2], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.5], target=2)
    g = torch.Generator().manual_seed(seed)
    return scm, pd.DataFrame(scm.sample(n, g)[0].double().numpy(), columns=scm.names())


@FAST
@given(args=arguments())
def test_any_arguments_give_an_optimizer_or_a_clear_error(args):
    domains, intervenable, minimize = args
    _, frame = _data(0)
    try:
        opt = CausalOptimizer(frame, target="Y", method="random", domains=domains, intervenable=intervenable,
                              minimize=minimize)
    except REFUSED as e:
        assert str(e)
        event(f"refused: {type(e).__name__}")
        return
    event("accepted")
    _check_working(opt)
    if domains:
        for name, dom in domains.items():  # what was accepted is what is used
            assert opt.domains[name] == (float(dom[0]), float(dom[1]))


def _state(opt: CausalOptimizer) -> tuple:
    return opt.buffer.n, len(opt.history), opt.pending, opt.buffer.values.clone()


OPERATIONS = st.lists(st.tuples(st.sampled_from(["ask", "tell", "tell-wrong", "tell-own", "tell-bad", "reload"]),
                                st.floats(-3, 3), st.floats(-3, 3)), min_size=1, max_size=5)
METHOD_OPTIONS = {"oracle": lambda scm: {"scm": scm}, "cbo-parents": lambda scm: {"parents": ["X1", "X2"]}}
SLOW = {"parent_scale", "cbo-parents"}  # seconds per campaign: fewer examples


@pytest.mark.parametrize("method", sorted(acbo.METHODS))
def test_random_call_orders_keep_the_contract(method):
    """Random sequences of ask / tell / refused tells / save-and-load on every method: accepted
    calls do what they say, refused ones raise ValueError and change nothing."""

    @settings(max_examples=3 if method in SLOW else 12, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(seed=st.integers(0, 3), ops=OPERATIONS)
    def run(seed, ops):
        scm, frame = _data(seed)
        opts = METHOD_OPTIONS.get(method, lambda s: {})(scm)
        opt = CausalOptimizer(frame, target="Y", method=method, seed=seed, **opts)
        for op, a, b in ops:
            before = _state(opt)
            if op == "ask":
                _check_working(opt)
                continue
            if op == "reload":
                opt = CausalOptimizer.from_state(opt.state_dict())
                assert _state(opt)[:3] == before[:3]
                continue
            lo, hi = opt.domains["X1"]
            own = {"X1": lo + (hi - lo) * (a + 3) / 6}
            sample = {"X1": own["X1"], "X2": b, "Y": a * b}
            if op == "tell" and opt.pending is not None:
                iv = opt.pending
                opt.tell(iv, {**sample, **iv})
                assert len(opt.history) == before[1] + 1 and opt.pending is None
            elif op == "tell-own":
                opt.tell(own, sample, chosen=True)
                assert len(opt.history) == before[1] + 1 and opt.pending is None
            else:  # a tell nothing asked, or a measurement that contradicts what was set, or NaN
                bad = {"tell": (own, sample, False), "tell-wrong": (own, {**sample, "X1": own["X1"] + 1.0}, True),
                       "tell-bad": (own, {**sample, "Y": float("nan")}, True)}[op]
                with pytest.raises(ValueError):
                    opt.tell(bad[0], bad[1], chosen=bad[2])
                after = _state(opt)
                assert after[:3] == before[:3] and torch.equal(after[3], before[3])

    run()
