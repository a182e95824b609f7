"""Flat dataclass configs on the command line, and one-line log records of training loops."""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
from dataclasses import fields


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


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def config_from_argv(cls, argv: list[str] | None, description: str):
    """Parse ``--field-name value`` for every field of the dataclass ``cls`` (tuples as
    comma-separated values, booleans as true/false) and build the config; ``--help`` shows each
    field's docstring and default."""
    ap = argparse.ArgumentParser(description=description)
    docs = field_docs(cls)
    for f in fields(cls):
        flag, default = f"--{f.name.replace('_', '-')}", f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{docs.get(f.name, '')} (default: {shown!r})".replace("%", "%%")
        if isinstance(default, tuple):
            ap.add_argument(flag, default=",".join(map(str, default)), help=help_)
        elif isinstance(default, bool):
            ap.add_argument(flag, type=_bool, default=default, metavar="true|false", help=help_)
        else:
            ap.add_argument(flag, type=type(default), default=default, help=help_)
    args = vars(ap.parse_args(argv))
    kw = {}
    for f in fields(cls):
        v = args[f.name]
        if isinstance(f.default, tuple):
            parts = [p for p in str(v).split(",") if p]
            v = tuple(int(p) for p in parts) if isinstance(f.default[0], int) else tuple(parts)
        kw[f.name] = v
    return cls(**kw)


def format_record(rec: dict) -> str:
    """``key=value`` pairs, floats to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())


def print_line(line: str) -> None:
    print(line, flush=True)
