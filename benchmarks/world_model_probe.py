"""Does a world model's E[Y | do] follow the intervention value? One look at a known answer.

    python benchmarks/world_model_probe.py CHECKPOINT [CHECKPOINT ...]

The collider of tests/test_world_model.py: X1 and X2 independent with unit variance (means 0 and
4), Y linear in both (slopes 1.5 and -1, noise std 0.3, mean 10), 150 observations. Prints the
true E[Y | do] at three values of each, each checkpoint's predicted mean ± std of it
(surrogate-ei's model) and the exact BLR posterior's (exact-ts).
"""

from __future__ import annotations

import sys
import warnings

import pandas as pd
import torch

from acbo import CausalOptimizer
from acbo.scm import SCM
from acbo.seeding import generator

VALUES = {"X1": [-2.0, 0.0, 2.0], "X2": [2.0, 4.0, 6.0]}


def main() -> None:
    A = torch.tensor([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
    W = torch.tensor([[0.0, 0.0, 1.5], [0.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    scm = SCM.linear_gaussian(A, W, noise_std=[1.0, 1.0, 0.3], target=2, mean=[0.0, 4.0, 10.0])
    frame = pd.DataFrame(scm.sample(150, generator("pred"))[0].double().numpy(), columns=scm.names())
    print("| model | " + " | ".join(f"do({v}={x:g})" for v, xs in VALUES.items() for x in xs) + " |")
    print("|---|" + "---|" * sum(len(x) for x in VALUES.values()))
    truth = [float(scm.expected_outcome({v: x})) for v, xs in VALUES.items() for x in xs]
    print("| truth | " + " | ".join(f"{t:.2f}" for t in truth) + " |")
    models = [("exact-ts", {})] + [(path, {"checkpoint": path}) for path in sys.argv[1:]]
    for name, opts in models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = CausalOptimizer(frame, method="exact-ts" if not opts else "surrogate-ei", seed=0,
                                  intervenable=list(VALUES), **opts)
        cells = []
        for v, xs in VALUES.items():
            p = opt.predict(v, xs, quantity="expectation")
            cells += [f"{m:.2f} ± {s:.2f}" for m, s in zip(p["mean"], p["std"])]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
