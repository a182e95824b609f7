"""How often the expert's causal GP loses its RBF part: sigma_f^2 fitted below 1e-4 (and 1e-2), and
how many of its decisions had a best expected improvement below 1e-6 (EI underflowing everywhere).

    python benchmarks/expert_gp_collapse.py [--family test-broad] [--problems 8] [--steps 10]
        [--min-outputscale 0]

Runs ``parent_scale`` (one variable per experiment, the test stream's problems and outcome noise)
and records sigma_f^2 of every causal GP it fits (each exploration set's, per decision) and the
best EI of every decision; prints the fractions.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import acbo.experts.causal_gp as cg
from acbo.bench.runner import make_problem
from acbo.optimizer import CausalOptimizer
from acbo.seeding import generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="test-broad")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--min-outputscale", type=float, default=0.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scales: list[float] = []
    fit = cg.causal_gp

    def recorded(*a, **k):
        gp = fit(*a, **k)
        scales.append(float(gp.covar_module.kernels[0].outputscale.detach()))
        return gp

    cg.causal_gp = recorded  # maximise_ei looks it up in the module at each call
    best_ei = []
    for seed in range(args.problems):
        p = make_problem(args.family, seed)
        opt = CausalOptimizer(p.frame, target="Y", method="parent_scale", seed=seed, domains=p.domains,
                              intervenable=p.settable, min_outputscale=args.min_outputscale)
        for t in range(args.steps):
            iv = opt.ask()
            d = opt.method.last_decision
            if d.get("phase") == "ei":
                best_ei.append(max(d["ei"].values()))
            opt.tell(iv, p.scm.run_experiment(dict(iv), generator("test", "collapse", seed, t)), accept_outlier=True)
    s, e = np.array(scales), np.array(best_ei)
    print(f"{args.family}: {args.problems} problems x {args.steps} experiments, min_outputscale {args.min_outputscale:g}")
    print(f"  causal GP fits: {len(s)}; sigma_f^2 < 1e-4: {(s < 1e-4).mean():.1%}, < 1e-2: {(s < 1e-2).mean():.1%}, "
          f"median {np.median(s):.3g}")
    print(f"  decisions by EI: {len(e)}; best EI < 1e-6: {int((e < 1e-6).sum())}")


if __name__ == "__main__":
    main()
