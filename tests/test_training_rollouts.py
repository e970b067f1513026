"""Rollout collection with the project's own policy: recorded step by step, resumable."""

from __future__ import annotations

import json

import pytest

from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.training.labels import label_steps
from toolprm_agents.training.rollouts import RolloutConfig, answer_from_record, collect_rollouts, plan_for, read_rollouts
from toolprm_agents.training.sources import Example

CONFIG = RolloutConfig(beams=2, expand=3, temperature=0.8, max_rounds=10, max_string_length=12, max_array_items=2)


def examples(n: int) -> list[Example]:
    tools = [
        {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}},
        {"name": "get_time", "description": "Time in a zone", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}},
    ]
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Bern"]
    return [
        Example(f"t/{i}", "test", [{"role": "user", "content": f"Weather in {cities[i % 6]}?"}], tools, [{"name": "get_weather", "arguments": {"city": cities[i % 6]}}])
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return TransformersPolicy(tiny_model_dir, max_step_tokens=8)


def test_records_hold_the_exploration_tree_and_the_gold_answer(policy, tmp_path):
    recs = collect_rollouts(examples(2), policy, tmp_path / "r.jsonl", CONFIG, progress=False)
    assert [r["id"] for r in recs] == ["t/0", "t/1"]
    for rec in recs:
        ex = Example.from_dict(rec["example"])
        plan = plan_for(ex)
        origins = [a["origin"] for a in rec["answers"]]
        assert origins.count("gold") == 1 and "sample" in origins
        texts = []
        for a in rec["answers"]:
            answer = answer_from_record(a["steps"])
            texts.append(answer.text)
            assert answer.done == a["done"]
            labels = label_steps(answer, ex.calls, plan.tools)
            assert len(labels) == len(answer.steps)
            if a["origin"] == "gold":
                assert all(l.label for l in labels)
        # maximal answers only: none is a prefix of another
        steps = [tuple(json.dumps(s, sort_keys=True) for s in a["steps"]) for a in rec["answers"]]
        for i, s in enumerate(steps):
            assert not any(j != i and t[: len(s)] == s for j, t in enumerate(steps))
        assert rec["compute"]["tokens_generated"] > 0 and rec["error"] is None


def test_collection_is_deterministic(policy, tmp_path):
    a = collect_rollouts(examples(2), policy, tmp_path / "a.jsonl", CONFIG, progress=False)
    b = collect_rollouts(examples(2), policy, tmp_path / "b.jsonl", CONFIG, progress=False)
    assert [r["answers"] for r in a] == [r["answers"] for r in b]


def test_interrupted_collection_continues_where_it_stopped(policy, tmp_path):
    path = tmp_path / "r.jsonl"
    exs = examples(5)

    class Stop(Exception):
        pass

    def stop_after_two(k, total, rec):
        if k == 2:
            raise Stop

    with pytest.raises(Stop):
        collect_rollouts(exs, policy, path, CONFIG, progress=stop_after_two)
    assert [r["id"] for r in read_rollouts(path)] == ["t/0", "t/1"]
    # an interrupted write leaves a torn last line: it is ignored and cut
    with path.open("a") as f:
        f.write('{"id": "t/2", "answers": [')
    assert len(read_rollouts(path)) == 2
    seen = []
    recs = collect_rollouts(exs, policy, path, CONFIG, progress=lambda k, n, rec: seen.append(rec["id"]))
    assert seen == ["t/2", "t/3", "t/4"]  # only what was missing
    assert [r["id"] for r in recs] == [e.id for e in exs]
    assert all(line.endswith("}") for line in path.read_text().splitlines())
    # running again does nothing
    again = []
    collect_rollouts(exs, policy, path, CONFIG, progress=lambda k, n, rec: again.append(rec["id"]))
    assert again == []


def test_extra_calls_bound_the_answer(policy, tmp_path):
    cfg = RolloutConfig(beams=1, expand=2, max_rounds=30, max_string_length=8, extra_calls=1)
    rec = collect_rollouts(examples(1), policy, tmp_path / "r.jsonl", cfg, progress=False)[0]
    for a in rec["answers"]:
        assert len(answer_from_record(a["steps"]).calls) <= 2


def test_a_time_budget_stops_between_examples_and_a_rerun_continues(policy, tmp_path):
    path = tmp_path / "r.jsonl"
    exs = examples(4)
    first = collect_rollouts(exs, policy, path, CONFIG, progress=False, budget_seconds=0.05)
    assert 1 <= len(first) < 4
    rest = collect_rollouts(exs, policy, path, CONFIG, progress=False)
    assert [r["id"] for r in rest] == [e.id for e in exs]
