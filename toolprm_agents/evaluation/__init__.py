"""Evaluation: BFCL (official AST checker), API-Bank, ToolAlpaca and your own tools.

    >>> from toolprm_agents.evaluation import run_eval                                    # doctest: +SKIP
    >>> results = run_eval("bfcl:simple_python", search, "runs/eval/simple", limit=20)    # doctest: +SKIP
    >>> results["accuracy"], results["valid_rate"], results["compute"]["mean"]["tokens_total"]  # doctest: +SKIP

See ``docs/evaluation.md`` and ``toolprm-agents eval --help``.
"""

from .base import Benchmark, BenchmarkError, EvalItem, Score
from .benchmarks import benchmark_names, load_benchmark
from .runner import EvalConfigError, run_eval

__all__ = [
    "Benchmark",
    "BenchmarkError",
    "EvalConfigError",
    "EvalItem",
    "Score",
    "benchmark_names",
    "load_benchmark",
    "run_eval",
]
