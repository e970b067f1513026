"""API-Bank (levels 1 and 2) and ToolAlpaca, in Hammer's processed form, with Hammer's metrics.

The data are verbatim copies of MadeAgents/Hammer's ``data/test/original/`` sets in
``toolprm_agents/data/hammer-eval/`` (Apache-2.0). Each item is
``{"query": str or [messages], "tools": [{"name", "description", "parameters"}], "answers": [{"name", "arguments"}]}``;
``parameters`` is a flat ``{arg: {"type", "description", "required"?}}`` that
:func:`tool_to_schema` turns into JSON Schema (API-Bank types ``str``/``int``/``float``/
``bool``/``list``/``list(str)``; arguments without ``"required": true`` are optional, as
the data say nothing else). API-Bank's ``agent`` turns are assistant turns.

Scores (all documented in ``docs/evaluation.md``):

* **accuracy** -- exact call match: as many calls as expected, and a one-to-one pairing
  of predicted and expected calls with equal names and equal arguments. Arguments are
  compared as Hammer does: empty-string values are dropped, the rest compared as
  ``str(value)`` (so ``3`` equals ``"3"``, but ``"Paris"`` does not equal ``"paris"``).
* **name / argument precision, recall, F1** -- Hammer's ``evaluation/evaluate.py``,
  micro-averaged over the whole set: a predicted call's name is correct when it pairs
  with an expected call of that name; an expected argument is correct when the paired
  predicted call has it with an equal value (as above). Predicted arguments count toward
  precision, expected ones toward recall. An answer that is not a call list (here: a
  search that completed none) counts as one wrong predicted call. Two deliberate
  differences from Hammer's script: pairing is one-to-one (Hammer counts every predicted
  call whose name occurs among the expected ones, so repeating a call inflates its name
  precision), and a call with no arguments on both sides adds nothing to the argument
  counts (Hammer's adds one correct argument but no expected one, so recall can pass 1).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from ..matching import match_one_to_one
from .base import Benchmark, BenchmarkError, EvalItem, Score, file_sha256

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "hammer-eval"
SETS = {"apibank:l1": "apibank_l1.json", "apibank:l2": "apibank_l2.json", "toolalpaca": "toolalpaca.json"}

_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "dict": "object",
    "object": "object",
    "list": "array",
    "array": "array",
}
_LIST_OF = re.compile(r"^(?:list|List|array)\s*[\(\[]\s*(\w+)\s*[\)\]]$")
_ROLES = {"agent": "assistant", "bot": "assistant", "human": "user"}


def type_schema(type_name: Any) -> dict:
    """JSON Schema for one of Hammer's type names (unknown types: any value)."""
    if not isinstance(type_name, str):
        return {}
    t = type_name.strip()
    if t in _TYPES:
        out: dict = {"type": _TYPES[t]}
        if out["type"] == "array":
            out["items"] = {}
        return out
    m = _LIST_OF.match(t)
    if m:
        return {"type": "array", "items": type_schema(m.group(1))}
    return {}


def tool_to_schema(tool: dict) -> dict:
    """A Hammer tool as an OpenAI-style function schema ``{"name", "description", "parameters"}``."""
    props, required = {}, []
    params = tool.get("parameters") or {}
    if params.get("type") == "object" and "properties" in params:  # already JSON Schema
        return {"name": tool["name"], "description": tool.get("description", ""), "parameters": params}
    for arg, spec in params.items():
        spec = spec if isinstance(spec, dict) else {}
        schema = type_schema(spec.get("type"))
        if spec.get("description"):
            schema["description"] = spec["description"]
        if "default" in spec:
            schema["default"] = spec["default"]
        props[arg] = schema
        if spec.get("required") is True:
            required.append(arg)
    return {
        "name": tool["name"],
        "description": tool.get("description", ""),
        "parameters": {"type": "object", "properties": props, "required": required},
    }


def query_messages(query: Any) -> list[dict[str, str]]:
    if isinstance(query, str):
        return [{"role": "user", "content": query}]
    return [{"role": _ROLES.get(m["role"], m["role"]), "content": m.get("content") or ""} for m in query]


def load_set(name: str, path: str | Path | None = None) -> list[EvalItem]:
    key = name.lower()
    if path is None:
        if key not in SETS:
            raise BenchmarkError(f"unknown Hammer set {name!r}: choose one of {', '.join(SETS)}")
        path = DATA_DIR / SETS[key]
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    prefix = key.replace(":", "_")
    return [
        EvalItem(
            id=f"{prefix}_{i}",
            messages=query_messages(row["query"]),
            tools=[tool_to_schema(t) for t in row["tools"]],
            expected=[{"name": a["name"], "arguments": dict(a.get("arguments") or {})} for a in row["answers"]],
        )
        for i, row in enumerate(data)
    ]


# ------------------------------------------------------------------------------------------
# metrics


def _norm_args(args: Any) -> dict[str, str]:
    """Hammer's argument view: empty-string values dropped, values as ``str``."""
    if not isinstance(args, dict):
        return {}
    return {k: str(v) for k, v in args.items() if v != ""}


def _arg_hits(expected: dict[str, str], predicted: dict[str, str]) -> int:
    return sum(1 for k, v in expected.items() if k in predicted and predicted[k] == v)


def pair_calls(expected: Sequence[dict], predicted: Sequence[dict]) -> list[tuple[int, int]]:
    """One-to-one ``(expected index, predicted index)`` pairs of same-named calls.

    Each predicted call, in order, takes the unpaired expected call of its name with the
    most equal arguments (the first on ties).
    """
    used: set[int] = set()
    pairs = []
    exp_norm = [_norm_args(e.get("arguments")) for e in expected]
    for j, p in enumerate(predicted):
        pn = _norm_args(p.get("arguments"))
        best, best_hits = None, -1
        for i, e in enumerate(expected):
            if i in used or e["name"] != p.get("name"):
                continue
            hits = _arg_hits(exp_norm[i], pn)
            if hits > best_hits:
                best, best_hits = i, hits
        if best is not None:
            used.add(best)
            pairs.append((best, j))
    return pairs


def exact_match(expected: Sequence[dict], predicted: Sequence[dict]) -> bool:
    """As many calls as expected, each paired with an expected call of equal name and arguments."""
    if len(expected) != len(predicted):
        return False
    exp = [(e["name"], _norm_args(e.get("arguments"))) for e in expected]
    pred = [(p.get("name"), _norm_args(p.get("arguments"))) for p in predicted]
    return None not in match_one_to_one(pred, exp, lambda p, e: p == e)


def call_counts(expected: Sequence[dict], predicted: Sequence[dict] | None) -> dict[str, int]:
    """Hammer's counts for one item (``predicted=None``: not a call list)."""
    gold_names = len(expected)
    gold_args = sum(len(_norm_args(e.get("arguments"))) for e in expected)
    if predicted is None:
        return {"gold_names": gold_names, "pred_names": 1, "correct_names": 0, "gold_args": gold_args, "pred_args": 0, "correct_args": 0}
    pairs = pair_calls(expected, predicted)
    correct_args = sum(
        _arg_hits(_norm_args(expected[i].get("arguments")), _norm_args(predicted[j].get("arguments"))) for i, j in pairs
    )
    return {
        "gold_names": gold_names,
        "pred_names": len(predicted),
        "correct_names": len(pairs),
        "gold_args": gold_args,
        "pred_args": sum(len(_norm_args(p.get("arguments"))) for p in predicted),
        "correct_args": correct_args,
    }


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def summarize_counts(counts: Sequence[dict]) -> dict:
    tot = {k: sum(c.get(k, 0) for c in counts) for k in ("gold_names", "pred_names", "correct_names", "gold_args", "pred_args", "correct_args")}
    return {
        "name": prf(tot["correct_names"], tot["pred_names"], tot["gold_names"]),
        "arguments": prf(tot["correct_args"], tot["pred_args"], tot["gold_args"]),
        "counts": tot,
    }


def _describe_mismatch(expected: Sequence[dict], predicted: Sequence[dict]) -> tuple[str, str]:
    if len(predicted) != len(expected):
        return "wrong_count", f"expected {len(expected)} call(s), got {len(predicted)}"
    pairs = dict(pair_calls(expected, predicted))
    for i, e in enumerate(expected):
        if i not in pairs:
            return "wrong_name", f"no call to {e['name']!r} (got {', '.join(repr(p.get('name')) for p in predicted)})"
    for i, j in pairs.items():
        en, pn = _norm_args(expected[i].get("arguments")), _norm_args(predicted[j].get("arguments"))
        for k, v in en.items():
            if k not in pn:
                return "missing_argument", f"{expected[i]['name']}: argument {k!r} missing (expected {v!r})"
            if pn[k] != v:
                return "wrong_value", f"{expected[i]['name']}: argument {k!r} is {pn[k]!r}, expected {v!r}"
        extra = sorted(set(pn) - set(en))
        if extra:
            return "unexpected_argument", f"{expected[i]['name']}: unexpected argument(s) {', '.join(map(repr, extra))}"
    return "mismatch", "calls differ"


class HammerBenchmark(Benchmark):
    """``apibank:l1``, ``apibank:l2`` or ``toolalpaca``."""

    def __init__(self, name: str, path: str | Path | None = None):
        key = name.lower()
        if path is None and key not in SETS:
            raise BenchmarkError(f"unknown benchmark {name!r}: choose one of {', '.join(SETS)}")
        self.name = key
        self.path = Path(path) if path is not None else DATA_DIR / SETS[key]
        self._items: list[EvalItem] | None = None

    def items(self):
        if self._items is None:
            self._items = load_set(self.name, self.path)
        return self._items

    def score(self, item, calls, complete=True):
        counts = call_counts(item.expected, calls if complete else None)
        if not complete:
            return Score(False, "no_answer", "the search completed no answer", {"counts": counts})
        if exact_match(item.expected, calls):
            return Score(True, details={"counts": counts})
        kind, why = _describe_mismatch(item.expected, calls)
        return Score(False, kind, why, {"counts": counts})

    def summarize(self, items):
        return summarize_counts([(it.get("details") or {}).get("counts", {}) for it in items])

    def fingerprint(self) -> str:
        return "sha256:" + file_sha256(self.path)


__all__ = [
    "HammerBenchmark",
    "call_counts",
    "exact_match",
    "load_set",
    "pair_calls",
    "prf",
    "summarize_counts",
    "tool_to_schema",
    "type_schema",
]
