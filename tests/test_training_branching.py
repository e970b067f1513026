"""Gold-prefix branching with the policy (tiny model): alternatives at every gold decision, labelled."""

from __future__ import annotations

import pytest

from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.training.branching import BranchConfig, branch_one, collect_branches
from toolprm_agents.training.dataset import build_rows, merge_records, statistics, unit_table
from toolprm_agents.training.labels import label_steps
from toolprm_agents.training.rollouts import answer_from_record, plan_for, read_rollouts
from toolprm_agents.training.sources import Example

TOOLS = [
    {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}},
    {"name": "get_time", "description": "Time in a zone", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}},
]
CONFIG = BranchConfig(m=3, offgold_share=1.0, offgold_steps=4, max_string_length=10)


def examples(n: int = 2) -> list[Example]:
    cities = ["Paris", "Oslo", "Lima"]
    return [Example(f"b/{i}", "test", [{"role": "user", "content": f"Weather in {cities[i % 3]} for 3 days?"}], TOOLS,
                    [{"name": "get_weather", "arguments": {"city": cities[i % 3], "days": 3}}]) for i in range(n)]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return TransformersPolicy(tiny_model_dir, max_step_tokens=6)


def test_every_gold_decision_gets_the_policys_alternatives(policy):
    ex = examples(1)[0]
    rec = branch_one(ex, policy, CONFIG)
    assert rec["error"] is None
    plan = plan_for(ex)
    gold = plan.answer_from_calls(ex.calls)
    decided = [i for i, s in enumerate(gold.steps) if not s.forced]
    origins = [a["origin"] for a in rec["answers"]]
    assert origins[0] == "gold" and "branch" in origins and "offgold" in origins
    branched_at = set()
    for a in rec["answers"]:
        answer = answer_from_record(a["steps"])
        labels = label_steps(answer, ex.calls, plan.tools)
        if a["origin"] == "branch":
            # a gold prefix, then one alternative of the policy that differs from the gold step
            k = next(i for i, (s, g) in enumerate(zip(answer.steps, gold.steps)) if s != g)
            assert k in decided and all(l.label for l in labels[:k])
            branched_at.add(k)
        if a["origin"] == "offgold":
            assert any(not l.label for l in labels)  # it continues after a wrong step
    assert branched_at == set(decided)  # every decision of the gold answer was branched


def test_branches_are_resumable_and_label_in_the_dataset(policy, tmp_path):
    path = tmp_path / "branches.jsonl"
    first = collect_branches(examples(1), policy, path, CONFIG, progress=False)
    again = collect_branches(examples(2), policy, path, CONFIG, progress=False)
    assert [r["id"] for r in again] == ["b/0", "b/1"] and again[0] == first[0]
    rows = build_rows(merge_records(read_rollouts(path)), test_fraction=0.0)
    table = unit_table(rows)
    kinds = {u["step_kind"] for u in table.values()}
    assert {"FUNC_NAME", "ARG", "TOTAL_FINISH"} <= kinds
    stats = statistics(rows)["train"]
    assert stats["steps_pos"] > 0 and stats["steps_neg"] > 0
    assert set(stats["steps_by_origin"]) >= {"gold", "branch"}
    assert sum(b["pos"] + b["neg"] for b in stats["steps_by_kind"].values()) == stats["steps_pos"] + stats["steps_neg"]
