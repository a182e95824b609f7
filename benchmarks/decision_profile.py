"""Where an ``amortized`` decision spends its time: wall time per stage, and the busiest operators.

    python benchmarks/decision_profile.py --families test-broad,test-d50 --seeds 8 --steps 10

One thread. Each problem is driven through ask/tell for ``--steps`` decisions (the shipped pair,
or ``--checkpoint``); the first decision of a campaign (which encodes every observational row)
is reported apart from the later ones (which add one row to the incremental encoding). Stages
are timed by wrapping the functions a decision calls (nested: a stage's time includes its
sub-stages; "rest" is what its sub-stages do not account for). A second pass replays the same
campaigns (the outcomes of the first, so the simulator is left out) under ``torch.profiler``,
counts the operators per later decision (ask and tell) and lists the ones with the most self time.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import acbo.buffer
import acbo.policy.features
import acbo.policy.method
import acbo.policy.model
import acbo.policy.decide
import acbo.surrogate.encoding
import acbo.surrogate.model
from acbo.bench.runner import make_problem
from acbo.optimizer import CausalOptimizer
from acbo.seeding import generator

STAGES = [  # (owner, attribute, label, parent label)
    (acbo.policy.method.Amortized, "ask", "decision", None),
    (acbo.buffer.CampaignBatch, "of_buffer", "campaign tensors", "decision"),
    (acbo.surrogate.encoding.EncodingCache, "belief", "surrogate belief", "decision"),
    (acbo.surrogate.model.Surrogate, "rows", "row encoder (rows not yet encoded)", "surrogate belief"),
    (acbo.surrogate.model.Surrogate, "readout", "variable attention + parent head", "surrogate belief"),
    (acbo.policy.decide, "campaign_features", "campaign features", "decision"),
    (acbo.policy.decide, "grid_features", "world-model grid features", "decision"),
    (acbo.surrogate.model.Surrogate, "query", "world-model query", "world-model grid features"),
    (acbo.surrogate.model.Surrogate, "_memo_kv", "context rows' keys/values (memo)", "world-model query"),
    (acbo.surrogate.model, "query_statistics", "regression statistics", "world-model query"),
    (acbo.policy.features, "incumbent", "incumbent", "world-model grid features"),
    (acbo.policy.model.Policy, "forward", "policy network", "decision"),
]


class StageClock:
    """Wraps the STAGES functions to add their wall time to ``seconds[label]`` while ``on``."""

    def __init__(self):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.on = False
        self._saved = []
        for owner, name, label, _ in STAGES:
            fn = getattr(owner, name)
            self._saved.append((owner, name, fn))
            setattr(owner, name, self._timed(fn, label))

    def _timed(self, fn, label):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.on:
                self.seconds[label] += time.perf_counter() - t0
            return out
        return timed

    def close(self) -> None:
        for owner, name, fn in self._saved:
            setattr(owner, name, fn)


def open_campaign(problem, steps: int, checkpoint: str | None) -> CausalOptimizer:
    opts = {"horizon": steps} if checkpoint is None else {"horizon": steps, "checkpoint": checkpoint}
    return CausalOptimizer(problem.frame, target="Y", method="amortized", seed=problem.seed, **opts)


def decide(opt: CausalOptimizer, problem, t: int, outcomes: dict | None = None) -> float:
    """Decision t of a campaign and its outcome told; returns the decision's wall time (s). The
    outcome is simulated and kept in ``outcomes[(seed, t)]``, or read from there when it is present
    (a replay: the campaigns are seeded, so a replay asks for the same interventions)."""
    t0 = time.perf_counter()
    iv = opt.ask()
    dt = time.perf_counter() - t0
    key = (problem.seed, t)
    if outcomes is None or key not in outcomes:
        sample = problem.scm.run_experiment(iv, generator("test", "bench-outcome", problem.family, problem.seed, t + 1))
        if outcomes is not None:
            outcomes[key] = (dict(iv), sample)
    else:
        asked, sample = outcomes[key]
        assert asked == dict(iv), "the replay asked for another intervention"
    opt.tell(iv, sample, accept_outlier=True)
    return dt


def timed_campaign(problem, steps: int, checkpoint: str | None, clock: StageClock, first: dict,
                   outcomes: dict) -> list[float]:
    """Drive one problem for ``steps`` decisions; returns the later decisions' wall times (s). Their
    stages go to ``clock.seconds``, the first decision's to ``first``; the outcomes to ``outcomes``."""
    opt = open_campaign(problem, steps, checkpoint)
    before = dict(clock.seconds)
    clock.on = True
    decide(opt, problem, 0, outcomes)
    for k, v in clock.seconds.items():  # the first decision's stages, out of the running totals
        first[k] = first.get(k, 0.0) + v - before.get(k, 0.0)
        clock.seconds[k] = before.get(k, 0.0)
    later = [decide(opt, problem, t, outcomes) for t in range(1, steps)]
    clock.on = False
    return later


def stage_table(seconds: dict[str, float], n: int) -> list[str]:
    """Markdown rows: each stage's ms per decision, nested by indentation, with a 'rest' per parent."""
    children = collections.defaultdict(list)
    for _, _, label, parent in STAGES:
        children[parent].append(label)
    rows = []

    def walk(label: str, depth: int) -> None:
        ms = 1000 * seconds.get(label, 0.0) / n
        rows.append(f"| {'  ' * depth}{label} | {ms:.2f} |")
        if children[label]:
            for c in children[label]:
                walk(c, depth + 1)
            rest = ms - sum(1000 * seconds.get(c, 0.0) / n for c in children[label])
            rows.append(f"| {'  ' * (depth + 1)}rest of {label} | {rest:.2f} |")

    walk("decision", 0)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="test-broad,test-d50")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--checkpoint", default=None, help="a policy checkpoint (default: the shipped pair)")
    ap.add_argument("--top", type=int, default=12, help="operators listed per family")
    args = ap.parse_args()
    if args.steps < 2 or args.seeds < 1:
        raise SystemExit(f"--steps >= 2 and --seeds >= 1 required, got {args.steps}, {args.seeds}")
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}; {args.seeds} problems x {args.steps} decisions per family")
    for fam in args.families.split(","):
        problems = [make_problem(fam, s) for s in range(args.seeds)]
        warm = open_campaign(problems[0], 2, args.checkpoint)  # load the models, warm up
        decide(warm, problems[0], 0), decide(warm, problems[0], 1)
        clock, first, times, outcomes = StageClock(), {}, [], {}
        try:
            for p in problems:
                times += timed_campaign(p, args.steps, args.checkpoint, clock, first, outcomes)
        finally:
            clock.close()
        n_later = len(times)
        print(f"\n## {fam}: d = {min(p.scm.d for p in problems)}..{max(p.scm.d for p in problems)}, "
              f"later decisions: median {1000 * statistics.median(times):.2f} ms, mean {1000 * statistics.mean(times):.2f} ms; "
              f"first decision (encodes the observational rows): {1000 * first.get('decision', 0.0) / len(problems):.2f} ms")
        print("\n| stage (later decisions) | ms / decision |\n|---|---|")
        print("\n".join(stage_table(clock.seconds, n_later)))
        print("\n| stage (first decisions) | ms / decision |\n|---|---|")
        print("\n".join(stage_table(first, len(problems))))
        opts = [open_campaign(p, args.steps, args.checkpoint) for p in problems]
        for opt, p in zip(opts, problems):
            decide(opt, p, 0, outcomes)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for opt, p in zip(opts, problems):
                for t in range(1, args.steps):
                    decide(opt, p, t, outcomes)  # a replay: the simulator is not profiled
        events = prof.key_averages()
        total_self = sum(e.self_cpu_time_total for e in events)
        n_decisions = len(problems) * (args.steps - 1)
        n_ops = sum(e.count for e in events if e.key.startswith("aten::"))
        print(f"\noperators ({n_decisions} later decisions, replayed under the profiler; ask and tell): "
              f"{n_ops / n_decisions:.0f} aten calls per decision, {total_self / 1000 / n_decisions:.2f} ms self CPU per decision")
        print("\n| operator | self ms / decision | share | calls / decision | µs / call |\n|---|---|---|---|---|")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:args.top]:
            print(f"| {e.key} | {e.self_cpu_time_total / 1000 / n_decisions:.3f} | {e.self_cpu_time_total / total_self:.1%} | "
                  f"{e.count / n_decisions:.1f} | {e.self_cpu_time_total / max(e.count, 1):.1f} |")


if __name__ == "__main__":
    main()
