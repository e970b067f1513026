"""The jsonl:PATH format and its matching rules, each way."""

from __future__ import annotations

import json

import pytest

from toolprm_agents.evaluation.base import BenchmarkError
from toolprm_agents.evaluation.benchmarks import load_benchmark
from toolprm_agents.evaluation.jsonl import JsonlBenchmark, load_jsonl, match_calls, values_equal

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer", "default": 1},
            },
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
TOOLS = [WEATHER, TIME]


def call(name, **args):
    return {"name": name, "arguments": args}


# -- value equality ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("Paris", "paris"),
        ("New York", "  new   york "),
        ("a\tb", "A b"),
        (2, 2.0),
        (2.5, 2.5),
        (True, True),
        (None, None),
        (["Paris", 2], ["PARIS", 2.0]),
        ({"x": "A", "y": [1]}, {"y": [1.0], "x": "a"}),
    ],
)
def test_equal_values(a, b):
    assert values_equal(a, b) and values_equal(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Paris", "Pariss"),
        ("New York", "NewYork"),
        (2, 3),
        (2, "2"),
        (True, 1),
        (False, 0),
        (None, "None"),
        (["a", "b"], ["b", "a"]),
        (["a"], ["a", "a"]),
        ({"x": 1}, {"x": 1, "y": 2}),
        ({"x": 1}, {"x": 2}),
    ],
)
def test_unequal_values(a, b):
    assert not values_equal(a, b) and not values_equal(b, a)


# -- call matching -------------------------------------------------------------------------


def test_exact_and_lenient_string_match():
    assert match_calls([call("get_weather", city="Paris")], [call("get_weather", city=" paris ")], TOOLS)[0]


def test_wrong_name_count_missing_and_value():
    exp = [call("get_weather", city="Paris")]
    assert match_calls(exp, [call("get_time", tz="UTC")], TOOLS)[1] == "wrong_name"
    assert match_calls(exp, [], TOOLS)[1] == "wrong_count"
    assert match_calls(exp, exp + exp, TOOLS)[1] == "wrong_count"
    assert match_calls(exp, [call("get_weather")], TOOLS)[1] == "missing_argument"
    ok, kind, why = match_calls(exp, [call("get_weather", city="London")], TOOLS)
    assert not ok and kind == "wrong_value" and "London" in why


def test_extra_argument_only_when_it_equals_the_schema_default():
    exp = [call("get_weather", city="Paris")]
    assert match_calls(exp, [call("get_weather", city="Paris", unit="celsius")], TOOLS)[0]
    assert match_calls(exp, [call("get_weather", city="Paris", unit="CELSIUS", days=1.0)], TOOLS)[0]
    assert match_calls(exp, [call("get_weather", city="Paris", unit="fahrenheit")], TOOLS)[1] == "unexpected_argument"
    assert match_calls(exp, [call("get_weather", city="Paris", days=2)], TOOLS)[1] == "unexpected_argument"
    # an argument without a schema default is never allowed beyond the expected ones
    exp_t = [call("get_time", tz="UTC")]
    assert match_calls(exp_t, [call("get_time", tz="UTC", extra="x")], TOOLS)[1] == "unexpected_argument"
    # without tool schemas there are no defaults
    assert match_calls(exp, [call("get_weather", city="Paris", unit="celsius")], [])[1] == "unexpected_argument"


def test_several_calls_are_matched_order_free_and_one_to_one():
    exp = [call("get_weather", city="Paris"), call("get_weather", city="Tokyo"), call("get_time", tz="UTC")]
    got = [call("get_time", tz="utc"), call("get_weather", city="Tokyo"), call("get_weather", city="Paris")]
    assert match_calls(exp, got, TOOLS) == (True, None, None)
    twice = [call("get_time", tz="utc"), call("get_weather", city="Paris"), call("get_weather", city="Paris")]
    ok, kind, _ = match_calls(exp, twice, TOOLS)
    assert not ok and kind == "wrong_value"
    # a pairing that needs backtracking: the first expected call matches both answers
    # (days=1 is the default), the second only the first answer
    exp2 = [call("get_weather", city="Paris"), call("get_weather", city="Paris", days=1)]
    got2 = [call("get_weather", city="Paris", days=1), call("get_weather", city="Paris")]
    assert match_calls(exp2, got2, TOOLS)[0]


def test_no_call_expected():
    assert match_calls([], [], TOOLS) == (True, None, None)
    ok, kind, _ = match_calls([], [call("get_time", tz="UTC")], TOOLS)
    assert not ok and kind == "unexpected_call"


# -- the file format -----------------------------------------------------------------------


def write(tmp_path, rows, name="items.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def test_load_question_and_messages_forms(tmp_path):
    p = write(
        tmp_path,
        [
            "# a comment",
            {"id": "a", "question": "Weather in Paris?", "tools": TOOLS, "expected": [call("get_weather", city="Paris")]},
            "",
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "tools": TOOLS, "expected": []},
            {"question": "x", "expected": [{"name": "get_time", "arguments": '{"tz": "UTC"}'}]},
        ],
    )
    items = load_jsonl(p)
    assert [it.id for it in items] == ["a", "line-4", "line-5"]
    assert items[1].messages[0] == {"role": "system", "content": "Be brief."}
    assert items[2].tools == [] and items[2].expected == [call("get_time", tz="UTC")]
    bench = load_benchmark(f"jsonl:{p}")
    assert isinstance(bench, JsonlBenchmark) and bench.fingerprint().startswith("sha256:")


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"question": "x"', "not JSON"),
        ({"question": "x", "tools": TOOLS}, "needs 'expected'"),
        ({"tools": TOOLS, "expected": []}, "needs 'question'"),
        ({"question": "x", "expected": {"name": "f"}}, "must be a list"),
        ({"question": "x", "expected": [{"arguments": {}}]}, "string 'name'"),
        ({"question": ["x"], "expected": []}, "'question' must be a string"),
        ({"question": "x", "tools": {"name": "f"}, "expected": []}, "'tools' must be a list"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path, row, message):
    p = write(tmp_path, [{"question": "ok", "expected": []}, row])
    with pytest.raises(BenchmarkError, match=message) as err:
        load_jsonl(p)
    assert "line 2" in str(err.value)


def test_duplicate_ids_and_missing_file(tmp_path):
    p = write(tmp_path, [{"id": "a", "question": "x", "expected": []}] * 2)
    with pytest.raises(BenchmarkError, match="duplicate id"):
        load_jsonl(p)
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_score_of_an_incomplete_search(tmp_path):
    p = write(tmp_path, [{"question": "x", "tools": TOOLS, "expected": []}, {"question": "y", "tools": TOOLS, "expected": [call("get_time", tz="UTC")]}])
    bench = JsonlBenchmark(p)
    none, some = bench.items()
    assert bench.score(none, [], complete=False).correct  # no call was made, none was expected
    s = bench.score(some, [], complete=False)
    assert not s.correct and s.error_type == "no_answer"
