"""create_toolprm_agent and wrap_agent: real LangGraph graphs run end to end.

Tiny model for speed; a scripted policy where a test needs to know which call comes;
one SmolLM2 test (marker ``smollm2``).
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition
from pydantic import BaseModel

from test_node import GREEDY, TINY_BEAM, ScriptedPolicy, call_then_stop, tiny_policy, tiny_prm  # noqa: F401 (fixtures)
from toolprm_agents.agent import WrapError, create_toolprm_agent, wrap_agent
from toolprm_agents.node import ToolPRMNode
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


def kinds(messages):
    return [type(m).__name__ for m in messages]


# ------------------------------------------------------------------------------------------
# create_toolprm_agent


def test_agent_executes_the_call_feeds_the_result_back_and_answers():
    policy = ScriptedPolicy(call_then_stop(PARIS))
    agent = create_toolprm_agent(TOOLS, policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["It is sunny in Paris."]))
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert executed == [{"name": "get_weather", "city": "Paris"}]  # ToolNode ran the real tool
    tool_msg = out["messages"][2]
    assert tool_msg.content == "Sunny, 21 C in Paris" and tool_msg.tool_call_id == out["messages"][1].tool_calls[0]["id"]
    # the second search read the tool result, rendered as a tool turn after the JSON call
    second = policy.seen[1]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    assert second[1]["content"] == '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    assert second[2]["content"] == "Sunny, 21 C in Paris"
    final = out["messages"][-1]
    assert final.tool_calls == [] and final.content == "It is sunny in Paris."
    assert final.response_metadata["toolprm"]["reason"] == "no_call"


def test_agent_with_the_tiny_model_runs_to_a_text_answer(tiny_policy):
    agent = create_toolprm_agent(TOOLS, policy=tiny_policy, search=GREEDY.replace(max_calls=2, max_string_length=8), max_tool_rounds=1)
    out = agent.invoke({"messages": [("user", "What's the weather in Paris?")]})
    msgs = out["messages"]
    assert isinstance(msgs[0], HumanMessage)
    final = msgs[-1]
    assert isinstance(final, AIMessage) and final.tool_calls == [] and isinstance(final.content, str) and final.content
    n_calls = sum(len(m.tool_calls) for m in msgs if isinstance(m, AIMessage))
    assert n_calls == len(executed) == sum(isinstance(m, ToolMessage) for m in msgs)  # every call executed
    assert sum(1 for m in msgs if isinstance(m, AIMessage) and m.tool_calls) <= 1  # max_tool_rounds


def test_agent_stops_after_max_tool_rounds_and_before_the_recursion_limit():
    counter = iter(range(100))
    policy = ScriptedPolicy(lambda m: [{"name": "get_time", "arguments": {"timezone": f"UTC+{next(counter)}"}}])
    agent = create_toolprm_agent(TOOLS, policy=policy, search=GREEDY, max_tool_rounds=3, answer_model=FakeListChatModel(responses=["enough"]))
    out = agent.invoke({"messages": [("user", "time?")]})
    assert len(executed) == 3 and out["messages"][-1].content == "enough"
    assert out["messages"][-1].response_metadata["toolprm"]["reason"] == "max_tool_rounds"
    # no round bound: LangGraph's step budget ends it gracefully instead of GraphRecursionError
    executed.clear()
    agent = create_toolprm_agent(TOOLS, policy=policy, search=GREEDY, max_tool_rounds=None, answer_model=FakeListChatModel(responses=["out of steps"]))
    out = agent.invoke({"messages": [("user", "time?")]}, {"recursion_limit": 8})
    assert out["messages"][-1].content == "out of steps"
    assert out["messages"][-1].response_metadata["toolprm"]["reason"] == "remaining_steps"


def test_agent_rejects_tools_it_cannot_execute():
    class Lookup(BaseModel):
        """Look something up."""

        key: str

    with pytest.raises(TypeError, match="executes its tools"):
        create_toolprm_agent([Lookup], policy=ScriptedPolicy(lambda m: []))


@pytest.mark.parametrize("saver", ["memory", "sqlite"])
def test_checkpointer_keeps_the_conversation_across_two_turns(saver, tmp_path):
    policy = ScriptedPolicy(call_then_stop(PARIS))
    answers = FakeListChatModel(responses=["Sunny in Paris.", "Still sunny."])
    config = {"configurable": {"thread_id": "t1"}}

    def run(checkpointer):
        agent = create_toolprm_agent(TOOLS, policy=policy, search=GREEDY, answer_model=answers, checkpointer=checkpointer)
        agent.invoke({"messages": [("user", "Weather in Paris?")]}, config)
        return agent

    if saver == "memory":
        agent = run(InMemorySaver())
        out = agent.invoke({"messages": [("user", "And now?")]}, config)
    else:
        db = str(tmp_path / "checkpoints.sqlite")
        with SqliteSaver.from_conn_string(db) as cp:
            run(cp)
        with SqliteSaver.from_conn_string(db) as cp:  # a new connection: the thread is on disk
            agent = create_toolprm_agent(TOOLS, policy=policy, search=GREEDY, answer_model=answers, checkpointer=cp)
            out = agent.invoke({"messages": [("user", "And now?")]}, config)
            assert len(agent.get_state(config).values["messages"]) == len(out["messages"])
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"] * 2
    assert out["messages"][3].content == "Sunny in Paris." and out["messages"][-1].content == "Still sunny."
    # the second turn's first search saw the whole first turn
    assert [m["role"] for m in policy.seen[2]] == ["user", "assistant", "tool", "assistant", "user"]
    assert policy.seen[2][-1]["content"] == "And now?"
    # a repeat in the previous turn does not block the same call in this one
    assert out["messages"][5].tool_calls[0]["args"] == {"city": "Paris"}


def test_ainvoke_astream_and_concurrent_threads(tiny_policy, tiny_prm):
    agent = create_toolprm_agent(TOOLS, policy=tiny_policy, scorer=tiny_prm, search=TINY_BEAM, max_tool_rounds=1, checkpointer=InMemorySaver())

    async def main():
        single = await agent.ainvoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": "a"}})
        events = [c async for c in agent.astream({"messages": [("user", "Time in Tokyo?")]}, {"configurable": {"thread_id": "b"}}, stream_mode="custom")]
        both = await asyncio.gather(
            agent.ainvoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": "c"}}),
            agent.ainvoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": "d"}}),
        )
        return single, events, both

    single, events, both = asyncio.run(main())
    assert isinstance(single["messages"][-1], AIMessage) and single["messages"][-1].tool_calls == []
    assert events and all("toolprm" in e for e in events)
    assert {e["toolprm"]["type"] for e in events} == {"round", "result"}
    # the same question on two threads at once: the same calls and answers as alone
    calls = lambda out: [(c["name"], c["args"]) for m in out["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls(both[0]) == calls(both[1]) == calls(single)
    assert both[0]["messages"][-1].content == both[1]["messages"][-1].content == single["messages"][-1].content
    assert len(agent.get_state({"configurable": {"thread_id": "c"}}).values["messages"]) == len(both[0]["messages"])


# ------------------------------------------------------------------------------------------
# wrap_agent


def fake_react_agent(checkpointer=None, **kwargs):
    """A create_react_agent graph over a fake chat model (bound to the tools already)."""
    model = GenericFakeChatModel(messages=iter([AIMessage("I would call a tool here.")] * 10))
    bound = model.bind(tools=[convert_to_openai_tool(t) for t in TOOLS])
    return create_react_agent(bound, TOOLS, checkpointer=checkpointer, name="react", **kwargs)


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_wrap_create_react_agent():
    saver = InMemorySaver()
    react = fake_react_agent(saver)
    policy = ScriptedPolicy(call_then_stop(PARIS))
    agent = wrap_agent(react, policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["Sunny."]))
    assert agent is not react and agent.checkpointer is saver and agent.name == "react"
    node = agent.builder.nodes["agent"].runnable
    assert isinstance(node, ToolPRMNode) and [s.name for s in node.tool_specs] == ["get_weather", "get_time"]
    assert agent.builder.nodes["tools"].runnable is react.builder.nodes["tools"].runnable  # same ToolNode
    assert set(agent.builder.nodes) == set(react.builder.nodes)
    assert not isinstance(react.builder.nodes["agent"].runnable, ToolPRMNode)  # the original is untouched
    config = {"configurable": {"thread_id": "w"}}
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]}, config)
    assert kinds(out["messages"]) == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert executed == [{"name": "get_weather", "city": "Paris"}] and out["messages"][-1].content == "Sunny."
    assert saver.get_tuple(config) is not None  # the original's checkpointer holds the thread
    # the original still runs its fake model
    assert react.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "r"}})["messages"][-1].content == "I would call a tool here."


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_wrap_keeps_interrupts_and_config():
    react = fake_react_agent(InMemorySaver(), interrupt_before=["tools"]).with_config({"recursion_limit": 11})
    agent = wrap_agent(react, policy=ScriptedPolicy(call_then_stop(PARIS)), search=GREEDY, answer_model=FakeListChatModel(responses=["Sunny."]))
    assert agent.config["recursion_limit"] == 11
    config = {"configurable": {"thread_id": "i"}}
    agent.invoke({"messages": [("user", "Weather in Paris?")]}, config)
    assert executed == [] and agent.get_state(config).next == ("tools",)  # paused before the tools
    out = agent.invoke(None, config)  # resume
    assert executed == [{"name": "get_weather", "city": "Paris"}] and out["messages"][-1].content == "Sunny."


class NotesState(MessagesState):
    notes: Annotated[list[str], operator.add]


def hand_built_builder():
    def chatbot(state: NotesState):
        raise AssertionError("the wrapped graph must not call the original model node")

    def log(state: NotesState):
        return {"notes": [f"{len(state['messages'])} messages"]}

    builder = StateGraph(NotesState)
    builder.add_node("my_model", chatbot)
    builder.add_node("run_tools", ToolNode(TOOLS))
    builder.add_node("log", log)
    builder.add_edge(START, "my_model")
    builder.add_conditional_edges("my_model", tools_condition, {"tools": "run_tools", "__end__": "log"})
    builder.add_edge("run_tools", "my_model")
    builder.add_edge("log", END)
    return builder


def test_wrap_a_hand_built_builder_keeps_its_nodes_and_state_keys():
    builder = hand_built_builder()
    policy = ScriptedPolicy(call_then_stop([{"name": "get_time", "arguments": {"timezone": "UTC"}}]))
    wrapped = wrap_agent(builder, policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["Noon."]))
    assert isinstance(wrapped, StateGraph) and wrapped is not builder
    assert wrapped.nodes["my_model"].runnable.name == "my_model"  # found by routing into the ToolNode
    assert not isinstance(builder.nodes["my_model"].runnable, ToolPRMNode)
    out = wrapped.compile().invoke({"messages": [("user", "Time?")], "notes": ["start"]})
    assert executed == [{"name": "get_time", "timezone": "UTC"}]
    assert out["notes"] == ["start", "4 messages"]  # the other node ran, the extra state key kept
    assert out["messages"][-1].content == "Noon."


def test_wrap_errors_name_what_is_missing():
    with pytest.raises(WrapError, match="no StateGraph builder"):
        wrap_agent(object(), policy=ScriptedPolicy(lambda m: []))
    no_tools = StateGraph(MessagesState)
    no_tools.add_node("chat", lambda s: {})
    no_tools.add_edge(START, "chat")
    with pytest.raises(WrapError, match="no ToolNode"):
        wrap_agent(no_tools, policy=ScriptedPolicy(lambda m: []))
    with pytest.raises(WrapError, match="node_name 'nope' is not a node"):
        wrap_agent(hand_built_builder(), node_name="nope", policy=ScriptedPolicy(lambda m: []))
    two = StateGraph(MessagesState)
    two.add_node("a", lambda s: {})
    two.add_node("b", lambda s: {})
    two.add_node("t", ToolNode(TOOLS))
    two.add_edge(START, "a")
    two.add_conditional_edges("a", tools_condition, {"tools": "t", "__end__": "b"})
    two.add_conditional_edges("b", tools_condition, {"tools": "t", "__end__": END})
    with pytest.raises(WrapError, match="several nodes route to the ToolNode"):
        wrap_agent(two, policy=ScriptedPolicy(lambda m: []))
    assert isinstance(wrap_agent(two, node_name="b", policy=ScriptedPolicy(lambda m: [])).nodes["b"].runnable, ToolPRMNode)


# ------------------------------------------------------------------------------------------
# SmolLM2 end to end


@pytest.mark.smollm2
def test_smollm2_agent_end_to_end(smollm2_dir):
    from toolprm_agents.policy import TransformersPolicy

    agent = create_toolprm_agent(TOOLS, policy=TransformersPolicy(str(smollm2_dir)), search=SearchConfig(strategy="greedy"), max_tool_rounds=2)
    out = agent.invoke({"messages": [("user", "What's the weather in Paris?")]})
    msgs = out["messages"]
    assert kinds(msgs)[:3] == ["HumanMessage", "AIMessage", "ToolMessage"]
    assert msgs[1].tool_calls[0]["name"] == "get_weather" and msgs[1].tool_calls[0]["args"] == {"city": "Paris"}
    assert executed[0] == {"name": "get_weather", "city": "Paris"} and msgs[2].content == "Sunny, 21 C in Paris"
    final = msgs[-1]
    assert final.tool_calls == [] and len(final.content.strip()) > 3
    assert final.response_metadata["toolprm"]["answered_by"] == "policy"


# ------------------------------------------------------------------------------------------
# wrap_agent: isolation from the original, and keep-or-refuse


def test_wrapped_builder_shares_no_mutable_state_with_the_original():
    builder = hand_built_builder()
    before = (set(builder.nodes), set(builder.edges), {k: set(v) for k, v in builder.branches.items()}, set(builder.channels))
    wrapped = wrap_agent(builder, policy=ScriptedPolicy(lambda m: []), search=GREEDY)
    # edit the wrapped builder: the original does not change
    wrapped.add_node("extra", lambda s: {})
    wrapped.add_edge("log", "extra")
    wrapped.add_conditional_edges("extra", lambda s: END, [END])
    wrapped.nodes["run_tools"].metadata = {"edited": True} if wrapped.nodes["run_tools"].metadata is None else wrapped.nodes["run_tools"].metadata
    assert (set(builder.nodes), set(builder.edges), {k: set(v) for k, v in builder.branches.items()}, set(builder.channels)) == before
    assert "extra" not in builder.nodes and ("log", "extra") not in builder.edges and "extra" not in builder.branches
    # edit the original: the wrapped builder does not change
    builder.add_node("late", lambda s: {})
    builder.add_edge("late", END)
    builder.add_conditional_edges("late", lambda s: END, [END])
    assert "late" not in wrapped.nodes and ("late", END) not in wrapped.edges and "late" not in wrapped.branches
    assert wrapped.nodes["run_tools"] is not builder.nodes["run_tools"]
    assert wrapped.nodes["run_tools"].runnable is builder.nodes["run_tools"].runnable  # the ToolNode itself is shared
    # both still compile and the original still routes to its own model node
    assert not isinstance(builder.nodes["my_model"].runnable, ToolPRMNode)
    builder.compile(), wrapped.compile()


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_wrapped_compiled_graph_has_its_own_builder():
    react = fake_react_agent()
    agent = wrap_agent(react, policy=ScriptedPolicy(lambda m: []), search=GREEDY)
    assert agent.builder is not react.builder
    agent.builder.add_node("extra", lambda s: {})
    agent.builder.add_edge("tools", "extra")
    assert "extra" not in react.builder.nodes and ("tools", "extra") not in react.builder.edges
    assert react.builder.branches.keys() == agent.builder.branches.keys() - {"extra"}
    assert react.builder.branches["agent"] is not agent.builder.branches["agent"]


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_wrap_carries_over_a_text_prompt_of_create_react_agent():
    policy = ScriptedPolicy(call_then_stop(PARIS))
    agent = wrap_agent(fake_react_agent(prompt="You are a weather bot."), policy=policy, search=GREEDY, answer_model=FakeListChatModel(responses=["Sunny."]))
    assert agent.builder.nodes["agent"].runnable.system_prompt == "You are a weather bot."
    agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert policy.seen[0][0] == {"role": "system", "content": "You are a weather bot."}
    # an explicit system_prompt replaces it
    agent = wrap_agent(fake_react_agent(prompt="You are a weather bot."), policy=policy, search=GREEDY, system_prompt="Mine.")
    assert agent.builder.nodes["agent"].runnable.system_prompt == "Mine."
    # no prompt: none
    assert wrap_agent(fake_react_agent(), policy=policy, search=GREEDY).builder.nodes["agent"].runnable.system_prompt is None


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_wrap_refuses_a_callable_prompt_it_cannot_run_unless_replaced():
    def my_prompt(state):
        return [("system", "dynamic")] + state["messages"]

    with pytest.raises(WrapError, match=r"model's prompt '.*my_prompt' is a callable.*pass system_prompt="):
        wrap_agent(fake_react_agent(prompt=my_prompt), policy=ScriptedPolicy(lambda m: []), search=GREEDY)
    agent = wrap_agent(fake_react_agent(prompt=my_prompt), policy=ScriptedPolicy(lambda m: []), search=GREEDY, system_prompt="Static.")
    assert agent.builder.nodes["agent"].runnable.system_prompt == "Static."


def test_wrap_create_agent_keeps_its_system_prompt_and_hook_middleware():
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware

    model = GenericFakeChatModel(messages=iter([AIMessage("unused")] * 5))
    original = create_agent(model, TOOLS, system_prompt="You answer weather questions.", middleware=[ModelCallLimitMiddleware(run_limit=5)])
    policy = ScriptedPolicy(call_then_stop(PARIS), replies="Sunny.")
    agent = wrap_agent(original, policy=policy, search=GREEDY)
    node = agent.builder.nodes["model"].runnable
    assert isinstance(node, ToolPRMNode) and node.system_prompt == "You answer weather questions."
    assert "ModelCallLimitMiddleware.before_model" in agent.builder.nodes  # hook middleware: its own nodes, kept
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    assert executed == [{"name": "get_weather", "city": "Paris"}] and out["messages"][-1].content == "Sunny."
    assert policy.seen[0][0] == {"role": "system", "content": "You answer weather questions."}


def test_wrap_create_agent_refuses_wrap_model_call_middleware_by_name():
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelRequest, dynamic_prompt
    from pydantic import BaseModel as PydanticModel

    @dynamic_prompt
    def by_user(request: ModelRequest) -> str:
        return "dynamic"

    model = GenericFakeChatModel(messages=iter([AIMessage("unused")] * 5))
    original = create_agent(model, TOOLS, middleware=[by_user])
    with pytest.raises(WrapError, match=r"middleware with wrap_model_call: by_user .*ToolPRMMiddleware"):
        wrap_agent(original, policy=ScriptedPolicy(lambda m: []), search=GREEDY)

    class Answer(PydanticModel):
        text: str

    structured = create_agent(model, TOOLS, response_format=Answer)
    with pytest.raises(WrapError, match=r"response_format="):
        wrap_agent(structured, policy=ScriptedPolicy(lambda m: []), search=GREEDY)
    from toolprm_agents.errors import ToolPRMError

    assert issubclass(WrapError, ToolPRMError)


# ------------------------------------------------------------------------------------------
# the public surface


def test_the_public_surface_is_importable_from_the_package():
    import toolprm_agents
    from toolprm_agents import (
        SearchConfig as TopSearchConfig,
        ToolPRMError,
        ToolPRMMiddleware,
        ToolPRMNode as TopNode,
        ToolPRMSearch,
        create_toolprm_agent as top_create,
        wrap_agent as top_wrap,
    )
    from toolprm_agents import middleware, search

    assert TopNode is ToolPRMNode and top_create is create_toolprm_agent and top_wrap is wrap_agent
    assert TopSearchConfig is SearchConfig and ToolPRMSearch is search.ToolPRMSearch
    assert ToolPRMMiddleware is middleware.ToolPRMMiddleware
    assert issubclass(WrapError, ToolPRMError) and toolprm_agents.WrapError is WrapError
    names = {"ToolPRMNode", "ToolPRMMiddleware", "create_toolprm_agent", "wrap_agent", "SearchConfig", "ToolPRMSearch", "ToolPRMError"}
    assert names <= set(toolprm_agents.__all__) and names <= set(dir(toolprm_agents))
    with pytest.raises(AttributeError, match="no attribute 'ToolNode'"):
        toolprm_agents.ToolNode  # internals and other libraries' names stay where they are


def test_importing_the_package_stays_torch_free():
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import toolprm_agents\n"
        "from toolprm_agents import ToolPRMError\n"
        "assert issubclass(ToolPRMError, Exception)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'langgraph', 'langchain') and sys.modules[m] is not None))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
