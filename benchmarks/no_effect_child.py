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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_learning_world import _child_trial  # noqa: E402  (the test's system and trial, one definition)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args()
    print("| seed | P(D in pa(Y)) after | range before | range after |\n|---|---|---|---|")
    for seed in range(args.seeds):
        p_after, before, after = _child_trial(seed)
        print(f"| {seed} | {p_after:.3f} | {before:.2f} | {after:.2f} |")

if __name__ == "__main__":
    main()
