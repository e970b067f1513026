"""Hammer-style function masking: random names, renamed calls, deterministic under a seed."""

from __future__ import annotations

import re

from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.training.masking import MaskingConfig, apply_masking, mask_example
from toolprm_agents.training.sources import Example

NAME_CHARS = re.compile(r"^[A-Za-z0-9_.]+$")


def _example(i: int = 0) -> Example:
    tools = [
        {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "description": "Time in a zone", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}},
        {"name": "get_weather", "description": "a duplicate", "parameters": {"type": "object", "properties": {}}},
    ]
    messages = [
        {"role": "user", "content": "Weather in Paris, then the time there?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"},
    ]
    return Example(f"demo/{i}", "demo", messages, tools, [{"name": "get_time", "arguments": {"zone": "Europe/Paris"}}])


def test_masked_names_have_hammer_shapes_and_calls_follow():
    cfg = MaskingConfig(probability=1.0, seed=3)
    m = mask_example(_example(), cfg)
    assert len(m.tools) == 2  # de-duplicated
    names = [t["name"] for t in m.tools]
    assert not {"get_weather", "get_time"} & set(names)
    for t in m.tools:
        assert 5 <= len(t["name"]) <= 15 and NAME_CHARS.match(t["name"])
        for p in t["parameters"]["properties"]:
            assert 4 <= len(p) <= 10 and NAME_CHARS.match(p)
    specs = {s.name: s for s in to_tool_specs(m.tools)}  # still valid tool specs
    call = m.calls[0]
    assert call["name"] in specs and not validate_call(specs[call["name"]], call["arguments"])
    assert list(call["arguments"].values()) == ["Europe/Paris"]
    # the call already made in the conversation is renamed the same way
    made = m.messages[1]["tool_calls"][0]["function"]
    assert made["name"] == m.meta["name_map"]["get_weather"]
    assert made["name"] in specs and list(made["arguments"].values()) == ["Paris"]
    assert m.meta["masked"] and m.meta["original_id"] == "demo/0"
    # descriptions are kept: they are what the model must read
    assert {t["description"] for t in m.tools} == {"Weather of a city", "Time in a zone"}


def test_masking_is_deterministic_under_a_seed_and_order_free():
    exs = [_example(i) for i in range(40)]
    cfg = MaskingConfig(probability=0.5, seed=11)
    a = apply_masking(exs, cfg)
    b = apply_masking(list(reversed(exs)), cfg)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in reversed(b)]
    c = apply_masking(exs, MaskingConfig(probability=0.5, seed=12))
    assert [e.to_dict() for e in a] != [e.to_dict() for e in c]


def test_masking_probability():
    exs = [_example(i) for i in range(400)]
    for p in (0.0, 0.25, 1.0):
        out = apply_masking(exs, MaskingConfig(probability=p, seed=0))
        share = sum(bool(e.meta.get("masked")) for e in out) / len(out)
        assert abs(share - p) < 0.07, (p, share)
    both = apply_masking(exs[:10], MaskingConfig(probability=1.0, seed=0, keep_original=True))
    assert len(both) == 20


def test_tool_order_is_shuffled():
    orders = {tuple(t["description"] for t in mask_example(_example(i), MaskingConfig(1.0, seed=0)).tools) for i in range(30)}
    assert len(orders) == 2
