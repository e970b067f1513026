"""A BFCL-style function-calling graph (``bfcl_agent`` in langgraph.json).

BFCL tasks bring their own function docs and are scored on the calls, which are never
executed. The input holds the conversation and the docs; the output adds the chosen calls
in BFCL's format (``[{"func_name": {"arg": value}}]``)::

    graph.invoke({
        "messages": [("user", "Find the area of a triangle with base 10 and height 5.")],
        "functions": [{"name": "calculate_triangle_area", "description": "...",
                       "parameters": {"type": "dict", "properties": {...}, "required": [...]}}],
    })["calls"]
    # [{'calculate_triangle_area': {'base': 10, 'height': 5}}]

If the search's best answer is "no call" (BFCL's irrelevance tasks), ``calls`` is empty
and the last message is a text answer. Importing this module loads no model.
"""

from typing import Any  # (no `from __future__ import annotations`: the state schema is read at run time)

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from toolprm_agents.backends import backends_from_env
from toolprm_agents.node import ToolPRMNode
from toolprm_agents.search import SearchConfig

DEFAULT_SEARCH = SearchConfig(strategy="beam", beams=2, expand=4)


class BFCLState(MessagesState):
    functions: list[dict[str, Any]]
    calls: list[dict[str, dict[str, Any]]]


def to_bfcl_calls(state: BFCLState) -> dict:
    """The last AI message's tool calls in BFCL's ``[{name: {args}}]`` format."""
    last = state["messages"][-1]
    calls = last.tool_calls if isinstance(last, AIMessage) else []
    return {"calls": [{c["name"]: c["args"]} for c in calls]}


def build_graph(*, policy=None, scorer="toolprm", search: "SearchConfig | None" = None, checkpointer=None, **kwargs):
    """``START -> agent -> calls -> END``; the tools come from the ``functions`` input."""
    node = ToolPRMNode(None, policy=policy, scorer=scorer, config=search or DEFAULT_SEARCH, tools_key="functions", **kwargs)
    builder = StateGraph(BFCLState)
    builder.add_node("agent", node)
    builder.add_node("calls", to_bfcl_calls)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "calls")
    builder.add_edge("calls", END)
    return builder.compile(checkpointer=checkpointer, name="bfcl_agent")


# TOOLPRM_POLICY / TOOLPRM_PRM: a served policy and judge (see toolprm_agents.backends)
graph = build_graph(**backends_from_env())
