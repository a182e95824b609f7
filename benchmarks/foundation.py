"""Simulator throughput and exact-posterior time.

    python benchmarks/foundation.py            # CPU (and CUDA too when available)

Prints: values/s of SCM.sample for B = 256 models x d = 20 x n = 1000 per classic mechanism and
for the broad world's mix (train-broad's mechanisms, noises, roots and units on the same ER
graphs: nodes of different kinds in every graph, grouped by kind at each node), the sampled data
only, observational and with one intervened variable; drawing the models (with the 2,000-row
pilot sample) timed separately; and the exact posterior's time per call at d = 10, 20, 50
(n = 200 observational + 20 interventional rows).
"""

from __future__ import annotations

import platform
import statistics
import time

import torch

from acbo.posterior import ExactPosteriorConfig, exact_posterior
from acbo.scm import broad_scms, get_family, random_scms
from acbo.seeding import generator


def train_broad(g, B, d):
    """train-broad's world on d-variable ER graphs (no raw linear models: every node its kind)."""
    f = get_family("train-broad")
    return broad_scms(g, B, d, mechanisms=f.mechanism, mixing=f.mixing, noises=f.noise, roots=f.roots,
                      noise_std=f.noise_std, noise_log=f.noise_log, units=f.units)


def timed(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def simulator(device: str, B: int = 256, d: int = 20, n: int = 1000) -> None:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for mech in ("linear", "mlp", "gp", "train-broad mix"):
        g = generator("bench-sim", mech, device=device)
        draw = (lambda: train_broad(g, B, d)) if mech == "train-broad mix" else (lambda: random_scms(g, B, d, mechanism=mech))
        t_draw = timed(draw, 3, sync)
        scm = draw()
        t = timed(lambda: scm.sample(n, g), 5, sync)
        mask = torch.zeros(B, n, d, dtype=torch.bool, device=device)
        mask[:, :, 0] = True
        t_do = timed(lambda: scm.sample(n, g, do_mask=mask, do_value=torch.ones(B, n, d, device=device)), 5, sync)
        vals = B * n * d
        print(f"| {device} | {mech} | {B} x {d} x {n} | {vals / t / 1e6:.1f} M | {vals / t_do / 1e6:.1f} M | {1000 * t_draw:.0f} ms |")


def posterior_time() -> None:
    for d in (10, 20, 50):
        g = generator("bench-post", d)
        scm = random_scms(g, 1, d)
        x = scm.sample(200, g)[0]
        mask = torch.zeros(20, d, dtype=torch.bool)
        mask[torch.arange(20), torch.randint(d, (20,), generator=g)] = True
        xi = scm.sample(20, g, do_mask=mask[None], do_value=torch.randn(1, 20, d, generator=g))[0]
        vals, inter = torch.cat([x, xi]), torch.cat([torch.zeros(200, d, dtype=torch.bool), mask])
        cfg = ExactPosteriorConfig()
        t = timed(lambda: exact_posterior(vals, inter, int(scm.target[0]), cfg=cfg), 20)
        post = exact_posterior(vals, inter, int(scm.target[0]), cfg=cfg)
        print(f"| {d} | {post.sets.shape[0]} | {1000 * t:.2f} ms |")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("\n| device | mechanism | B x d x n | values/s (observational) | values/s (with do) | drawing B models |")
    print("|---|---|---|---|---|---|")
    simulator("cpu")
    if torch.cuda.is_available():
        print(f"(cuda: {torch.cuda.get_device_name()})")
        simulator("cuda")
    print("\n| d | sets enumerated (max 3 parents, max 20 candidates) | exact posterior time (n = 220) |")
    print("|---|---|---|")
    posterior_time()
