"""What every benchmark provides: items to answer and a way to score an answer.

A :class:`Benchmark` yields :class:`EvalItem` objects (a conversation, the tools offered
and the expected answer in the benchmark's own form) and scores the calls a search
chose for an item (:meth:`Benchmark.score` -> :class:`Score`). The runner
(:mod:`toolprm_agents.evaluation.runner`) does the rest.
"""

from __future__ import annotations

from ..errors import ToolPRMError

import abc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


class BenchmarkError(ToolPRMError, ValueError):
    """A benchmark name, file or item is invalid."""


@dataclass
class EvalItem:
    """One question of a benchmark.

    ``messages``: the conversation (``[{"role", "content"}]``); ``tools``: the tool
    definitions offered (any form :func:`~toolprm_agents.schema.to_tool_specs` accepts;
    may be empty); ``expected``: the ground truth in the benchmark's own form.
    """

    id: str
    messages: list[dict[str, str]]
    tools: list[Any]
    expected: Any
    meta: dict = field(default_factory=dict)


@dataclass
class Score:
    """How one answer fared.

    ``correct``: the benchmark's verdict; ``error_type``: a short code for why not (the
    official checker's ``error_type`` for BFCL), ``None`` when correct; ``error``: the
    explanation; ``details``: benchmark-specific counts (e.g. Hammer's name/argument counts).
    """

    correct: bool
    error_type: str | None = None
    error: str | None = None
    details: dict = field(default_factory=dict)


class Benchmark(abc.ABC):
    """A named set of items and a scoring rule."""

    name: str = "benchmark"

    @abc.abstractmethod
    def items(self) -> list[EvalItem]:
        """All items, in the benchmark's own order."""

    @abc.abstractmethod
    def score(self, item: EvalItem, calls: list[dict[str, Any]], complete: bool = True) -> Score:
        """Score ``calls`` (``[{"name", "arguments"}]``; ``[]`` = no call) for ``item``.

        ``complete`` is False when the search produced no well-formed answer (then
        ``calls`` is ``[]``).
        """

    def summarize(self, items: Sequence[dict]) -> dict:
        """Benchmark-specific metrics over finished item records (default: none)."""
        return {}

    def fingerprint(self) -> str:
        """Identifies the data: a rerun in the same output folder must see the same."""
        return ""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def no_tools(tools: Sequence[Any]) -> bool:
    return len(tools) == 0
