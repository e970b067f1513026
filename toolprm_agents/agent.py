"""Agents: a ready-made ToolPRM agent, and ToolPRM put into an agent you already have.

* :func:`create_toolprm_agent` -- a compiled LangGraph graph: the ToolPRM node chooses tool
  calls, :class:`~langgraph.prebuilt.ToolNode` executes them, their results go back into
  the conversation the next search reads, until the node answers in text.
* :func:`wrap_agent` -- an existing agent (a ``create_react_agent`` graph, a LangChain
  ``create_agent`` graph, or your own ``StateGraph``) with its model node replaced by a
  :class:`~toolprm_agents.node.ToolPRMNode` over the same tools.

Example:
    ```python
    from langgraph.checkpoint.memory import InMemorySaver
    from toolprm_agents.agent import create_toolprm_agent
    from toolprm_agents.search import SearchConfig

    def get_weather(city: str) -> str:
        '''Current weather for a city.'''
        return f"Sunny, 21 C in {city}"

    agent = create_toolprm_agent([get_weather], search=SearchConfig(beams=2, expand=4), checkpointer=InMemorySaver())
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": "1"}})
    out["messages"][-1].content        # the text answer, after get_weather ran
    ```
"""

from __future__ import annotations

from .errors import ToolPRMError

import copy
import dataclasses
from typing import Any, Sequence

from langchain_core.tools import BaseTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.managed import RemainingSteps
from langgraph.prebuilt import ToolNode, tools_condition

from .node import ToolPRMNode
from .scorers import Scorer
from .search import SearchConfig


class ToolPRMAgentState(MessagesState):
    """The state of :func:`create_toolprm_agent`: the conversation, and LangGraph's step budget."""

    remaining_steps: RemainingSteps


def create_toolprm_agent(
    tools: Sequence[BaseTool | Any] | ToolNode,
    *,
    policy: Any = None,
    scorer: Scorer | str | None = "toolprm",
    prm: Any = None,
    search: SearchConfig | None = None,
    checkpointer: Any = None,
    answer_model: Any = None,
    store: Any = None,
    system_prompt: str | None = None,
    max_tool_rounds: int | None = 6,
    name: str = "toolprm_agent",
):
    """A tool-calling agent whose tool calls come from ToolPRM-guided search.

    The graph is ``START -> agent ⇄ tools``: the ``agent`` node (a
    :class:`~toolprm_agents.node.ToolPRMNode`) searches for the next tool calls,
    ``tools`` (a LangGraph ``ToolNode``) executes them, and their results (``ToolMessage``\\ s)
    become part of the conversation the next search reads. When the search's best answer
    is "no call" the node writes a text answer and the graph ends.

    Loops end: after ``max_tool_rounds`` rounds of calls since the user's last message,
    or as soon as the search would only repeat calls already made in this turn, the node
    answers in text; close to LangGraph's recursion limit it does too.

    Args:
        tools: executable tools (LangChain tools or plain typed functions), or a
            ``ToolNode`` holding them. (A Pydantic model or a dict only describes a tool:
            use :class:`~toolprm_agents.node.ToolPRMNode` in a graph of your own that
            executes it.)
        policy: the policy (``None``: SmolLM2-135M-Instruct, loaded on the first call).
        scorer: a scorer or its name (loaded once, on first use).
        prm: where the scorer's judge runs (a checkpoint folder, ``"vllm:CKPT"`` or a server
            URL; ``None``: the packaged judge), as for :class:`~toolprm_agents.node.ToolPRMNode`.
        search: the default search configuration (``None``: beam search, N=2, M=8);
            ``config["configurable"]`` overrides it per invocation.
        checkpointer: a LangGraph checkpointer (``InMemorySaver``, ``SqliteSaver``, ...)
            for conversations across invocations of a ``thread_id``.
        answer_model: a LangChain chat model for the text answers (``None``: the policy).
        store: a LangGraph store, passed to ``compile``.
        system_prompt: extra system instructions for the search and the answers.
        max_tool_rounds: the bound on rounds of tool calls per user message.
        name: the compiled graph's name.

    Returns:
        A compiled LangGraph graph over :class:`ToolPRMAgentState`.

    Example:
        >>> agent = create_toolprm_agent([get_weather], search=SearchConfig(strategy="greedy"))  # doctest: +SKIP
        >>> agent.invoke({"messages": [("user", "Weather in Paris?")]})["messages"][-1].content   # doctest: +SKIP
        'It is sunny and 21 degrees in Paris.'
    """
    if isinstance(tools, ToolNode):
        tool_node = tools
    else:
        tools = list(tools)
        for t in tools:
            if not (isinstance(t, BaseTool) or (callable(t) and not isinstance(t, type))):
                raise TypeError(
                    f"create_toolprm_agent executes its tools, so each must be a LangChain tool or a function; "
                    f"got {type(t).__name__} {t!r:.80}. To search over tool descriptions only, add a "
                    "ToolPRMNode to a graph of your own."
                )
        tool_node = ToolNode(tools)
    node = ToolPRMNode(
        list(tool_node.tools_by_name.values()),
        policy=policy,
        scorer=scorer,
        prm=prm,
        config=search,
        answer_model=answer_model,
        system_prompt=system_prompt,
        max_tool_rounds=max_tool_rounds,
    )
    builder = StateGraph(ToolPRMAgentState)
    builder.add_node("agent", node)
    builder.add_node("tools", tool_node)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", "__end__": "__end__"})
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, store=store, name=name)


# ------------------------------------------------------------------------------------------
# wrapping an existing agent

MODEL_NODE_NAMES = ("agent", "model", "call_model", "llm", "chatbot")


class WrapError(ToolPRMError, ValueError):
    """:func:`wrap_agent` cannot find what it needs in the graph (the message says what)."""


def wrap_agent(
    graph_or_builder: Any,
    *,
    policy: Any = None,
    scorer: Scorer | str | None = "toolprm",
    prm: Any = None,
    search: SearchConfig | None = None,
    node_name: str | None = None,
    answer_model: Any = None,
    system_prompt: str | None = None,
    max_tool_rounds: int | None = 6,
):
    """The same agent with its model node replaced by a ToolPRM node over the same tools.

    What it can wrap:

    * a compiled graph from ``langgraph.prebuilt.create_react_agent`` (model node
      ``"agent"``) or ``langchain.agents.create_agent`` (model node ``"model"``), or any
      compiled ``StateGraph`` -- the result is compiled again with the original's
      checkpointer, store, cache, interrupts, debug flag, name and config;
    * an uncompiled ``StateGraph`` builder -- the result is a new builder (compile it
      yourself); the original is left untouched.

    The tools are those of the graph's ``ToolNode`` (any node with a ``tools_by_name``
    mapping, i.e. ``langgraph.prebuilt.ToolNode``; several are merged). The model node is
    ``node_name`` if given; else the first of ``"agent"``, ``"model"``, ``"call_model"``,
    ``"llm"``, ``"chatbot"`` that exists; else the one node with an edge or conditional
    edge into the ``ToolNode``. Every other node, edge, state key, the ``ToolNode`` itself
    and the node's input schema and retry/cache policies stay as they were. The new node
    reads ``llm_input_messages`` if a ``pre_model_hook`` wrote it, else ``messages``, and
    honours ``remaining_steps``.

    What it cannot carry over (pass these as arguments instead):

    * the replaced model itself and its ``prompt`` -- give ``system_prompt`` and, for text
      answers from your model, ``answer_model``; nodes that call the model on their own
      (``create_react_agent``'s ``generate_structured_response``) keep calling it;
    * tools the model was bound to but that are not in a ``ToolNode`` (provider built-in
      tools, tools executed by your own code);
    * graphs built with the functional API (``@entrypoint``) or plain ``Pregel`` graphs,
      which have no ``StateGraph`` builder; a model node inside a subgraph (wrap the
      subgraph, then add it to the parent).

    Args:
        graph_or_builder: a compiled ``StateGraph`` or a ``StateGraph`` builder.
        policy, scorer, prm, search, answer_model, system_prompt, max_tool_rounds: as for
            :func:`create_toolprm_agent`.
        node_name: the model node to replace (default: found as described above).

    Returns:
        A compiled graph for a compiled input, a ``StateGraph`` for a builder.

    Raises:
        WrapError: no ``StateGraph`` builder, no ``ToolNode``, or no (or an ambiguous)
            model node; the message names what is missing and what the graph has.

    Example:
        >>> from langgraph.prebuilt import create_react_agent
        >>> react = create_react_agent(chat_model, [get_weather], checkpointer=InMemorySaver())  # doctest: +SKIP
        >>> agent = wrap_agent(react, search=SearchConfig(beams=2, expand=4))                    # doctest: +SKIP
        >>> agent.invoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": "1"}})  # doctest: +SKIP
    """
    compiled = None
    if isinstance(graph_or_builder, StateGraph):
        builder = graph_or_builder
    elif isinstance(getattr(graph_or_builder, "builder", None), StateGraph):
        compiled, builder = graph_or_builder, graph_or_builder.builder
    else:
        raise WrapError(
            f"wrap_agent needs a StateGraph builder or a graph compiled from one (create_react_agent, "
            f"create_agent, StateGraph.compile()); got {type(graph_or_builder).__name__}, which has no StateGraph builder"
        )

    nodes = builder.nodes
    tool_node_names = [n for n, spec in nodes.items() if isinstance(getattr(spec.runnable, "tools_by_name", None), dict)]
    if not tool_node_names:
        raise WrapError(
            f"wrap_agent found no ToolNode among the graph's nodes {sorted(nodes)}: it takes the tools from the "
            "graph's langgraph.prebuilt.ToolNode (a node with a tools_by_name mapping)"
        )
    tools: dict[str, Any] = {}
    for n in tool_node_names:
        tools.update(nodes[n].runnable.tools_by_name)
    if not tools:
        raise WrapError(f"the ToolNode(s) {tool_node_names} hold no tools")

    model_node = _find_model_node(builder, tool_node_names, node_name)
    spec = nodes[model_node]
    node = ToolPRMNode(
        list(tools.values()),
        policy=policy,
        scorer=scorer,
        prm=prm,
        config=search,
        answer_model=answer_model,
        name=model_node,
        system_prompt=system_prompt,
        max_tool_rounds=max_tool_rounds,
    )
    new = copy.copy(builder)
    new.nodes = {k: v for k, v in nodes.items() if not _is_default_error_handler(k, v, builder)}
    new.nodes[model_node] = dataclasses.replace(spec, runnable=node)
    new.compiled = False
    if compiled is None:
        return new
    out = new.compile(
        checkpointer=compiled.checkpointer,
        cache=getattr(compiled, "cache", None),
        store=compiled.store,
        interrupt_before=compiled.interrupt_before_nodes or None,
        interrupt_after=compiled.interrupt_after_nodes or None,
        debug=compiled.debug,
        name=compiled.name,
    )
    if compiled.config:
        out = out.with_config(compiled.config)
    return out


def _find_model_node(builder: StateGraph, tool_nodes: list[str], node_name: str | None) -> str:
    nodes = builder.nodes
    if node_name is not None:
        if node_name not in nodes:
            raise WrapError(f"node_name {node_name!r} is not a node of the graph; its nodes are {sorted(nodes)}")
        if node_name in tool_nodes:
            raise WrapError(f"node_name {node_name!r} is the ToolNode; name the node that calls the model")
        return node_name
    for name in MODEL_NODE_NAMES:
        if name in nodes and name not in tool_nodes:
            return name
    into_tools = set()
    for start, end in builder.edges:
        if end in tool_nodes and start in nodes:
            into_tools.add(start)
    for start, branches in builder.branches.items():
        for branch in branches.values():
            ends = branch.ends.values() if isinstance(branch.ends, dict) else (branch.ends or ())
            if any(e in tool_nodes for e in ends) and start in nodes:
                into_tools.add(start)
    into_tools -= set(tool_nodes)
    if len(into_tools) == 1:
        return into_tools.pop()
    if not into_tools:
        raise WrapError(
            f"wrap_agent could not find the model node: none of {list(MODEL_NODE_NAMES)} exists and no node routes "
            f"to the ToolNode {tool_nodes} (nodes: {sorted(nodes)}); pass node_name="
        )
    raise WrapError(f"several nodes route to the ToolNode {tool_nodes}: {sorted(into_tools)}; pass node_name= to choose")


def _is_default_error_handler(name: str, spec: Any, builder: StateGraph) -> bool:
    # compile() adds builder defaults' error handler as a node; compiling again re-adds it
    return bool(getattr(spec, "is_error_handler", False)) and name == "__default_error_handler__" and (
        getattr(getattr(builder, "_node_defaults", None), "error_handler", None) is not None
    )


__all__ = ["create_toolprm_agent", "wrap_agent", "ToolPRMAgentState", "WrapError"]
