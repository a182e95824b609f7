"""A built-in system to try acbo on: a small bioreactor whose best settings lie inside the domains.

Five variables in their own units: ``temperature`` (degrees C) and ``pH`` drift on their own;
``feed_rate`` (g/L/h) follows temperature; dissolved ``oxygen`` (%) falls with temperature and
feed; ``titer`` (g/L, the product: to maximise) peaks at 32 degrees C and pH 7.2, grows with
feed and suffers when oxygen runs low; on top, a production peak near 35 degrees C *and* pH 7.4
together (6 g/L at its centre; either alone, with the other where the process keeps it, gives
almost nothing): the best single setting is temperature 32 (E[titer] about 13.8), the best pair
temperature about 34 with pH 7.4 (about 17.8; :func:`set_optimum`). The operator may set
temperature, pH and feed rate, over domains wider than what the passive observations cover. The optimizer does not see any of this:
only the observations and the measurements it asks for. ``acbo run`` and
``examples/bioreactor/lab.py`` use it.
"""

from __future__ import annotations

import functools

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
    peak = 6 * np.exp(-0.5 * (((temperature - 35) / 1.5) ** 2 + ((ph - 7.4) / 0.12) ** 2))  # needs both set right
    titer = node("titer", 12 - 0.4 * (temperature - 32) ** 2 - 8 * (ph - 7.2) ** 2 + 1.2 * feed
                 - 4 / (1 + np.exp((oxygen - 20) / 3)) + peak + 0.4 * rng.standard_normal(n))
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


@functools.lru_cache(maxsize=4)
def set_optimum(points: int = 25) -> tuple[dict[str, float], float]:
    """The best setting of at most two settable variables within the domains: ({name: value},
    E[titer | do]), by a grid over each pair's box, refined once on a grid a tenth as wide around
    the best point."""
    from itertools import combinations

    best: tuple[dict[str, float], float] = ({}, -np.inf)
    for pair in combinations(SETTABLE, 2):
        (la, ha), (lb, hb) = DOMAINS[pair[0]], DOMAINS[pair[1]]
        centre, span = ((la + ha) / 2, (lb + hb) / 2), ((ha - la) / 2, (hb - lb) / 2)
        for scale in (1.0, 0.1):
            grid = [(np.clip(centre[0] + scale * span[0] * u, la, ha), np.clip(centre[1] + scale * span[1] * v, lb, hb))
                    for u in np.linspace(-1, 1, points) for v in np.linspace(-1, 1, points)]
            vals = [expected_titer(dict(zip(pair, g)), 2000) for g in grid]
            k = int(np.argmax(vals))
            centre = grid[k]
            if vals[k] > best[1]:
                best = ({pair[0]: float(centre[0]), pair[1]: float(centre[1])}, float(vals[k]))
    single = optimum()
    return (best[0], expected_titer(best[0])) if best[1] > single[2] else ({single[0]: single[1]}, single[2])
