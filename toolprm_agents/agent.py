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
import types
from collections import defaultdict
from typing import Any, Sequence

from langchain_core.tools import BaseTool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.managed import RemainingSteps
from langgraph.prebuilt import ToolNode, tools_condition

from .node import ToolPRMNode
from .interfaces import Scorer
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
    abstain_below: float | None = None,
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
        abstain_below: answer in text, naming the uncertain argument, instead of making a
            call whose confidence is below this (see :class:`~toolprm_agents.node.ToolPRMNode`).

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
        abstain_below=abstain_below,
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
    abstain_below: float | None = None,
):
    """The same agent with its model node replaced by a ToolPRM node over the same tools.

    What it can wrap:

    * a compiled graph from ``langgraph.prebuilt.create_react_agent`` (model node
      ``"agent"``) or ``langchain.agents.create_agent`` (model node ``"model"``), or any
      compiled ``StateGraph`` -- the result is compiled again with the original's
      checkpointer, store, cache, interrupts, debug flag, name and config;
    * an uncompiled ``StateGraph`` builder -- the result is a new builder (compile it
      yourself); the original is left untouched.

    The result shares no mutable state with the original: its nodes, edges, branches,
    channels and schemas are copies (the node runnables themselves, e.g. the
    ``ToolNode``, are shared), so adding a node or an edge to one leaves the other as it
    was.

    The tools are those of the graph's ``ToolNode`` (any node with a ``tools_by_name``
    mapping, i.e. ``langgraph.prebuilt.ToolNode``; several are merged). The model node is
    ``node_name`` if given; else the first of ``"agent"``, ``"model"``, ``"call_model"``,
    ``"llm"``, ``"chatbot"`` that exists; else the one node with an edge or conditional
    edge into the ``ToolNode``. Every other node, edge, state key, the ``ToolNode`` itself
    and the node's input schema and retry/cache policies stay as they were. The new node
    reads ``llm_input_messages`` if a ``pre_model_hook`` wrote it, else ``messages``, and
    honours ``remaining_steps``.

    What it carries over from the replaced model node, and what it refuses:

    * the model's prompt: a text or ``SystemMessage`` prompt of ``create_react_agent``
      (``prompt=``) or ``create_agent`` (``system_prompt=``) becomes the node's
      ``system_prompt``; a callable or ``Runnable`` prompt cannot be run without the model,
      so :class:`WrapError` names it unless you pass ``system_prompt`` (which then replaces
      the original prompt; an explicit ``system_prompt`` always does);
    * ``create_agent`` middleware with ``wrap_model_call``/``awrap_model_call`` (dynamic
      prompts, tool selection, model retries, ...) wraps the replaced model call, so it
      could only be dropped: :class:`WrapError` names each one -- build the agent with
      :class:`~toolprm_agents.middleware.ToolPRMMiddleware` last in its middleware
      instead. Middleware that only has ``before_*``/``after_*`` hooks lives in nodes of
      its own and is kept. A ``create_agent`` ``response_format`` is refused the same way;

    What it cannot carry over (pass these as arguments instead):

    * the replaced model itself -- for text answers from your model give
      ``answer_model``; nodes that call the model on their own (``create_react_agent``'s
      ``generate_structured_response``) keep calling it;
    * tools the model was bound to but that are not in a ``ToolNode`` (provider built-in
      tools, tools executed by your own code);
    * graphs built with the functional API (``@entrypoint``) or plain ``Pregel`` graphs,
      which have no ``StateGraph`` builder; a model node inside a subgraph (wrap the
      subgraph, then add it to the parent).

    Args:
        graph_or_builder: a compiled ``StateGraph`` or a ``StateGraph`` builder.
        policy, scorer, prm, search, answer_model, system_prompt, max_tool_rounds,
            abstain_below: as for :func:`create_toolprm_agent`.
        node_name: the model node to replace (default: found as described above).

    Returns:
        A compiled graph for a compiled input, a ``StateGraph`` for a builder.

    Raises:
        WrapError: no ``StateGraph`` builder, no ``ToolNode``, or no (or an ambiguous)
            model node; the message names what is missing and what the graph has. Or the
            model node holds what the ToolPRM node cannot keep (a callable prompt,
            ``wrap_model_call`` middleware, a ``response_format``): the message names it.

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
    kept_prompt = _carry_over(model_node, spec.runnable, system_prompt)
    if system_prompt is None:
        system_prompt = kept_prompt
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
        abstain_below=abstain_below,
    )
    new = _copy_builder(builder)
    new.nodes = {k: v for k, v in new.nodes.items() if not _is_default_error_handler(k, v, builder)}
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


def _copy_builder(builder: StateGraph) -> StateGraph:
    """A copy of ``builder`` sharing none of its containers (node specs, edges, branches,
    channels, schemas); runnables, channel templates and schema classes are shared."""
    new = copy.copy(builder)
    for key, value in vars(builder).items():
        if isinstance(value, defaultdict):
            new.__dict__[key] = defaultdict(value.default_factory, {k: _copy_container(v) for k, v in value.items()})
        elif isinstance(value, (dict, set, list)):
            new.__dict__[key] = type(value)(value) if not isinstance(value, dict) else {k: _copy_container(v) for k, v in value.items()}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            new.__dict__[key] = copy.copy(value)
    new.nodes = {k: dataclasses.replace(v) for k, v in builder.nodes.items()}
    return new


def _copy_container(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (set, list)):
        return type(value)(value)
    return value


# -- what the replaced model node held ---------------------------------------------------------


def _closure(fn: Any) -> dict[str, Any]:
    """A function's closure variables by name (``{}`` for anything else)."""
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    if code is None or not cells:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    return out


def _middleware_in(obj: Any, depth: int = 6, seen: set[int] | None = None) -> list[Any]:
    """LangChain agent middleware reachable from ``obj`` through closures and bound methods."""
    seen = set() if seen is None else seen
    if depth < 0 or id(obj) in seen:
        return []
    seen.add(id(obj))
    try:
        from langchain.agents.middleware import AgentMiddleware
    except ImportError:  # pragma: no cover - no langchain: no create_agent graph either
        return []
    if isinstance(obj, AgentMiddleware):
        return [obj]
    found: list[Any] = []
    nxt: list[Any] = []
    if isinstance(obj, types.MethodType):
        nxt.append(obj.__self__)
    if hasattr(obj, "__wrapped__"):
        nxt.append(obj.__wrapped__)
    if isinstance(obj, (list, tuple)):
        nxt.extend(obj)
    nxt.extend(_closure(obj).values())
    for o in nxt:
        for m in _middleware_in(o, depth - 1, seen):
            if all(m is not f for f in found):
                found.append(m)
    return found


def _prompt_text(prompt: Any) -> str | None:
    from langchain_core.messages import SystemMessage

    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, SystemMessage):
        return prompt.text
    return None


def _react_prompt(closure: dict[str, Any]) -> tuple[str, Any] | None:
    """``create_react_agent``'s prompt: ``("text", str)``, ``("opaque", what)`` or ``None`` (none)."""
    static = closure.get("static_model")
    first = getattr(static, "first", None) if static is not None else None
    if first is None:  # a dynamic model: the prompt argument sits in _resolve_model's closure
        raw = _closure(closure.get("_resolve_model")).get("prompt")
        if raw is None:
            return None
        text = _prompt_text(raw)
        return ("text", text) if text is not None else ("opaque", raw)
    if getattr(first, "name", None) != "Prompt":
        return ("opaque", first)
    fn = getattr(first, "func", None) or getattr(first, "afunc", None)
    if getattr(fn, "__qualname__", "").startswith("_get_prompt_runnable."):
        inner = _closure(fn)
        for key in ("_system_message", "prompt"):
            if key in inner:
                text = _prompt_text(inner[key])
                return ("text", text) if text is not None else ("opaque", inner[key])
        return None  # prompt=None: the messages as they are
    return ("opaque", fn)


def _carry_over(name: str, runnable: Any, system_prompt: str | None) -> str | None:
    """The replaced model node's prompt text, or :class:`WrapError` for what cannot be kept."""
    closure = _closure(getattr(runnable, "func", None)) or _closure(getattr(runnable, "afunc", None))
    problems: list[str] = []
    prompt: str | None = None
    if "wrap_model_call_handler" in closure:  # langchain.agents.create_agent's model node
        handlers = [closure.get("wrap_model_call_handler"), closure.get("awrap_model_call_handler")]
        middleware = _middleware_in(handlers)
        if middleware:
            names = ", ".join(f"{m.name} ({type(m).__name__})" for m in middleware)
            problems.append(
                f"middleware with wrap_model_call: {names} -- it wraps the model call wrap_agent replaces, so it would "
                "never run; build the agent with create_agent(..., middleware=[..., ToolPRMMiddleware()]) instead"
            )
        elif any(h is not None for h in handlers):
            problems.append("wrap_model_call middleware (unnamed) -- use ToolPRMMiddleware in create_agent instead")
        if closure.get("initial_response_format") is not None:
            problems.append(
                f"response_format={closure['initial_response_format']!r} -- the ToolPRM node writes no structured "
                "response; use ToolPRMMiddleware (its text answers go through the agent's model) instead"
            )
        message = closure.get("system_message")
        if message is not None:
            prompt = _prompt_text(message)
    elif "static_model" in closure:  # langgraph.prebuilt.create_react_agent's agent node
        found = _react_prompt(closure)
        if found is not None:
            kind, what = found
            if kind == "text":
                prompt = what
            elif system_prompt is None:
                label = getattr(what, "__qualname__", None) or getattr(what, "name", None) or type(what).__name__
                problems.append(
                    f"the model's prompt {label!r} is a callable/Runnable that wrap_agent cannot run without the model; "
                    "pass system_prompt= to replace it"
                )
    if problems:
        raise WrapError(f"wrap_agent cannot keep what the model node {name!r} holds: " + "; ".join(problems))
    return prompt


def _is_default_error_handler(name: str, spec: Any, builder: StateGraph) -> bool:
    # compile() adds builder defaults' error handler as a node; compiling again re-adds it
    return bool(getattr(spec, "is_error_handler", False)) and name == "__default_error_handler__" and (
        getattr(getattr(builder, "_node_defaults", None), "error_handler", None) is not None
    )


__all__ = ["create_toolprm_agent", "wrap_agent", "ToolPRMAgentState", "WrapError"]
