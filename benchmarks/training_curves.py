"""Validation curves and throughput of policy training runs, from their log.jsonl files.

    python benchmarks/training_curves.py runs/gpu2/cand runs/gpu2/traj ...

Prints, per run: iterations done, mean env steps/s and seconds per iteration, zero-variance
group fraction, clip fraction and entropy over the last 20 iterations, and the validation
regret at T (and averaged over steps) at every validation point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from acbo.policy.checkpoint import read_policy_checkpoint


def main() -> None:
    for run in sys.argv[1:]:
        log = Path(run) / "log.jsonl"
        recs = [json.loads(line) for line in open(log)] if log.exists() else []
        its = [r for r in recs if "env_steps_per_s" in r]
        vals = [r for r in read_policy_checkpoint(Path(run) / "policy.pt")["history"] if "val_regret_T" in r]
        last = its[-20:]
        mean = lambda k: sum(r[k] for r in last) / max(len(last), 1)
        print(f"{run}: {its[-1]['iteration'] if its else 0} iterations, "
              f"{sum(r['env_steps_per_s'] for r in its) / max(len(its), 1):.0f} env steps/s, "
              f"{sum(r['seconds'] for r in its) / max(len(its), 1):.2f} s/iteration; last 20: "
              f"zero-var groups {mean('zero_var_groups'):.2f}, clip frac {mean('clip_frac'):.3f}, "
              f"entropy {mean('entropy'):.2f}, reward {mean('reward_mean'):.3f}" if its else f"{run}: BC only")
        print("  val regret@T (mean over steps) by iteration: " + ", ".join(
            f"{r['iteration']}: {r['val_regret_T']:.3f} ({r['val_regret_mean']:.3f})" for r in vals))


if __name__ == "__main__":
    main()
