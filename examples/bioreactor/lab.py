"""The lab of the bioreactor example: measure every variable under an intervention.

    python lab.py --set "temperature=33.5" --seed 3 --out measured.csv   # one experiment
    python lab.py --observe 60 --seed 0 --out observational.csv          # passive observations

The process (unknown to the optimizer): temperature and pH are set by the operator or drift on
their own; feed rate follows temperature; dissolved oxygen falls with temperature and feed;
titer (the product concentration, to maximise) peaks at 32 degrees C and pH 7.2, grows with
feed, and suffers when oxygen runs low. Every measurement carries its own noise, drawn from the
seed, so the same call gives the same numbers.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

NAMES = ["temperature", "pH", "feed_rate", "oxygen", "titer"]


def simulate(n: int, rng: np.random.Generator, do: dict[str, float]) -> np.ndarray:
    """n x 5 measurements under do (a {name: value} intervention)."""
    def node(name, value):
        return np.full(n, do[name]) if name in do else value

    temperature = node("temperature", 30 + 1.5 * rng.standard_normal(n))
    ph = node("pH", 6.9 + 0.15 * rng.standard_normal(n))
    feed = node("feed_rate", 2.0 + 0.12 * (temperature - 30) + 0.25 * rng.standard_normal(n))
    oxygen = node("oxygen", 45 - 2.5 * (temperature - 30) - 6 * (feed - 2) + 3 * rng.standard_normal(n))
    titer = node("titer", 12 - 0.4 * (temperature - 32) ** 2 - 8 * (ph - 7.2) ** 2 + 1.2 * feed
                 - 4 / (1 + np.exp((oxygen - 20) / 3)) + 0.4 * rng.standard_normal(n))
    return np.stack([temperature, ph, feed, oxygen, titer], axis=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="", help='the intervention, e.g. "temperature=33.5" or "temperature=33, pH=7.1"')
    ap.add_argument("--observe", type=int, default=0, help="passive observations instead of one experiment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    do = {}
    for part in filter(None, (p.strip() for p in args.set.split(","))):
        name, _, value = part.partition("=")
        if name.strip() not in NAMES:
            sys.exit(f"unknown variable {name.strip()!r}; variables: {NAMES}")
        do[name.strip()] = float(value)
    rng = np.random.default_rng(args.seed)
    x = simulate(args.observe or 1, rng, do)
    header = ",".join(NAMES)
    np.savetxt(args.out, x, delimiter=",", header=header, comments="", fmt="%.6g")


if __name__ == "__main__":
    main()
