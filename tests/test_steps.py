"""The decision plan and the per-decision grammars (no model needed)."""

import json

import pytest
import xgrammar as xgr

from toolprm_agents.grammar import DecisionGrammars, decision_grammar
from toolprm_agents.schema import ToolSpecError, to_tool_specs
from toolprm_agents.steps import (
    Call,
    PartialAnswer,
    PlanLimits,
    StepKind,
    StepParseError,
    StepPlan,
    bounded_schema,
)

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            "days": {"type": "integer"},
        },
        "required": ["city"],
    },
}
BOOK = {
    "name": "book.hotel",
    "description": "Book a hotel",
    "parameters": {
        "type": "object",
        "properties": {
            "guests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                    "required": ["name"],
                },
            },
            "dates": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}, "required": ["from", "to"]},
            "budget": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        },
        "required": ["guests", "dates"],
    },
}
PING = {"name": "ping", "description": "", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture
def plan():
    return StepPlan(to_tool_specs([WEATHER, BOOK, PING]))


def kinds(decision):
    return [a.kind for a in decision.alternatives]


def test_first_decision_is_a_function_or_no_call(plan):
    d = plan.decision(plan.start())
    assert kinds(d) == [StepKind.FUNC_NAME] * 3 + [StepKind.TOTAL_FINISH]
    assert [a.function for a in d.alternatives[:3]] == ["get_weather", "book.hotel", "ping"]


def test_no_call_answer(plan):
    answer = plan.start().extend(plan.parse(plan.start(), "]"))
    assert answer.done and answer.text == "[]" and answer.calls == ()


def test_no_call_can_be_disallowed():
    plan = StepPlan(to_tool_specs([WEATHER]), PlanLimits(allow_no_call=False))
    assert kinds(plan.decision(plan.start())) == [StepKind.FUNC_NAME]


def test_required_arguments_gate_param_finish(plan):
    a = plan.start()
    a = a.extend(plan.parse(a, '{"name": "get_weather"'))
    d = plan.decision(a)
    assert StepKind.PARAM_FINISH not in kinds(d), "city is required: the arguments cannot end yet"
    assert [x.arg for x in d.alternatives] == ["city", "unit", "days"]
    a = a.extend(plan.parse(a, '"city": "Paris"'))
    d = plan.decision(a)
    assert kinds(d)[-1] is StepKind.PARAM_FINISH
    assert [x.arg for x in d.alternatives if x.arg] == ["unit", "days"], "a given argument is not offered again"
    assert d.alternatives[0].lead == ', "unit": '


def test_full_answer_text_and_steps_round_trip(plan):
    calls = [
        Call("get_weather", {"city": "Paris", "days": 3}),
        Call("book.hotel", {"guests": [{"name": "Ann", "age": 30}], "dates": {"from": "a", "to": "b"}}),
        Call("ping", {}),
    ]
    answer = plan.answer_from_calls(calls)
    assert answer.done
    assert json.loads(answer.text) == [c.to_dict() for c in calls]
    assert list(answer.calls) == calls
    seq = [s.kind for s in answer.steps]
    assert seq[:5] == [StepKind.FUNC_NAME, StepKind.ARG, StepKind.ARG, StepKind.PARAM_FINISH, StepKind.FUNC_FINISH]
    assert seq[-1] is StepKind.TOTAL_FINISH
    # ping has no arguments: its PARAM_FINISH and FUNC_FINISH are forced
    ping = [s for s in answer.steps if s.function == "ping"]
    assert [(s.kind, s.forced) for s in ping] == [
        (StepKind.FUNC_NAME, False),
        (StepKind.PARAM_FINISH, True),
        (StepKind.FUNC_FINISH, True),
    ]


def test_partial_answer_is_immutable(plan):
    a = plan.start()
    b = a.extend(plan.parse(a, '{"name": "ping"'))
    assert a.steps == () and len(b.steps) == 1


def test_func_finish_is_forced_after_param_finish(plan):
    a = plan.start()
    a = a.extend(plan.parse(a, '{"name": "get_weather"'))
    a = a.extend(plan.parse(a, '"city": "Oslo"'))
    a = a.extend(plan.parse(a, "}"))
    step = plan.forced_step(a)
    assert step.kind is StepKind.FUNC_FINISH and step.forced and step.text == "}"


def test_max_calls_forces_the_end():
    plan = StepPlan(to_tool_specs([PING]), PlanLimits(max_calls=2))
    answer = plan.answer_from_calls([Call("ping", {}), Call("ping", {})])
    assert answer.done and len(answer.calls) == 2
    assert answer.steps[-1].forced, "with max_calls reached the only alternative is the end"
    with pytest.raises(StepParseError):
        plan.answer_from_calls([Call("ping", {})] * 3)


def test_parse_rejects_text_of_no_alternative(plan):
    with pytest.raises(StepParseError):
        plan.parse(plan.start(), '{"name": "nope"')
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "get_weather"'))
    with pytest.raises(StepParseError, match="not JSON"):
        plan.parse(a, '"city": Paris')
    with pytest.raises(StepParseError):
        plan.answer_from_calls([Call("get_weather", {"country": "FR"})])


def test_decision_after_done_raises(plan):
    with pytest.raises(ValueError, match="complete"):
        plan.decision(plan.answer_from_calls([]))


def test_empty_tool_list_is_an_error():
    with pytest.raises(ToolSpecError, match="empty"):
        StepPlan([])


def test_bounded_schema_bounds_strings_and_arrays():
    limits = PlanLimits(max_string_length=20, max_array_items=3)
    s = bounded_schema({"type": "array", "items": {"type": "string"}, "description": "x"}, limits)
    assert s == {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 20}}
    # explicit tighter bounds stay; enums are not bounded
    assert bounded_schema({"type": "string", "maxLength": 5}, limits)["maxLength"] == 5
    assert "maxLength" not in bounded_schema({"type": "string", "enum": ["a"]}, limits)
    assert bounded_schema({"type": "array", "minItems": 5}, limits)["maxItems"] == 5


# -- grammars ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grammars(tiny_model_dir):
    from transformers import AutoTokenizer

    return DecisionGrammars(AutoTokenizer.from_pretrained(tiny_model_dir))


def generated_part(step):
    """What the model writes for a step: its text without the skeleton tail."""
    tails = {StepKind.FUNC_NAME: ', "arguments": {'}
    tail = tails.get(step.kind, "")
    return step.text[: len(step.text) - len(tail)] if tail else step.text


def accepts(grammars, decision, text):
    m = grammars.matcher(decision)
    return m.accept_string(text) and _can_end(grammars, m)


def _can_end(grammars, m):
    bitmask = xgr.allocate_token_bitmask(1, grammars.tokenizer_info.vocab_size)
    m.fill_next_token_bitmask(bitmask)
    stop = grammars.stop_token_ids[0]
    return bool((int(bitmask[0, stop // 32]) >> (stop % 32)) & 1)


def test_grammar_accepts_every_step_of_valid_answers(plan, grammars):
    answer = plan.answer_from_calls(
        [
            Call("get_weather", {"city": "Paris", "unit": "fahrenheit", "days": -12}),
            Call("book.hotel", {"dates": {"from": "x", "to": "y"}, "guests": [{"name": "A"}, {"name": "B", "age": 4}], "budget": None}),
        ]
    )
    prefix = PartialAnswer()
    for step in answer.steps:
        if not step.forced:
            d = plan.decision(prefix)
            assert accepts(grammars, d, generated_part(step)), step
        prefix = prefix.extend(step)


@pytest.mark.parametrize(
    "text",
    [
        '"unit": "kelvin"',  # not in the enum
        '"days": 1.5',  # not an integer
        '"days": "3"',  # a string for an integer
        '"country": "FR"',  # no such argument
        "}",  # city is required
        '"city": "a\\u0001"',  # escapes are outside the bounded string grammar
        '"city": "' + "x" * 200 + '"',  # longer than max_string_length
    ],
)
def test_grammar_rejects_invalid_steps(plan, grammars, text):
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "get_weather"'))
    assert not accepts(grammars, plan.decision(a), text)


def test_grammar_rejects_incomplete_nested_object(plan, grammars):
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "book.hotel"'))
    d = plan.decision(a)
    assert not accepts(grammars, d, '"dates": {"from": "x"}'), "'to' is required inside dates"
    assert accepts(grammars, d, '"dates": {"from": "x", "to": "y"}')


def test_grammar_choice_of_functions_only(plan, grammars):
    d = plan.decision(plan.start())
    for bad in ['{"name": "get_weath"', '{"name": "other"', "[]"]:
        assert not accepts(grammars, d, bad)
    assert accepts(grammars, d, "]")
    assert isinstance(decision_grammar(d), xgr.Grammar)


def test_compiled_grammars_are_cached(plan, grammars):
    d = plan.decision(plan.start())
    assert grammars.compiled(d) is grammars.compiled(plan.decision(plan.start()))


@pytest.mark.parametrize("text", ['"caf\u00e9": ', '"\U0001F600 mood": ', '"a\\\\b": '])
def test_literal_grammar_matches_its_text_outside_the_bmp(text):
    from xgrammar.testing import _is_grammar_accept_string

    from toolprm_agents.grammar import _literal

    assert _is_grammar_accept_string(_literal(text), text)
    assert not _is_grammar_accept_string(_literal(text), text[:-1])
