"""The ToolPRM node: a LangGraph tool-selection step that searches for its tool calls.

:class:`ToolPRMNode` takes the place of the model node of a tool-calling agent. It reads
the ``messages`` state, runs a ToolPRM-guided search over the decisions of a function call
(see :mod:`toolprm_agents.search`) and returns what a chat model bound to tools would::

    {"messages": [AIMessage(content="", tool_calls=[{"name", "args", "id", "type": "tool_call"}])]}

so :class:`~langgraph.prebuilt.ToolNode` executes the calls and
:func:`~langgraph.prebuilt.tools_condition` routes on them. When the best answer is "no
call", the node answers in text -- with the policy (its session's
:meth:`~toolprm_agents.interfaces.PolicySession.reply`: greedy, a short reply) or with a
LangChain chat model given as ``answer_model`` -- and the graph ends.

Example:
    ```python
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition
    from toolprm_agents.node import ToolPRMNode
    from toolprm_agents.search import SearchConfig

    def get_weather(city: str) -> str:
        '''Current weather for a city.'''
        return f"Sunny in {city}"

    builder = StateGraph(MessagesState)
    builder.add_node("agent", ToolPRMNode([get_weather], config=SearchConfig(beams=2, expand=4)))
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    graph = builder.compile()
    graph.invoke({"messages": [("user", "Weather in Paris?")]})
    ```

Details:

* **Search details** go into the message's ``response_metadata["toolprm"]``: strategy,
  score, step scores, compute, whether the search completed, ``confidence`` (the weakest
  step's score), ``argument_scores`` (each decided step: function, argument, value,
  score), ``alternatives`` (the ranked runner-up answers with their scores), and for a
  text answer why the node answered instead of calling (``reason``). The scores are the
  judge's (or the policy's) step probabilities, *not calibrated* probabilities of being
  right.
* **Abstention**: with ``abstain_below`` set, a call whose confidence is below it is not
  made; the node answers in text naming the argument it is unsure of (``reason:
  "abstain"``, the would-be calls and the weakest step in the metadata).
* **Per-invocation settings** live in ``config["configurable"]["toolprm"]``, a dict whose
  keys are the :class:`~toolprm_agents.search.SearchConfig` fields (``strategy``, ``beams``
  (alias ``N``), ``expand`` (alias ``M``), ``rank``, ``gate``, ``temperature``, ``seed``,
  ``aggregation``, ``budget_seconds``, ``budget_tokens``, ``max_calls``, ... -- all of
  them, see :data:`toolprm_agents.settings.SEARCH_KEYS`) and ``scorer``,
  ``max_tool_rounds``, ``tool_names`` (search over these of the node's tools only) and
  ``abstain_below``. The old top-level keys (``configurable["strategy"]``, ``["N"]``, ...)
  still work, with a ``DeprecationWarning``. See :mod:`toolprm_agents.settings`.
* **Streaming and callbacks**: every search round is written to LangGraph's custom stream
  (``stream_mode="custom"``) as ``{"toolprm": {"type": "round", "round", "beams",
  "candidates": [...]}}``, and the outcome as ``{"toolprm": {"type": "result", ...}}``;
  the same dicts go to the run's callbacks as custom events ``toolprm_round`` and
  ``toolprm_result`` (``astream_events(version="v2")``, LangSmith). See
  :mod:`toolprm_agents.events`.
* **Async**: ``ainvoke``/``astream`` run the model work in a worker thread
  (``asyncio.to_thread``), so the event loop stays free. One loaded model serves
  concurrent invocations; its forward passes are serialised by the policy's lock.
* **Loop guards**: after ``max_tool_rounds`` rounds of tool calls since the last user
  message, or when every chosen call repeats a call already made in this turn (same name
  and arguments), or when LangGraph's ``remaining_steps`` runs out, the node answers in
  text instead of calling again.
* An **incomplete search** (no candidate could be completed) gives a text message
  stating the error, never a malformed call.
* The policy loads on first use (``policy=None``: SmolLM2-135M-Instruct); scorers load
  once and are cached.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig

try:  # the base of langgraph's own ToolNode
    from langgraph._internal._runnable import RunnableCallable
except ImportError:  # pragma: no cover - older langgraph
    from langgraph.utils.runnable import RunnableCallable  # type: ignore[no-redef]

from .compute import Compute
from .context import PromptTooLongError
from .errors import ToolPRMError
from .events import SearchEvents
from .prompt import normalize_messages
from .schema import ToolSpec, to_tool_specs
from .interfaces import Scorer
from .search import SearchConfig, SearchResult, ToolPRMSearch
from .settings import run_settings
from .steps import StepPlan

AnswerReason = Literal["no_call", "repeat", "max_tool_rounds", "remaining_steps", "incomplete", "error", "abstain", "tool_choice"]

ANSWER_SYSTEM = "You are a helpful assistant. Reply in English, in one or two short sentences."


class NodeInputError(ToolPRMError, ValueError):
    """The node's input or options are unusable: no messages, no tools, unknown tool names, a bad bound."""


def _call_key(name: str, args: dict) -> str:
    return json.dumps([name, args], sort_keys=True, ensure_ascii=False, default=str)


@dataclass
class _Turn:
    """What one invocation works with (resolved from the state and the config)."""

    messages: list[BaseMessage]
    tools: list[ToolSpec]
    config: SearchConfig
    scorer: Any
    max_tool_rounds: int | None
    remaining_steps: int | None
    events: SearchEvents
    input_is_list: bool
    abstain_below: float | None = None
    previous_calls: set[str] = field(default_factory=set)
    rounds: int = 0
    session: Any = None  # the search's policy session, for a text answer by the policy


class ToolPRMNode(RunnableCallable):
    """A LangGraph node choosing tool calls by ToolPRM-guided search.

    Args:
        tools: the tools to choose from: LangChain tools, Pydantic models, typed functions
            or OpenAI/BFCL function dicts (the same ones given to ``ToolNode``), or a
            ``ToolNode`` (its tools are used). ``None``: each invocation reads its tools
            from the state key ``tools_key`` (e.g. BFCL function docs).
        policy: the candidate generator: a :class:`~toolprm_agents.policy.Policy`, a
            ``(model, tokenizer)`` pair, or a backend spec as for
            :func:`~toolprm_agents.backends.load_policy`: ``None``/``"smollm2"`` or a model
            path (transformers on this CPU), ``"vllm:PATH"`` (an in-process vLLM engine),
            ``"http://host:port/v1"`` (an OpenAI-compatible server). Specs load on first use.
        scorer: a :class:`~toolprm_agents.scorers.Scorer` or a scorer name (``toolprm``,
            ``orm``, ``cprm``, ``likelihood``); loaded once, on first use. Unused by greedy
            search.
        prm: where the default scorer's judge runs, a spec as for
            :func:`~toolprm_agents.backends.load_judge`: a judge checkpoint folder,
            ``"vllm:CKPT"``, or a server URL (``http://host:port/v1#NAME`` for served model
            ``NAME``). ``None``: the packaged judge, on the policy's backend when it is an
            in-process vLLM engine, else on transformers. Scorers named per invocation
            (``configurable["scorer"]``) other than the default use their packaged judge.
        config: the default :class:`~toolprm_agents.search.SearchConfig` (beam search,
            N=2, M=8); ``config["configurable"]`` overrides it per invocation.
        answer_model: a LangChain chat model writing the text answer when the node makes
            no call (``None``: the policy model writes it).
        name: the node's name.
        messages_key: the state key holding the conversation.
        tools_key: the state key read for tools when ``tools`` is ``None``.
        system_prompt: text added to the system prompt of every search and answer.
        max_tool_rounds: rounds of tool calls allowed after the last user message before
            the node answers in text (``None``: no limit).
        stop_on_repeat: answer in text instead of repeating calls already made in this
            turn (calls repeated alongside new ones are dropped).
        max_answer_tokens: the length bound of a text answer written by the policy model.
        answer_system: the system prompt of a text answer written by the policy model.
        include_trace: put the search trace (every round's candidates) in
            ``response_metadata["toolprm"]["trace"]``.
        abstain_below: a confidence (the chosen answer's weakest step score, in [0, 1])
            below which the node makes no call and answers in text, naming the argument it
            is unsure of (``None``: never abstain). The scores are not calibrated: pick the
            threshold on your own data.

    Per-run settings (``config["configurable"]["toolprm"]``, a dict): every
    :class:`~toolprm_agents.search.SearchConfig` field, ``N``/``M`` for ``beams``/``expand``,
    ``scorer``, ``max_tool_rounds``, ``tool_names`` and ``abstain_below``. Top-level
    ``configurable`` keys (``strategy``, ``beams``, ``expand``, ``N``, ``M``,
    ``aggregation``, ``temperature``, ``seed``, ``max_calls``, ``max_string_length``,
    ``max_array_items``, ``allow_no_call``, ``max_rounds``, ``scorer``,
    ``max_tool_rounds``, ``tool_names``) are deprecated but still read.

    Events: each search round is streamed (``stream_mode="custom"``) and dispatched as the
    custom callback event ``toolprm_round``; the outcome as ``toolprm_result``.

    Example:
        >>> node = ToolPRMNode([get_weather], config=SearchConfig(strategy="greedy"))  # doctest: +SKIP
        >>> node({"messages": [HumanMessage("Weather in Paris?")]})                    # doctest: +SKIP
        {'messages': [AIMessage(content='', tool_calls=[{'name': 'get_weather', 'args': {'city': 'Paris'}, ...}])]}
    """

    def __init__(
        self,
        tools: Sequence[Any] | Any | None,
        *,
        policy: Any = None,
        scorer: Scorer | str | None = "toolprm",
        prm: Any = None,
        config: SearchConfig | None = None,
        answer_model: Any = None,
        name: str = "agent",
        messages_key: str = "messages",
        tools_key: str = "tools",
        system_prompt: str | None = None,
        max_tool_rounds: int | None = 6,
        stop_on_repeat: bool = True,
        max_answer_tokens: int = 64,
        answer_system: str = ANSWER_SYSTEM,
        include_trace: bool = False,
        abstain_below: float | None = None,
    ) -> None:
        super().__init__(self._func, self._afunc, name=name, trace=False)
        if tools is not None and hasattr(tools, "tools_by_name"):  # a ToolNode
            tools = list(tools.tools_by_name.values())
        self.tools: list[Any] | None = list(tools) if tools is not None else None
        # validate eagerly: a bad tool fails at graph construction, not at the first call
        self.tool_specs: list[ToolSpec] | None = to_tool_specs(self.tools) if self.tools is not None else None
        self.config = config or SearchConfig()
        self.answer_model = answer_model
        self.messages_key = messages_key
        self.tools_key = tools_key
        self.system_prompt = system_prompt
        if max_tool_rounds is not None and max_tool_rounds < 1:
            raise NodeInputError(f"max_tool_rounds must be at least 1 or None, got {max_tool_rounds}")
        self.max_tool_rounds = max_tool_rounds
        self.abstain_below = _check_threshold(abstain_below)
        self.stop_on_repeat = stop_on_repeat
        self.max_answer_tokens = max_answer_tokens
        self.answer_system = answer_system
        self.include_trace = include_trace
        self._policy_spec = policy
        self._policy = policy if _is_policy(policy) else None
        self._default_scorer = scorer
        self._prm = prm
        self._scorers: dict[Any, Scorer] = {}
        self._load_lock = threading.Lock()

    # -- resources (loaded once, shared by every invocation) -------------------------------
    @property
    def policy(self):
        """The policy (loaded on first access)."""
        if self._policy is None:
            with self._load_lock:
                if self._policy is None:
                    from .backends import load_policy

                    self._policy = load_policy(self._policy_spec)
        return self._policy

    @property
    def loaded(self) -> bool:
        """Whether the policy model is loaded yet."""
        return self._policy is not None

    def get_scorer(self, spec: Scorer | str | None = None) -> Scorer:
        """The scorer ``spec`` names (default: the node's), loaded once and cached."""
        spec = self._default_scorer if spec is None else spec
        if isinstance(spec, Scorer):
            return spec
        key = (spec or "toolprm").lower().replace("-", "")
        hit = self._scorers.get(key)
        if hit is None:
            policy = self.policy
            with self._load_lock:
                hit = self._scorers.get(key)
                if hit is None:
                    from .backends import load_judge

                    default = (self._default_scorer or "toolprm")
                    is_default = isinstance(default, str) and default.lower().replace("-", "") == key
                    # a judge on the policy's base shares its weights and its model lock
                    hit = self._scorers[key] = load_judge(self._prm if is_default else None, key, policy=policy)
        return hit

    # -- the node --------------------------------------------------------------------------
    def __call__(self, state: Any, config: RunnableConfig | None = None) -> Any:
        """Run the node synchronously: ``node(state, config)`` is ``node.invoke(state, config)``."""
        return self.invoke(state, config)

    def _func(self, input: Any, config: RunnableConfig) -> Any:
        turn = self._prepare(input, config)
        return self._output(turn, self._respond(turn, config))

    async def _afunc(self, input: Any, config: RunnableConfig) -> Any:
        turn = self._prepare(input, config, loop=asyncio.get_running_loop())
        return self._output(turn, await self._arespond(turn, config))

    def _respond(self, turn: _Turn, config: RunnableConfig | None = None) -> AIMessage:
        """The node's message for a prepared turn: tool calls, or a text answer."""
        message = self._decide(turn)
        if isinstance(message, tuple):  # answer in text
            message = self._answer_sync(turn, *message, config)
        return message

    async def _arespond(self, turn: _Turn, config: RunnableConfig | None = None) -> AIMessage:
        """:meth:`_respond` with the model work in a worker thread."""
        message = await asyncio.to_thread(self._decide, turn)
        if isinstance(message, tuple):  # answer in text
            if self.answer_model is not None:
                message = await self._answer_with_model_async(turn, *message, config)
            else:
                message = await asyncio.to_thread(self._answer_sync, turn, *message, config)
        return message

    # -- steps -----------------------------------------------------------------------------
    def _prepare(self, state: Any, config: RunnableConfig | None, *, loop: asyncio.AbstractEventLoop | None = None) -> _Turn:
        input_is_list = isinstance(state, list)
        if input_is_list:
            messages, raw_tools, remaining = state, None, None
        elif isinstance(state, dict):
            messages = state.get("llm_input_messages") or state.get(self.messages_key)
            raw_tools = state.get(self.tools_key)
            remaining = state.get("remaining_steps")
        else:  # a pydantic/dataclass state
            messages = getattr(state, "llm_input_messages", None) or getattr(state, self.messages_key, None)
            raw_tools = getattr(state, self.tools_key, None)
            remaining = getattr(state, "remaining_steps", None)
        if self.tool_specs is None and not raw_tools:
            raise NodeInputError(
                f"{self.name}: no tools: pass tools to ToolPRMNode or put them in the state under {self.tools_key!r}"
            )
        return self.make_turn(messages, None if self.tool_specs is not None else raw_tools, config,
                              remaining_steps=remaining, input_is_list=input_is_list, loop=loop)

    def make_turn(self, messages: Sequence[Any], tools: Sequence[Any] | None, config: RunnableConfig | None, *,
                  remaining_steps: int | None = None, input_is_list: bool = False,
                  loop: asyncio.AbstractEventLoop | None = None) -> _Turn:
        """One invocation's work: the conversation, the tools (``None``: the node's), the run's settings."""
        if not messages:
            raise NodeInputError(f"{self.name}: no messages in the state (expected a non-empty {self.messages_key!r} list)")
        messages = [_as_message(m) for m in messages]
        specs = self.tool_specs if tools is None else to_tool_specs(tools)
        if not specs:
            raise NodeInputError(f"{self.name}: no tools to search over")
        settings = run_settings(config, owner=self.name)
        names = settings.get("tool_names")
        if names:
            by_name = {s.name: s for s in specs}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise NodeInputError(f"{self.name}: configurable tool_names {missing} are not among the tools {sorted(by_name)}")
            specs = [by_name[n] for n in names]
        search_config = self.config.replace(**settings.search) if settings.search else self.config
        turn = _Turn(
            messages=messages,
            tools=list(specs),
            config=search_config,
            scorer=settings.get("scorer"),
            max_tool_rounds=settings.get("max_tool_rounds", self.max_tool_rounds),
            remaining_steps=remaining_steps,
            events=SearchEvents(config, loop),
            input_is_list=input_is_list,
            abstain_below=_check_threshold(settings.get("abstain_below", self.abstain_below)),
        )
        # calls made since the last user message (this turn of the conversation)
        for m in reversed(messages):
            if isinstance(m, HumanMessage):
                break
            if isinstance(m, AIMessage) and m.tool_calls:
                turn.rounds += 1
                turn.previous_calls.update(_call_key(c["name"], c.get("args", {})) for c in m.tool_calls)
        return turn

    def _decide(self, turn: _Turn) -> AIMessage | tuple[AnswerReason, dict]:
        """Search for calls; an AIMessage with calls, or ``(reason, metadata)`` for a text answer."""
        if turn.remaining_steps is not None and turn.remaining_steps < 2:
            return "remaining_steps", {}
        if turn.max_tool_rounds is not None and turn.rounds >= turn.max_tool_rounds:
            return "max_tool_rounds", {"tool_rounds": turn.rounds}
        cfg = turn.config
        scorer = None if cfg.strategy == "greedy" else self.get_scorer(turn.scorer)
        search = ToolPRMSearch(self.policy, scorer, cfg)
        try:
            result = search.search(self._conversation(turn.messages), turn.tools, config=cfg, on_event=turn.events,
                                   keep_session=self.answer_model is None)
        except PromptTooLongError as exc:
            meta = {"complete": False, "error": str(exc), "strategy": cfg.strategy}
            turn.events({"type": "result", **meta})
            return _error_message(f"ToolPRM could not search for a tool call: {exc}", meta)
        turn.session = result.session
        meta = self._metadata(result, scorer)
        turn.events({"type": "result", "calls": result.tool_calls(), "complete": result.complete, "score": result.score,
                     "confidence": result.confidence, "error": result.error})
        if not result.complete:
            return _error_message(f"ToolPRM could not complete a tool call: {result.error}", meta)
        calls = result.tool_calls()
        if not calls:
            return "no_call", meta
        if turn.abstain_below is not None and result.confidence is not None and result.confidence < turn.abstain_below:
            weakest = result.weakest_argument()
            meta.update(abstained_calls=calls, uncertain=weakest, abstain_below=turn.abstain_below)
            return _text_message(abstention_text(weakest, result.confidence, result.runner_ups()), "abstain", meta, source="abstention")
        if self.stop_on_repeat and turn.previous_calls:
            fresh = [c for c in calls if _call_key(c["name"], c["arguments"]) not in turn.previous_calls]
            if len(fresh) < len(calls):
                meta["dropped_repeats"] = [c for c in calls if c not in fresh]
            if not fresh:
                return "repeat", meta
            calls = fresh
        tool_calls = [
            {"name": c["name"], "args": c["arguments"], "id": f"call_{uuid.uuid4().hex[:24]}", "type": "tool_call"} for c in calls
        ]
        usage = {
            "input_tokens": result.compute.prefill_tokens,
            "output_tokens": result.compute.tokens_generated,
            "total_tokens": result.compute.prefill_tokens + result.compute.tokens_generated,
        }
        return AIMessage(content="", tool_calls=tool_calls, response_metadata={"toolprm": meta}, usage_metadata=usage)

    def _metadata(self, result: SearchResult, scorer: Scorer | None) -> dict[str, Any]:
        cfg = result.config
        meta: dict[str, Any] = {
            "strategy": cfg.strategy,
            "beams": cfg.beams,
            "expand": cfg.expand,
            "aggregation": cfg.aggregation,
            "scorer": getattr(scorer, "name", None) if scorer is not None else None,
            "score": result.score,
            "step_scores": list(result.step_scores),
            "confidence": result.confidence,
            "argument_scores": result.argument_scores(),
            "alternatives": result.runner_ups(),
            "complete": result.complete,
            "rounds": len(result.trace),
            "compute": result.compute.to_dict(),
        }
        if result.error:
            meta["error"] = result.error
        if self.include_trace:
            meta["trace"] = result.trace
        return meta

    def _conversation(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        if not self.system_prompt:
            return messages
        if messages and isinstance(messages[0], SystemMessage):
            first = SystemMessage(content=f"{self.system_prompt}\n\n{messages[0].text}")
            return [first, *messages[1:]]
        return [SystemMessage(content=self.system_prompt), *messages]

    # -- text answers ----------------------------------------------------------------------
    def _answer_sync(self, turn: _Turn, reason: AnswerReason, meta: dict, config: RunnableConfig | None) -> AIMessage:
        if self.answer_model is not None:
            reply = self.answer_model.invoke(self._conversation(turn.messages), config)
            return _text_message(_reply_text(reply), reason, meta, source="answer_model")
        return self._answer_with_policy(turn, reason, meta)

    async def _answer_with_model_async(self, turn: _Turn, reason: AnswerReason, meta: dict, config: RunnableConfig | None) -> AIMessage:
        reply = await self.answer_model.ainvoke(self._conversation(turn.messages), config)
        return _text_message(_reply_text(reply), reason, meta, source="answer_model")

    def _answer_with_policy(self, turn: _Turn, reason: AnswerReason, meta: dict) -> AIMessage:
        """A short greedy reply through the policy session (:meth:`PolicySession.reply`).

        The search's session is reused; where no search ran (a loop guard stopped it) one is
        opened over the same conversation. A policy that gives no text answers
        (``NotImplementedError``) gets the current turn's tool results listed instead.
        """
        chat = _answer_chat(self._conversation(turn.messages), self.answer_system)
        session = turn.session
        compute = getattr(session, "compute", None)
        if session is None:
            compute = Compute()
            plan = StepPlan(turn.tools, turn.config.limits)
            try:
                session = self.policy.session(normalize_messages(self._conversation(turn.messages)), plan, compute, seed=turn.config.seed)
            except PromptTooLongError:  # the conversation outgrew the search prompt: report the results
                return _text_message(_fallback_reply(turn.messages), reason, meta, source="tool_results")
        before = compute.tokens_generated if compute is not None else 0
        try:
            text = session.reply(chat, max_tokens=self.max_answer_tokens)
        except NotImplementedError:
            return _text_message(_fallback_reply(turn.messages), reason, meta, source="tool_results")
        n_tokens = (compute.tokens_generated - before) if compute is not None else 0
        return _text_message(text or _fallback_reply(turn.messages), reason, {**meta, "answer_tokens": n_tokens}, source="policy")

    def _output(self, turn: _Turn, message: AIMessage) -> Any:
        return [message] if turn.input_is_list else {self.messages_key: [message]}


# ------------------------------------------------------------------------------------------
# helpers


def _is_policy(obj: Any) -> bool:
    from .interfaces import Policy

    return isinstance(obj, Policy)


def _as_message(m: Any) -> BaseMessage:
    if isinstance(m, BaseMessage):
        return m
    from langchain_core.messages import convert_to_messages

    return convert_to_messages([m])[0]


def _check_threshold(value: Any) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not (0.0 <= v <= 1.0):
        raise NodeInputError(f"abstain_below must be a confidence in [0, 1] or None, got {value!r}")
    return v


def abstention_text(weakest: dict | None, confidence: float, runner_ups: Sequence[dict] = ()) -> str:
    """The text answer instead of an uncertain call: which decision the search is unsure of.

    >>> abstention_text({"kind": "ARG", "function": "book_flight", "arg": "flight_no", "value": "LH40", "score": 0.31}, 0.31)
    "I am not sure about the flight_no for book_flight (my best guess is 'LH40', confidence 0.31). Could you tell me the flight_no?"
    """
    if weakest is None:
        return f"I am not sure enough of the tool call to make it (confidence {confidence:.2f}). Could you say more precisely what you need?"
    kind, fn = weakest.get("kind"), weakest.get("function")
    if kind == "ARG":
        arg = weakest.get("arg")
        return (f"I am not sure about the {arg} for {fn} (my best guess is {weakest.get('value')!r}, confidence "
                f"{confidence:.2f}). Could you tell me the {arg}?")
    if kind == "FUNC_NAME":
        others = [c["name"] for a in runner_ups for c in a.get("calls", [])[:1] if c["name"] != fn][:2]
        alt = f" or {' or '.join(others)}" if others else ""
        return f"I am not sure which tool fits: {fn}{alt} (confidence {confidence:.2f}). Could you say more about what you need?"
    if kind == "PARAM_FINISH":
        return f"I am not sure I have all the arguments {fn} needs (confidence {confidence:.2f}). Is there anything else I should include?"
    return f"I am not sure how many calls this needs (confidence {confidence:.2f}). Could you say more precisely what you need?"


def _error_message(text: str, meta: dict) -> AIMessage:
    return AIMessage(content=text, response_metadata={"toolprm": {**meta, "reason": "incomplete" if meta.get("complete") is False else "error"}})


def _text_message(text: str, reason: AnswerReason, meta: dict, *, source: str) -> AIMessage:
    return AIMessage(content=text, response_metadata={"toolprm": {**meta, "reason": reason, "answered_by": source}})


def _reply_text(reply: Any) -> str:
    if isinstance(reply, BaseMessage):
        return _content_text(reply.content)
    return str(reply)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in content)
    return str(content)


def _current_turn_results(messages: list[BaseMessage]) -> list[str]:
    """``name(args) -> result`` lines for the tool calls after the last user message."""
    calls: dict[str, tuple[str, dict]] = {}
    lines: list[str] = []
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    for m in messages[start + 1:]:
        if isinstance(m, AIMessage):
            for c in m.tool_calls:
                calls[c.get("id") or ""] = (c["name"], c.get("args", {}))
        elif isinstance(m, ToolMessage):
            name, args = calls.get(m.tool_call_id, (m.name or "tool", {}))
            lines.append(f"- {name}({json.dumps(args, ensure_ascii=False)}) returned: {_content_text(m.content)}")
    return lines


def _answer_chat(messages: list[BaseMessage], system: str = ANSWER_SYSTEM) -> list[dict[str, str]]:
    """The conversation as plain chat for a text reply.

    Small models answer best when the facts sit next to the question: the tool calls of
    the current turn and their results are appended to the user's last message (as
    ``Tool results: - name(args) returned: ...``) instead of appearing as tool turns.
    """
    chat: list[dict[str, str]] = [{"role": "system", "content": system}]
    for m in messages:
        if isinstance(m, SystemMessage):
            chat[0]["content"] += "\n\n" + _content_text(m.content)
        elif isinstance(m, HumanMessage):
            chat.append({"role": "user", "content": _content_text(m.content)})
        elif isinstance(m, AIMessage) and not m.tool_calls and _content_text(m.content).strip():
            chat.append({"role": "assistant", "content": _content_text(m.content)})
    results = _current_turn_results(messages)
    if results:
        block = "Tool results:\n" + "\n".join(results)
        if chat[-1]["role"] == "user":
            chat[-1] = {"role": "user", "content": chat[-1]["content"] + "\n\n" + block}
        else:
            chat.append({"role": "user", "content": block})
    if len(chat) == 1:  # no user text at all: keep whatever the conversation has
        chat += [d for d in normalize_messages(messages) if d["role"] != "system"]
    return chat


def _fallback_reply(messages: list[BaseMessage]) -> str:
    results = _current_turn_results(messages)
    if results:
        return "Tool results:\n" + "\n".join(r.removeprefix("- ") for r in results)
    return "I have no tool call to make for this request."


__all__ = ["ToolPRMNode", "ANSWER_SYSTEM"]
