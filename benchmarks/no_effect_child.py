"""Experiments on a low-noise child of Y that leave Y unmoved: what they do to the parent
probability and to the predicted response, per seed (the system of
``tests/test_learning_world.py::test_experiments_on_a_child_that_leave_y_unmoved_count``).

    python benchmarks/no_effect_child.py [--seeds 10]

X1, X2 -> Y -> D with D = 1000 Y + noise, 200 observational rows; four experiments setting D across
its domain, Y drawn as it would be without them. Printed per seed: P(D in pa(Y)) after them, and
the range of the predicted E[Y | do(D = x)] over D's domain before and after (Y's units).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_learning_world import _child_system  # noqa: E402  (the test's system, one definition)

from acbo import CausalOptimizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    print("| seed | P(D in pa(Y)) after | range before | range after |\n|---|---|---|---|")
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        opt = CausalOptimizer(_child_system(rng, 200), target="Y", seed=seed)
        lo, hi = opt.domains["D"]
        grid = np.linspace(lo, hi, 21)
        before = np.ptp(opt.predict("D", grid, quantity="expectation")["mean"])
        for v in np.linspace(lo, hi, 4):
            opt.tell({"D": v}, {k: float(x[0]) for k, x in _child_system(rng, 1, v).items()}, chosen=True)
        after = np.ptp(opt.predict("D", grid, quantity="expectation")["mean"])
        post = opt.posterior()
        print(f"| {seed} | {float(post.marginals[post.variables.index('D')]):.3f} | {before:.2f} | {after:.2f} |")


if __name__ == "__main__":
    main()
