"""Issue 14: bad input is a one-line ToolPRMError (never a traceback), and nothing comes back silently wrong."""

from __future__ import annotations

import json
import re

import pytest

from toolprm_agents.cli import main
from toolprm_agents.errors import ToolPRMError
from toolprm_agents.grammar import split_repetitions
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.prompt import MessageError, normalize_messages
from toolprm_agents.schema import validate_value
from toolprm_agents.search import SearchConfig, ToolPRMSearch


def tool(props, required=None, name="f"):
    return {"name": name, "description": "d", "parameters": {
        "type": "object", "properties": props, "required": list(props) if required is None else required}}


STR_TOOL = tool({"x": {"type": "string"}})


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return TransformersPolicy(str(tiny_model_dir))


@pytest.fixture(scope="module")
def greedy(policy):
    return ToolPRMSearch(policy, None, SearchConfig(strategy="greedy"))


# -- item 2: tracebacks become clear errors ----------------------------------------------------


@pytest.mark.parametrize("pattern", ["^[a-z]{1,300}$", "^.{1,255}$", "^(ab){2,200}$", "^[a-z]{129,}$"])
def test_long_repetition_patterns_compile(greedy, pattern):
    result = greedy.search("Write hello", [tool({"x": {"type": "string", "pattern": pattern}})])
    for call in result.tool_calls():
        assert re.search(pattern, call["arguments"]["x"]) or not result.complete


def test_split_repetitions_keeps_the_language():
    for pattern in ["^[a-z]{1,300}$", "^(ab){2,200}$", "^[a-z]{200}$", "^[a-z]{129,}$", "^(a|b){0,300}c$", r"^[\]a]{1,200}$"]:
        split = split_repetitions(pattern)
        assert not re.search(r"\{(\d{4,}|129|1[3-9]\d|[2-9]\d\d)", split), split
        for n in (0, 1, 2, 127, 128, 129, 199, 200, 201, 255, 299, 300, 301, 500):
            for text in ("a" * n, "ab" * (n // 2), "a" * n + "c", "]" * n):
                assert bool(re.fullmatch(pattern, text)) == bool(re.fullmatch(split, text)), (pattern, split, n)
    assert split_repetitions(r"^\d{3}-\d{4}$") == r"^\d{3}-\d{4}$"


@pytest.mark.parametrize(
    "messages, match",
    [
        ([{"role": "user", "content": [1, 2, 3]}], "content part"),
        ([{"role": "user", "content": 5}], "content must be text"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": "abc"}], "'tool_calls' must be a list"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [{"arguments": {}}]}], "no function name"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}], "must be an object"),
        ([{"role": ["user"], "content": "hi"}], "unknown role"),
        ("hi \ud800 there", "lone surrogate"),
        ("caf" + b"\xe9".decode("utf-8", "surrogateescape"), "not valid Unicode"),
        # no user request: a call made up from nothing would be silently wrong (item 3)
        ([{"role": "system", "content": "You book flights."}], "no user request"),
        ([{"role": "assistant", "content": "Hello"}], "no user request"),
        ([{"role": "user", "content": ""}], "no user request"),
        ([{"role": "user", "content": None}, {"role": "assistant", "content": "ok"}], "no user request"),
    ],
)
def test_bad_messages_are_message_errors(greedy, messages, match):
    with pytest.raises(MessageError, match=match):
        greedy.search(messages, [STR_TOOL])


def test_good_messages_still_normalise():
    msgs = normalize_messages([
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": '{"x": "1"}'}}]},
        {"role": "tool", "content": "done"},
    ])
    assert msgs[0] == {"role": "user", "content": "hi"}
    assert json.loads(msgs[1]["content"]) == [{"name": "f", "arguments": {"x": "1"}}]


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0])
def test_bad_temperature_is_a_search_error(value):
    with pytest.raises(ToolPRMError, match="temperature"):
        SearchConfig(temperature=value)


def test_bad_threads_is_an_error(tiny_model_dir):
    with pytest.raises(ToolPRMError, match="num_threads"):
        TransformersPolicy(str(tiny_model_dir), num_threads=-1)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--temperature", "inf"], "temperature"),
        (["--temperature", "nan"], "temperature"),
        (["--threads", "-1"], "num_threads"),
        (["--beams", "0"], "beams"),
    ],
)
def test_cli_bad_settings_exit_2_on_one_line(tmp_path, tiny_model_dir, capsys, argv, match):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([STR_TOOL]))
    code = main(["call", "hi", "--tools", str(tools), "--policy", str(tiny_model_dir), "--strategy", "beam", "-q", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and re.search(match, err) and "\n" not in err and "Traceback" not in err


def test_cli_long_pattern_and_bad_question(tmp_path, tiny_model_dir, capsys):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([tool({"x": {"type": "string", "pattern": "^[a-z]{1,300}$"}})]))
    base = ["--tools", str(tools), "--policy", str(tiny_model_dir), "--strategy", "greedy", "-q"]
    assert main(["call", "Write hello", *base]) in (0, 1)  # 1: the search found no complete answer
    capsys.readouterr()
    assert main(["call", "caf" + b"\xe9".decode("utf-8", "surrogateescape"), *base]) == 2
    assert "not valid Unicode" in capsys.readouterr().err
    tools.write_bytes(b"[\xff]")
    assert main(["call", "hi", *base]) == 2
    assert "not JSON" in capsys.readouterr().err


# -- item 3: nothing comes back silently wrong ------------------------------------------------


def test_integer_enum_of_strings_is_a_schema_error(greedy):
    from toolprm_agents.schema import ToolSpecError

    with pytest.raises(ToolSpecError, match="not of the declared type integer"):
        greedy.search("hi", [tool({"x": {"type": "integer", "enum": ["a", "b"]}})])


def test_unique_items_is_honoured(greedy):
    from toolprm_agents.steps import Step, StepKind, StepPlan
    from toolprm_agents.schema import to_tool_specs

    schema = {"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "minItems": 2, "uniqueItems": True}
    plan = StepPlan(to_tool_specs([tool({"x": schema})]))
    assert "uniqueItems" in plan.rejects(Step(StepKind.ARG, "", function="f", arg="x", value=[1, 1]))
    assert plan.rejects(Step(StepKind.ARG, "", function="f", arg="x", value=[1, 2])) is None
    result = greedy.search("Pick two", [tool({"x": schema})])
    if result.complete:
        assert validate_value(schema, result.tool_calls()[0]["arguments"]["x"]) == []
    # only repeated items fit: no complete answer, never [1, 1]
    only_one = {"type": "array", "items": {"type": "integer", "enum": [1]}, "minItems": 2, "uniqueItems": True}
    result = greedy.search("Pick two", [tool({"x": only_one})])
    assert not result.complete and result.tool_calls() == []


def test_a_lower_bound_of_ten_or_more_keeps_the_digit_bound(greedy):
    from toolprm_agents.grammar import value_grammar

    for schema in ({"type": "integer", "minimum": 18}, {"type": "integer", "maximum": -20}, {"type": "integer", "minimum": 1000}):
        ebnf = str(value_grammar(schema, "x"))
        assert ", -1}" not in ebnf and "*" not in ebnf.split("root ::=", 1)[1].split("basic_")[0], ebnf
    result = greedy.search("How old?", [tool({"age": {"type": "integer", "minimum": 18}})])
    for call in result.tool_calls():
        age = call["arguments"]["age"]
        assert age >= 18 and len(str(age)) <= 16


def test_min_length_above_the_library_cap_raises_the_cap_for_that_field(greedy):
    from toolprm_agents.steps import PlanLimits, bounded_schema

    assert bounded_schema({"type": "string", "minLength": 200}, PlanLimits())["maxLength"] == 200
    assert bounded_schema({"type": "string", "minLength": 200, "maxLength": 150}, PlanLimits())["maxLength"] == 150  # the tool's own contradiction
    assert bounded_schema({"type": "string", "minLength": 5}, PlanLimits())["maxLength"] == 128
    result = greedy.search("Write an essay", [tool({"x": {"type": "string", "minLength": 200}})])  # no GrammarError
    for call in result.tool_calls():
        assert len(call["arguments"]["x"]) >= 200


def test_a_value_cut_at_the_token_bound_is_not_complete(tiny_model_dir):
    short = TransformersPolicy(str(tiny_model_dir), max_step_tokens=1)
    result = ToolPRMSearch(short, None, SearchConfig(strategy="greedy")).search("hi", [tool({"x": {"type": "integer"}})])
    assert not result.complete and result.tool_calls() == [] and "token bound" in result.error


def test_an_answer_that_outgrows_the_context_is_an_incomplete_result(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolprm_agents.context import ContextStore
    from toolprm_agents.prompt import PromptFormat, encode_prompt
    from toolprm_agents.schema import to_tool_specs

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tools = [tool({"a": {"type": "string", "minLength": 20}})]
    n = len(encode_prompt(tok, PromptFormat().render(tok, normalize_messages("hi"), to_tool_specs(tools))))
    model.config.max_position_embeddings = n + 5  # the prompt fits; the answer cannot
    monkeypatch.setitem(ContextStore.__init__.__kwdefaults__, "reserve_tokens", 0)
    result = ToolPRMSearch(TransformersPolicy((model, tok)), None, SearchConfig(strategy="greedy")).search("hi", tools)
    assert not result.complete and "context window" in result.error


# -- item 4: leftovers --------------------------------------------------------------------


def test_a_failed_gguf_conversion_leaves_no_lock_or_partial_folder(tmp_path, monkeypatch):
    from toolprm_agents import models

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("TOOLPRM_CACHE", str(tmp_path / "cache"))
    target = models._gguf_cache_target(gguf)

    def broken(src, out):
        (out / "half-written.bin").write_bytes(b"x")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        models._ensure_converted(gguf, target)
    assert list((tmp_path / "cache").iterdir()) == []

    def works(src, out):
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"x")

    monkeypatch.setattr(models, "_convert_gguf", works)
    assert models._ensure_converted(gguf, target) == target
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [target.name]


def test_the_conversion_lock_still_excludes_when_its_file_is_removed(tmp_path):
    import threading
    import time

    from toolprm_agents.models import _file_lock

    path, inside, most, errors = tmp_path / "x.lock", [0], [0], []

    def worker():
        try:
            for _ in range(15):
                with _file_lock(path):
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    time.sleep(0.001)
                    inside[0] -= 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and most[0] == 1 and not path.exists()


def test_no_fixed_tmp_paths(monkeypatch, tmp_path):
    import pathlib

    monkeypatch.setenv("TOOLPRM_CACHE", str(tmp_path))
    from toolprm_agents.backends.vllm import cpu_env

    assert cpu_env()["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm")
    root = pathlib.Path(__file__).resolve().parents[1]
    for path in [*root.glob("toolprm_agents/**/*.py"), *root.glob("benchmarks/*.py"), *root.glob("scripts/*.sh")]:
        text = path.read_text(errors="replace")
        assert "/tmp/" not in text and "gettempdir()" not in text, path


# -- found by the property-based test (tests/test_property.py) ------------------------------


def test_the_item_cap_never_overrides_the_tools_own_max_items():
    from toolprm_agents.steps import PlanLimits, bounded_schema

    limits = PlanLimits(max_array_items=2)
    assert bounded_schema({"type": "array", "minItems": 1, "maxItems": 0}, limits)["maxItems"] == 0
    assert bounded_schema({"type": "array", "minItems": 5}, limits)["maxItems"] == 5  # the library's cap gives way


@pytest.mark.parametrize(
    "schema, match",
    [
        ({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 0}, "'minItems' 1 is greater than 'maxItems' 0"),
        ({"type": "string", "minLength": 8, "maxLength": 2}, "'minLength' 8 is greater than 'maxLength' 2"),
        ({"type": "integer", "exclusiveMinimum": -172, "exclusiveMaximum": -345}, "no integer satisfies"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "no integer satisfies"),
        ({"type": "number", "minimum": 2, "exclusiveMaximum": 2}, "no number satisfies"),
    ],
)
def test_contradictory_bounds_are_schema_errors(greedy, schema, match):
    from toolprm_agents.schema import ToolSpecError

    with pytest.raises(ToolSpecError, match=match):
        greedy.search("hi", [tool({"x": schema})])


def test_satisfiable_bounds_are_kept():
    from toolprm_agents.schema import to_tool_spec

    for schema in ({"type": "integer", "minimum": 1, "maximum": 1}, {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
                   {"type": "integer", "minimum": 1.5, "maximum": 2}):
        assert to_tool_spec(tool({"x": schema})).args[0].schema == schema


def test_grammar_errors_read_without_xgrammar_internals():
    from toolprm_agents.grammar import GrammarError, value_grammar

    with pytest.raises(GrammarError) as info:
        value_grammar({"type": "number", "minimum": 5, "maximum": 1}, "tool 'f': argument 'x'")
    assert "/project/cpp" not in str(info.value) and "\n" not in str(info.value)


def test_readme_error_section_names_real_error_classes():
    import importlib
    import pathlib
    import pkgutil

    import toolprm_agents

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("**Errors.**", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+Error)`", section))
    found = {}
    for mod in pkgutil.walk_packages(toolprm_agents.__path__, "toolprm_agents."):
        if any(part in mod.name for part in ("vllm", "training", "demo", "apibank", "__main__")):
            continue
        try:
            module = importlib.import_module(mod.name)
        except ImportError:
            continue
        for name in named:
            if isinstance(getattr(module, name, None), type):
                found[name] = getattr(module, name)
    assert set(found) == named, named - set(found)
    assert all(issubclass(cls, ToolPRMError) for cls in found.values())


def test_eval_cli_bad_input_exits_2_on_one_line(tmp_path, capsys):
    for argv, match in ((["-b", "nope"], "unknown benchmark"), (["-b", "bfcl:simple_python", "--limit", "0"], "limit must be at least 1"),
                        (["-b", "bfcl:simple_python", "--limit", "1", "--temperature", "nan"], "temperature")):
        assert main(["eval", *argv, "-q", "--out", str(tmp_path / "run"), "--policy", str(tmp_path / "none")]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and "\n" not in err


def test_tool_text_that_is_not_unicode_is_a_schema_error(greedy):
    from toolprm_agents.schema import ToolSpecError

    broken = {"name": "f", "description": "caf\udce9", "parameters": {"type": "object", "properties": {}}}
    with pytest.raises(ToolSpecError, match="not valid Unicode"):
        greedy.search("hi", [broken])


def test_enum_strings_survive_the_grammar_round_trip():
    # found by the property test: xgrammar prints U+0080 as "\x80" and reads "\x800" back as U+0800
    from xgrammar.testing import _is_grammar_accept_string as accepts

    from toolprm_agents.grammar import value_grammar

    for value in ["\x800", "\x9f\xa0", "a\x01b", "x\\x41", "\uffff0", "\U0001F600"]:
        grammar = value_grammar({"type": "object", "properties": {"b": {"enum": [value]}}, "required": ["b"]}, "x")
        assert accepts(grammar, json.dumps({"b": value}, ensure_ascii=False)) or accepts(grammar, json.dumps({"b": value}))
        assert not accepts(grammar, json.dumps({"b": "\u0800"}, ensure_ascii=False))


def test_nested_enum_value_comes_back_as_written(greedy):
    schema = {"type": "object", "properties": {"b": {"enum": ["\x800"]}}, "required": ["b"]}
    result = greedy.search("What's the weather in Paris?", [tool({"a": schema}, required=["a"])])
    for call in result.tool_calls():
        assert call["arguments"]["a"]["b"] == "\x800"


def test_argument_names_with_latin1_letters_before_hex_digits(greedy, policy):
    import xgrammar as xgr

    from toolprm_agents.grammar import literal_grammar

    for lead in ['"é1": ', '"\u00a0b": ', '"café": ']:
        matcher = xgr.GrammarMatcher(policy.grammars.compiler.compile_grammar(literal_grammar(lead)))
        assert matcher.accept_string(lead) and matcher.find_jump_forward_string() in ("", lead)
    result = greedy.search("What's the weather in Paris?", [tool({"é1": {"type": "string", "maxLength": 5}})])
    for call in result.tool_calls():
        assert set(call["arguments"]) <= {"é1"}


def test_lengths_next_to_a_pattern_are_honoured(greedy):
    # found by the property test: xgrammar follows a pattern and ignores minLength/maxLength beside it
    from toolprm_agents.steps import Step, StepKind, StepPlan
    from toolprm_agents.schema import to_tool_specs

    for schema in ({"type": "string", "minLength": 3, "pattern": "^[a-z]+$"},
                   {"type": "string", "maxLength": 4, "pattern": "^[a-z]{1,300}$"},
                   {"type": "string", "minLength": 3, "pattern": "^(ab)+$"}):
        result = greedy.search("What's the weather in Paris?", [tool({"b": schema})])
        for call in result.tool_calls():
            assert validate_value(schema, call["arguments"]["b"]) == []
    plan = StepPlan(to_tool_specs([tool({"b": {"type": "string", "minLength": 3, "pattern": "^(ab)+$"}})]))
    assert "minLength" in plan.rejects(Step(StepKind.ARG, "", function="f", arg="b", value="ab"))
    assert plan.rejects(Step(StepKind.ARG, "", function="f", arg="b", value="abab")) is None


def test_an_unsatisfied_unique_items_says_so(greedy):
    only_one = {"type": "array", "items": {"type": "integer", "enum": [1]}, "minItems": 2, "uniqueItems": True}
    result = greedy.search("Pick two", [tool({"x": only_one})])
    assert not result.complete and "uniqueItems" in result.error
