"""Bad input gets a clear error naming the problem, and loses no data."""

import numpy as np
import pandas as pd
import pytest
import torch

from acbo import CausalOptimizer
from acbo.scm import SCM, Family, get_family, random_scms, topological_order
from acbo.seeding import generator

OBS = {"A": np.array([0.0, 1.0, 2.0]), "B": np.array([1.0, 0.0, 1.0]), "Y": np.array([0.5, 0.1, 0.9])}


def make(**kw):
    args = dict(observational=OBS, target="Y", method="random")
    args.update(kw)
    return CausalOptimizer(**args)


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN or inf"), (np.inf, "NaN or inf")])
def test_non_finite_data(bad, match):
    obs = dict(OBS, A=np.array([0.0, bad, 2.0]))
    with pytest.raises(ValueError, match=match):
        make(observational=obs)


def test_duplicate_names():
    df = pd.DataFrame(np.zeros((3, 3)), columns=["A", "A", "Y"])
    with pytest.raises(ValueError, match="duplicate variable names.*'A'"):
        make(observational=df)


def test_unknown_and_missing_target():
    with pytest.raises(ValueError, match="target 'Z' is not a variable"):
        make(target="Z")


def test_empty_or_tiny_observational_data():
    with pytest.raises(ValueError, match="at least 2 rows"):
        make(observational={"A": [], "Y": []})
    with pytest.raises(ValueError, match="at least 2 variables"):
        make(observational={"Y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="differ in length"):
        make(observational={"A": [1.0, 2.0], "Y": [1.0]})
    with pytest.raises(ValueError, match="not numeric"):
        make(observational={"A": ["x", "y"], "Y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="DataFrame or a mapping"):
        make(observational=np.zeros((3, 2)))


def test_unknown_method_and_options():
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        make(method="nope")
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['scm'\]; its options: none"):
        make(method="random", scm=None)
    with pytest.raises(ValueError, match=r"'parent_scale' takes no option\(s\) \['dr'\]; its options: \['dr_variant'"):
        make(method="parent_scale", dr="ridge")  # a ValueError for every method, listing what it takes
    with pytest.raises(ValueError, match="needs the true model"):
        make(method="oracle")


def test_bad_domains_and_intervenable():
    with pytest.raises(ValueError, match="unknown variable 'Q'"):
        make(domains={"Q": (0, 1)})
    with pytest.raises(ValueError, match="low < high"):
        make(domains={"A": (1, 0)})
    with pytest.raises(ValueError, match="target 'Y' cannot be intervenable"):
        make(intervenable=["A", "Y"])
    with pytest.raises(ValueError, match="unknown variables"):
        make(intervenable=["Q"])
    with pytest.raises(ValueError, match="empty"):
        make(intervenable=[])
    with pytest.raises(ValueError, match="seed"):
        make(seed=-1)


def _sample(**kw):
    s = {"A": 1.0, "B": 0.5, "Y": 0.2}
    s.update(kw)
    return s


def test_bad_tells_lose_no_data():
    opt = make(intervenable=["A"])
    opt.tell({"A": 1.0}, _sample(), chosen=True)
    cases = [
        ({"A": 7.0}, _sample(A=7.0), "outside its domain"),
        ({"Y": 0.3}, _sample(Y=0.3), "cannot intervene on the target"),
        ({"B": 0.5}, _sample(), "not intervenable"),
        ({"Q": 0.5}, _sample(), "unknown variable 'Q'"),
        ({}, _sample(), "non-empty mapping"),
        ({"A": 1.0}, {"A": 1.0, "Y": 0.2}, r"missing \['B'\]"),
        ({"A": 1.0}, _sample(Z=3.0), r"unknown \['Z'\]"),
        ({"A": 1.0}, _sample(Y=float("nan")), "must be finite"),
        ({"A": 1.0}, _sample(A=1.5), "the intervention set A = 1.0"),
        ({"A": 1.0}, pd.DataFrame([_sample(), _sample()]), "one row"),
        ({"A": float("inf")}, _sample(), "outside its domain"),
    ]
    for iv, sample, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.tell(iv, sample, chosen=True)
    assert len(opt.history) == 1 and opt.buffer.n == 4  # nothing half-written


def test_tell_answers_the_pending_ask():
    """The contract: a tell answers the last ask (asking again returns it), once; an experiment
    the user chose is told with chosen=True; a refused tell changes nothing."""
    opt = make(intervenable=["A"])
    with pytest.raises(ValueError, match="no experiment is pending.*chosen=True"):
        opt.tell({"A": 1.0}, _sample())
    iv = opt.ask()
    assert opt.ask() == iv and opt.pending == iv
    other = {"A": iv["A"] / 2 + 0.1}
    with pytest.raises(ValueError, match="is not the pending experiment"):
        opt.tell(other, _sample(A=other["A"]))
    assert opt.pending == iv and len(opt.history) == 0
    opt.tell(iv, _sample(A=iv["A"]))
    assert opt.pending is None and len(opt.history) == 1
    with pytest.raises(ValueError, match="no experiment is pending.*the last told"):
        opt.tell(iv, _sample(A=iv["A"]))  # the same tell twice
    assert len(opt.history) == 1
    opt.ask()
    opt.tell(other, _sample(A=other["A"]), chosen=True)  # the user's own experiment replaces it
    assert opt.pending is None and len(opt.history) == 2 and opt.ask() is not None
    again = CausalOptimizer.from_state(opt.state_dict())  # the pending ask survives a save
    assert again.pending == opt.pending


def test_malformed_and_cyclic_graphs():
    with pytest.raises(ValueError, match="not acyclic"):
        topological_order(torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="square"):
        topological_order(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="only 0/1"):
        topological_order(torch.tensor([[0, 2], [0, 0]]))
    with pytest.raises(ValueError, match="self-loops"):
        topological_order(torch.eye(3))
    with pytest.raises(ValueError, match="zero where adjacency has no edge"):
        SCM.linear_gaussian(torch.zeros(2, 2), torch.ones(2, 2), [1.0, 1.0], target=1)


def test_d_and_n_out_of_range():
    with pytest.raises(ValueError, match="d must be an integer in"):
        random_scms(generator("x"), 1, 1)
    with pytest.raises(ValueError, match="d must be an integer in"):
        Family("bad", d_range=(5, 5000))
    with pytest.raises(ValueError, match="low > high"):
        Family("bad", d_range=(10, 5))
    with pytest.raises(ValueError, match="n_obs"):
        Family("bad", n_obs=1)
    scm = get_family("lin-er-10").sample(generator("n"))
    with pytest.raises(ValueError, match="positive integer"):
        scm.sample(0, generator("n"))
    with pytest.raises(ValueError, match="unknown graph prior"):
        Family("bad", graph=("tree",))
    with pytest.raises(ValueError, match="unknown family"):
        get_family("nope")
    with pytest.raises(ValueError, match="broadcast"):
        scm.sample(5, generator("n"), do_mask=torch.ones(3, dtype=torch.bool), do_value=torch.zeros(3))


def test_corrupt_or_foreign_optimizer_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable acbo optimizer file"):
        CausalOptimizer.load(bad)
    torch.save({"kind": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an acbo CausalOptimizer file"):
        CausalOptimizer.load(tmp_path / "other.pt")
    opt = make()
    state = opt.state_dict()
    state["format_version"] = 0
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format version 0"):
        CausalOptimizer.load(tmp_path / "old.pt")


def test_constant_columns_target_domains_and_unreadable_files(tmp_path):
    flat = {**OBS, "B": np.ones(3)}
    with pytest.raises(ValueError, match=r"variables \['B'\] are constant.*give their domains"):
        make(observational=flat)
    with pytest.warns(UserWarning, match=r"variables \['B'\] are constant"):
        make(observational=flat, intervenable=["A"])  # B is never set: accepted, with a warning
    with pytest.warns(UserWarning, match="constant"):
        make(observational=flat, domains={"B": (0.0, 2.0)})  # a domain given: B may be set
    with pytest.raises(ValueError, match="the target 'Y' is constant"):
        make(observational={**OBS, "Y": np.full(3, 2.0)})
    with pytest.raises(ValueError, match="a domain was given for the target 'Y'"):
        make(domains={"Y": (0.0, 1.0)})
    empty, text, pickled = tmp_path / "empty.pt", tmp_path / "text.pt", tmp_path / "obj.pt"
    empty.write_bytes(b"")
    text.write_text("not a campaign")
    torch.save({"kind": np.array([1])}, pickled)  # a numpy object: only unpickling could read it
    for path, why in ((empty, "the file is empty"), (text, "not a torch file"), (pickled, "not unpickled")):
        with pytest.raises(ValueError, match=why) as e:
            CausalOptimizer.load(path)
        assert "weights_only" not in str(e.value)
