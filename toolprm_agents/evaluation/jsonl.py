"""``jsonl:PATH``: evaluate on your own tools.

One JSON object a line::

    {"id": "weather-1",
     "question": "What's the weather in Paris, in celsius?",          # or "messages": [{"role", "content"}, ...]
     "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {...}}}],
     "expected": [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]}

``tools`` takes OpenAI-style function schemas (wrapped or bare ``{"name", "description",
"parameters"}``) or BFCL function docs; ``"expected": []`` means no call should be made;
``id`` defaults to ``line-N``. Blank lines and lines starting with ``#`` are skipped.

Matching (:func:`match_calls`):

* the same function names, as a multiset (order-free when there are several calls);
* every expected argument present with an equal value; values are equal when
  - strings: equal after lower-casing, trimming and collapsing runs of whitespace to one space;
  - numbers: numerically equal (``2 == 2.0``; booleans are not numbers);
  - lists: same length, equal item by item (in order);
  - objects: the same keys, equal value by value;
  - anything else (``null``, booleans): identical;
* no argument beyond the expected ones, unless its value equals the schema's default
  for that argument (under the same equality).

Several calls are matched one-to-one (any pairing that makes every call match counts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..matching import WHITESPACE, match_one_to_one
from ..matching import values_equal as _values_equal
from ..matching import whitespace_string as normalize_string
from ..schema import MISSING, ToolSpecError, to_tool_specs
from .base import Benchmark, BenchmarkError, EvalItem, Score, file_sha256

def values_equal(expected: Any, actual: Any) -> bool:
    """Equality of argument values under the jsonl matching rules (:data:`~toolprm_agents.matching.WHITESPACE`)."""
    return _values_equal(expected, actual, WHITESPACE)


def _defaults(tools: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """``{tool name: {argument: default}}`` for the arguments that declare a default."""
    try:
        specs = to_tool_specs(tools) if tools else []
    except ToolSpecError:
        return {}
    return {s.name: {a.name: a.default for a in s.args if a.default is not MISSING} for s in specs}


def call_mismatch(expected: dict, actual: dict, defaults: dict[str, Any]) -> tuple[str, str] | None:
    """Why ``actual`` does not match ``expected`` (``(error_type, message)``), or None if it does."""
    name = expected["name"]
    if actual.get("name") != name:
        return "wrong_name", f"expected a call to {name!r}, got {actual.get('name')!r}"
    exp_args = expected.get("arguments") or {}
    act_args = actual.get("arguments") or {}
    for k, v in exp_args.items():
        if k not in act_args:
            return "missing_argument", f"{name}: argument {k!r} missing (expected {v!r})"
        if not values_equal(v, act_args[k]):
            return "wrong_value", f"{name}: argument {k!r} is {act_args[k]!r}, expected {v!r}"
    for k, v in act_args.items():
        if k in exp_args:
            continue
        if k in defaults and values_equal(defaults[k], v):
            continue
        return "unexpected_argument", f"{name}: unexpected argument {k!r} = {v!r}" + (
            f" (its default is {defaults[k]!r})" if k in defaults else ""
        )
    return None


def match_calls(expected: Sequence[dict], actual: Sequence[dict], tools: Sequence[Any] = ()) -> tuple[bool, str | None, str | None]:
    """``(correct, error_type, error)`` for ``actual`` calls against ``expected`` ones."""
    defaults = _defaults(tools)
    if not expected:
        if not actual:
            return True, None, None
        return False, "unexpected_call", f"no call expected, got {', '.join(repr(c.get('name')) for c in actual)}"
    if len(actual) != len(expected):
        return False, "wrong_count", f"expected {len(expected)} call(s), got {len(actual)}"
    exp_names = sorted(e["name"] for e in expected)
    act_names = sorted(str(a.get("name")) for a in actual)
    if exp_names != act_names:
        return False, "wrong_name", f"expected calls to {exp_names}, got {act_names}"
    partner = match_one_to_one(expected, actual, lambda e, a: call_mismatch(e, a, defaults.get(e["name"], {})) is None)
    for e, j in zip(expected, partner):
        if j is None:
            # explain with the first same-named call
            candidates = [a for a in actual if a.get("name") == e["name"]]
            kind, why = call_mismatch(e, candidates[0], defaults.get(e["name"], {})) or ("mismatch", "calls differ")
            return False, kind, why
    return True, None, None


# ------------------------------------------------------------------------------------------


def parse_line(obj: Any, lineno: int) -> EvalItem:
    where = f"line {lineno}"
    if not isinstance(obj, dict):
        raise BenchmarkError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise BenchmarkError(f"{where}: 'messages' must be a list of {{'role', 'content'}} objects")
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    elif "question" in obj:
        if not isinstance(obj["question"], str):
            raise BenchmarkError(f"{where}: 'question' must be a string (use 'messages' for a conversation)")
        messages = [{"role": "user", "content": obj["question"]}]
    else:
        raise BenchmarkError(f"{where}: needs 'question' (a string) or 'messages' (a list)")
    tools = obj.get("tools", [])
    if not isinstance(tools, list):
        raise BenchmarkError(f"{where}: 'tools' must be a list of function schemas")
    if "expected" not in obj:
        raise BenchmarkError(f"{where}: needs 'expected' (a list of {{'name', 'arguments'}}; [] for no call)")
    expected = obj["expected"]
    if not isinstance(expected, list):
        raise BenchmarkError(f"{where}: 'expected' must be a list of {{'name', 'arguments'}} ([] for no call)")
    calls = []
    for k, c in enumerate(expected):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise BenchmarkError(f"{where}: expected[{k}] must be an object with a string 'name'")
        args = c.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                raise BenchmarkError(f"{where}: expected[{k}].arguments is a string that is not JSON") from None
        if not isinstance(args, dict):
            raise BenchmarkError(f"{where}: expected[{k}].arguments must be an object")
        calls.append({"name": c["name"], "arguments": args})
    item_id = obj.get("id", f"line-{lineno}")
    return EvalItem(id=str(item_id), messages=messages, tools=tools, expected=calls)


def load_jsonl(path: str | Path) -> list[EvalItem]:
    p = Path(path)
    if not p.is_file():
        raise BenchmarkError(f"jsonl benchmark file {str(path)!r} does not exist")
    items, seen = [], set()
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{p}: line {lineno} is not JSON: {exc}") from None
            try:
                item = parse_line(obj, lineno)
            except BenchmarkError as exc:
                raise BenchmarkError(f"{p}: {exc}") from None
            if item.id in seen:
                raise BenchmarkError(f"{p}: line {lineno}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    if not items:
        raise BenchmarkError(f"{p}: no items")
    return items


class JsonlBenchmark(Benchmark):
    """Your own items: ``jsonl:PATH``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"jsonl:{path}"
        self._items: list[EvalItem] | None = None

    def items(self):
        if self._items is None:
            self._items = load_jsonl(self.path)
        return self._items

    def score(self, item, calls, complete=True):
        if not complete and item.expected:
            return Score(False, "no_answer", "the search completed no answer")
        ok, kind, why = match_calls(item.expected, calls, item.tools)
        return Score(ok, kind, why)

    def fingerprint(self) -> str:
        return "sha256:" + file_sha256(self.path)


__all__ = ["JsonlBenchmark", "load_jsonl", "match_calls", "normalize_string", "values_equal"]
