"""Wrap an agent you already have: its tool calls come from ToolPRM search instead of its model.

    python examples/wrap_existing_agent.py
    python examples/wrap_existing_agent.py --strategy beam -N 2 -M 4

The "existing agent" is a LangGraph ``create_react_agent`` over two tools and a chat
model -- here LangChain's fake chat model, which never calls a tool (so the difference is
easy to see), with an ``InMemorySaver`` checkpointer. :func:`toolprm_agents.agent.wrap_agent`
returns the same agent (same tools, same ``ToolNode``, same checkpointer, same state)
with the model node replaced by a ToolPRM node. Two turns of one thread show the
checkpointer at work. The first run loads SmolLM2-135M-Instruct (about 20 s).
"""

from __future__ import annotations

import argparse
import time
import warnings

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.prebuilt import create_react_agent

from toolprm_agents.agent import wrap_agent
from toolprm_agents.search import SearchConfig

warnings.filterwarnings("ignore", message="create_react_agent has been moved")


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return {"paris": "sunny, 21 °C", "london": "rainy, 14 °C"}.get(city.strip().lower(), "clear, 20 °C")


@tool
def get_population(city: str) -> str:
    """Get the population of a city."""
    return {"paris": "2.1 million", "london": "8.9 million"}.get(city.strip().lower(), "unknown")


def existing_agent():
    """Your agent: create_react_agent with a chat model (a fake one here) and a checkpointer."""
    model = GenericFakeChatModel(messages=iter([AIMessage("Sorry, I can't look that up.")] * 100))
    model = model.bind(tools=[convert_to_openai_tool(t) for t in (get_weather, get_population)])
    return create_react_agent(model, [get_weather, get_population], checkpointer=InMemorySaver())


def show(messages) -> None:
    for m in messages:
        if isinstance(m, HumanMessage):
            print(f"  user:   {m.content}")
        elif isinstance(m, AIMessage) and m.tool_calls:
            for c in m.tool_calls:
                print(f"  call:   {c['name']}({', '.join(f'{k}={v!r}' for k, v in c['args'].items())})")
        elif isinstance(m, ToolMessage):
            print(f"  result: {m.content}")
        elif isinstance(m, AIMessage):
            print(f"  agent:  {m.content}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategy", default="greedy", choices=["greedy", "best_of_n", "beam"])
    p.add_argument("--beams", "-N", type=int, default=2)
    p.add_argument("--expand", "-M", type=int, default=4)
    args = p.parse_args()

    agent = existing_agent()
    print("The existing agent (its fake model never calls a tool):")
    out = agent.invoke({"messages": [("user", "What's the weather in Paris?")]}, {"configurable": {"thread_id": "before"}})
    show(out["messages"])

    wrapped = wrap_agent(agent, search=SearchConfig(strategy=args.strategy, beams=args.beams, expand=args.expand), max_tool_rounds=1)
    node = wrapped.builder.nodes["agent"].runnable
    print(f"\nWrapped: node 'agent' is now {type(node).__name__} over {[s.name for s in node.tool_specs]}; "
          f"same checkpointer: {wrapped.checkpointer is agent.checkpointer}; nodes: {sorted(wrapped.builder.nodes)}")
    thread = {"configurable": {"thread_id": "after"}}
    for question in ["What's the weather in Paris?", "And how many people live in London?"]:
        t = time.perf_counter()
        out = wrapped.invoke({"messages": [("user", question)]}, thread)
        print(f"\nturn ({time.perf_counter() - t:.1f} s):")
        show(out["messages"])
    saved = wrapped.get_state(thread).values["messages"]
    print(f"\nthe checkpointer holds {len(saved)} messages for thread 'after'")


if __name__ == "__main__":
    main()
