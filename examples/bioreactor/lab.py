"""The lab of the bioreactor example: measure every variable under an intervention.

    python lab.py --set "temperature=33.5" --seed 3 --out measured.csv   # one experiment
    python lab.py --observe 60 --seed 0 --out observational.csv          # passive observations

The process is :mod:`acbo.bioreactor` (unknown to the optimizer). Every measurement carries its own
noise, drawn from the seed, so the same call gives the same numbers; values are reported to six
significant digits, as an instrument would.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from acbo import bioreactor


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
        do[name.strip()] = float(value)
    try:
        x = bioreactor.simulate(args.observe or 1, np.random.default_rng(args.seed), do)
    except ValueError as e:
        sys.exit(str(e))
    np.savetxt(args.out, x, delimiter=",", header=",".join(bioreactor.NAMES), comments="", fmt="%.6g")


if __name__ == "__main__":
    main()
