"""ToolPRMMiddleware in a real ``langchain.agents.create_agent``, beside other middleware.

The agent's own model is a fake that fails the test if it is called for a tool call: the
middleware must short-circuit it. Scripted policies say which call comes; one test runs
the tiny model end to end.
"""

from __future__ import annotations

import asyncio

import pytest

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    ModelCallLimitMiddleware,
    ModelRequest,
    dynamic_prompt,
)
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from test_node import GREEDY, ScriptedPolicy, call_then_stop, tiny_policy  # noqa: F401 (fixture)
from toolprm_agents import ToolPRMMiddleware
from toolprm_agents.middleware import MiddlewareError
from toolprm_agents.search import SearchConfig

executed: list[dict] = []


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    executed.append({"name": "get_weather", "city": city})
    return f"Sunny, 21 C in {city}"


@tool
def get_time(timezone: str) -> str:
    """Current time in a timezone."""
    executed.append({"name": "get_time", "timezone": timezone})
    return "12:00"


TOOLS = [get_weather, get_time]
PARIS = [{"name": "get_weather", "arguments": {"city": "Paris"}}]


@pytest.fixture(autouse=True)
def _clear_executed():
    executed.clear()


class NeverCalled(GenericFakeChatModel):
    """The agent's model: any call is a failure (ToolPRMMiddleware must short-circuit it)."""

    def _generate(self, *args, **kwargs):
        raise AssertionError("the agent's model was called")

    async def _agenerate(self, *args, **kwargs):
        raise AssertionError("the agent's model was called")


def never_called():
    return NeverCalled(messages=iter([]))


class Recording(AgentMiddleware):
    """Another wrap_model_call middleware: records each request and response it sees."""

    def __init__(self):
        super().__init__()
        self.requests: list[ModelRequest] = []
        self.responses: list = []

    def wrap_model_call(self, request, handler):
        self.requests.append(request)
        response = handler(request)
        self.responses.append(response)
        return response

    async def awrap_model_call(self, request, handler):
        self.requests.append(request)
        response = await handler(request)
        self.responses.append(response)
        return response


def kinds(messages):
    return [type(m).__name__ for m in messages]


def test_create_agent_runs_the_searched_call_and_the_other_middleware_runs():
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="It is sunny in Paris.")
    recording = Recording()
    agent = create_agent(
        never_called(),
        TOOLS,
        system_prompt="You answer weather questions.",
        middleware=[recording, ModelCallLimitMiddleware(run_limit=5), ToolPRMMiddleware(policy=policy, config=GREEDY)],
    )
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    call = out["messages"][1].tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    assert executed == [{"name": "get_weather", "city": "Paris"}]
    assert out["messages"][2].content == "Sunny, 21 C in Paris"  # the result flowed back
    final = out["messages"][-1]
    assert final.content == "It is sunny in Paris." and final.tool_calls == []
    assert final.response_metadata["toolprm"]["reason"] == "no_call" and final.response_metadata["toolprm"]["answered_by"] == "policy"
    # the other middleware ran around both model calls and saw ToolPRM's responses
    assert len(recording.requests) == 2 and recording.responses[0].result[0].tool_calls[0]["args"] == {"city": "Paris"}
    # the search read the system prompt, the request's tools, and the tool result in the second round
    assert policy.seen[0][0] == {"role": "system", "content": "You answer weather questions."}
    assert policy.tool_names[0] == ["get_weather", "get_time"]
    assert policy.seen[1][-1]["role"] == "tool"


def test_a_model_call_limit_middleware_counts_the_searches():
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="never reached")
    limit = ModelCallLimitMiddleware(run_limit=1, exit_behavior="end")
    agent = create_agent(never_called(), TOOLS, middleware=[limit, ToolPRMMiddleware(policy=policy, config=GREEDY)])
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert executed == [{"name": "get_weather", "city": "Paris"}]
    assert "run limit (1/1)" in out["messages"][-1].content and len(policy.seen) == 1  # no second search


def test_a_dynamic_prompt_middleware_shapes_the_search():
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="ok")

    @dynamic_prompt
    def by_user(request: ModelRequest) -> str:
        return f"Prompt written for {len(request.messages)} messages."

    agent = create_agent(never_called(), TOOLS, middleware=[by_user, ToolPRMMiddleware(policy=policy, config=GREEDY)])
    agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert [s[0] for s in policy.seen] == [
        {"role": "system", "content": "Prompt written for 1 messages."},
        {"role": "system", "content": "Prompt written for 3 messages."},
    ]


def test_a_middleware_that_selects_tools_restricts_the_search():
    class OnlyTime(AgentMiddleware):
        def wrap_model_call(self, request, handler):
            return handler(request.override(tools=[t for t in request.tools if t.name == "get_time"]))

    policy = ScriptedPolicy(call_then_stop([{"name": "get_time", "arguments": {"timezone": "UTC"}}]), replies="Noon.")
    agent = create_agent(never_called(), TOOLS, middleware=[OnlyTime(), ToolPRMMiddleware(policy=policy, config=GREEDY)])
    agent.invoke({"messages": [("user", "Time?")]})
    assert policy.tool_names == [["get_time"], ["get_time"]] and executed == [{"name": "get_time", "timezone": "UTC"}]


def test_human_in_the_loop_interrupts_the_searched_call_and_resumes():
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="Sunny.")
    agent = create_agent(
        never_called(),
        TOOLS,
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"get_weather": True}), ToolPRMMiddleware(policy=policy, config=GREEDY)],
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "h"}}
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]}, config)
    assert "__interrupt__" in out and executed == []
    (request,) = out["__interrupt__"][0].value["action_requests"]
    assert request["name"] == "get_weather" and request["args"] == {"city": "Paris"}
    out = agent.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    assert executed == [{"name": "get_weather", "city": "Paris"}] and out["messages"][-1].content == "Sunny."


def test_answer_with_model_goes_through_the_agents_model_without_tools():
    policy = ScriptedPolicy(call_then_stop(PARIS))
    seen_tools: list = []

    class SeeTools(AgentMiddleware):
        def wrap_model_call(self, request, handler):
            seen_tools.append([getattr(t, "name", t) for t in request.tools])
            return handler(request)

    agent = create_agent(
        FakeListChatModel(responses=["The model says: sunny."]),
        TOOLS,
        middleware=[ToolPRMMiddleware(policy=policy, config=GREEDY, answer_with="model"), SeeTools()],
    )
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    final = out["messages"][-1]
    assert final.content == "The model says: sunny." and final.tool_calls == []
    meta = final.response_metadata["toolprm"]
    assert meta["reason"] == "no_call" and meta["answered_by"] == "model"
    assert seen_tools == [[]]  # the inner middleware (and the model) ran once, with no tools bound
    with pytest.raises(MiddlewareError, match="answer_with must be"):
        ToolPRMMiddleware(policy=policy, answer_with="llm")


def test_async_agent_and_astream_events_show_the_search_rounds():
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="Sunny.")
    agent = create_agent(never_called(), TOOLS, middleware=[Recording(), ToolPRMMiddleware(policy=policy, config=GREEDY)])

    async def main():
        out = await agent.ainvoke({"messages": [("user", "Weather in Paris?")]})
        events = [ev async for ev in agent.astream_events({"messages": [("user", "Weather in Paris?")]}, version="v2")
                  if ev["event"] == "on_custom_event"]
        return out, events

    out, events = asyncio.run(main())
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert out["messages"][-1].content == "Sunny."
    names = [e["name"] for e in events]
    assert "toolprm_round" in names and names.count("toolprm_result") == 2
    assert next(e for e in events if e["name"] == "toolprm_result")["data"]["calls"] == PARIS


def test_per_run_settings_and_tool_choice():
    policy = ScriptedPolicy(lambda m: [], replies="No call.")

    class Force(AgentMiddleware):
        def __init__(self, choice):
            super().__init__()
            self.choice = choice

        def wrap_model_call(self, request, handler):
            return handler(request.override(tool_choice=self.choice))

    agent = create_agent(never_called(), TOOLS, middleware=[Force("none"), ToolPRMMiddleware(policy=policy, config=GREEDY)])
    out = agent.invoke({"messages": [("user", "hi")]})  # tool_choice="none": no search, a text answer
    assert out["messages"][-1].content == "No call." and out["messages"][-1].response_metadata["toolprm"]["reason"] == "tool_choice"
    assert len(policy.sessions) == 1 and policy.replied  # a session opened for the reply only
    agent = create_agent(never_called(), TOOLS, middleware=[Force("get_time"), ToolPRMMiddleware(policy=ScriptedPolicy(call_then_stop([{"name": "get_time", "arguments": {"timezone": "UTC"}}]), replies="x"), config=GREEDY)])
    out = agent.invoke({"messages": [("user", "hi")]}, {"configurable": {"toolprm": {"max_tool_rounds": 1}}})
    assert out["messages"][1].tool_calls[0]["name"] == "get_time"
    assert out["messages"][-1].response_metadata["toolprm"]["reason"] == "max_tool_rounds"
    agent = create_agent(never_called(), TOOLS, middleware=[Force("nope"), ToolPRMMiddleware(policy=policy, config=GREEDY)])
    with pytest.raises(MiddlewareError, match="tool_choice names 'nope'"):
        agent.invoke({"messages": [("user", "hi")]})


def test_abstention_in_the_middleware():
    from test_node import book_flight, unsure_flight_policy, UnusedScorer, POLICY_RANKED

    agent = create_agent(never_called(), [book_flight], middleware=[ToolPRMMiddleware(policy=unsure_flight_policy(), scorer=UnusedScorer(), config=POLICY_RANKED, abstain_below=0.7)])
    out = agent.invoke({"messages": [("user", "Book LH40 or LH41, seat 12A")]})
    final = out["messages"][-1]
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage"] and "flight_no" in final.content
    meta = final.response_metadata["toolprm"]
    assert meta["reason"] == "abstain" and meta["uncertain"]["arg"] == "flight_no" and meta["alternatives"]


def test_tiny_model_end_to_end(tiny_policy):
    agent = create_agent(never_called(), TOOLS, middleware=[ToolPRMMiddleware(policy=tiny_policy, config=GREEDY, max_tool_rounds=1, max_answer_tokens=8)])
    out = agent.invoke({"messages": [("user", "What's the weather in Paris?")]})
    msgs = out["messages"]
    final = msgs[-1]
    assert isinstance(final, AIMessage) and final.tool_calls == [] and final.content
    assert final.response_metadata["toolprm"]["answered_by"] == "policy"
    if len(msgs) > 2:  # the tiny model made a call: it ran and the result came back
        assert isinstance(msgs[2], ToolMessage) and executed
