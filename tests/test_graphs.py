"""graphs/: langgraph.json accepted by the LangGraph CLI; graph modules load cheaply and run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph.state import CompiledStateGraph

from test_node import GREEDY, ScriptedPolicy, call_then_stop
from toolprm_agents.node import ToolPRMNode

GRAPHS = Path(__file__).resolve().parents[1] / "graphs"
CONFIG = GRAPHS / "langgraph.json"


def load_graph_module(path: Path):
    """Load a graph file the way the LangGraph server does (by path, not as a package module)."""
    name = f"_graph_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def graph_specs() -> dict[str, tuple[Path, str]]:
    graphs = json.loads(CONFIG.read_text())["graphs"]
    out = {}
    for name, ref in graphs.items():
        file, var = ref.rsplit(":", 1)
        out[name] = ((GRAPHS / file).resolve(), var)
    return out


def test_config_validates_with_the_langgraph_cli():
    config_mod = pytest.importorskip("langgraph_cli.config", reason="pip install langgraph-cli")
    validated = config_mod.validate_config_file(CONFIG)
    assert set(validated["graphs"]) == {"toolprm_agent", "bfcl_agent", "apibank_agent"}
    assert validated["python_version"] == "3.11"
    for dep in validated["dependencies"]:  # the package itself, relative to the config
        assert (GRAPHS / dep / "pyproject.toml").is_file()
    exe = shutil.which("langgraph")
    if exe:
        run = subprocess.run([exe, "validate", "--config", str(CONFIG)], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"})
        assert run.returncode == 0, run.stderr
        assert "is valid" in run.stdout and "warning" not in run.stdout.lower()


@pytest.mark.parametrize("name", ["toolprm_agent", "bfcl_agent", "apibank_agent"])
def test_graph_modules_import_without_loading_a_model(name):
    path, var = graph_specs()[name]
    module = load_graph_module(path)
    graph = getattr(module, var)
    assert isinstance(graph, CompiledStateGraph) and graph.name == name
    node = graph.builder.nodes["agent"].runnable
    assert isinstance(node, ToolPRMNode) and not node.loaded  # SmolLM2 loads on the first call
    assert node._scorers == {}


@pytest.mark.parametrize("name", ["toolprm_agent", "bfcl_agent", "apibank_agent"])
def test_graphs_take_served_backends_from_the_environment(name, monkeypatch):
    monkeypatch.setenv("TOOLPRM_POLICY", "http://policy:8000/v1")
    monkeypatch.setenv("TOOLPRM_PRM", "http://prm:8001/v1#toolprm")
    node = getattr(load_graph_module(graph_specs()[name][0]), "graph").builder.nodes["agent"].runnable
    assert node._policy_spec == "http://policy:8000/v1" and node._prm == "http://prm:8001/v1#toolprm"
    assert not node.loaded


def test_demo_graph_runs_its_tools():
    module = load_graph_module(graph_specs()["toolprm_agent"][0])
    policy = ScriptedPolicy(call_then_stop([{"name": "convert_currency", "arguments": {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}}]))
    graph = module.build_graph(policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["92 EUR."]))
    out = graph.invoke({"messages": [("user", "100 dollars in euros?")]})
    assert [m.content for m in out["messages"] if isinstance(m, ToolMessage)] == ["100.0 USD = 92.00 EUR"]
    assert out["messages"][-1].content == "92 EUR."


def test_bfcl_graph_returns_calls_in_bfcl_format():
    module = load_graph_module(graph_specs()["bfcl_agent"][0])
    doc = {
        "name": "math.factorial",
        "description": "Calculate the factorial of a number.",
        "parameters": {"type": "dict", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
    }
    graph = module.build_graph(policy=ScriptedPolicy(lambda m: [{"name": "math.factorial", "arguments": {"number": 5}}]), search=GREEDY)
    out = graph.invoke({"messages": [("user", "Factorial of 5?")], "functions": [doc]})
    assert out["calls"] == [{"math.factorial": {"number": 5}}]
    assert isinstance(out["messages"][-1], AIMessage)
    graph = module.build_graph(policy=ScriptedPolicy(lambda m: []), search=GREEDY, answer_model=FakeListChatModel(responses=["No function fits."]))
    out = graph.invoke({"messages": [("user", "Tell me a joke")], "functions": [doc]})
    assert out["calls"] == [] and out["messages"][-1].content == "No function fits."


def test_apibank_graph_executes_api_bank_calls():
    module = load_graph_module(graph_specs()["apibank_agent"][0])
    from toolprm_agents.apibank import ApiBank

    bank = ApiBank()
    policy = ScriptedPolicy(call_then_stop([{"name": "GetUserToken", "arguments": {"username": "JohnDoe", "password": "pass123"}}]))
    graph = module.build_graph(bank=bank, policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["Done."]))
    out = graph.invoke({"messages": [("user", "I am JohnDoe, password pass123. My token?")]}, {"configurable": {"toolprm": {"tool_names": ["GetUserToken", "QueryBalance"]}}})
    assert [m.content for m in out["messages"] if isinstance(m, ToolMessage)] == ['{"token": "a9s8d7f6g5h4j3k2l1"}']
    assert policy.tool_names[0] == ["GetUserToken", "QueryBalance"]
    assert "a token comes from GetUserToken" in policy.seen[0][0]["content"]  # the graph's system prompt
    assert len(graph.builder.nodes["tools"].runnable.tools_by_name) == 49
