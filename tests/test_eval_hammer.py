"""API-Bank and ToolAlpaca (Hammer's sets): loading, tool conversion, exact match, Hammer's metrics."""

from __future__ import annotations

import pytest

from toolprm_agents.evaluation.benchmarks import load_benchmark
from toolprm_agents.evaluation.hammer import (
    DATA_DIR,
    HammerBenchmark,
    call_counts,
    exact_match,
    summarize_counts,
    tool_to_schema,
    type_schema,
)
from toolprm_agents.prompt import normalize_messages
from toolprm_agents.schema import to_tool_specs

SIZES = {"apibank:l1": 399, "apibank:l2": 127, "toolalpaca": 114}


def c(name, **args):
    return {"name": name, "arguments": args}


def test_data_and_licence_are_packaged():
    for f in ("apibank_l1.json", "apibank_l2.json", "toolalpaca.json", "LICENSE"):
        assert (DATA_DIR / f).is_file()
    assert "Apache License" in (DATA_DIR / "LICENSE").read_text()


@pytest.mark.parametrize("name", list(SIZES))
def test_every_item_loads_and_its_ground_truth_scores_perfectly(name):
    bench = load_benchmark(name)
    assert isinstance(bench, HammerBenchmark)
    items = bench.items()
    assert len(items) == SIZES[name]
    records = []
    for it in items:
        assert to_tool_specs(it.tools)  # every converted tool is accepted
        msgs = normalize_messages(it.messages)
        assert all(m["role"] in ("user", "assistant", "tool", "system") for m in msgs)
        s = bench.score(it, it.expected)
        assert s.correct and s.error_type is None
        records.append({"details": s.details})
    summary = bench.summarize(records)
    assert summary["name"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert summary["arguments"]["recall"] == 1.0 and summary["arguments"]["precision"] == 1.0


def test_hammer_types_become_json_schema():
    assert type_schema("str") == {"type": "string"}
    assert type_schema("int") == {"type": "integer"}
    assert type_schema("list") == {"type": "array", "items": {}}
    assert type_schema("list(str)") == {"type": "array", "items": {"type": "string"}}
    assert type_schema("Union[List[dict], dict]") == {}
    tool = tool_to_schema({"name": "f", "description": "d", "parameters": {
        "a": {"type": "string", "description": "A", "required": True}, "b": {"type": "int", "description": ""}}})
    assert tool["parameters"] == {
        "type": "object",
        "properties": {"a": {"type": "string", "description": "A"}, "b": {"type": "integer"}},
        "required": ["a"],
    }


def test_agent_turns_are_assistant_turns():
    item = load_benchmark("apibank:l1").items()[0]
    assert item.messages[1]["role"] == "assistant" and item.messages[-1]["content"].endswith("Generate API Request:")


def test_exact_match_compares_arguments_as_hammer_does():
    exp = [c("A", x="1", y="2023-03-05")]
    assert exact_match(exp, [c("A", x=1, y="2023-03-05")])  # str(1) == "1"
    assert exact_match(exp, [c("A", x="1", y="2023-03-05", z="")])  # empty strings are dropped
    assert not exact_match(exp, [c("A", x="1", y="2023-3-5")])
    assert not exact_match(exp, [c("A", x="1")])
    assert not exact_match(exp, [c("A", x="1", y="2023-03-05", z="q")])
    assert not exact_match(exp, exp + exp)
    assert exact_match([c("A", x="1"), c("B")], [c("B"), c("A", x="1")])  # order-free
    # typed values match API-Bank's stringified ground truth
    assert exact_match([c("A", people="['Ann', 'Bo']")], [c("A", people=["Ann", "Bo"])])


def test_name_and_argument_counts():
    exp = [c("A", x="1", y="2")]
    assert call_counts(exp, [c("A", x=1, y="3", z="q")]) == {
        "gold_names": 1, "pred_names": 1, "correct_names": 1, "gold_args": 2, "pred_args": 3, "correct_args": 1}
    # one-to-one: a repeated call is one correct name and one wrong one
    assert call_counts(exp, [c("A", x="1", y="2"), c("A", x="1", y="2")])["correct_names"] == 1
    # not a call list: one wrong predicted call
    assert call_counts(exp, None) == {"gold_names": 1, "pred_names": 1, "correct_names": 0, "gold_args": 2, "pred_args": 0, "correct_args": 0}
    assert call_counts(exp, [])["pred_names"] == 0
    # calls without arguments on both sides add nothing to the argument counts
    assert call_counts([c("B")], [c("B")])["correct_args"] == 0
    # each predicted call pairs with the same-named expected call it agrees with most
    two = [c("J", q="a"), c("J", q="b")]
    assert call_counts(two, [c("J", q="b"), c("J", q="a")])["correct_args"] == 2


def test_micro_averaged_summary():
    counts = [
        call_counts([c("A", x="1")], [c("A", x="1")]),
        call_counts([c("B", y="2", z="3")], [c("C", y="2")]),
    ]
    s = summarize_counts(counts)
    assert s["name"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert s["arguments"]["precision"] == 0.5 and s["arguments"]["recall"] == pytest.approx(1 / 3)
    assert s["arguments"]["f1"] == pytest.approx(0.4)


def test_scores_explain_mismatches():
    bench = HammerBenchmark("apibank:l2")
    item = bench.items()[0]  # ToolSearcher(keywords="history October 6th")
    assert bench.score(item, [c("ToolSearcher", keywords="October 6th history")]).error_type == "wrong_value"
    assert bench.score(item, [c("Other")]).error_type == "wrong_name"
    assert bench.score(item, []).error_type == "wrong_count"
    s = bench.score(item, [], complete=False)
    assert s.error_type == "no_answer" and s.details["counts"]["pred_names"] == 1
