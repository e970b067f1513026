"""Step labels are judged per step against the gold calls and the prefix, never from the outcome."""

from __future__ import annotations

import random

import pytest

from toolprm_agents.schema import to_tool_specs
from toolprm_agents.search import judge_pairs
from toolprm_agents.steps import PlanLimits, StepKind, StepPlan
from toolprm_agents.training.labels import answer_correct, judged_labels, label_steps, values_equal

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
    {
        "name": "book_flight",
        "description": "Book a flight",
        "parameters": {
            "type": "object",
            "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}, "price": {"type": "number"}},
            "required": ["origin", "destination"],
        },
    },
]


@pytest.fixture(scope="module")
def plan():
    return StepPlan(to_tool_specs(TOOLS), PlanLimits(max_calls=4))


def signs(labels):
    return "".join("+" if l.label else "-" for l in labels)


def kinds(answer):
    return [s.kind for s in answer.steps]


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, gold, equal",
    [
        ("New York", "new york", True),
        ("New-York", "newyork", True),
        (" Paris ", "Paris", True),
        ("Paris", "London", False),
        (5, 5.0, True),
        (5.0, 5, True),
        (5, 6, False),
        ("5", 5, False),
        (True, 1, False),
        (True, True, True),
        ([1, "A b"], [1.0, "ab"], True),
        ([1, 2], [2, 1], False),
        ({"a": "X"}, {"a": "x"}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (None, None, True),
        (None, "", False),
    ],
)
def test_values_equal_bfcl_style(value, gold, equal):
    assert values_equal(value, gold) is equal


# -- per-step labels --------------------------------------------------------------------


def test_gold_answer_is_all_positive(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}, {"name": "book_flight", "arguments": {"origin": "SFO", "destination": "CDG"}}]
    answer = plan.answer_from_calls(gold)
    labels = label_steps(answer, gold, plan.tools)
    assert all(l.label for l in labels), [(l.kind, l.reason) for l in labels]
    assert answer_correct(answer.calls, gold, plan.tools)


def test_right_early_steps_stay_positive_after_a_wrong_later_step(plan):
    """The final answer is wrong (days=4), yet the function name and city stay +."""
    gold = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]
    answer = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "paris", "days": 4}}])
    labels = label_steps(answer, gold, plan.tools)
    assert kinds(answer)[:3] == [StepKind.FUNC_NAME, StepKind.ARG, StepKind.ARG]
    assert [l.label for l in labels[:3]] == [True, True, False]
    assert labels[2].reason == "gold argument with a wrong value"
    # closing the call and the answer are right decisions given this prefix
    assert all(l.label for l in labels[3:])
    assert not answer_correct(answer.calls, gold, plan.tools)
    # the same early steps carry the same labels in the right answer and in the wrong one
    right = plan.answer_from_calls(gold)
    assert [l.label for l in label_steps(right, gold, plan.tools)[:2]] == [l.label for l in labels[:2]]


def test_labels_of_a_prefix_do_not_depend_on_what_follows(plan):
    """label_steps is prefix-consistent: each label depends on its prefix only."""
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "book_flight", "arguments": {"origin": "SFO", "destination": "CDG", "price": 99.5}}]
    rng = random.Random(0)
    cities, origins = ["Paris", "Rome", "paris"], ["SFO", "JFK"]
    for _ in range(60):
        calls = []
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.5:
                args = {"city": rng.choice(cities)}
                if rng.random() < 0.3:
                    args["unit"] = rng.choice(["celsius", "fahrenheit"])
                calls.append({"name": "get_weather", "arguments": args})
            else:
                args = {"origin": rng.choice(origins), "destination": "CDG"}
                if rng.random() < 0.5:
                    args["price"] = rng.choice([99.5, 100])
                calls.append({"name": "book_flight", "arguments": args})
        answer = plan.answer_from_calls(calls)
        full = label_steps(answer, gold, plan.tools)
        for cut in range(len(answer.steps) + 1):
            prefix = type(answer)(answer.steps[:cut])
            assert label_steps(prefix, gold, plan.tools) == full[:cut]
        # a complete answer is right exactly when all its steps are
        assert all(l.label for l in full) == answer_correct(answer.calls, gold, plan.tools), answer.text


def test_wrong_function_makes_its_arguments_negative(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    answer = plan.answer_from_calls([{"name": "book_flight", "arguments": {"origin": "Paris", "destination": "Paris"}}])
    labels = label_steps(answer, gold, plan.tools)
    assert labels[0].kind is StepKind.FUNC_NAME and not labels[0].label
    assert not any(l.label for l in labels if l.kind is StepKind.ARG)
    assert not labels[-1].label  # TOTAL_FINISH: the gold call was never made


def test_param_finish_needs_every_gold_argument_but_defaults(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "unit": "celsius"}}]
    short = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "Paris"}}])
    labels = label_steps(short, gold, plan.tools)
    finish = next(l for l in labels if l.kind is StepKind.PARAM_FINISH)
    assert not finish.label and "days" in finish.reason and "unit" not in finish.reason  # unit is at its default
    ok = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}])
    assert all(l.label for l in label_steps(ok, gold, plan.tools))
    # a non-gold argument given at its default is harmless
    extra = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "Paris", "days": 2, "unit": "celsius"}}])
    assert all(l.label for l in label_steps(extra, [{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}], plan.tools))


def test_total_finish_and_extra_calls(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    early = plan.answer_from_calls([])
    assert signs(label_steps(early, gold, plan.tools)) == "-"
    extra = plan.answer_from_calls(gold + [{"name": "get_weather", "arguments": {"city": "Rome"}}])
    labels = label_steps(extra, gold, plan.tools)
    second = [l for l in labels if l.kind is StepKind.FUNC_NAME][1]
    assert not second.label and second.reason == "no gold call left"
    assert labels[-1].label  # stopping after the extra call is right: nothing is left to make
    # the "no call" answer is right when there is no gold call
    assert signs(label_steps(early, [], plan.tools)) == "+"


def test_parallel_calls_in_any_order(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]
    swapped = plan.answer_from_calls(list(reversed(gold)))
    assert all(l.label for l in label_steps(swapped, gold, plan.tools))
    twice = plan.answer_from_calls([gold[0], gold[0]])
    labels = label_steps(twice, gold, plan.tools)
    city_steps = [l for l in labels if l.kind is StepKind.ARG]
    assert [l.label for l in city_steps] == [True, False]  # Paris is used up by the first call


def test_judged_units_follow_judge_pairs(plan):
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    answer = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    for unit in ("step", "call", "answer"):
        units = judged_labels(answer, gold, unit, plan.tools)
        assert [(c.text, j.text) for c, j, _ in units] == [(c.text, j.text) for c, j in judge_pairs(answer, unit)]
    steps = judged_labels(answer, gold, "step", plan.tools)
    assert [ok for *_, ok in steps] == [True, False, True, True]  # name +, city -, finish +, end +
    calls = judged_labels(answer, gold, "call", plan.tools)
    assert [ok for *_, ok in calls] == [False, True]  # the call is wrong, ending after it is right
    assert [ok for *_, ok in judged_labels(answer, gold, "answer", plan.tools)] == [False]
