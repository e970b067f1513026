"""BFCL (Berkeley Function Calling Leaderboard) categories, scored by the official AST checker.

The data and the checker come from the ``bfcl-eval`` package, installed ``--no-deps``
(its full dependency set is about 6 GB and its checker import then still fails). The
checker module imports ``bfcl_eval.constants.model_config``, which pulls every model
handler and their SDKs; :func:`load_checker` registers a stand-in module exposing only
``MODEL_CONFIG_MAPPING`` first (the checker reads just
``MODEL_CONFIG_MAPPING[model_name].underscore_to_dot``, for function names with a ".").
:data:`MODEL_NAME` is ``gorilla-openfunctions-v2``, whose entry keeps dots, as our answers
do. ``BFCL_PROJECT_ROOT`` is pointed at a temporary folder (when unset) so that nothing
bfcl-eval might create lands in site-packages.

Scoring follows ``bfcl_eval.eval_checker.eval_runner``:

* ``irrelevance`` / ``live_irrelevance``: correct iff no call is made (an answer that is not
  a call -- here, a search that completed no answer -- counts as no call, as BFCL's decoder
  failure does);
* every other category: ``ast_checker(raw function docs, [{name: arguments}], possible
  answer, Language.PYTHON, category, MODEL_NAME)``; only ``valid`` counts.

Four ``live_irrelevance`` entries offer no function at all; with no tools the only
possible answer is no call, so the runner records that without running the model.
Five live ground-truth entries cannot pass the checker (:data:`DEFECTIVE_GROUND_TRUTH`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .base import Benchmark, BenchmarkError, EvalItem, Score

CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
)
ALIASES = {"simple": "simple_python"}
VERSION_PREFIX = "BFCL_v4"
MODEL_NAME = "gorilla-openfunctions-v2"

# Ground-truth entries that no output can pass (the checker rejects the ground truth itself).
DEFECTIVE_GROUND_TRUTH = frozenset(
    {
        "live_simple_106-63-0",
        "live_simple_112-68-0",
        "live_multiple_507-149-4",
        "live_multiple_862-181-3",
        "live_multiple_964-207-0",
    }
)


def is_irrelevance(category: str) -> bool:
    return "irrelevance" in category


# ------------------------------------------------------------------------------------------
# the package


def bfcl_package_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkError(
            "BFCL benchmarks need the bfcl-eval package: pip install --no-deps bfcl-eval "
            "(its checker needs only the standard library here)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def bfcl_version() -> str:
    try:
        from importlib.metadata import version

        return version("bfcl-eval")
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


@dataclass(frozen=True)
class _ModelConfigStandIn:
    model_name: str
    underscore_to_dot: bool = False


@functools.lru_cache(maxsize=1)
def load_checker() -> tuple[Callable, Any]:
    """``(ast_checker, Language)`` from bfcl-eval, imported without its heavy dependencies."""
    bfcl_package_dir()
    os.environ.setdefault("BFCL_PROJECT_ROOT", tempfile.mkdtemp(prefix="bfcl-project-root-"))
    name = "bfcl_eval.constants.model_config"
    if name not in sys.modules:
        stand_in = types.ModuleType(name)
        stand_in.__doc__ = "toolprm-agents stand-in: only what bfcl_eval's AST checker reads."
        stand_in.ModelConfig = _ModelConfigStandIn  # type: ignore[attr-defined]
        stand_in.MODEL_CONFIG_MAPPING = {MODEL_NAME: _ModelConfigStandIn(MODEL_NAME, underscore_to_dot=False)}  # type: ignore[attr-defined]
        sys.modules[name] = stand_in
    mapping = sys.modules[name].MODEL_CONFIG_MAPPING
    if MODEL_NAME.replace("_", "/") not in mapping or mapping[MODEL_NAME.replace("_", "/")].underscore_to_dot:
        raise BenchmarkError(f"bfcl_eval's MODEL_CONFIG_MAPPING has no dot-keeping entry {MODEL_NAME!r}")
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    return ast_checker, Language


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_category(category: str) -> list[EvalItem]:
    """The items of one BFCL category, with possible answers joined by id."""
    category = ALIASES.get(category, category)
    if category not in CATEGORIES:
        raise BenchmarkError(f"unknown BFCL category {category!r}: choose one of {', '.join(CATEGORIES)}")
    data = bfcl_package_dir() / "data"
    entries = _read_jsonl(data / f"{VERSION_PREFIX}_{category}.json")
    answers: dict[str, Any] = {}
    if not is_irrelevance(category):
        for row in _read_jsonl(data / "possible_answer" / f"{VERSION_PREFIX}_{category}.json"):
            answers[row["id"]] = row["ground_truth"]
    items = []
    for e in entries:
        if not is_irrelevance(category) and e["id"] not in answers:
            raise BenchmarkError(f"BFCL {category}: entry {e['id']!r} has no possible answer")
        items.append(
            EvalItem(
                id=e["id"],
                messages=flatten_question(e["question"]),
                tools=e.get("function") or [],
                expected=answers.get(e["id"], []),
                meta={"category": category},
            )
        )
    return items


def flatten_question(question: Any) -> list[dict[str, str]]:
    """BFCL's ``question`` (a list of turns, each a list of messages) as one message list."""
    if isinstance(question, str):
        return [{"role": "user", "content": question}]
    out: list[dict[str, str]] = []
    for turn in question:
        if isinstance(turn, dict):
            out.append({"role": turn["role"], "content": turn.get("content") or ""})
        else:
            out.extend({"role": m["role"], "content": m.get("content") or ""} for m in turn)
    return out


def to_bfcl_output(calls: list[dict[str, Any]]) -> list[dict[str, dict]]:
    """``[{"name", "arguments"}]`` as the checker's ``[{func_name: {arg: value}}]``."""
    return [{c["name"]: dict(c.get("arguments") or {})} for c in calls]


def check(item: EvalItem, calls: list[dict[str, Any]], complete: bool = True) -> Score:
    """Score ``calls`` for a BFCL item the way BFCL's eval runner does."""
    category = item.meta["category"]
    if is_irrelevance(category):
        if not calls:
            return Score(True)
        return Score(
            False,
            "irrelevance_error:decoder_success",
            f"made {len(calls)} call(s) ({', '.join(c['name'] for c in calls)}) where none should be made",
        )
    if not complete:
        return Score(False, "ast_decoder:decoder_failed", "the search completed no answer")
    ast_checker, Language = load_checker()
    try:
        result = ast_checker(item.tools, to_bfcl_output(calls), item.expected, Language.PYTHON, category, MODEL_NAME)
    except Exception as exc:  # the checker assumes well-formed docs and outputs
        return Score(False, "checker_exception", f"{type(exc).__name__}: {exc}")
    if result.get("valid"):
        return Score(True)
    return Score(False, result.get("error_type", "unknown"), _error_text(result.get("error")))


def _error_text(err: Any) -> str:
    if isinstance(err, list):
        return " ".join(e if isinstance(e, str) else json.dumps(e, ensure_ascii=False, default=str) for e in err)
    return str(err)


class BFCLBenchmark(Benchmark):
    #: BFCL's docs have enums that contradict their type ({"type": "integer", "enum": ["1"]})
    #: and gold answers that use the enum's values: keep them as written
    keeps_mismatched_enums = True
    """One BFCL category (``bfcl:simple_python``, ``bfcl:live_multiple``, ...)."""

    def __init__(self, category: str):
        self.category = ALIASES.get(category, category)
        if self.category not in CATEGORIES:
            raise BenchmarkError(f"unknown BFCL category {category!r}: choose one of {', '.join(CATEGORIES)}")
        self.name = f"bfcl:{self.category}"
        self._items: list[EvalItem] | None = None

    def items(self) -> list[EvalItem]:
        if self._items is None:
            self._items = load_category(self.category)
        return self._items

    def score(self, item, calls, complete=True):
        return check(item, calls, complete)

    def fingerprint(self) -> str:
        return f"bfcl-eval=={bfcl_version()}"


# ------------------------------------------------------------------------------------------
# ground truth as an answer (tests, sanity checks)


def ground_truth_calls(possible_answer: list[dict], functions: list[dict] | None = None) -> list[dict[str, Any]]:
    """One answer the possible answer accepts, built from its options.

    A parameter that may be omitted (``""`` among its options) is left out unless the
    function doc (``functions``) marks it required; otherwise its first option other
    than ``""`` is used. Dict-typed values (and lists of dicts) carry option lists one
    level down and are resolved the same way.
    """
    required: dict[str, set] = {}
    for f in functions or []:
        required[f["name"]] = set((f.get("parameters") or {}).get("required") or [])
    calls = []
    for entry in possible_answer:
        (name, params), = entry.items()
        args = {}
        for param, options in params.items():
            values = [o for o in options if o != ""]
            if not values or ("" in options and param not in required.get(name, set())):
                continue
            args[param] = _pick(values[0])
        calls.append({"name": name, "arguments": args})
    return calls


def _pick(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, opts in value.items():
            if not isinstance(opts, list):
                out[k] = opts
            elif "" not in opts and opts:
                out[k] = opts[0]
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [_pick(v) for v in value]
    return value


__all__ = [
    "CATEGORIES",
    "DEFECTIVE_GROUND_TRUTH",
    "MODEL_NAME",
    "BFCLBenchmark",
    "check",
    "flatten_question",
    "ground_truth_calls",
    "load_category",
    "load_checker",
    "to_bfcl_output",
]
