"""Campaigns for real experiments: CSV in, next experiment out, a state file that survives anything.

A campaign is a :class:`~acbo.CausalOptimizer` (with its pending suggestion), a budget and a log,
kept in one state file between commands (``acbo campaign init / ask / tell / status / export``):

- **Validated input.** Observational data, domains and results are read from CSV (or JSON for
  domains) and every problem is reported at once, by column name and row number.
- **Nothing lost.** The state file is ``MAGIC``, a JSON header (format version, payload length
  and SHA-256) and the payload (the campaign as a torch-saved plain dict). It is written to a
  temporary file in the same folder, flushed and fsynced, renamed over the old one, and the
  folder fsynced: a crash at any point leaves the previous state readable. A truncated,
  corrupted or foreign file is refused with a message that says which. Commands that change the
  state hold an exclusive lock (``<state>.lock``, released by the OS if the process dies), so two
  concurrent ``tell``s cannot both apply; a refused command leaves the file byte for byte unchanged.
- **Exact resumption.** The optimizer's state includes its random generator and the method's own
  state, so a campaign run through the command line asks exactly what the same seed asks
  through the Python API.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from acbo.io import atomic_write
from acbo.optimizer import SET_PRECISION, CausalOptimizer, Intervention, Pending, clean_name

MAGIC = b"ACBO-CAMPAIGN\n"
FORMAT_VERSION = 1
KIND = "acbo.campaign"


class CampaignError(ValueError):
    """A problem with the user's input or the state file, in one readable message."""


# ----------------------------------------------------------------------------- reading input
def read_text(path: str | os.PathLike, what: str) -> str:
    """A text file's contents, read once (so a pipe works), UTF-8 with or without a byte-order mark;
    CampaignError if it is missing, empty or not UTF-8 text."""
    path = Path(path)
    if not path.exists():
        raise CampaignError(f"{what} file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CampaignError(f"{what} file {path} is not UTF-8 text (in a spreadsheet: save as \"CSV UTF-8\")") from None
    if not text.strip():
        raise CampaignError(f"{what} file {path} is empty")
    return text


def read_table(path: str | os.PathLike, what: str, text: str | None = None) -> pd.DataFrame:
    """The cells of a table file (or of its ``text``, already read) as strings, read as spreadsheets
    write it: UTF-8 with or without a byte-order mark, comma-, semicolon- or tab-separated (whichever
    the header line uses most), quoted cells, spaces around names and values, blank lines skipped;
    in a semicolon- or tab-separated file a decimal comma (``1,5``) is a decimal point. CampaignError
    if it is missing, empty, not text, repeats a column name (after trimming) or has a row with
    more or fewer cells than the header (named by its row)."""
    import csv

    text = read_text(path, what) if text is None else text
    head = next(line for line in text.splitlines() if line.strip())
    sep = max((",", ";", "\t"), key=lambda c: (head.count(c), c == ","))
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True) if any(c.strip() for c in r)]
    except csv.Error as e:
        raise CampaignError(f"{what} file {path} is not a readable table: {e}") from None
    names, body = [clean_name(c) for c in rows[0]], rows[1:]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise CampaignError(f"{what} file {path}: duplicate column names {dups}")
    ragged = [(i + 2, len(r)) for i, r in enumerate(body) if len(r) != len(names)]
    if ragged:
        where = ", ".join(f"row {i} has {k}" for i, k in ragged[:5]) + (" ..." if len(ragged) > 5 else "")
        raise CampaignError(f"{what} file {path}: the header has {len(names)} cells but {where} (a stray separator?)")
    df = pd.DataFrame([[c.strip() for c in r] for r in body], columns=names, dtype=str)
    if sep != ",":
        df = df.apply(lambda col: col.str.replace(_DECIMAL_COMMA, r"\1.\2", regex=True))
    return df


_DECIMAL_COMMA = r"^(\s*[-+]?\d*),(\d+(?:[eE][-+]?\d+)?\s*)$"
"""A number written with a decimal comma (``-1,5``, ``2,0e3``), as a semicolon- or tab-separated file
from a spreadsheet in many locales holds."""


def numeric_frame(df: pd.DataFrame, what: str | None, first_row: int = 2) -> pd.DataFrame:
    """The frame as floats; every non-numeric, empty, NaN or infinite cell reported at once
    (by column and file row: the header is row 1), after ``what: `` (none: the caller prefixes)."""
    problems = []
    out = {}
    for col in df.columns:
        vals = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = vals.isna() | ~np.isfinite(vals.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            rows = [int(i) + first_row for i in np.flatnonzero(bad.to_numpy())]
            cells = [repr(df[col].iloc[r - first_row]) for r in rows[:3]]
            problems.append(f"column {col!r}: {int(bad.sum())} cell(s) not a finite number (rows {rows[:5]}"
                            f"{'...' if len(rows) > 5 else ''}: {', '.join(cells)})")
        out[col] = vals.astype(float)
    if problems:
        raise CampaignError((f"{what}: " if what else "") + "; ".join(problems))
    return pd.DataFrame(out)


def read_observations(path: str | os.PathLike, target: str) -> pd.DataFrame:
    """Observational data: one column per variable, the target among them, at least 2 rows, every
    cell a finite number. Constant columns are refused (nothing can be learned about them)."""
    df = read_table(path, "data")
    target = clean_name(target)
    problems = []
    if target not in df.columns:
        problems.append(f"no column named {target!r} (the target); columns: {list(df.columns)}")
    if len(df.columns) < 2:
        problems.append(f"need at least 2 columns (the target and one to set), got {list(df.columns)}")
    if len(df) < 2:
        problems.append(f"need at least 2 rows of observations, got {len(df)}")
    try:
        x = numeric_frame(df, None)
    except CampaignError as e:
        problems.append(str(e))
        x = None
    if x is not None and len(x) >= 2:
        const = [c for c in x.columns if x[c].nunique() == 1]
        if const:
            problems.append(f"constant columns {const}: the data say nothing about them (drop them, or vary them)")
    if problems:
        raise CampaignError(f"data file {path}: " + "; ".join(problems))
    return x


def read_domains(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """Domains from JSON ({name: [low, high]}) or CSV (columns variable, low, high)."""
    path = Path(path)
    text = read_text(path, "domains")  # read once: a pipe works
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise CampaignError(f"domains file {path} is not valid JSON: {e}") from None
        if not isinstance(raw, dict):
            raise CampaignError(f"domains file {path}: expected an object {{name: [low, high]}}, got {type(raw).__name__}")
        items = [(clean_name(k), v) for k, v in raw.items()]
    else:
        df = read_table(path, "domains", text)
        need = {"variable", "low", "high"}
        if not need <= set(df.columns):
            raise CampaignError(f"domains file {path}: needs columns {sorted(need)}, has {list(df.columns)}")
        num = numeric_frame(df[["low", "high"]], f"domains file {path}")
        df["variable"] = df["variable"].map(clean_name)
        items = [(n, (lo, hi)) for n, lo, hi in zip(df["variable"], num["low"], num["high"])]
    out, problems = {}, []
    names = [n for n, _ in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(f"variables named more than once (after trimming spaces): {twice}")
    for name, dom in items:
        try:
            lo, hi = (float(v) for v in dom)
        except (TypeError, ValueError):
            problems.append(f"{name!r}: not a pair (low, high): {dom!r}")
            continue
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            problems.append(f"{name!r}: needs finite low < high, got ({lo}, {hi})")
        out[str(name)] = (lo, hi)
    if problems:
        raise CampaignError(f"domains file {path}: " + "; ".join(problems))
    return out


def parse_intervention(text: str) -> dict[str, float]:
    """``"X3=4.2"`` or ``"X1=1, X2=0.5"`` -> {name: value}."""
    return parse_assignments([text], "an intervention", "intervention value")


def parse_assignments(texts: list[str], what: str, value_of: str) -> dict[str, float]:
    """``NAME=NUMBER`` pairs, comma-separated within each text of ``texts``, as {name: number}:
    what an intervention or a command's ``--cost`` holds (``what`` and ``value_of`` name it in an
    error). A name given twice is refused: which number was meant?"""
    out = {}
    for text in texts:
        for part in (p.strip() for p in text.split(",")):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or not name:
                raise CampaignError(f"{what} is NAME=VALUE[, NAME=VALUE], got {text!r}")
            try:
                v = float(value)
            except ValueError:
                raise CampaignError(f"{value_of} of {name!r} is not a number: {value.strip()!r}") from None
            if not math.isfinite(v):
                raise CampaignError(f"{value_of} of {name!r} must be finite, got {v}")
            if name in out:
                raise CampaignError(f"{what} gives {name!r} twice ({out[name]:g} and {v:g})")
            out[name] = v
    return out


def read_results(path: str | os.PathLike, names: tuple[str, ...]) -> list[dict[str, float]]:
    """The measured rows of a result file (one or more), each holding exactly the campaign's variables."""
    df = read_table(path, "result")
    problems = []
    missing = [n for n in names if n not in df.columns]
    extra = [c for c in df.columns if c not in names]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unknown columns {extra}")
    if len(df) == 0:
        problems.append("it holds no row")
    if not problems:
        try:
            rows = numeric_frame(df, None)
        except CampaignError as e:
            problems.append(str(e))
    if problems:
        raise CampaignError(f"result file {path}: " + "; ".join(problems))
    return [{n: float(rows[n].iloc[i]) for n in names} for i in range(len(rows))]


# ----------------------------------------------------------------------------- the state file
def encode_state(state: dict) -> bytes:
    """MAGIC + a JSON header line (format, payload length, SHA-256) + the torch-saved payload."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = {"kind": KIND, "format_version": FORMAT_VERSION, "length": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()}
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_state(data: bytes, where: str) -> dict:
    """The campaign dict of a state file's bytes; CampaignError naming what is wrong."""
    if not data.startswith(MAGIC):
        raise CampaignError(f"{where} is not an acbo campaign state file")
    head, sep, payload = data[len(MAGIC):].partition(b"\n")
    try:
        header = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CampaignError(f"{where}: the state file's header is damaged") from None
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise CampaignError(f"{where}: the state file's header is damaged")
    if header.get("format_version") != FORMAT_VERSION:
        raise CampaignError(f"{where} has campaign format {header.get('format_version')}; this acbo reads {FORMAT_VERSION}")
    if not sep or len(payload) != header.get("length"):
        raise CampaignError(f"{where} is truncated ({len(payload)} of {header.get('length')} payload bytes)")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CampaignError(f"{where} is corrupted (its checksum does not match)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # a payload that passed its checksum but was written by something else
        raise CampaignError(f"{where}: unreadable campaign payload ({type(e).__name__})") from None


def write_state(path: Path, state: dict, crash_at: str | None = None) -> None:
    """Atomic, durable write (:func:`acbo.io.atomic_write`: temporary file, flush, fsync, rename,
    fsync of the folder). ``crash_at`` ("write", "fsync", "rename") stops there with an OSError (to
    test that a crash at any step leaves the previous state readable)."""
    data = encode_state(state)

    def write(fh) -> None:
        if crash_at == "write":
            fh.write(data[: len(data) // 2])
            raise OSError("simulated crash while writing the state")
        fh.write(data)

    atomic_write(path, write, crash_at if crash_at != "write" else None)


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on ``<path>.lock`` for one command; CampaignError if another holds it."""
    import fcntl

    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignError(f"{path} is being changed by another acbo command; try again when it is done") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def changing(path: Path):
    """The campaign at ``path``, locked for one command and saved when the block ends without an
    error (a refused change leaves the file as it was)."""
    with locked(path):
        campaign = Campaign.load(path)
        yield campaign
        campaign.save(path)


# ----------------------------------------------------------------------------- the campaign
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Campaign:
    """An optimizer with a budget, the posterior marginals after every experiment and a log of
    events. The pending experiments are the optimizer's (:attr:`CausalOptimizer.pending_experiments`,
    saved with it); the time each was asked is in the log."""

    optimizer: CausalOptimizer
    budget: int | None = None
    marginals: list[list[float]] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    data_file: str = ""

    @property
    def pending(self) -> Intervention | None:
        """The oldest experiment suggested and not yet told (the optimizer's); None if none."""
        return self.optimizer.pending

    # -- state
    def state(self) -> dict:
        return {"kind": KIND, "optimizer": self.optimizer.state_dict(), "budget": self.budget,
                "marginals": self.marginals, "log": self.log, "data_file": self.data_file}

    @classmethod
    def from_state(cls, state: dict, where: str) -> "Campaign":
        if not isinstance(state, dict) or state.get("kind") != KIND:
            raise CampaignError(f"{where}: not a campaign")
        try:
            opt = CausalOptimizer.from_state(state["optimizer"])
        except (KeyError, TypeError) as e:
            raise CampaignError(f"{where}: damaged optimizer state ({e})") from None
        old = state.get("pending")  # files written before the optimizer held it: the campaign's copy
        if old is not None and opt.pending is None:
            opt._pending.append(Pending(Intervention(old["intervention"])))  # noqa: SLF001 (the optimizer's own list, restored)
        return cls(opt, state["budget"], state["marginals"], state["log"], state["data_file"])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Campaign":
        path = Path(path)
        if not path.exists():
            raise CampaignError(f"no campaign state at {path} (start one with `acbo campaign init`)")
        return cls.from_state(decode_state(path.read_bytes(), str(path)), str(path))

    def save(self, path: str | os.PathLike, crash_at: str | None = None) -> None:
        write_state(Path(path), self.state(), crash_at)

    # -- the experiments
    @property
    def done(self) -> int:
        return len(self.optimizer.history)

    def ask(self, n: int | None = None) -> Intervention | list[Intervention]:
        """The oldest pending suggestion or a new one (``n`` None), or the pending ones topped up
        to a batch of ``n`` (:meth:`CausalOptimizer.ask`); refused where the experiments done and
        pending would pass the budget."""
        before = len(self.optimizer.pending_experiments)
        if n is None:
            more = 0 if before else 1
        else:  # a bad n is refused by the optimizer below
            more = n - before if isinstance(n, int) and not isinstance(n, bool) else 0
        if self.budget is not None and more > 0 and self.done + before + more > self.budget:
            left = self.budget - self.done - before
            raise CampaignError(f"the budget of {self.budget} experiments is spent ({self.done} done, {before} pending)"
                                if left <= 0 else f"asking for {more} more would pass the budget of {self.budget} "
                                f"experiments ({self.done} done, {before} pending: {left} left)"
                                + "; raise it with `acbo campaign extend --budget N`")
        try:
            out = self.optimizer.ask(n)
        except ValueError as e:
            raise CampaignError(str(e)) from None
        for iv in self.optimizer.pending_experiments[before:]:
            self.log.append({"event": "ask", "time": _now(), "intervention": dict(iv)})
        return out

    def tell(self, result: dict[str, float], intervention: dict[str, float] | None = None,
             accept_outlier: bool = False) -> Intervention:
        """Record a measured row: under the pending experiment whose settings it holds (any of a
        batch, in any order), or (``intervention``) under an experiment the user chose. Refused
        when the budget is spent (``extend`` raises it) and, for a value far outside anything
        seen, unless ``accept_outlier``."""
        if self.budget is not None and self.done >= self.budget:
            raise CampaignError(f"the budget of {self.budget} experiments is spent ({self.done} done); raise it with "
                                "`acbo campaign extend --budget N` to record more")
        opt = self.optimizer
        pending = opt.pending_experiments
        try:
            if intervention is None:
                if not pending:
                    raise CampaignError("no experiment is pending: `acbo campaign ask` first, or give --intervention "
                                        "for an experiment you chose yourself")
                iv = opt.pending_for(result) or (pending[0] if len(pending) == 1 else None)  # one: its own error
                if iv is None:
                    raise CampaignError(f"the result {result} holds the settings of no pending experiment (pending: "
                                        f"{', '.join(map(str, pending))}; {SET_PRECISION}); "
                                        "for an experiment you chose yourself, or one the lab ran at other values "
                                        "than those asked, give --intervention with the values set, and take the "
                                        "pending one back with `acbo campaign withdraw`")
                iv = dict(iv)
            else:
                iv = intervention
            answered = opt.tell(iv, result, chosen=intervention is not None, accept_outlier=accept_outlier)
        except ValueError as e:
            raise CampaignError(str(e).replace("accept_outlier=True (command line: --accept-outlier)",
                                               "--accept-outlier")) from None
        entry = {"event": "tell", "time": _now(), "intervention": dict(iv), "own": answered is None}
        if answered is None and len(pending) == 1:
            entry["replaces"] = dict(pending[0])
        if accept_outlier and opt.outliers(opt.history[-1].outcome, iv):
            entry["accepted_outlier"] = True
        self.log.append(entry)
        self.marginals.append(opt.posterior().marginals.double().tolist())
        over = self.done + len(opt.pending_experiments) - (self.budget if self.budget is not None else math.inf)
        if answered is None and over > 0:
            warnings.warn(f"with your own experiment recorded, the {len(opt.pending_experiments)} pending ones pass the "
                          f"budget of {self.budget} experiments by {over}: withdraw {over} of them (`acbo campaign "
                          "withdraw`) or raise the budget (`acbo campaign extend --budget N`)", UserWarning, stacklevel=2)
        return Intervention(iv)

    def withdraw(self, intervention: dict[str, float] | None = None) -> list[Intervention]:
        """Take back pending experiments that will not be run: the one matching ``intervention``,
        or all; logged, nothing recorded."""
        try:
            out = self.optimizer.withdraw(intervention)
        except ValueError as e:
            raise CampaignError(str(e)) from None
        self.log.append({"event": "withdraw", "time": _now(), "interventions": [dict(iv) for iv in out]})
        return out

    def drop(self, experiment: int, undo: bool = False) -> None:
        """Drop experiment ``experiment`` (its number in the history) from what the models see, or
        bring it back (``undo``); it stays in the history and the log, marked, and still counts
        towards the budget (it was run). A pending suggestion stays as it was asked."""
        try:
            self.optimizer.drop(experiment, undo)
        except ValueError as e:
            raise CampaignError(str(e)) from None
        self.log.append({"event": "undrop" if undo else "drop", "time": _now(), "experiment": experiment})

    def extend_cost(self, budget_cost: float) -> None:
        """Raise the budget in cost units to ``budget_cost`` (the new total): :meth:`CausalOptimizer.extend_budget_cost`; logged."""
        before = self.optimizer.budget_cost
        try:
            self.optimizer.extend_budget_cost(budget_cost)
        except ValueError as e:
            raise CampaignError(str(e)) from None
        self.log.append({"event": "extend", "time": _now(), "budget_cost_from": before, "budget_cost_to": float(budget_cost)})

    def extend(self, budget: int) -> None:
        """Raise the budget to ``budget`` experiments (at least those done; a larger one than now)."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < max(self.done, 1):
            raise CampaignError(f"the new budget must be a whole number of experiments, at least the {self.done} done "
                                f"(and at least 1), got {budget!r}")
        if self.budget is not None and budget <= self.budget:
            raise CampaignError(f"the budget is {self.budget} already; extend takes a larger one, got {budget}")
        entry = {"event": "extend", "time": _now(), "from": self.budget, "to": budget}
        if self.optimizer.method.options().get("horizon") == self.budget:  # the policy planned for the old budget
            self.optimizer.reconfigure(horizon=budget)
            entry["horizon"] = budget
        self.log.append(entry)
        self.budget = budget

    def history_frame(self) -> pd.DataFrame:
        """One row per experiment: step, what was set, every measured variable, whether it was
        dropped, best Y so far (among those kept); with costs, what it cost and the spend so far."""
        opt = self.optimizer
        rows, best, spent = [], None, 0.0
        sign = 1.0 if opt.problem.minimize else -1.0
        for t, rec in enumerate(opt.history, 1):
            y = rec.outcome[opt.target]
            if not rec.dropped:
                best = y if best is None or sign * y < sign * best else best
            spent += rec.cost or 0.0
            rows.append({"step": t, "set": ", ".join(f"{k}={v:.6g}" for k, v in rec.intervention.items()),
                         **{n: rec.outcome[n] for n in opt.names}, "dropped": rec.dropped,
                         "best_so_far": float("nan") if best is None else best, "cost": rec.cost, "spent": spent})
        costs = ["cost", "spent"] if opt.costs is not None else []
        return pd.DataFrame(rows, columns=["step", "set", *opt.names, "dropped", "best_so_far", *costs])

    def recommendation_frame(self) -> pd.DataFrame:
        """The recommendation (:meth:`CausalOptimizer.recommend`) as a table: one row for the best
        experiment run and one for the best setting predicted anywhere (where the method can)."""
        rec = self.optimizer.recommend()
        rows = []
        for which, s in (("best experiment run", rec.tried), ("best predicted anywhere", rec.anywhere)):
            if s is not None:
                rows.append({"recommendation": which, "set": ", ".join(f"{k}={v:.6g}" for k, v in s.intervention.items()),
                             "predicted_mean": s.mean, "q05": s.q05, "q95": s.q95, "measurements": s.n,
                             "measured_mean": s.measured_mean, "by_model": rec.model})
        return pd.DataFrame(rows, columns=["recommendation", "set", "predicted_mean", "q05", "q95", "measurements",
                                           "measured_mean", "by_model"])


def beliefs(campaign: Campaign, points: int = 101) -> pd.DataFrame | None:
    """Per intervenable variable, where the method's model of the response puts the best value
    on a grid over its domain: the value, E[Y | do] there with its 90 % interval. None for methods
    without a model of the response."""
    opt = campaign.optimizer
    p = opt.problem
    if not opt.has_model:
        return None
    rows = []
    for j in torch.nonzero(p.intervenable).flatten().tolist():
        grid = np.linspace(float(p.low[j]), float(p.high[j]), points)
        pred = opt.predict(p.names[j], grid, quantity="expectation")
        i = int(pred["mean"].idxmin() if p.minimize else pred["mean"].idxmax())
        rows.append({"variable": p.names[j], "best value": pred["value"][i], "E[Y] there": pred["mean"][i],
                     "q05": pred["q05"][i], "q95": pred["q95"][i]})
    return pd.DataFrame(rows)


def status_figure(campaign: Campaign, path: str | os.PathLike, panels: int = 4, points: int = 80) -> None:
    """Best-so-far by step (by spend, with costs), the parent marginals by step, and per intervenable variable (the
    ``panels`` most probable parents) the predicted E[Y | do] with its 90 % band and the
    measurements made there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    opt = campaign.optimizer
    p = opt.problem
    hist = campaign.history_frame()
    marg = np.array(campaign.marginals) if campaign.marginals else np.zeros((0, p.d))
    can = torch.nonzero(p.intervenable).flatten().tolist()
    last = marg[-1] if len(marg) else opt.posterior().marginals.numpy()
    show = sorted(can, key=lambda j: -last[j])[:panels]
    has_model = opt.has_model
    ncol = 2 * max(1, (len(show) + 1) // 2) if has_model else 2                                  # even: two top panels
    fig = plt.figure(figsize=(4.2 * max(ncol, 2), 7.4 if has_model else 3.6))
    gs = fig.add_gridspec(2 if has_model else 1, ncol)
    top = fig.add_subplot(gs[0, : ncol // 2])
    y = opt.target
    paid = opt.costs is not None  # with costs: against the spend
    x = hist["spent"] if paid else hist["step"]
    if len(hist):
        top.plot(x, hist[y], "o", color="0.6", label=f"measured {y}")
        top.plot(x, hist["best_so_far"], "-", color="C0", lw=2, drawstyle="steps-post" if paid else "default",
                 label="best so far")
    top.axhline(float(opt.buffer.values[opt.buffer.observational_rows, p.target].mean()), ls=":", color="k",
                label=f"observational mean of {y}")
    if paid and opt.budget_cost:
        top.axvline(opt.budget_cost, ls="--", color="C3", label="budget")
    top.set_xlabel("spend (cost units)" if paid else "experiment")
    if not paid:
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_ylabel(f"{y} (its units)")
    top.set_title(f"{y}: {'lowest' if p.minimize else 'highest'} so far")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    ax = fig.add_subplot(gs[0, ncol // 2:])
    if len(marg):
        order = np.argsort(-marg[-1])
        for j in order[: min(6, p.d - 1)]:
            if j != p.target:
                ax.plot(np.arange(len(marg)), marg[:, j], marker=".", label=p.names[j])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("experiments told (0: the observations only)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"P(parent of {y})")
    ax.set_title(f"posterior over the parents of {y} ({opt.method_name})")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    if has_model:
        for i, j in enumerate(show):
            axr = fig.add_subplot(gs[1, i])
            grid = np.linspace(float(p.low[j]), float(p.high[j]), points)
            pred = opt.predict(p.names[j], grid, quantity="expectation")
            axr.fill_between(grid, pred["q05"], pred["q95"], alpha=0.25, color="C1", label="90 % interval")
            axr.plot(grid, pred["mean"], color="C1", label=f"predicted E[{y} | do]")
            rows = opt.buffer.intervened[:, j] & (opt.buffer.intervened.sum(1) == 1)
            if rows.any():
                axr.plot(opt.buffer.values[rows, j].numpy(), opt.buffer.values[rows, p.target].numpy(), "o", color="C0",
                         label="measured")
            axr.set_xlabel(f"{p.names[j]} (set to)")
            axr.set_ylabel(f"{y}")
            axr.set_title(f"do({p.names[j]}): P(parent) = {last[j]:.2f}", fontsize=10)
            axr.grid(alpha=0.3)
            if i == 0:
                axr.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
