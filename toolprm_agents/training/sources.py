"""Training sources in one form, and the guard that keeps evaluation sets out of training.

Every source becomes a list of :class:`Example`: a conversation (OpenAI-style messages;
earlier tool calls as assistant ``tool_calls``, their results as ``tool`` messages), the
candidate tools (``{"name", "description", "parameters"}`` JSON-schema dicts that
:func:`toolprm_agents.schema.to_tool_specs` reads) and the gold calls of the next
assistant turn (``[{"name", "arguments"}]``; empty for "no call").

Sources (files under :func:`data_root`, a copy of ``../shared/data`` with licences):

* **Seal-Tools** (``seal-tools/``): ``dev.jsonl`` / ``test_in_domain.jsonl`` queries with
  their calls over the 4,076-tool pool of ``tool.jsonl``; each query gets its gold tools
  plus ``distractors`` tools drawn from the pool (half from the same field).
* **glaive tool-call demo** (``glaive-toolcall/``): every ``function_call`` turn of the
  300 conversations (the turns before it become the messages), and optionally the
  ``human -> gpt`` turns of conversations with tools as "no call" examples.
* **API-Bank level-3 train** (``api-bank/training-data/lv3-train.json``): the "Generate
  API Request" items; tools are the APIs the ``ToolSearcher`` retrieved earlier in the
  dialogue, earlier requests become assistant calls with their results.

Evaluation sets (BFCL from the ``bfcl_eval`` package data, API-Bank level 1/2 and
ToolAlpaca from ``hammer-eval/``) are indexed by :class:`EvalIndex`;
:func:`decontaminate` drops every training example that shares a query (exact after
normalisation, containing a whole evaluation query of 5+ words, or a 13-word run) or a tool
name (after normalisation) with them.
API-Bank's ``ToolSearcher`` is an evaluation tool: its requests are dropped from the
level-3 dialogues and items whose gold call is a ``ToolSearcher`` request are skipped.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..schema import ToolSpecError, to_tool_specs, validate_call

__all__ = [
    "Example",
    "EvalIndex",
    "data_root",
    "load_seal_tools",
    "load_glaive",
    "load_apibank_lv3",
    "load_sources",
    "decontaminate",
    "normalize_text",
    "normalize_tool_name",
    "stable_seed",
]

REPO_DATA = Path(__file__).resolve().parents[2] / "training" / "data"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where the source files are: ``explicit``, ``$TOOLPRM_TRAINING_DATA``, the repository's
    ``training/data`` copy, or ``../shared/data`` (first that exists)."""
    for cand in (explicit, os.environ.get("TOOLPRM_TRAINING_DATA"), REPO_DATA, SHARED_DATA):
        if cand and Path(cand).is_dir() and any(Path(cand).iterdir()):
            return Path(cand)
    raise FileNotFoundError(
        "no training data folder found: pass --data-root, set $TOOLPRM_TRAINING_DATA, or keep training/data/ "
        f"(looked at {REPO_DATA} and {SHARED_DATA})"
    )


def stable_seed(*parts: Any) -> int:
    """A seed from ``parts`` that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclass
class Example:
    """One training query: conversation, candidate tools, gold calls of the next turn."""

    id: str
    source: str
    messages: list[dict]
    tools: list[dict]
    calls: list[dict]
    meta: dict = field(default_factory=dict)

    def query_texts(self) -> list[str]:
        """The user turns (what an overlap with evaluation queries is checked on)."""
        return [m["content"] for m in self.messages if m.get("role") == "user" and m.get("content")]

    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Example":
        return cls(d["id"], d["source"], d["messages"], d["tools"], d["calls"], d.get("meta", {}))


# ------------------------------------------------------------------------------------------
# types and values


_TYPE_MAP = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
    "dict": "object", "object": "object", "datetime": "string", "date": "string", "time": "string",
}


def _param_schema(raw: dict) -> dict:
    """A loosely typed parameter (``{"type": "str", "description": ...}``) as JSON Schema."""
    out: dict[str, Any] = {}
    t = str(raw.get("type", "")).strip()
    low = t.lower()
    if low in _TYPE_MAP:
        out["type"] = _TYPE_MAP[low]
    elif low.startswith(("list", "array")):
        out["type"] = "array"
    elif low.startswith("dict"):
        out["type"] = "object"
    if out.get("type") == "array":
        out["items"] = {}
    desc = raw.get("description")
    if isinstance(desc, str) and desc:
        out["description"] = desc
    if isinstance(raw.get("enum"), list) and raw["enum"] and out.get("type") in ("string", "integer", "number"):
        out["enum"] = raw["enum"]
    return out


def _coerce(value: Any, schema: dict) -> Any:
    """``value`` made to fit a simple ``schema`` type where the source was sloppy ("63" for int)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
                return int(value)
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif kind == "number":
            if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
                v = float(value)
                return int(v) if v.is_integer() and "." not in value else v
        elif kind == "boolean" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        elif kind == "string" and not isinstance(value, (str, list, dict)) and value is not None:
            return str(value) if not isinstance(value, bool) else str(value).lower()
        elif kind == "array" and isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = [value]
            return parsed if isinstance(parsed, list) else [parsed]
    except (ValueError, TypeError):
        pass
    return value


def _fit_calls(tools: list[dict], calls: list[dict]) -> list[dict] | None:
    """Gold calls coerced to the tools' schemas; ``None`` if a call still does not fit."""
    try:
        specs = {s.name: s for s in to_tool_specs(tools)}
    except ToolSpecError:
        return None
    out = []
    for call in calls:
        spec = specs.get(call["name"])
        if spec is None or not isinstance(call.get("arguments"), dict):
            return None
        args = {}
        for k, v in call["arguments"].items():
            schema = next((a.schema for a in spec.args if a.name == k), None)
            if schema is None:
                return None
            args[k] = _coerce(v, schema)
        if validate_call(spec, args):
            return None
        out.append({"name": call["name"], "arguments": args})
    return out


def _dedupe_tools(tools: Iterable[dict]) -> list[dict]:
    seen, out = set(), []
    for t in tools:
        if t["name"] not in seen:
            seen.add(t["name"])
            out.append(t)
    return out


# ------------------------------------------------------------------------------------------
# Seal-Tools


def _seal_tool(raw: dict) -> dict:
    props = {k: _param_schema(v) for k, v in raw.get("parameters", {}).items()}
    required = [r for r in raw.get("required", []) if r in props]
    return {
        "name": raw["api_name"],
        "description": raw.get("api_description", ""),
        "parameters": {"type": "object", "properties": props, "required": required},
    }


def load_seal_tools(
    root: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] = ("dev", "test_in_domain"),
    distractors: int = 2,
    seed: int = 0,
    limit: int | None = None,
    max_calls: int | None = None,
    exclude_tools: "EvalIndex | None" = None,
) -> tuple[list[Example], dict]:
    """Seal-Tools queries with gold tools + distractors; returns ``(examples, skipped counts)``.

    ``exclude_tools``: an :class:`EvalIndex` whose tool names are never drawn as distractors.
    """
    folder = data_root(root) / "seal-tools"
    pool_raw = [json.loads(line) for line in (folder / "tool.jsonl").open() if line.strip()]
    pool = {r["api_name"]: _seal_tool(r) for r in pool_raw}
    field_of = {r["api_name"]: r.get("field", "") for r in pool_raw}
    by_field: dict[str, list[str]] = {}
    for name, f in field_of.items():
        by_field.setdefault(f, []).append(name)
    names = sorted(n for n in pool if exclude_tools is None or exclude_tools.tool_hit(n) is None)
    allowed = set(names)
    for f in by_field:
        by_field[f] = [n for n in by_field[f] if n in allowed]
    out: list[Example] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for split in splits:
        for line in (folder / f"{split}.jsonl").open():
            if not line.strip():
                continue
            row = json.loads(line)
            calls = [{"name": c["api"], "arguments": dict(c.get("parameters") or {})} for c in row["calling"]]
            if any("API_call_" in json.dumps(c["arguments"]) for c in calls):
                skip("seal-tools: argument refers to an earlier call's output")
                continue
            if max_calls is not None and len(calls) > max_calls:
                skip("seal-tools: more calls than max_calls")
                continue
            if any(c["name"] not in pool for c in calls):
                skip("seal-tools: unknown api")
                continue
            rng = random.Random(stable_seed("seal", seed, row["id"]))
            gold_names = list(dict.fromkeys(c["name"] for c in calls))
            same = [n for n in by_field.get(field_of[gold_names[0]], []) if n not in gold_names]
            n_same = min(distractors // 2 + distractors % 2, len(same))
            extra = rng.sample(same, n_same) if n_same else []
            while len(extra) < min(distractors, len(names) - len(gold_names)):
                cand = rng.choice(names)
                if cand not in gold_names and cand not in extra:
                    extra.append(cand)
            tools = [pool[n] for n in gold_names + extra]
            rng.shuffle(tools)
            fitted = _fit_calls(tools, calls)
            if fitted is None:
                skip("seal-tools: gold call does not fit the tool schema")
                continue
            out.append(Example(f"seal-tools/{row['id']}", "seal-tools", [{"role": "user", "content": row["query"]}], tools, fitted))
            if limit is not None and len(out) >= limit:
                return out, skipped
    return out, skipped


# ------------------------------------------------------------------------------------------
# glaive tool-call demo


def load_glaive(
    root: str | os.PathLike | None = None, *, no_call: bool = True, limit: int | None = None
) -> tuple[list[Example], dict]:
    """One example per ``function_call`` turn (and per first ``gpt`` reply when ``no_call``)."""
    path = data_root(root) / "glaive-toolcall" / "glaive_toolcall_en_demo.json"
    rows = json.loads(path.read_text())
    out: list[Example] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for i, row in enumerate(rows):
        try:
            tools = json.loads(row.get("tools") or "[]")
        except ValueError:
            tools = []
        if not tools:
            skip("glaive: conversation without tools")
            continue
        tools = _dedupe_tools(tools)
        messages: list[dict] = []
        k = 0
        for turn in row["conversations"]:
            who, value = turn["from"], turn["value"]
            if who == "human":
                messages.append({"role": "user", "content": value})
            elif who == "function_call":
                try:
                    call = json.loads(value)
                    args = call.get("arguments", {})
                    if isinstance(args, str):
                        args = json.loads(args or "{}")
                    call = {"name": call["name"], "arguments": args}
                except (ValueError, KeyError, TypeError):
                    skip("glaive: unreadable function_call")
                    break
                fitted = _fit_calls(tools, [call])
                if fitted is None:
                    skip("glaive: gold call does not fit the tool schema")
                else:
                    out.append(Example(f"glaive/{i}/{k}", "glaive", [dict(m) for m in messages], tools, fitted))
                k += 1
                messages.append({"role": "assistant", "content": "", "tool_calls": [{"function": fitted[0] if fitted else call}]})
            elif who == "observation":
                messages.append({"role": "tool", "content": value})
            elif who == "gpt":
                if no_call and messages and messages[-1]["role"] == "user":
                    out.append(Example(f"glaive/{i}/{k}", "glaive", [dict(m) for m in messages], tools, []))
                    k += 1
                messages.append({"role": "assistant", "content": value})
        if limit is not None and len(out) >= limit:
            break
    return out[:limit] if limit is not None else out, skipped


# ------------------------------------------------------------------------------------------
# API-Bank level 3 (train)

EVAL_ONLY_APIBANK_TOOLS = frozenset({"ToolSearcher"})


def _apibank_tool(d: dict) -> dict:
    params = d.get("input_parameters") or {}
    if not isinstance(params, dict):
        params = {str(k): {"type": "str"} for k in params} if isinstance(params, (list, set, tuple)) else {}
    props = {k: _param_schema(v if isinstance(v, dict) else {"type": "str"}) for k, v in params.items()}
    return {"name": d["name"], "description": d.get("description", ""), "parameters": {"type": "object", "properties": props}}


def _parse_apibank_request(text: str) -> list[dict] | None:
    """``[Name(k='v', n=3), ...]`` (the API-Request format) as calls; ``None`` if unreadable."""
    text = text.strip()
    if text.startswith("API-Request:"):
        text = text[len("API-Request:"):].strip()
    if not text.startswith("["):
        return None
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, ast.List):
        return None
    calls = []
    for node in tree.elts:
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
            return None
        args = {}
        for kw in node.keywords:
            try:
                args[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                return None
        calls.append({"name": node.func.id, "arguments": args})
    return calls


def load_apibank_lv3(root: str | os.PathLike | None = None, *, limit: int | None = None) -> tuple[list[Example], dict]:
    """API-Bank level-3 "Generate API Request" items (``ToolSearcher`` requests removed)."""
    path = data_root(root) / "api-bank" / "training-data" / "lv3-train.json"
    rows = json.loads(path.read_text())
    out: list[Example] = []
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for i, row in enumerate(rows):
        inp = row["input"]
        if not inp.rstrip().endswith("Generate API Request:"):
            continue  # response-generation items
        gold = _parse_apibank_request(row["output"])
        if gold is None:
            skip("api-bank: unreadable gold request")
            continue
        if any(c["name"] in EVAL_ONLY_APIBANK_TOOLS for c in gold):
            skip("api-bank: gold is a ToolSearcher request (an evaluation tool)")
            continue
        lines = inp.split("\n")[1:]  # line 0: the ToolSearcher description
        messages: list[dict] = []
        tools: list[dict] = []
        ok = True
        for line in lines:
            if line.startswith("User:"):
                text = line[len("User:"):].strip()
                text, _, when = text.partition("TIME:")
                messages.append({"role": "user", "content": text.strip() + (f"\n(Current time: {when.strip()})" if when else "")})
            elif line.startswith("AI:"):
                messages.append({"role": "assistant", "content": line[3:].strip()})
            elif line.startswith("API-Request:"):
                req, _, result = line[len("API-Request:"):].partition("->")
                calls = _parse_apibank_request(req)
                if calls is None:
                    ok = False
                    break
                try:
                    res = ast.literal_eval(result.strip()) if result.strip() else None
                except (ValueError, SyntaxError):
                    res = result.strip()
                if all(c["name"] in EVAL_ONLY_APIBANK_TOOLS for c in calls):
                    if isinstance(res, dict) and "name" in res and "input_parameters" in res:
                        tools.append(_apibank_tool(res))
                    elif isinstance(res, list):
                        tools += [_apibank_tool(r) for r in res if isinstance(r, dict) and "name" in r and "input_parameters" in r]
                    continue
                messages.append({"role": "assistant", "content": "", "tool_calls": [{"function": c} for c in calls]})
                messages.append({"role": "tool", "content": json.dumps(res, ensure_ascii=False, default=str) if not isinstance(res, str) else res})
        if not ok or not messages or not tools:
            skip("api-bank: unreadable dialogue")
            continue
        tools = _dedupe_tools(tools)
        fitted = _fit_calls(tools, gold)
        if fitted is None:
            skip("api-bank: gold call does not fit the retrieved tools")
            continue
        out.append(Example(f"api-bank-lv3/{i}", "api-bank-lv3", messages, tools, fitted))
        if limit is not None and len(out) >= limit:
            break
    return out, skipped


# ------------------------------------------------------------------------------------------


def load_sources(
    spec: dict, root: str | os.PathLike | None = None, *, seed: int = 0, index: "EvalIndex | None" = None
) -> tuple[list[Example], dict]:
    """Examples from several sources: ``spec`` maps a source name to its loader options.

    Example: ``{"seal-tools": {"distractors": 2, "limit": 200}, "glaive": {"no_call": True}, "api-bank-lv3": {}}``.
    Examples are de-duplicated by (query, tools, calls). ``index`` keeps evaluation tools out
    of the distractors drawn for Seal-Tools (call :func:`decontaminate` on the result still).
    """
    loaders = {"seal-tools": load_seal_tools, "glaive": load_glaive, "api-bank-lv3": load_apibank_lv3}
    examples: list[Example] = []
    skipped: dict[str, int] = {}
    for name, opts in spec.items():
        if name not in loaders:
            raise ValueError(f"unknown training source {name!r}: choose from {', '.join(loaders)}")
        opts = dict(opts or {})
        if name == "seal-tools":
            opts.setdefault("seed", seed)
            opts.setdefault("exclude_tools", index)
        got, skip = loaders[name](root, **opts)
        examples += got
        for k, v in skip.items():
            skipped[k] = skipped.get(k, 0) + v
    seen, unique = set(), []
    for ex in examples:
        key = json.dumps([ex.messages, sorted(ex.tool_names()), ex.calls], sort_keys=True, ensure_ascii=False)
        if key in seen:
            skipped["duplicate example"] = skipped.get("duplicate example", 0) + 1
            continue
        seen.add(key)
        unique.append(ex)
    return unique, skipped


# ------------------------------------------------------------------------------------------
# evaluation sets: never in training

NGRAM = 13
MIN_CONTAINED = 5


def normalize_text(text: str) -> str:
    """Lower case, words only (what query overlap is measured on)."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def normalize_tool_name(name: str) -> str:
    """``get_weather``, ``getWeather`` and ``Get.Weather`` are one name."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _ngrams(text: str, n: int = NGRAM) -> set[str]:
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def _bfcl_data_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d if d.is_dir() else None


def _json_rows(path: Path) -> list:
    text = path.read_text()
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except ValueError:
        rows = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
        return rows


def _user_texts(question: Any) -> Iterable[str]:
    if isinstance(question, str):
        yield question
    elif isinstance(question, list):
        for q in question:
            yield from _user_texts(q)
    elif isinstance(question, dict) and question.get("role") == "user" and isinstance(question.get("content"), str):
        yield question["content"]


@dataclass
class EvalIndex:
    """Query texts and tool names of the evaluation sets, normalised, per benchmark."""

    queries: dict[str, set[str]] = field(default_factory=dict)
    tool_names: dict[str, set[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, root: str | os.PathLike | None = None, *, bfcl_dir: str | os.PathLike | None = None, require_bfcl: bool = False) -> "EvalIndex":
        idx = cls()
        hammer = data_root(root) / "hammer-eval"
        for name in ("apibank_l1", "apibank_l2", "toolalpaca"):
            path = hammer / f"{name}.json"
            if not path.is_file():
                idx.missing.append(str(path))
                continue
            for row in json.loads(path.read_text()):
                idx._add(name, _user_texts(row.get("query")), [t.get("name", "") for t in row.get("tools", [])])
        bdir = Path(bfcl_dir) if bfcl_dir else _bfcl_data_dir()
        if bdir is None or not bdir.is_dir():
            if require_bfcl:
                raise FileNotFoundError("BFCL data not found: pip install --no-deps bfcl-eval (its package data is the index)")
            idx.missing.append("bfcl_eval package data")
        else:
            for path in sorted(bdir.glob("BFCL_*.json")) + sorted((bdir / "multi_turn_func_doc").glob("*.json")):
                for row in _json_rows(path):
                    if not isinstance(row, dict):
                        continue
                    funcs = row.get("function") or []
                    names = [f.get("name", "") for f in funcs if isinstance(f, dict)]
                    if "question" not in row and "name" in row:
                        names.append(row["name"])  # a function doc line
                    idx._add("bfcl", _user_texts(row.get("question")), names)
        return idx

    def _add(self, bench: str, texts: Iterable[str], names: Iterable[str]) -> None:
        q = self.queries.setdefault(bench, set())
        for t in texts:
            n = normalize_text(t)
            if n:
                q.add(n)
        self.tool_names.setdefault(bench, set()).update(normalize_tool_name(n) for n in names if n)

    # -- lookups ---------------------------------------------------------------------------
    def _grams(self) -> dict[str, str]:
        if not hasattr(self, "_gram_cache"):
            grams: dict[str, str] = {}
            for bench, qs in self.queries.items():
                for q in qs:
                    for g in _ngrams(q):
                        grams.setdefault(g, bench)
            self._gram_cache = grams
            self._all_queries = {q: b for b, qs in self.queries.items() for q in qs}
            self._all_tools = {t: b for b, ts in self.tool_names.items() for t in ts}
        return self._gram_cache

    def query_hit(self, text: str) -> str | None:
        """The benchmark whose query ``text`` equals (normalised), contains (an evaluation
        query of at least 5 words), or shares a 13-word run with."""
        grams = self._grams()
        n = normalize_text(text)
        if n in self._all_queries:
            return self._all_queries[n]
        for g in _ngrams(n):
            if g in grams:
                return grams[g]
        words = n.split()
        for k in range(MIN_CONTAINED, NGRAM):
            for i in range(len(words) - k + 1):
                hit = self._all_queries.get(" ".join(words[i : i + k]))
                if hit:
                    return hit
        return None

    def tool_hit(self, name: str) -> str | None:
        self._grams()
        return self._all_tools.get(normalize_tool_name(name))

    def overlaps(self, ex: Example) -> list[str]:
        """Why ``ex`` touches an evaluation set (empty: it does not)."""
        why = []
        for t in ex.query_texts():
            b = self.query_hit(t)
            if b:
                why.append(f"query overlaps {b}")
        names = set(ex.tool_names()) | {c["name"] for c in ex.calls}
        for m in ex.messages:
            for c in m.get("tool_calls") or []:
                names.add(c.get("function", c).get("name", ""))
        for name in sorted(names):
            b = self.tool_hit(name)
            if b:
                why.append(f"tool {name!r} is a {b} tool")
        return why


def decontaminate(examples: Sequence[Example], index: EvalIndex) -> tuple[list[Example], dict]:
    """``examples`` without any that overlaps an evaluation set; ``(kept, dropped counts by reason)``."""
    kept, dropped = [], {}
    for ex in examples:
        why = index.overlaps(ex)
        if why:
            key = f"{ex.source}: {why[0].split(' is a ')[-1] if 'tool' in why[0] else why[0]}"
            dropped[key] = dropped.get(key, 0) + 1
        else:
            kept.append(ex)
    return kept, dropped
