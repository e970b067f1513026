"""Benchmark names: ``bfcl:CATEGORY``, ``apibank:l1``, ``apibank:l2``, ``toolalpaca``, ``jsonl:PATH``."""

from __future__ import annotations

from .base import Benchmark, BenchmarkError
from .bfcl import CATEGORIES


def benchmark_names() -> list[str]:
    return [f"bfcl:{c}" for c in CATEGORIES] + ["apibank:l1", "apibank:l2", "toolalpaca", "jsonl:PATH"]


def load_benchmark(name: str | Benchmark) -> Benchmark:
    """A benchmark by name (a :class:`Benchmark` is returned as is)."""
    if isinstance(name, Benchmark):
        return name
    key = name.strip()
    low = key.lower()
    if low.startswith("jsonl:"):
        from .jsonl import JsonlBenchmark

        path = key[len("jsonl:"):]
        if not path:
            raise BenchmarkError("jsonl: needs a path, e.g. jsonl:my_tools.jsonl")
        return JsonlBenchmark(path)
    if low.startswith("bfcl:"):
        from .bfcl import BFCLBenchmark

        return BFCLBenchmark(low[len("bfcl:"):])
    if low in ("apibank:l1", "apibank:l2", "toolalpaca", "apibank-l1", "apibank-l2"):
        from .hammer import HammerBenchmark

        return HammerBenchmark(low.replace("-", ":"))
    raise BenchmarkError(f"unknown benchmark {name!r}: choose one of {', '.join(benchmark_names())}")


def benchmark_slug(name: str) -> str:
    """A folder-friendly form of a benchmark name (``bfcl:simple_python`` -> ``bfcl-simple_python``)."""
    low = name.strip()
    if low.lower().startswith("jsonl:"):
        from pathlib import Path

        low = "jsonl-" + Path(low[len("jsonl:"):]).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in low.replace(":", "-"))
