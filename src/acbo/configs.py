"""Composed dataclass configs on the command line, and one-line log records of training loops.

A config is a frozen dataclass whose fields are settings or sub-configs (dataclass-valued
fields, each declared once where it belongs and composed here). On the command line every
setting is a dotted flag, ``--run.steps 100`` or ``--model.dim 32``; a setting whose name is
unique in the config may also be given by that name alone (``--steps 100``), and a training
config's flat names of old (its ``LEGACY`` table, e.g. ``--val-family``) still work.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
from dataclasses import fields, is_dataclass, replace


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass (its source read with ast)."""
    out = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                    and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
                out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def settings(config) -> dict[str, tuple[object, str]]:
    """Every setting of a config instance, sub-configs opened: dotted path -> (value, docstring)."""
    out = {}
    docs = field_docs(type(config))
    for f in fields(config):
        v = getattr(config, f.name)
        if is_dataclass(v) and not isinstance(v, type):
            out.update({f"{f.name}.{k}": item for k, item in settings(v).items()})
        else:
            out[f.name] = (v, docs.get(f.name, ""))
    return out


def flat_dict(config) -> dict[str, object]:
    """A config (instance, or the dict ``asdict`` made of one) as {dotted path: value}."""
    d = dataclasses.asdict(config) if is_dataclass(config) else config
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in flat_dict(v).items()})
        else:
            out[k] = v
    return out


def with_settings(config, changes: dict[str, object]):
    """A copy of ``config`` with the dotted settings in ``changes`` replaced (ValueError naming an
    unknown one); every sub-config is rebuilt, so its own checks run."""
    by_top: dict[str, dict] = {}
    kw = {}
    names = {f.name for f in fields(config)}
    for path, v in changes.items():
        top, _, rest = path.partition(".")
        if top not in names or bool(rest) != _is_config(getattr(config, top)):
            raise ValueError(f"{type(config).__name__} has no setting {path!r}")
        if rest:
            by_top.setdefault(top, {})[rest] = v
        else:
            kw[top] = v
    kw.update({top: with_settings(getattr(config, top), sub) for top, sub in by_top.items()})
    return replace(config, **kw)


def short_names(cls) -> dict[str, tuple[str, ...]]:
    """The names settings of config ``cls`` may also go by, each -> the dotted paths it sets: a
    setting's last name where that is unique in the config, and the flat names of old
    (``cls.LEGACY``, where the config has them; one old name may set several paths)."""
    paths = list(settings(cls()))
    leaves = [p.rsplit(".", 1)[-1] for p in paths]
    out = {leaf: (p,) for p, leaf in zip(paths, leaves) if "." in p and leaves.count(leaf) == 1}
    legacy = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in getattr(cls, "LEGACY", {}).items()}
    return {**{k: v for k, v in legacy.items() if k not in paths}, **out}


def configure(config, changes: dict[str, object] | None = None, **names):
    """A config (a class: its defaults; or an instance) with settings changed: ``changes`` by dotted
    path, ``names`` by a dotted path or a short name (:func:`short_names`, as on the command line).
    ValueError naming an unknown name."""
    base = config() if isinstance(config, type) else config
    paths = list(settings(base))
    short = short_names(type(base))
    out = dict(changes or {})
    for name, v in names.items():
        if name not in paths and name not in short:
            raise ValueError(f"{type(base).__name__} has no setting {name!r}")
        out.update({p: v for p in ((name,) if name in paths else short[name])})
    return with_settings(base, out)


def parse_value(text: str):
    """An option value as typed: int, float, true/false, or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _is_config(v) -> bool:
    return is_dataclass(v) and not isinstance(v, type)


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse(text: str, default):
    """A command-line value as the type of the setting's default (tuples comma-separated); for a
    setting whose default is None, the value as typed (a tuple where comma-separated; ``none``: None)."""
    if default is None:
        if text.lower() == "none":
            return None
        return tuple(parse_value(p) for p in text.split(",") if p) if "," in text else parse_value(text)
    if isinstance(default, tuple):
        parts = [p for p in text.split(",") if p]
        return tuple(int(p) for p in parts) if default and isinstance(default[0], int) else tuple(parts)
    if isinstance(default, bool):
        return _bool(text)
    return type(default)(text)


def config_from_argv(cls, argv: list[str] | None, description: str, prog: str | None = None):
    """Parse ``--path.to.setting value`` for every setting of the config ``cls`` (its defaults;
    tuples as comma-separated values, booleans as true/false) and build the config. A short name
    (:func:`short_names`: a unique last name, or a flat name of old) is accepted too. ``--help``
    lists every setting by its dotted flag, grouped by sub-config, with its docstring and default;
    a bad value ends with a usage error that names it."""
    ap = argparse.ArgumentParser(prog=prog, description=description + "\n\nEvery setting is a dotted flag; a "
                                 "setting's last name where unique in the config (--steps) and the flat names of "
                                 "earlier versions (--val-family) are accepted too.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    table = settings(cls())
    docs = field_docs(cls)
    groups = {f.name: ap.add_argument_group(f"{f.name}: {docs.get(f.name, '').rstrip('.')}") for f in fields(cls)
              if _is_config(getattr(cls(), f.name))}
    derived = getattr(cls, "DERIVED", ())
    for path, (default, doc) in table.items():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        where = groups.get(path.split(".")[0], ap)
        where.add_argument(f"--{path.replace('_', '-')}", dest=path, default=None,
                           metavar="true|false" if isinstance(default, bool) else "A,B" if isinstance(default, tuple)
                           else "X", help=argparse.SUPPRESS if path in derived else
                           f"{doc} (default: {shown!r})".replace("%", "%%"))
    for name, paths in short_names(cls).items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=f"short:{name}", default=None, help=argparse.SUPPRESS)
    args = vars(ap.parse_args(argv))
    given = {path: text for path, text in args.items() if text is not None and not path.startswith("short:")}
    for key, text in args.items():
        if key.startswith("short:") and text is not None:
            given.update({p: text for p in short_names(cls)[key[len("short:"):]]})
    changes = {}
    for path, text in given.items():
        try:
            changes[path] = _parse(text, table[path][0])
        except (ValueError, argparse.ArgumentTypeError) as e:
            ap.error(f"--{path.replace('_', '-')}: {e}")
    try:
        return with_settings(cls(), changes)
    except ValueError as e:
        ap.error(str(e))


def positive_ints(obj, names: tuple[str, ...]) -> None:
    """ValueError naming each of ``names`` that is not a positive integer on ``obj``."""
    bad = {k: getattr(obj, k) for k in names
           if isinstance(getattr(obj, k), bool) or not isinstance(getattr(obj, k), int) or getattr(obj, k) < 1}
    if bad:
        raise ValueError(f"these settings must be positive integers: {bad}")


def check_range(name: str, value: tuple[int, int], low: int) -> None:
    """ValueError unless ``value`` is a range (lo, hi) with low <= lo <= hi."""
    if len(value) != 2 or not low <= value[0] <= value[1]:
        raise ValueError(f"{name} must be a range (low, high) with {low} <= low <= high, got {value}")


def format_record(rec: dict) -> str:
    """``key=value`` pairs, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())


def print_line(line: str) -> None:
    print(line, flush=True)
