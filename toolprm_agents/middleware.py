"""ToolPRMMiddleware: ToolPRM-guided search in LangChain v1's ``create_agent``, as middleware.

``langchain.agents.create_agent`` calls its model through the agent's middleware
(``wrap_model_call``). :class:`ToolPRMMiddleware` takes that call's place: it searches for
the tool calls over the request's messages, system message and tools (whatever the
middleware before it made of them: a dynamic prompt, a tool selection) and returns them
as the model's ``AIMessage(tool_calls=...)`` without calling the model. The agent's
``tools`` node runs them and the next model call searches again. When the best answer is
"no call" it answers in text -- through the policy (``answer_with="policy"``, the
default: its session's ``reply``) or through the agent's own model (``"model"``: the
rest of the middleware stack and the model, called without tools). Everything the node
does is done here too: loop guards, abstention, search details in
``response_metadata["toolprm"]``, events.

Example:
    ```python
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from toolprm_agents import SearchConfig, ToolPRMMiddleware

    def get_weather(city: str) -> str:
        '''Current weather for a city.'''
        return f"Sunny, 21 C in {city}"

    agent = create_agent(
        FakeListChatModel(responses=["unused"]),  # the agent's model: called only with answer_with="model"
        [get_weather],
        system_prompt="You answer weather questions.",
        middleware=[ModelCallLimitMiddleware(run_limit=4), ToolPRMMiddleware(config=SearchConfig(beams=2, expand=4))],
    )
    out = agent.invoke({"messages": [("user", "Weather in Paris?")]})
    ```

Put it last in ``middleware`` (innermost): middleware listed before it wraps it, so
dynamic prompts, tool selection and call limits see and shape its request. It implements
both ``wrap_model_call`` and ``awrap_model_call`` (the search runs in a worker thread).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.messages import AIMessage

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # pragma: no cover - the optional extra is missing
    raise ImportError(
        "ToolPRMMiddleware needs LangChain v1 (langchain.agents.create_agent): pip install 'toolprm-agents[langchain]'"
    ) from exc

from .errors import ToolPRMError
from .node import ANSWER_SYSTEM, ToolPRMNode, _text_message
from .interfaces import Scorer
from .search import SearchConfig

AnswerWith = Literal["policy", "model"]


class MiddlewareError(ToolPRMError, ValueError):
    """A ToolPRMMiddleware option or request it cannot serve (the message names it)."""


def _run_config() -> Any:
    try:
        from langgraph.config import get_config

        return get_config()
    except Exception:  # not inside a graph run
        return None


class ToolPRMMiddleware(AgentMiddleware):
    """LangChain v1 agent middleware: the model's tool calls come from ToolPRM-guided search.

    Args:
        policy, scorer, prm: as for :class:`~toolprm_agents.node.ToolPRMNode` (``policy=None``:
            SmolLM2-135M-Instruct, loaded on first use).
        config: the default :class:`~toolprm_agents.search.SearchConfig`.
        answer_with: who writes a text answer when the search makes no call: ``"policy"``
            (the policy session's ``reply``) or ``"model"`` (the agent's model, through the
            rest of the middleware stack, with no tools bound). A request with a
            ``response_format`` is always answered by the model.
        system_prompt: extra system instructions, added to the request's system message.
        max_tool_rounds, stop_on_repeat, max_answer_tokens, answer_system, include_trace,
            abstain_below: as for :class:`~toolprm_agents.node.ToolPRMNode`.

    Per-run settings (``config["configurable"]["toolprm"]``, a dict): every
    :class:`~toolprm_agents.search.SearchConfig` field, ``N``/``M`` for ``beams``/``expand``,
    ``scorer``, ``max_tool_rounds``, ``tool_names`` and ``abstain_below``. Top-level
    ``configurable`` keys (``strategy``, ``beams``, ``expand``, ``N``, ``M``,
    ``aggregation``, ``temperature``, ``seed``, ``max_calls``, ``max_string_length``,
    ``max_array_items``, ``allow_no_call``, ``max_rounds``, ``scorer``,
    ``max_tool_rounds``, ``tool_names``) are deprecated but still read.

    A request without tools goes to the model. The request's ``tool_choice``: ``"none"``
    answers in text without a search (``reason: "tool_choice"``);
    ``"any"``/``"required"`` forbids the "no call" answer; a tool's name (or
    ``{"function": {"name": ...}}``) searches over that tool only and requires a call.

    Events: each search round is streamed (``stream_mode="custom"``) and dispatched as the
    custom callback event ``toolprm_round`` (``astream_events(version="v2")``, LangSmith);
    the outcome as ``toolprm_result``.

    Example:
        >>> agent = create_agent(model, [get_weather], middleware=[ToolPRMMiddleware(abstain_below=0.5)])  # doctest: +SKIP
        >>> agent.invoke({"messages": [("user", "Weather in Paris?")]})["messages"][1].tool_calls      # doctest: +SKIP
        [{'name': 'get_weather', 'args': {'city': 'Paris'}, 'id': 'call_...', 'type': 'tool_call'}]
    """

    def __init__(
        self,
        *,
        policy: Any = None,
        scorer: Scorer | str | None = "toolprm",
        prm: Any = None,
        config: SearchConfig | None = None,
        answer_with: AnswerWith = "policy",
        system_prompt: str | None = None,
        max_tool_rounds: int | None = 6,
        stop_on_repeat: bool = True,
        max_answer_tokens: int = 64,
        answer_system: str = ANSWER_SYSTEM,
        include_trace: bool = False,
        abstain_below: float | None = None,
    ) -> None:
        super().__init__()
        if answer_with not in ("policy", "model"):
            raise MiddlewareError(f"answer_with must be 'policy' or 'model', got {answer_with!r}")
        self.answer_with = answer_with
        self.tools = []
        # the node does the work; its tools come from each request
        self.node = ToolPRMNode(
            None,
            policy=policy,
            scorer=scorer,
            prm=prm,
            config=config,
            name="ToolPRMMiddleware",
            system_prompt=system_prompt,
            max_tool_rounds=max_tool_rounds,
            stop_on_repeat=stop_on_repeat,
            max_answer_tokens=max_answer_tokens,
            answer_system=answer_system,
            include_trace=include_trace,
            abstain_below=abstain_below,
        )

    @property
    def policy(self):
        """The policy (loaded on first access)."""
        return self.node.policy

    # -- the request -----------------------------------------------------------------------
    def _turn(self, request: ModelRequest, loop: asyncio.AbstractEventLoop | None):
        messages = list(request.messages)
        if request.system_message is not None:
            messages = [request.system_message, *messages]
        state = request.state or {}
        remaining = state.get("remaining_steps") if isinstance(state, dict) else getattr(state, "remaining_steps", None)
        turn = self.node.make_turn(messages, request.tools, _run_config(), remaining_steps=remaining, loop=loop)
        choice = _tool_choice(request.tool_choice)
        if choice not in (None, "none"):
            if choice != "any":
                by_name = {s.name: s for s in turn.tools}
                if choice not in by_name:
                    raise MiddlewareError(f"tool_choice names {choice!r}, which is not among the request's tools {sorted(by_name)}")
                turn.tools = [by_name[choice]]
            turn.config = turn.config.replace(allow_no_call=False)
        return turn

    def _model_answers(self, request: ModelRequest) -> bool:
        return self.answer_with == "model" or request.response_format is not None

    def _decide(self, request: ModelRequest, turn):
        if _tool_choice(request.tool_choice) == "none":  # a text answer is required: no search
            return "tool_choice", {}
        return self.node._decide(turn)

    # -- sync ------------------------------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest, handler):
        """The searched tool calls as the model's response (the model is not called for them)."""
        if not request.tools:  # nothing to search over: the model answers
            return handler(request)
        turn = self._turn(request, None)
        decision = self._decide(request, turn)
        if isinstance(decision, AIMessage):
            return ModelResponse(result=[decision])
        reason, meta = decision
        if self._model_answers(request):
            return _tagged(handler(request.override(tools=[], tool_choice=None)), reason, meta)
        return ModelResponse(result=[self.node._answer_with_policy(turn, reason, meta)])

    # -- async -----------------------------------------------------------------------------
    async def awrap_model_call(self, request: ModelRequest, handler):
        """:meth:`wrap_model_call` with the search (and a policy's answer) in a worker thread."""
        if not request.tools:
            return await handler(request)
        turn = self._turn(request, asyncio.get_running_loop())
        decision = await asyncio.to_thread(self._decide, request, turn)
        if isinstance(decision, AIMessage):
            return ModelResponse(result=[decision])
        reason, meta = decision
        if self._model_answers(request):
            return _tagged(await handler(request.override(tools=[], tool_choice=None)), reason, meta)
        return ModelResponse(result=[await asyncio.to_thread(self.node._answer_with_policy, turn, reason, meta)])


def _tool_choice(choice: Any) -> str | None:
    """``None`` (auto), ``"none"``, ``"any"``, or a tool's name."""
    if choice is None or choice == "auto":
        return None
    if choice in ("any", "required", True):
        return "any"
    if choice == "none" or choice is False:
        return "none"
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if isinstance(name, str):
            return name
    raise MiddlewareError(f"unsupported tool_choice {choice!r}: use 'auto', 'none', 'any', a tool name or {{'function': {{'name': ...}}}}")


def _tagged(response: Any, reason: str, meta: dict) -> Any:
    """The model's text answer with ToolPRM's reason and search details in its metadata."""
    result = response.result if isinstance(response, ModelResponse) else [response]
    out = []
    for m in result:
        if isinstance(m, AIMessage) and "toolprm" not in m.response_metadata:
            tagged = _text_message("", reason, meta, source="model").response_metadata["toolprm"]
            m = m.model_copy(update={"response_metadata": {**m.response_metadata, "toolprm": tagged}})
        out.append(m)
    if isinstance(response, ModelResponse):
        return ModelResponse(result=out, structured_response=response.structured_response)
    return out[0]


__all__ = ["ToolPRMMiddleware", "MiddlewareError"]
