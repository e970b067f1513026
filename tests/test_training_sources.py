"""Training sources in one form, and the proof that evaluation sets never enter training."""

from __future__ import annotations

import importlib.util
import json

import pytest

from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.training.sources import (
    EvalIndex,
    Example,
    _parse_apibank_request,
    data_root,
    decontaminate,
    load_apibank_lv3,
    load_glaive,
    load_seal_tools,
    load_sources,
    normalize_tool_name,
)

try:
    ROOT = data_root()
except FileNotFoundError:  # pragma: no cover - neither training/data nor ../shared/data
    ROOT = None

pytestmark = pytest.mark.skipif(ROOT is None, reason="training data not found (training/data or ../shared/data)")
HAVE_BFCL = importlib.util.find_spec("bfcl_eval") is not None


@pytest.fixture(scope="module")
def index():
    return EvalIndex.build()


@pytest.fixture(scope="module")
def all_examples(index):
    examples, skipped = load_sources({"seal-tools": {}, "glaive": {}, "api-bank-lv3": {}}, index=index)
    return examples, skipped


def _check_example(ex: Example):
    specs = {s.name: s for s in to_tool_specs(ex.tools)}
    for call in ex.calls:
        assert call["name"] in specs, (ex.id, call)
        assert not validate_call(specs[call["name"]], call["arguments"]), (ex.id, call)
    assert ex.messages and ex.messages[-1]["role"] in ("user", "tool"), ex.id


def test_every_source_gives_valid_examples(all_examples):
    examples, skipped = all_examples
    by_source = {}
    for ex in examples:
        by_source.setdefault(ex.source, []).append(ex)
        _check_example(ex)
    assert len(by_source["seal-tools"]) > 1000
    assert len(by_source["glaive"]) > 200
    assert len(by_source["api-bank-lv3"]) > 250
    assert any(len(ex.calls) > 1 for ex in by_source["seal-tools"])
    assert any(not ex.calls for ex in by_source["glaive"])  # "no call" turns
    assert any(m["role"] == "tool" for ex in by_source["api-bank-lv3"] for m in ex.messages)


def test_seal_tools_distractors_are_deterministic():
    a, _ = load_seal_tools(distractors=3, seed=1, limit=20)
    b, _ = load_seal_tools(distractors=3, seed=1, limit=20)
    c, _ = load_seal_tools(distractors=3, seed=2, limit=20)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert [e.tool_names() for e in a] != [e.tool_names() for e in c]
    for ex in a:
        assert len(ex.tools) == len({c["name"] for c in ex.calls}) + 3


def test_apibank_request_parser():
    assert _parse_apibank_request("API-Request: [Add(a=1, b='x y')]") == [{"name": "Add", "arguments": {"a": 1, "b": "x y"}}]
    assert _parse_apibank_request("[A(x=[1, 2]), A(x=[3])]") == [{"name": "A", "arguments": {"x": [1, 2]}}, {"name": "A", "arguments": {"x": [3]}}]
    assert _parse_apibank_request("API-Request: PharmacyLocator(location=New York)") is None


def test_apibank_drops_the_evaluation_tool_searcher():
    examples, skipped = load_apibank_lv3()
    assert skipped.get("api-bank: gold is a ToolSearcher request (an evaluation tool)", 0) > 100
    for ex in examples:
        names = set(ex.tool_names()) | {c["function"]["name"] for m in ex.messages for c in m.get("tool_calls") or []}
        assert "ToolSearcher" not in names


def test_glaive_history_is_structured():
    examples, _ = load_glaive(limit=80)
    multi = [ex for ex in examples if any(m.get("tool_calls") for m in ex.messages)]
    assert multi, "some glaive examples follow an earlier call"
    ex = multi[0]
    i = next(i for i, m in enumerate(ex.messages) if m.get("tool_calls"))
    assert ex.messages[i + 1]["role"] == "tool"


def test_eval_index_covers_every_benchmark(index):
    for bench in ("apibank_l1", "apibank_l2", "toolalpaca"):
        assert index.queries[bench] and index.tool_names[bench]
    if HAVE_BFCL:
        assert len(index.queries["bfcl"]) > 1000 and len(index.tool_names["bfcl"]) > 1000
    assert normalize_tool_name("get_weather") == normalize_tool_name("GetWeather") == normalize_tool_name("get.weather")


def test_no_evaluation_query_or_tool_name_enters_training(index, all_examples):
    """The overlap test: after decontamination, no training example shares a user query
    (normalised, exact or a 13-word run) or a tool name (normalised) with BFCL, API-Bank
    level 1/2 or ToolAlpaca -- counting the tools offered, the gold calls and the calls
    already made in the conversation."""
    examples, _ = all_examples
    kept, dropped = decontaminate(examples, index)
    assert len(kept) > 1000
    if HAVE_BFCL:
        assert any("bfcl" in k for k in dropped), dropped  # the guard had work to do
    eval_queries = {q for qs in index.queries.values() for q in qs}
    eval_tools = {t for ts in index.tool_names.values() for t in ts}
    from toolprm_agents.training.sources import normalize_text

    for ex in kept:
        assert not index.overlaps(ex), (ex.id, index.overlaps(ex))
        for q in ex.query_texts():
            assert normalize_text(q) not in eval_queries, ex.id
        names = set(ex.tool_names()) | {c["name"] for c in ex.calls}
        names |= {c["function"]["name"] for m in ex.messages for c in m.get("tool_calls") or []}
        assert not {normalize_tool_name(n) for n in names} & eval_tools, ex.id


def test_overlap_guard_catches_planted_evaluation_items(index):
    """A positive control: an evaluation query or tool smuggled into an example is caught."""
    row = json.loads((ROOT / "hammer-eval" / "toolalpaca.json").read_text())[0]
    tool = {"name": "harmless_tool", "description": "", "parameters": {"type": "object", "properties": {}}}
    planted_query = Example("x/1", "x", [{"role": "user", "content": "Please: " + row["query"] + " Thanks!"}], [tool], [])
    assert any("query overlaps toolalpaca" in w for w in index.overlaps(planted_query))
    renamed = dict(tool, name=row["tools"][0]["name"].upper())
    planted_tool = Example("x/2", "x", [{"role": "user", "content": "hello there"}], [renamed], [])
    assert any("toolalpaca" in w for w in index.overlaps(planted_tool))
    kept, dropped = decontaminate([planted_query, planted_tool], index)
    assert kept == [] and sum(dropped.values()) == 2
