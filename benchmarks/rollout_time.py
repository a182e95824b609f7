"""What a stage-2 rollout costs with and without the world model's memo kept between its steps:
the wall time of one GRPO rollout (:func:`acbo.policy.rollout.collect`) of the shipped pair on the
same campaigns, one thread, the two alternated in one run (a ratio that a busy machine moves less
than the times).

    python benchmarks/rollout_time.py [--families train-broad,train-shapes] [--n-obs 50,200] [--campaigns 16]

A rollout keeps one :class:`acbo.surrogate.model.ContextMemo` for its campaigns (the context rows'
keys and values, and the observations' reading while the rows it reads hold); "without" hands
every step a fresh start, as rollouts did before. Both give the same rollout (checked here: the
same actions, log-probabilities and rewards).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import acbo.policy.rollout as rollout
from acbo.env import Env
from acbo.policy.checkpoint import load_pretrained_policy
from acbo.policy.rollout import GroupDesign, collect
from acbo.policy.rewards import RewardSettings
from acbo.seeding import generator


def one(policy, surrogate, family: str, n_obs: int, campaigns: int, horizon: int, seed: int, memo: bool):
    """(seconds, (actions: variables, positions, their log-probabilities), rewards) of one
    candidates-mode rollout on the family's train stream."""
    g = generator("train", "rollout-time", family, n_obs, seed)
    env = Env.from_family(family, campaigns, n_obs, horizon, g)
    kept = rollout.ContextMemo
    rollout.ContextMemo = kept if memo else (lambda: None)  # "without": every step starts afresh
    try:
        t0 = time.perf_counter()
        batch, comps = collect(policy, surrogate, env, GroupDesign(size=4, horizon=(horizon, horizon)),
                               RewardSettings().weights(), g)
        return time.perf_counter() - t0, (batch.var, batch.u, batch.logp), comps["improvement"]
    finally:
        rollout.ContextMemo = kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="train-broad,train-shapes")
    ap.add_argument("--n-obs", default="50,200", help="Observational rows per campaign (stage 2 draws 50-200).")
    ap.add_argument("--campaigns", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    policy, surrogate = load_pretrained_policy()
    policy.eval()
    print(f"one rollout of {args.campaigns} campaigns x {args.horizon} steps, 4 candidates per state, one thread; "
          f"median of {args.repeats} draws x 2 (with, without, alternated)")
    for family in args.families.split(","):
        for n_obs in (int(n) for n in args.n_obs.split(",")):
            times = {True: [], False: []}
            for r in range(args.repeats):
                out = {}
                for memo in (True, False):
                    t, var, rew = one(policy, surrogate, family, n_obs, args.campaigns, args.horizon, r, memo)
                    times[memo].append(t)
                    out[memo] = (var, rew)
                (acts, rew), (acts0, rew0) = out[True], out[False]
                if not (all(torch.equal(a, b) for a, b in zip(acts, acts0)) and torch.equal(rew, rew0)):
                    raise SystemExit(f"{family}, n_obs {n_obs}: the rollouts with and without the memo differ (draw {r})")
            w, wo = statistics.median(times[True]), statistics.median(times[False])
            print(f"  {family}, {n_obs} observational rows: with the memo {w:.2f} s, without {wo:.2f} s "
                  f"({wo / w:.2f}x); the same actions and rewards")


if __name__ == "__main__":
    main()
