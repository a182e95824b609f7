"""A built-in system to try acbo on: a small bioreactor whose best settings lie inside the domains.

Five variables in their own units: ``temperature`` (degrees C) and ``pH`` drift on their own;
``feed_rate`` (g/L/h) follows temperature; dissolved ``oxygen`` (%) falls with temperature and
feed; ``titer`` (g/L, the product: to maximise) peaks at 32 degrees C and pH 7.2, grows with
feed and suffers when oxygen runs low. The operator may set temperature, pH and feed rate, over
domains wider than what the passive observations cover. The optimizer does not see any of this:
only the observations and the measurements it asks for. ``acbo run`` and
``examples/bioreactor/lab.py`` use it.
"""

from __future__ import annotations

import numpy as np

NAMES = ("temperature", "pH", "feed_rate", "oxygen", "titer")
TARGET = "titer"
SETTABLE = ("temperature", "pH", "feed_rate")
DOMAINS = {"temperature": (25.0, 40.0), "pH": (6.0, 8.0), "feed_rate": (0.5, 4.0), "oxygen": (5.0, 80.0)}
PARENTS = ("temperature", "pH", "feed_rate", "oxygen")
"""The true parents of titer."""


def simulate(n: int, rng: np.random.Generator, do: dict[str, float] | None = None) -> np.ndarray:
    """n x 5 measurements (columns NAMES) under the intervention ``do`` ({name: value})."""
    do = do or {}
    unknown = sorted(set(do) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown variables {unknown}; variables: {list(NAMES)}")

    def node(name, value):
        return np.full(n, float(do[name])) if name in do else value

    temperature = node("temperature", 30 + 1.5 * rng.standard_normal(n))
    ph = node("pH", 6.9 + 0.15 * rng.standard_normal(n))
    feed = node("feed_rate", 2.0 + 0.12 * (temperature - 30) + 0.25 * rng.standard_normal(n))
    oxygen = node("oxygen", 45 - 2.5 * (temperature - 30) - 6 * (feed - 2) + 3 * rng.standard_normal(n))
    titer = node("titer", 12 - 0.4 * (temperature - 32) ** 2 - 8 * (ph - 7.2) ** 2 + 1.2 * feed
                 - 4 / (1 + np.exp((oxygen - 20) / 3)) + 0.4 * rng.standard_normal(n))
    return np.stack([temperature, ph, feed, oxygen, titer], axis=1)


def observe(n: int, seed: int = 0) -> np.ndarray:
    """n passive observations."""
    return simulate(n, np.random.default_rng(seed))


def experiment(do: dict[str, float], seed: int) -> dict[str, float]:
    """One measurement of every variable under ``do`` (the set variables report their values)."""
    x = simulate(1, np.random.default_rng(seed), do)[0]
    return {n: float(v) for n, v in zip(NAMES, x)}


def expected_titer(do: dict[str, float], n_mc: int = 20_000) -> float:
    """E[titer | do] by Monte Carlo with common random numbers (the same draws for every do)."""
    return float(simulate(n_mc, np.random.default_rng(12345), do)[:, NAMES.index(TARGET)].mean())


def optimum(points: int = 121) -> tuple[str, float, float]:
    """The best single setting within the domains: (variable, value, E[titer | do]), by a grid."""
    best = ("", 0.0, -np.inf)
    for name in SETTABLE:
        lo, hi = DOMAINS[name]
        for v in np.linspace(lo, hi, points):
            e = expected_titer({name: v}, 4000)
            if e > best[2]:
                best = (name, float(v), e)
    return best
