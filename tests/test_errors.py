"""Bad input gets a clear error naming what was wrong, through the public surface."""

import json
import subprocess
import sys

import pytest

from toolprm_agents.cli import main
from toolprm_agents.context import PromptTooLongError
from toolprm_agents.models import ModelLoadError
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.prompt import MessageError
from toolprm_agents.schema import ToolSpecError
from toolprm_agents.search import SearchConfig, ToolPRMSearch

OK_TOOL = {"name": "ping", "description": "", "parameters": {"type": "object", "properties": {"host": {"type": "string"}}}}


@pytest.fixture(scope="module")
def search(tiny_model_dir):
    return ToolPRMSearch(TransformersPolicy(str(tiny_model_dir)), None, SearchConfig(strategy="greedy"))


@pytest.mark.parametrize(
    "tools, match",
    [
        ([], "empty"),
        ([{"name": "get weather", "parameters": {"type": "object", "properties": {}}}], "get weather"),
        ([{"name": "1abc", "parameters": {"type": "object", "properties": {}}}], "1abc"),
        ([OK_TOOL, OK_TOOL], "ping"),
        (
            [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"not": {"type": "string"}}}}}],
            r"tool 'f': argument 'x'.*'not'",
        ),
        (
            [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "hashmap"}}}}],
            "hashmap",
        ),
        ([{"name": "f", "parameters": {"type": "object", "properties": {}, "required": ["y"]}}], "y"),
        ([42], "int"),
    ],
)
def test_bad_tools(search, tools, match):
    with pytest.raises(ToolSpecError, match=match):
        search.search("hi", tools)


BAD_ARGS = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "ping", "arguments": "{host:"}}]}


@pytest.mark.parametrize(
    "messages, match",
    [([], "empty"), ([{"role": "robot", "content": "x"}], "robot"), (3, "int"), ([BAD_ARGS], "'ping' are not JSON")],
)
def test_bad_messages(search, messages, match):
    with pytest.raises(MessageError, match=match):
        search.search(messages, [OK_TOOL])


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        TransformersPolicy(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelLoadError, match="config.json"):
        TransformersPolicy(str(tmp_path))


def test_prompt_longer_than_the_context(search):
    with pytest.raises(PromptTooLongError, match="context window"):
        search.search("word " * 5000, [OK_TOOL])


def test_cli_reports_bad_input_without_a_traceback(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "tools.json"
    bad.write_text(json.dumps([{"name": "bad name", "parameters": {"type": "object", "properties": {}}}]))
    assert main(["call", "hi", "--tools", str(bad), "--policy", str(tiny_model_dir), "--strategy", "greedy"]) == 2
    assert "bad name" in capsys.readouterr().err
    assert main(["call", "hi", "--tools", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad.write_text("{nope")
    assert main(["call", "hi", "--tools", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps([OK_TOOL]))
    assert main(["call", "hi", "--tools", str(ok), "--policy", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_call_prints_the_calls_as_json(tmp_path, tiny_model_dir):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([OK_TOOL]))
    out = subprocess.run(
        [sys.executable, "-m", "toolprm_agents.cli", "call", "ping example.org", "--tools", str(tools),
         "--policy", str(tiny_model_dir), "--strategy", "beam", "--beams", "2", "--expand", "3", "--scorer", "likelihood"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)
    assert isinstance(calls, list) and all(c["name"] == "ping" and set(c["arguments"]) <= {"host"} for c in calls)
    assert "[round  0]" in out.stderr and "done in" in out.stderr


def test_langchain_chat_message_roles():
    from langchain_core.messages import ChatMessage, ToolMessage

    from toolprm_agents.prompt import normalize_messages

    out = normalize_messages([ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo"),
                              ToolMessage(content="42", tool_call_id="c1")])
    assert out == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "tool", "content": "42"}]
    with pytest.raises(MessageError, match="'wizard'"):
        normalize_messages([ChatMessage(role="wizard", content="x")])
