"""Parent-posterior quality and cost: the shipped surrogate vs the exact BLR posterior vs the
PARENT_SCALE expert's posterior (dr2-ridge DR prior + sequential set posterior), on the same
held-out buffers.

    python benchmarks/surrogate_eval.py [--buffers 200] [--checkpoint PATH] [--out runs/surrogate-eval]
                                        [--no-expert] [--skip-cost]

Buffers: n_obs = 200 observational rows plus 0, 5 and 20 random single-variable interventions,
from the test stream of each family (never the training stream). The shipped model trained on
train-lin and train-nonlin (ER and scale-free graphs, linear / MLP / GP mechanisms, Gaussian
noise, d = 5-20), so: in-distribution lin-er-20, lin-sf-20, nonlin-er-10 (GP), mlp-er-10;
unseen graph prior small-mixed (chain / fork / collider, d = 3-6); unseen noise
lin-laplace-er-10, nonlin-hetero-er-10; unseen sizes lin-er-50, lin-er-100.
Then the inference cost per buffer at d = 20 (n = 220) and d = 100 (n = 1,000), and the
surrogate's peak memory at n = 10,000 (a fresh subprocess, its max RSS).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from acbo.scm import get_family, register_family, FAMILIES
from acbo.surrogate import load_pretrained, load_surrogate
from acbo.surrogate.evaluate import evaluate, summarise

FAMILIES_EVAL = ["lin-er-20", "lin-sf-20", "small-mixed", "nonlin-er-10", "mlp-er-10", "lin-laplace-er-10",
                 "nonlin-hetero-er-10", "lin-er-50", "lin-er-100"]

MEMORY_PROBE = """
import sys, torch
from acbo.surrogate import load_pretrained, load_surrogate
from acbo.surrogate.data import sample_buffers
from acbo.seeding import generator

def status(key):  # this process's own peak / current resident memory in kB (VmHWM is not inherited)
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

path = sys.argv[1]
model = load_pretrained() if path == "-" else load_surrogate(path)
data = sample_buffers("lin-er-20", 1, 10_000, 0, generator("mem"))
base = status("VmRSS:")
with torch.no_grad():
    model(data.batch)
print(base, status("VmHWM:"))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buffers", type=int, default=200)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--families", default=",".join(FAMILIES_EVAL))
    ap.add_argument("--n-int", default="0,5,20")
    ap.add_argument("--out", default="runs/surrogate-eval")
    ap.add_argument("--skip-quality", action="store_true", help="only the cost table and the memory probe")
    ap.add_argument("--timing-buffers", type=int, default=10)
    ap.add_argument("--no-expert", action="store_true", help="leave out the expert's posterior (its rows do not "
                    "depend on the checkpoint: an earlier run's serve), here and in the cost table")
    ap.add_argument("--skip-cost", action="store_true", help="only the quality tables")
    args = ap.parse_args()
    if "lin-er-100" not in FAMILIES:
        register_family(get_family("lin-er-50").with_(name="lin-er-100", d_range=(100, 100)))
    model = load_pretrained() if args.checkpoint is None else load_surrogate(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.buffers} buffers per row")
    frames = []
    for fam in ([] if args.skip_quality else args.families.split(",")):
        for n_int in (int(x) for x in args.n_int.split(",")):
            expert = get_family(fam).d_range[1] <= 20 and not args.no_expert  # the DR prior costs ~1 s per buffer at d = 50
            df = evaluate(model, fam, n_buffers=args.buffers, n_int=n_int, expert=expert)
            s = summarise(df)
            frames.append(s)
            print(s.drop(columns=["ms_per_buffer"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    if frames:
        pd.concat(frames).to_csv(out / "summary.csv", index=False)
    if args.skip_cost:
        return

    print("\n| d | n | surrogate ms / buffer | exact ms / buffer | expert ms / buffer | exact / surrogate | expert / surrogate |")
    print("|---|---|---|---|---|---|---|")
    for fam, n_int, n_obs in (("lin-er-20", 20, 200), ("lin-er-100", 20, 980)):
        df = evaluate(model, fam, n_buffers=args.timing_buffers, n_obs=n_obs, n_int=n_int, expert=not args.no_expert,
                      chunk=args.timing_buffers)
        ms = df.groupby("posterior")["seconds"].mean() * 1000
        ex = (f"{ms['expert']:.2f}", f"{ms['expert'] / ms['surrogate']:.1f}") if "expert" in ms else ("–", "–")
        print(f"| {int(df.d.iloc[0])} | {n_obs + n_int} | {ms['surrogate']:.2f} | {ms['exact']:.2f} | {ex[0]} | "
              f"{ms['exact'] / ms['surrogate']:.1f} | {ex[1]} |", flush=True)
    res = subprocess.run([sys.executable, "-c", MEMORY_PROBE, args.checkpoint or "-"], capture_output=True, text=True, check=True)
    base, peak = (int(v) for v in res.stdout.split())
    print(f"\npeak memory of one forward pass at d = 20, n = 10,000: {(peak - base) / 1024:.0f} MiB above the "
          f"process's {base / 1024:.0f} MiB before it (VmHWM - VmRSS, a fresh process)")


if __name__ == "__main__":
    main()
