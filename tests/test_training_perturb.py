"""Model-free hard negatives: every perturbation is a step the labeller marks wrong after a right prefix."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from toolprm_agents.steps import StepKind
from toolprm_agents.training.labels import label_steps, values_equal
from toolprm_agents.training.perturb import MIX, PerturbConfig, _Maker, _near_copy, _scale, perturb_example, perturb_examples
from toolprm_agents.training.rollouts import answer_from_record, plan_for
from toolprm_agents.training.sources import Example

TOOLS = [
    {"name": "book_hotel", "description": "Book rooms", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "rooms": {"type": "integer"}, "nights": {"type": "number"},
        "breakfast": {"type": "boolean", "default": False}, "note": {"type": "string"}}, "required": ["city", "rooms"]}},
    {"name": "cancel_hotel", "description": "Cancel a booking", "parameters": {"type": "object", "properties": {"booking_id": {"type": "string"}}, "required": ["booking_id"]}},
    {"name": "get_rate", "description": "Exchange rate", "parameters": {"type": "object", "properties": {"pct": {"type": "number"}, "code": {"type": "string"}}, "required": ["code"]}},
]


def examples() -> list[Example]:
    out = []
    cities = ["Oslo", "New York", "Lima", "Bern"]
    for i, city in enumerate(cities):
        out.append(Example(f"h/{i}", "test", [{"role": "user", "content": f"Book {i + 2} rooms in {city} city centre for 6.5 nights, code EUR rate {i}.5 percent"}], TOOLS,
                           [{"name": "book_hotel", "arguments": {"city": city, "rooms": i + 2, "nights": 6.5}},
                            {"name": "get_rate", "arguments": {"pct": i + 0.5, "code": "EUR"}}][: 1 + i % 2]))
    out.append(Example("h/none", "test", [{"role": "user", "content": "Tell me a joke"}], TOOLS, []))
    return out


def _check(ex: Example, a: dict) -> list:
    plan = plan_for(ex)
    answer = answer_from_record(a["steps"])
    labels = label_steps(answer, ex.calls, plan.tools)
    return labels


def test_each_perturbation_is_wrong_and_leaves_the_gold_prefix_right():
    recs = perturb_examples(examples(), PerturbConfig(per_example=30, seed=0))
    kinds = Counter()
    for rec in recs:
        ex = Example.from_dict(rec["example"])
        gold = rec["answers"][0]
        assert gold["origin"] == "gold" and all(l.label for l in _check(ex, gold))
        for a in rec["answers"][1:]:
            labels = _check(ex, a)
            t = a["target"]
            assert not labels[t].label, (a["origin"], labels[t])
            assert all(l.label for l in labels[:t]), a["origin"]
            assert a["steps"][:t] == gold["steps"][:t] or a["origin"].startswith("perturb:missing_argument")
            kinds[a["origin"]] += 1
    # every type and the value subtypes show up on this small set
    tops = {o.split(":")[1] for o in kinds}
    assert tops == set(MIX), kinds
    subs = {o.split(":")[2] for o in kinds if o.startswith("perturb:wrong_value")}
    assert subs >= {"other_span", "near_copy", "scale", "overlong", "empty"}, kinds
    assert {"end_early", "repeat", "unrelated"} <= {o.split(":")[2] for o in kinds if "wrong_call_count" in o}


def test_no_call_gold_gets_calls_as_negatives():
    rec = perturb_example(examples()[-1], PerturbConfig(per_example=6))
    assert len(rec["answers"]) > 1
    for a in rec["answers"][1:]:
        assert a["origin"].startswith("perturb:wrong_call_count:unrelated")
        assert a["steps"][0]["kind"] == "FUNC_NAME"


def test_proportions_follow_the_mix_where_every_type_applies():
    ex = examples()[1]  # two calls, optional arguments, numbers: every type applies
    many = [Example(f"m/{i}", "t", ex.messages, ex.tools, ex.calls) for i in range(60)]
    recs = perturb_examples(many, PerturbConfig(per_example=12, seed=1))
    c = Counter(a["origin"].split(":")[1] for r in recs for a in r["answers"][1:])
    total = sum(c.values())
    assert total > 500
    assert abs(c["wrong_value"] / total - 0.43) < 0.08, c
    assert abs(c["wrong_function"] / total - 0.27) < 0.08, c
    assert abs(c["wrong_call_count"] / total - 0.16) < 0.06, c


def test_deterministic_and_seeded():
    a = perturb_examples(examples(), PerturbConfig(seed=3))
    b = perturb_examples(examples(), PerturbConfig(seed=3))
    c = perturb_examples(examples(), PerturbConfig(seed=4))
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


def test_value_makers():
    rng = random.Random(0)
    for v in ["New York", "EUR", 42, 6.5, "2023-01-05"]:
        w = _near_copy(v, rng)
        assert w is not None and not values_equal(w, v) and type(w) is type(v)
    assert _scale(6.5, random.Random(0), False) in (0.065, 650.0, 0.0065, 6500.0, 0.65, 65.0)
    assert isinstance(_scale(30, random.Random(0), True), int)
    assert _scale("6.5%", random.Random(0), False) != "6.5%"


def test_overlong_value_runs_past_the_value():
    ex = examples()[1]
    found = False
    for seed in range(40):
        rec = perturb_example(ex, PerturbConfig(per_example=20, seed=seed))
        for a in rec["answers"]:
            if a["origin"] == "perturb:wrong_value:overlong":
                v = a["steps"][a["target"]]["value"]
                g = rec["answers"][0]["steps"][a["target"]]["value"]
                assert isinstance(v, str) and v.lower().startswith(g.lower() + " ") and ex.messages[0]["content"].lower().find(v.lower()) >= 0
                found = True
    assert found


def test_spans_are_plausible_values():
    from toolprm_agents.training.perturb import _overlong, conversation_spans

    ex = Example("g", "t", [{"role": "user", "content": 'Open the garage door, please. Then tell me the weather for "Push-ups".'}], TOOLS, [])
    spans = conversation_spans(ex)["spans"]
    assert "garage door" in spans and "Push-ups" in spans
    assert not {"the", "Then", "me", "the garage", "please"} & set(spans)
    long = {_overlong("garage", ex, random.Random(s)) for s in range(20)}
    assert long == {"garage door", "garage door, please"}  # as written, never past the sentence
    assert _overlong("Push-ups", ex, random.Random(0)) is None  # nothing but punctuation follows
