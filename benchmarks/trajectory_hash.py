"""A fingerprint of a method's one-variable-at-a-time campaign, to check that a change leaves it
bit for bit as it was.

    python benchmarks/trajectory_hash.py parent_scale [amortized ...]

For two problems (test-broad seed 1, lin-er-10 seed 2): four asks told the simulator's outcome,
then the method's predictive at two values of the first settable variable. Prints per method the
first 16 hex digits of the SHA-256 of all of that as JSON (run it at two commits and compare).
"""

from __future__ import annotations

import hashlib
import json
import sys

import torch

from acbo import CausalOptimizer
from acbo.bench.runner import make_problem
from acbo.seeding import generator


def fingerprint(method: str) -> str:
    out = []
    for family, seed in (("test-broad", 1), ("lin-er-10", 2)):
        p = make_problem(family, seed)
        opt = CausalOptimizer(p.frame, target="Y", method=method, seed=0, domains=p.domains, intervenable=p.settable)
        for t in range(4):
            iv = opt.ask()
            out.append(dict(iv))
            opt.tell(iv, p.scm.run_experiment(iv, generator("traj", t)))
        out.append(opt.predict(p.settable[0], [0.1, 0.5]).to_numpy().tolist())
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()[:16]


if __name__ == "__main__":
    torch.set_num_threads(1)
    for m in sys.argv[1:] or ["parent_scale"]:
        print(m, fingerprint(m))
