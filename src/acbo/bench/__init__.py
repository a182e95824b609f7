"""Benchmark harness: methods x families x seeds -> JSONL, summary table, regret plot."""

from acbo.metrics import average_precision, f1_score, mean_ci, normalised_regret, posterior_metrics
from acbo.bench.runner import BenchConfig, BenchProblem, load_results, make_problem, run_bench, run_method, run_problem

__all__ = ["BenchConfig", "BenchProblem", "make_problem", "run_method", "run_bench", "run_problem", "load_results", "average_precision", "f1_score",
           "mean_ci", "normalised_regret", "posterior_metrics"]
