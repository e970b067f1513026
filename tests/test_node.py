"""ToolPRMNode: calls in LangGraph's format, text answers, errors, settings, streaming, async, threads.

Most tests use the tiny random Llama (``tiny_model_dir``); those that need a known answer
use :class:`ScriptedPolicy`, a policy that writes given calls step by step through the
real search (so the node, the plan and the search are exercised, only the model is not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from typing import Callable, Sequence

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from toolprm_agents.compute import Compute
from toolprm_agents.node import ToolPRMNode
from toolprm_agents.policy import Candidate, Policy, PolicySession, TransformersPolicy
from toolprm_agents.schema import to_tool_spec, to_tool_specs, validate_call, ToolSpecError
from toolprm_agents.scorers import JudgeConfig, LikelihoodScorer, Scorer, ToolPRM
from toolprm_agents.search import SearchConfig, SearchError
from toolprm_agents.steps import StepParseError

GREEDY = SearchConfig(strategy="greedy", max_string_length=24)
TINY_BEAM = SearchConfig(beams=2, expand=2, max_string_length=6, max_calls=2, seed=1)


# ------------------------------------------------------------------------------------------
# helpers shared with test_agent.py


class ScriptedSession(PolicySession):
    def __init__(self, plan, target, compute, fail: bool, policy=None):
        self.plan, self.target, self.compute, self.fail, self.policy = plan, target, compute, fail, policy

    def reply(self, messages, *, max_tokens=128):
        if self.policy is None or self.policy.replies is None:
            return super().reply(messages, max_tokens=max_tokens)
        self.policy.replied.append((self, [dict(m) for m in messages]))
        self.compute.tokens_generated += 3
        return self.policy.replies

    def propose(self, answer, n, temperature):
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        if self.fail:
            return []  # no candidate: the search cannot complete
        k = len(answer.steps)
        if self.policy is None or not self.policy.alternatives:
            return [Candidate(self.target.steps[k])]
        # weighted answers: each decision's candidates are the next steps of the answers that
        # agree with it so far, with their conditional probability
        ways: dict[str, list] = {}
        for target, weight in [(self.target, self.policy.weight), *self._alternatives()]:
            if len(target.steps) > k and tuple(target.steps[:k]) == tuple(answer.steps):
                ways.setdefault(target.steps[k].text, [target.steps[k], 0.0])[1] += weight
        total = sum(w for _, w in ways.values())
        cands = [Candidate(step, logprob=math.log(w / total), prob=w / total) for step, w in ways.values()]
        return sorted(cands, key=lambda c: -c.prob)[: max(n, 1)]

    def _alternatives(self):
        return [(self.plan.answer_from_calls(calls), w) for calls, w in self.policy.alternatives]


class ScriptedPolicy(Policy):
    """Writes the calls ``decide(messages)`` returns (``[{"name", "arguments"}]``; ``[]`` = no call).

    Records every conversation it was asked about in ``seen`` (normalised messages).
    """

    def __init__(self, decide: Callable[[list[dict]], list[dict]], *, fail: bool = False, replies: str | None = None,
                 weight: float = 1.0, alternatives: Sequence[tuple[list[dict], float]] = ()):
        self.decide, self.fail = decide, fail
        # other answers with their weights (the decided answer has ``weight``): each decision then
        # offers the candidates these answers take there, with their conditional probabilities
        self.weight, self.alternatives = weight, list(alternatives)
        self.replies = replies  # the text its sessions' reply() gives (None: no text answers)
        self.replied: list[tuple[PolicySession, list[dict]]] = []
        self.sessions: list[PolicySession] = []
        self.seen: list[list[dict]] = []
        self.tool_names: list[list[str]] = []  # the tools each search offered
        self.lock = threading.RLock()

    def session(self, messages, plan, compute, *, seed=0):
        self.seen.append([dict(m) for m in messages])
        self.tool_names.append([t.name for t in plan.tools])
        try:
            target = plan.answer_from_calls(self.decide(list(messages)))
        except StepParseError:  # the plan forbids this answer (e.g. no call when a call is required)
            target = None
        self.sessions.append(ScriptedSession(plan, target, compute, self.fail, self))
        return self.sessions[-1]


def call_then_stop(calls: list[dict]) -> Callable[[list[dict]], list[dict]]:
    """Make ``calls`` until a tool result is in the conversation, then make none."""
    return lambda msgs: [] if msgs[-1]["role"] == "tool" else calls


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny, 21 C in {city}"


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "4"


TOOLS = [get_weather, calculate]


def weather_graph(node: ToolPRMNode, tools: Sequence = TOOLS, checkpointer=None):
    builder = StateGraph(MessagesState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode(list(tools)))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
    return TransformersPolicy(str(tiny_model_dir), max_step_tokens=24)


@pytest.fixture(scope="session")
def tiny_prm(tiny_model_dir):
    from toolprm_agents.models import load_causal_lm

    return ToolPRM(model=load_causal_lm(str(tiny_model_dir)), config=JudgeConfig())


# ------------------------------------------------------------------------------------------
# the node's output


def test_scripted_call_comes_back_as_langgraph_tool_call():
    policy = ScriptedPolicy(lambda m: [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY)
    out = node({"messages": [HumanMessage("Weather in Paris?")]})
    (msg,) = out["messages"]
    assert isinstance(msg, AIMessage) and msg.content == ""
    (call,) = msg.tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    assert call["type"] == "tool_call" and call["id"].startswith("call_")
    meta = msg.response_metadata["toolprm"]
    assert meta["strategy"] == "greedy" and meta["complete"] is True
    assert meta["compute"]["seconds"] >= 0 and "rounds" in meta
    # a LangChain tool runs it as is
    result = get_weather.invoke(call)
    assert isinstance(result, ToolMessage) and result.content == "Sunny, 21 C in Paris"
    assert result.tool_call_id == call["id"]


def test_tiny_model_call_is_valid_for_the_schema(tiny_policy):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, config=GREEDY)
    msg = node.invoke({"messages": [("user", "What's the weather in Paris?")]})["messages"][0]
    specs = {s.name: s for s in to_tool_specs(TOOLS)}
    if msg.tool_calls:
        for call in msg.tool_calls:
            assert validate_call(specs[call["name"]], call["args"]) == []
        assert len({c["id"] for c in msg.tool_calls}) == len(msg.tool_calls)
    else:  # the tiny model chose "no call": then it must be a text answer
        assert isinstance(msg.content, str) and msg.content
    assert msg.response_metadata["toolprm"]["compute"]["forward_passes"] > 0


def test_list_input_gives_list_output():
    node = ToolPRMNode(TOOLS, policy=ScriptedPolicy(lambda m: [{"name": "calculate", "arguments": {"expression": "2+2"}}]), config=GREEDY)
    out = node.invoke([HumanMessage("2+2?")])
    assert isinstance(out, list) and out[0].tool_calls[0]["args"] == {"expression": "2+2"}


def test_tools_from_a_toolnode_and_from_the_state():
    policy = ScriptedPolicy(lambda m: [{"name": "lookup", "arguments": {"key": "x"}}])
    with pytest.raises(ValueError, match="no tools"):
        ToolPRMNode(None, policy=policy, config=GREEDY).invoke({"messages": [HumanMessage("x")]})
    doc = {"name": "lookup", "description": "Look a key up.", "parameters": {"type": "dict", "properties": {"key": {"type": "string"}}, "required": ["key"]}}
    out = ToolPRMNode(None, policy=policy, config=GREEDY).invoke({"messages": [HumanMessage("x")], "tools": [doc]})
    assert out["messages"][0].tool_calls[0]["name"] == "lookup"
    node = ToolPRMNode(ToolNode(TOOLS), policy=ScriptedPolicy(lambda m: []), config=GREEDY)
    assert [s.name for s in node.tool_specs] == ["get_weather", "calculate"]


def test_tool_names_restrict_the_search_per_invocation():
    policy = ScriptedPolicy(lambda m: [{"name": "calculate", "arguments": {"expression": "1"}}])
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY)
    node.invoke({"messages": [HumanMessage("x")]})
    node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": {"tool_names": ["calculate"]}}})
    assert policy.tool_names == [["get_weather", "calculate"], ["calculate"]]
    with pytest.raises(ValueError, match=r"tool_names \['nope'\] are not among the tools"):
        node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": {"tool_names": ["nope"]}}})


def test_bad_tools_fail_at_construction():
    with pytest.raises(ToolSpecError):
        ToolPRMNode([object()], policy=ScriptedPolicy(lambda m: []))
    with pytest.raises(ValueError, match="max_tool_rounds"):
        ToolPRMNode(TOOLS, policy=ScriptedPolicy(lambda m: []), max_tool_rounds=0)


# ------------------------------------------------------------------------------------------
# text answers and errors


def test_no_call_answers_in_text_with_the_answer_model():
    policy = ScriptedPolicy(lambda m: [])
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY, answer_model=FakeListChatModel(responses=["Hello there!"]))
    msg = node.invoke({"messages": [HumanMessage("Hi!")]})["messages"][0]
    assert msg.tool_calls == [] and msg.content == "Hello there!"
    meta = msg.response_metadata["toolprm"]
    assert meta["reason"] == "no_call" and meta["answered_by"] == "answer_model" and meta["complete"] is True


def test_no_call_answers_in_text_through_the_search_policy_session():
    policy = ScriptedPolicy(lambda m: [], replies="Hello from the policy.")
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY, max_answer_tokens=8)
    msg = node.invoke({"messages": [HumanMessage("Hi!")]})["messages"][0]
    assert msg.tool_calls == [] and msg.content == "Hello from the policy."
    meta = msg.response_metadata["toolprm"]
    assert meta["answered_by"] == "policy" and meta["answer_tokens"] == 3 and meta["reason"] == "no_call"
    # the reply came from the session the search ran in, over plain chat
    (session, chat), = policy.replied
    assert session is policy.sessions[0] and len(policy.sessions) == 1
    assert [c["role"] for c in chat] == ["system", "user"] and chat[-1]["content"] == "Hi!"


def test_a_policy_without_text_answers_lists_the_tool_results():
    node = ToolPRMNode(TOOLS, policy=ScriptedPolicy(lambda m: []), config=GREEDY)  # its sessions raise NotImplementedError
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("Sunny, 21 C in Paris", tool_call_id="c1"),
    ]
    msg = node.invoke({"messages": history})["messages"][0]
    assert msg.response_metadata["toolprm"]["answered_by"] == "tool_results"
    assert msg.content == 'Tool results:\nget_weather({"city": "Paris"}) returned: Sunny, 21 C in Paris'


def test_the_tiny_model_answers_through_its_session_when_no_search_ran(tiny_policy):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, config=GREEDY, max_tool_rounds=1, max_answer_tokens=8)
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("Sunny, 21 C in Paris", tool_call_id="c1"),
    ]
    msg = node.invoke({"messages": history})["messages"][0]
    meta = msg.response_metadata["toolprm"]
    assert meta["reason"] == "max_tool_rounds" and meta["answered_by"] == "policy"
    assert 0 < meta["answer_tokens"] <= 8 and isinstance(msg.content, str) and msg.content


def test_text_answer_sees_this_turns_tool_results():
    from toolprm_agents.node import _answer_chat

    msgs = [
        SystemMessage("Be brief."),
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("Sunny, 21 C in Paris", tool_call_id="c1"),
    ]
    chat = _answer_chat(msgs)
    assert [c["role"] for c in chat] == ["system", "user"]
    assert chat[0]["content"].endswith("Be brief.")
    assert chat[1]["content"] == 'Weather in Paris?\n\nTool results:\n- get_weather({"city": "Paris"}) returned: Sunny, 21 C in Paris'
    # results of an earlier turn are not repeated; that turn's answer stays as an assistant turn
    later = _answer_chat(msgs + [AIMessage("Sunny."), HumanMessage("Thanks!")])
    assert [c["role"] for c in later] == ["system", "user", "assistant", "user"]
    assert later[1]["content"] == "Weather in Paris?" and later[-1]["content"] == "Thanks!"


def test_incomplete_search_gives_a_text_error_not_a_call():
    node = ToolPRMNode(TOOLS, policy=ScriptedPolicy(lambda m: [{"name": "get_weather", "arguments": {"city": "x"}}], fail=True), config=GREEDY)
    msg = node.invoke({"messages": [HumanMessage("Weather?")]})["messages"][0]
    assert msg.tool_calls == [] and msg.invalid_tool_calls == []
    assert "could not complete a tool call" in msg.content
    meta = msg.response_metadata["toolprm"]
    assert meta["complete"] is False and meta["reason"] == "incomplete" and meta["error"]


# ------------------------------------------------------------------------------------------
# loop guards


def test_repeated_call_is_answered_in_text_instead():
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    node = ToolPRMNode(TOOLS, policy=ScriptedPolicy(lambda m: calls), config=GREEDY, answer_model=FakeListChatModel(responses=["Sunny."]))
    history = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("Sunny, 21 C in Paris", tool_call_id="c1"),
    ]
    msg = node.invoke({"messages": history})["messages"][0]
    assert msg.tool_calls == [] and msg.content == "Sunny."
    assert msg.response_metadata["toolprm"]["reason"] == "repeat"
    # a repeat in an earlier turn (before the last user message) does not count
    msg = node.invoke({"messages": history + [HumanMessage("And again?")]})["messages"][0]
    assert msg.tool_calls and msg.tool_calls[0]["args"] == {"city": "Paris"}


def test_max_tool_rounds_and_remaining_steps_stop_the_search():
    policy = ScriptedPolicy(lambda m: [{"name": "calculate", "arguments": {"expression": str(len(m))}}])
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY, max_tool_rounds=1, answer_model=FakeListChatModel(responses=["done"]))
    history = [
        HumanMessage("count"),
        AIMessage("", tool_calls=[{"name": "calculate", "args": {"expression": "0"}, "id": "c1", "type": "tool_call"}]),
        ToolMessage("0", tool_call_id="c1"),
    ]
    msg = node.invoke({"messages": history})["messages"][0]
    assert msg.content == "done" and msg.response_metadata["toolprm"]["reason"] == "max_tool_rounds"
    assert policy.seen == []  # no search was run
    # per invocation: a higher bound lets it call again
    msg = node.invoke({"messages": history}, {"configurable": {"toolprm": {"max_tool_rounds": 3}}})["messages"][0]
    assert msg.tool_calls and len(policy.seen) == 1
    msg = node.invoke({"messages": [HumanMessage("count")], "remaining_steps": 1})["messages"][0]
    assert msg.response_metadata["toolprm"]["reason"] == "remaining_steps" and len(policy.seen) == 1


# ------------------------------------------------------------------------------------------
# settings


def test_configurable_overrides_take_effect(tiny_policy):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, scorer=LikelihoodScorer(), config=GREEDY)
    msg = node.invoke(
        {"messages": [("user", "Weather in Paris?")]},
        {"configurable": {"thread_id": "x", "toolprm": {"strategy": "beam", "N": 1, "M": 2, "temperature": 1.0, "seed": 3, "aggregation": "min", "max_calls": 2, "max_string_length": 6}}},
    )["messages"][0]
    meta = msg.response_metadata["toolprm"]
    assert (meta["strategy"], meta["beams"], meta["expand"], meta["aggregation"]) == ("beam", 1, 2, "min")
    assert meta["scorer"] == "likelihood" and meta["compute"]["scorer_calls"] > 0
    assert meta["score"] is not None and meta["step_scores"]
    assert node.config.strategy == "greedy"  # the node's default is unchanged
    # the nested form, and a scorer by name
    msg = node.invoke({"messages": [("user", "Weather?")]}, {"configurable": {"toolprm": {"strategy": "best_of_n", "beams": 2, "max_calls": 1, "max_string_length": 6, "scorer": "likelihood"}}})["messages"][0]
    assert msg.response_metadata["toolprm"]["strategy"] == "best_of_n"
    with pytest.raises(SearchError, match="unknown strategy"):
        node.invoke({"messages": [("user", "x")]}, {"configurable": {"toolprm": {"strategy": "bogus"}}})


def test_settings_keys_are_the_searchconfig_fields_and_old_keys_warn():
    policy = ScriptedPolicy(lambda m: [{"name": "calculate", "arguments": {"expression": "1"}}])
    node = ToolPRMNode(TOOLS, policy=policy, config=GREEDY)
    # a field the old key list never had (budget_tokens) is a setting now, since keys come from SearchConfig
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the nested form gives no warning
        msg = node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": {"budget_tokens": 5, "max_calls": 1}}})["messages"][0]
    assert msg.tool_calls
    with pytest.warns(DeprecationWarning, match=r"top-level configurable keys \['seed'\] are deprecated"):
        node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"seed": 4, "thread_id": "t"}})
    # nested wins over the deprecated top level
    with pytest.warns(DeprecationWarning):
        msg = node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"strategy": "bogus", "toolprm": {"strategy": "greedy"}}})["messages"][0]
    assert msg.response_metadata["toolprm"]["strategy"] == "greedy"
    from toolprm_agents.errors import ToolPRMError
    from toolprm_agents.settings import SettingsError

    with pytest.raises(SettingsError, match=r"unknown setting configurable\[.toolprm.\]\[.beam.\]") as err:
        node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": {"beam": 3}}})
    assert isinstance(err.value, ToolPRMError) and "budget_tokens" in str(err.value)  # lists the real keys
    with pytest.raises(SettingsError, match="must be a dict"):
        node.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": "beam"}})


def test_scorer_is_loaded_once_and_shares_the_policy_lock(tiny_policy, tiny_prm):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, scorer=tiny_prm, config=GREEDY)
    assert node.get_scorer() is tiny_prm
    assert tiny_prm.lock is tiny_policy.lock  # one model, one lock: concurrent searches serialise on it
    a, b = node.get_scorer("likelihood"), node.get_scorer("likelihood")
    assert a is b and isinstance(a, LikelihoodScorer)


def test_policy_loads_lazily(monkeypatch):
    import toolprm_agents.policy as policy_mod

    made = []

    class FakeTP:
        def __init__(self, spec, **kw):
            made.append(spec)

    monkeypatch.setattr(policy_mod, "TransformersPolicy", FakeTP)
    node = ToolPRMNode(TOOLS, policy="some/path")
    assert made == [] and not node.loaded
    assert isinstance(node.policy, FakeTP) and node.policy is node.policy and made == ["some/path"]


def test_backend_specs_reach_the_backend_loaders(monkeypatch, tiny_policy):
    """A URL or vllm: spec for the policy and the judge goes to toolprm_agents.backends."""
    import toolprm_agents.backends as backends

    policies, judges = [], []
    monkeypatch.setattr(backends, "load_policy", lambda spec, **kw: policies.append(spec) or tiny_policy)
    monkeypatch.setattr(backends, "load_judge", lambda spec, kind, policy=None: judges.append((spec, kind, policy)) or object())
    node = ToolPRMNode(TOOLS, policy="http://10.0.0.1:8000/v1", scorer="toolprm", prm="http://10.0.0.2:8000/v1#judge")
    assert node.policy is tiny_policy and policies == ["http://10.0.0.1:8000/v1"]
    node.get_scorer()
    node.get_scorer("orm")  # another kind named per invocation: its packaged judge, on the policy's backend
    assert judges == [("http://10.0.0.2:8000/v1#judge", "toolprm", tiny_policy), (None, "orm", tiny_policy)]


# ------------------------------------------------------------------------------------------
# streaming, async, threads


def test_custom_stream_events_for_each_round(tiny_policy, tiny_prm):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, scorer=tiny_prm, config=TINY_BEAM, max_tool_rounds=1, max_answer_tokens=8)
    graph = weather_graph(node)
    events = [c["toolprm"] for c in graph.stream({"messages": [("user", "Weather in Paris?")]}, stream_mode="custom")]
    rounds = [e for e in events if e["type"] == "round"]
    results = [e for e in events if e["type"] == "result"]
    assert rounds and results
    assert [r["round"] for r in rounds[: len(rounds)]][0] == 0
    for r in rounds:
        assert r["candidates"] and all({"text", "score", "kept", "kind"} <= set(c) for c in r["candidates"])
        assert sum(c["kept"] for c in r["candidates"]) <= 2
        assert all(c["score"] is not None for c in r["candidates"])  # scored by the PRM
    assert results[0]["complete"] in (True, False)


def test_ainvoke_gives_the_same_answer_as_invoke(tiny_policy):
    node = ToolPRMNode(TOOLS, policy=tiny_policy, config=GREEDY.replace(max_calls=2), max_answer_tokens=4)
    sync = node.invoke({"messages": [("user", "Weather in Paris?")]})["messages"][0]
    msg = asyncio.run(node.ainvoke({"messages": [("user", "Weather in Paris?")]}))["messages"][0]
    assert [c["args"] for c in msg.tool_calls] == [c["args"] for c in sync.tool_calls]
    assert msg.content == sync.content


def test_ainvoke_runs_the_model_work_off_the_event_loop():
    class SlowPolicy(ScriptedPolicy):  # every model step blocks its thread for 0.1 s
        def session(self, messages, plan, compute, *, seed=0):
            inner = super().session(messages, plan, compute, seed=seed)
            propose = inner.propose

            def slow(answer, n, temperature):
                time.sleep(0.1)
                return propose(answer, n, temperature)

            inner.propose = slow
            return inner

    node = ToolPRMNode(TOOLS, policy=SlowPolicy(lambda m: [{"name": "get_weather", "arguments": {"city": "Paris"}}]), config=GREEDY)

    async def main():
        ticks, done = 0, False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        out = await node.ainvoke({"messages": [("user", "Weather in Paris?")]})
        done = True
        await t
        return out, ticks

    out, ticks = asyncio.run(main())
    assert out["messages"][0].tool_calls[0]["args"] == {"city": "Paris"}
    assert ticks >= 10  # the loop kept running during the ~0.4 s of blocking model steps


def test_two_concurrent_invocations_share_one_model(tiny_policy, tiny_prm):
    # a call is required, so both invocations run the whole loop (search, tools, text answer)
    config = dataclasses.replace(TINY_BEAM, allow_no_call=False)
    node = ToolPRMNode(TOOLS, policy=tiny_policy, scorer=tiny_prm, config=config, max_tool_rounds=1, max_answer_tokens=8)
    graph = weather_graph(node)
    inputs = [{"messages": [("user", "Weather in Paris?")]}, {"messages": [("user", "What is 2 + 2?")]}]
    serial = [graph.invoke(i) for i in inputs]

    async def main():
        return await asyncio.gather(*(graph.ainvoke(i) for i in inputs))

    concurrent = asyncio.run(main())
    assert any(isinstance(m, ToolMessage) for out in serial for m in out["messages"])  # tools ran
    for a, b in zip(serial, concurrent):
        assert [type(m).__name__ for m in a["messages"]] == [type(m).__name__ for m in b["messages"]]
        calls_a = [(c["name"], c["args"]) for m in a["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
        calls_b = [(c["name"], c["args"]) for m in b["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
        assert calls_a == calls_b  # same seed, same answers: the searches did not disturb each other


# ------------------------------------------------------------------------------------------
# confidence, runner-up answers, abstention

BOOK = [{"name": "book_flight", "arguments": {"flight_no": "LH40", "seat": "12A"}}]
BOOK_OTHER = [{"name": "book_flight", "arguments": {"flight_no": "LH41", "seat": "12A"}}]


@tool
def book_flight(flight_no: str, seat: str) -> str:
    """Book a seat on a flight."""
    return f"booked {flight_no} seat {seat}"


class UnusedScorer(Scorer):
    """A scorer the search must not call (judge_weight=0: the policy's own ranking)."""

    name = "unused"

    def session(self, messages, plan, compute, *, policy_session=None):
        raise AssertionError("judge_weight=0 must not open a scorer session")


POLICY_RANKED = SearchConfig(beams=2, expand=2, max_calls=1, judge_weight=0.0)


def unsure_flight_policy(**kw):
    """The flight number is a 60/40 choice between LH40 and LH41; everything else is sure."""
    return ScriptedPolicy(lambda m: BOOK, weight=0.6, alternatives=[(BOOK_OTHER, 0.4)], **kw)


def test_metadata_has_argument_scores_confidence_and_ranked_runner_ups():
    node = ToolPRMNode([book_flight], policy=unsure_flight_policy(), scorer=UnusedScorer(), config=POLICY_RANKED)
    msg = node.invoke({"messages": [HumanMessage("Book me on LH40 or LH41, seat 12A")]})["messages"][0]
    assert msg.tool_calls[0]["args"] == {"flight_no": "LH40", "seat": "12A"}
    meta = msg.response_metadata["toolprm"]
    args = {r["arg"]: r for r in meta["argument_scores"] if r["kind"] == "ARG"}
    assert args["flight_no"]["value"] == "LH40" and args["flight_no"]["score"] == pytest.approx(0.6)
    assert args["seat"]["score"] == pytest.approx(1.0)
    assert meta["confidence"] == pytest.approx(0.6)  # the weakest step
    (runner_up,) = meta["alternatives"]  # the chosen answer is not repeated among them
    assert runner_up["calls"] == [{"name": "book_flight", "arguments": {"flight_no": "LH41", "seat": "12A"}}]
    assert 0 < runner_up["score"] < meta["score"]


def test_abstain_below_answers_in_text_naming_the_uncertain_argument():
    node = ToolPRMNode([book_flight], policy=unsure_flight_policy(), scorer=UnusedScorer(), config=POLICY_RANKED, abstain_below=0.7)
    msg = node.invoke({"messages": [HumanMessage("Book me on LH40 or LH41, seat 12A")]})["messages"][0]
    assert msg.tool_calls == []
    assert "flight_no" in msg.content and "LH40" in msg.content and "0.60" in msg.content
    meta = msg.response_metadata["toolprm"]
    assert meta["reason"] == "abstain" and meta["answered_by"] == "abstention" and meta["abstain_below"] == 0.7
    assert meta["uncertain"]["arg"] == "flight_no" and meta["abstained_calls"] == BOOK
    assert meta["alternatives"][0]["calls"] == BOOK_OTHER
    # per run: a lower threshold makes the call; a sure answer is never held back
    msg = node.invoke({"messages": [HumanMessage("Book LH40, 12A")]}, {"configurable": {"toolprm": {"abstain_below": 0.5}}})["messages"][0]
    assert msg.tool_calls and msg.tool_calls[0]["args"]["flight_no"] == "LH40"
    sure = ToolPRMNode([book_flight], policy=ScriptedPolicy(lambda m: BOOK), config=GREEDY, abstain_below=0.99)
    assert sure.invoke({"messages": [HumanMessage("Book LH40, 12A")]})["messages"][0].tool_calls
    from toolprm_agents.node import NodeInputError

    with pytest.raises(NodeInputError, match="abstain_below must be a confidence in"):
        ToolPRMNode([book_flight], policy=ScriptedPolicy(lambda m: BOOK), abstain_below=1.5)
    with pytest.raises(NodeInputError, match="abstain_below"):
        sure.invoke({"messages": [HumanMessage("x")]}, {"configurable": {"toolprm": {"abstain_below": "high"}}})


def test_astream_events_v2_shows_each_search_round_as_a_custom_event():
    policy = ScriptedPolicy(call_then_stop([{"name": "get_weather", "arguments": {"city": "Paris"}}]), replies="Sunny.")
    builder = StateGraph(MessagesState)
    builder.add_node("agent", ToolPRMNode(TOOLS, policy=policy, config=GREEDY))
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile()

    async def collect():
        return [ev async for ev in graph.astream_events({"messages": [("user", "Weather in Paris?")]}, version="v2")
                if ev["event"] == "on_custom_event"]

    events = asyncio.run(collect())
    names = [e["name"] for e in events]
    assert "toolprm_round" in names and names.count("toolprm_result") == 2  # one search per agent step
    first_round = next(e for e in events if e["name"] == "toolprm_round")
    assert first_round["data"]["type"] == "round" and first_round["data"]["candidates"]
    assert first_round["metadata"]["langgraph_node"] == "agent"
    result = next(e for e in events if e["name"] == "toolprm_result")
    assert result["data"]["calls"] == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    # the synchronous path dispatches them too (to any callback handler)
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.names = []

        def on_custom_event(self, name, data, **kwargs):
            self.names.append(name)

    rec = Recorder()
    graph.invoke({"messages": [("user", "Weather in Paris?")]}, {"callbacks": [rec]})
    assert rec.names.count("toolprm_result") == 2 and "toolprm_round" in rec.names


def test_a_search_keeps_its_policy_session_only_when_asked():
    from toolprm_agents.search import ToolPRMSearch

    policy = ScriptedPolicy(lambda m: BOOK)
    search = ToolPRMSearch(policy, None, GREEDY)
    assert search.search("Book LH40, 12A", [book_flight]).session is None  # its KV caches are not held on to
    kept = search.search("Book LH40, 12A", [book_flight], keep_session=True)
    assert kept.session is policy.sessions[-1] and kept.confidence == pytest.approx(1.0)
    assert kept.weakest_argument()["kind"] in {"FUNC_NAME", "ARG", "PARAM_FINISH", "FUNC_FINISH", "TOTAL_FINISH"}
    assert kept.runner_ups() == [] and "confidence" in kept.to_dict()
