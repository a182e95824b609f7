"""Flat dataclass configs on the command line, and one-line log records of training loops."""

from __future__ import annotations

import argparse
from dataclasses import fields


def config_from_argv(cls, argv: list[str] | None, description: str):
    """Parse ``--field-name value`` for every field of the dataclass ``cls`` (tuples as
    comma-separated values, booleans as true/false) and build the config."""
    ap = argparse.ArgumentParser(description=description)
    for f in fields(cls):
        flag, default = f"--{f.name.replace('_', '-')}", f.default
        if isinstance(default, tuple):
            ap.add_argument(flag, default=",".join(map(str, default)))
        elif isinstance(default, bool):
            ap.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default)
        else:
            ap.add_argument(flag, type=type(default), default=default)
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
