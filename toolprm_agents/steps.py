"""Decision steps: how an answer made of tool calls is built, one decision at a time.

An answer is a JSON list of calls, written as text the policy model conditions on::

    [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]

The search writes this skeleton itself; the model only makes the open decisions, each
one a *step* of the ToolPRM paper:

* ``FUNC_NAME``    -- start a call: choose the function (``{"name": "get_weather"``);
* ``ARG``          -- one argument, name and value (``"city": "Paris"``);
* ``PARAM_FINISH`` -- no more arguments (``}``);
* ``FUNC_FINISH``  -- the call is closed (``}``; always forced, a judgement point for the call);
* ``TOTAL_FINISH`` -- the answer is complete (``]``); right at the start it is the "no call" answer.

:class:`StepPlan` knows, for any :class:`PartialAnswer`, which decision is open and what
its alternatives are (:class:`Decision`). Backends turn a decision into a grammar and
sample text for it; :meth:`StepPlan.parse` turns that text back into a :class:`Step`.

Example:
    >>> from toolprm_agents.schema import to_tool_specs
    >>> plan = StepPlan(to_tool_specs([{"name": "ping", "parameters": {"type": "object", "properties": {}}}]))
    >>> answer = plan.start()
    >>> [a.kind.name for a in plan.decision(answer).alternatives]
    ['FUNC_NAME', 'TOTAL_FINISH']
    >>> answer = answer.extend(plan.parse(answer, '{"name": "ping"'))
    >>> answer = plan.complete_forced(answer)  # PARAM_FINISH and FUNC_FINISH are forced here
    >>> answer = answer.extend(plan.parse(answer, "]"))
    >>> answer.text, answer.calls
    ('[{"name": "ping", "arguments": {}}]', (Call(name='ping', arguments={}),))
"""

from __future__ import annotations

from .errors import ToolPRMError

import enum
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .schema import ToolSpec

ANSWER_OPEN = "["
CALL_OPEN = '{"name": '
ARGS_OPEN = ', "arguments": {'
CALL_SEP = ", "
ARG_SEP = ", "


class StepKind(str, enum.Enum):
    FUNC_NAME = "FUNC_NAME"
    ARG = "ARG"
    PARAM_FINISH = "PARAM_FINISH"
    FUNC_FINISH = "FUNC_FINISH"
    TOTAL_FINISH = "TOTAL_FINISH"


class StepParseError(ToolPRMError, ValueError):
    """Text produced for a decision is not one of its alternatives."""


@dataclass(frozen=True)
class Call:
    """One complete tool call."""

    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class Step:
    """One decision inside the answer, with the exact text it appends.

    ``text`` is what the step adds to the answer (separators and skeleton included);
    ``function``/``arg``/``value`` say what was decided; ``forced`` steps had a single
    alternative and were written without asking the model.
    """

    kind: StepKind
    text: str
    function: str | None = None
    arg: str | None = None
    value: Any = None
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "text": self.text}
        if self.function is not None:
            out["function"] = self.function
        if self.arg is not None:
            out["arg"] = self.arg
            out["value"] = self.value
        if self.forced:
            out["forced"] = True
        return out


@dataclass(frozen=True)
class PartialAnswer:
    """An answer under construction: the steps taken so far (immutable; ``extend`` copies)."""

    steps: tuple[Step, ...] = ()

    def extend(self, *steps: Step) -> "PartialAnswer":
        return PartialAnswer(self.steps + steps)

    @property
    def text(self) -> str:
        return ANSWER_OPEN + "".join(s.text for s in self.steps)

    @property
    def done(self) -> bool:
        return bool(self.steps) and self.steps[-1].kind is StepKind.TOTAL_FINISH

    @property
    def last(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def calls(self) -> tuple[Call, ...]:
        """The calls completed so far (closed by ``FUNC_FINISH``)."""
        calls: list[Call] = []
        name, args = None, {}
        for s in self.steps:
            if s.kind is StepKind.FUNC_NAME:
                name, args = s.function, {}
            elif s.kind is StepKind.ARG:
                args[s.arg] = s.value
            elif s.kind is StepKind.FUNC_FINISH:
                calls.append(Call(name, args))
                name, args = None, {}
        return tuple(calls)

    def open_call(self) -> tuple[str | None, dict[str, Any], bool]:
        """(function, arguments so far, arguments closed) of the call being written, if any."""
        name, args, closed = None, {}, False
        for s in self.steps:
            if s.kind is StepKind.FUNC_NAME:
                name, args, closed = s.function, {}, False
            elif s.kind is StepKind.ARG:
                args[s.arg] = s.value
            elif s.kind is StepKind.PARAM_FINISH:
                closed = True
            elif s.kind is StepKind.FUNC_FINISH:
                name, args, closed = None, {}, False
        return name, args, closed


@dataclass(frozen=True)
class Alternative:
    """One way to make the open decision.

    The model writes ``lead`` (a literal) and then, for ``ARG``, a JSON value for
    ``value_schema``; the plan appends ``tail`` (skeleton text) after it.
    """

    kind: StepKind
    lead: str
    tail: str = ""
    function: str | None = None
    arg: str | None = None
    value_schema: dict | None = None


@dataclass(frozen=True)
class Decision:
    """The open decision of a partial answer: its alternatives and what may follow it.

    ``follow`` lists characters that start the text after this step: a value that could
    go on (a number) ends when the model begins one of them instead.
    """

    alternatives: tuple[Alternative, ...]
    follow: str = ""

    @property
    def forced(self) -> bool:
        return len(self.alternatives) == 1 and self.alternatives[0].value_schema is None

    @property
    def key(self) -> tuple:
        """Identifies the decision's grammar (same key, same grammar)."""
        return tuple((a.kind, a.lead, a.function, a.arg) for a in self.alternatives)

    @property
    def type(self) -> str:
        """What the decision chooses between (:func:`decision_type` of its alternatives)."""
        return decision_type(a.kind for a in self.alternatives)


#: what a decision chooses between (:func:`decision_type`)
DECISION_TYPES = ("end", "arg_end", "name", "value")


def decision_type(kinds) -> str:
    """What a decision chooses between, from its alternatives' (or candidates') step kinds:
    ``end`` (another call or the end of the answer, "no call" included), ``arg_end``
    (another argument or the end of the call), ``name`` (a function name), ``value`` (an
    argument's value).

        >>> decision_type([StepKind.FUNC_NAME, StepKind.TOTAL_FINISH]), decision_type([StepKind.ARG])
        ('end', 'value')
    """
    kinds = set(kinds)
    if StepKind.TOTAL_FINISH in kinds:
        return "end"
    if StepKind.PARAM_FINISH in kinds:
        return "arg_end"
    if StepKind.FUNC_NAME in kinds:
        return "name"
    return "value"


def check_decision_types(types, field: str, error: type[Exception] = ValueError) -> tuple[str, ...]:
    """``types`` (a list, a tuple or a comma-separated text) as a tuple of
    :data:`DECISION_TYPES`; raises ``error`` naming ``field`` and the unknown type otherwise.

        >>> check_decision_types("end, value", "verify_types")
        ('end', 'value')
    """
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    if not isinstance(types, (list, tuple)) or not all(isinstance(t, str) for t in types):
        raise error(f"{field}: expected decision types ({', '.join(DECISION_TYPES)}), got {types!r}")
    bad = [t for t in types if t not in DECISION_TYPES]
    if bad:
        raise error(f"{field}: unknown decision type {bad[0]!r}: choose from {', '.join(DECISION_TYPES)}")
    return tuple(dict.fromkeys(types))


@dataclass(frozen=True)
class PlanLimits:
    """Bounds that make every decision finite.

    ``max_calls``: calls in one answer; ``max_string_length``: characters of a string value
    without its own ``maxLength``; ``max_array_items``: items of an array without ``maxItems``;
    ``repeat_calls``: whether one answer may hold the same call (same name and arguments)
    twice. Off by default: a model that starts repeating a call is done, so the repeated
    call is dropped and the answer ends there (:meth:`StepPlan.settle`).
    """

    max_calls: int = 8
    max_string_length: int = 128
    max_array_items: int = 16
    allow_no_call: bool = True
    repeat_calls: bool = False


class StepPlan:
    """The decision plan for a set of tools: which step is open and what it may be."""

    def __init__(self, tools: Sequence[ToolSpec], limits: PlanLimits | None = None):
        if not tools:
            from .schema import ToolSpecError

            raise ToolSpecError("the tool list is empty: give at least one tool")
        self.tools = tuple(tools)
        self.by_name = {t.name: t for t in self.tools}
        self.limits = limits or PlanLimits()

    def start(self) -> PartialAnswer:
        return PartialAnswer()

    # -- decisions ---------------------------------------------------------------------
    def decision(self, answer: PartialAnswer) -> Decision:
        """The open decision after ``answer`` (raises if the answer is already complete)."""
        if answer.done:
            raise ValueError("the answer is complete: no decision is open")
        name, args, closed = answer.open_call()
        if name is None:
            return self._call_or_end(answer)
        if closed:
            return Decision((Alternative(StepKind.FUNC_FINISH, "}", function=name),))
        return self._arg_or_finish(name, args)

    def _call_or_end(self, answer: PartialAnswer) -> Decision:
        n_calls = len(answer.calls)
        sep = CALL_SEP if n_calls else ""
        alts: list[Alternative] = []
        if n_calls < self.limits.max_calls:
            for tool in self.tools:
                alts.append(
                    Alternative(
                        StepKind.FUNC_NAME,
                        sep + CALL_OPEN + json.dumps(tool.name),
                        tail=ARGS_OPEN,
                        function=tool.name,
                    )
                )
        if n_calls or self.limits.allow_no_call or not alts:
            alts.append(Alternative(StepKind.TOTAL_FINISH, "]"))
        return Decision(tuple(alts))

    def _arg_or_finish(self, name: str, given: dict[str, Any]) -> Decision:
        tool = self.by_name[name]
        sep = ARG_SEP if given else ""
        alts = [
            Alternative(
                StepKind.ARG,
                sep + json.dumps(a.name) + ": ",
                function=name,
                arg=a.name,
                value_schema=bounded_schema(a.schema, self.limits),
            )
            for a in tool.args
            if a.name not in given
        ]
        if all(r in given for r in tool.required):
            alts.append(Alternative(StepKind.PARAM_FINISH, "}", function=name))
        return Decision(tuple(alts), follow=",}")

    # -- steps ---------------------------------------------------------------------------
    def parse(self, answer: PartialAnswer, text: str) -> Step:
        """The step that ``text`` (generated for the open decision) stands for."""
        decision = self.decision(answer)
        for alt in sorted(decision.alternatives, key=lambda a: -len(a.lead)):
            if alt.value_schema is None:
                if text == alt.lead:
                    return Step(alt.kind, alt.lead + alt.tail, function=alt.function, forced=decision.forced)
            elif text.startswith(alt.lead):
                raw = text[len(alt.lead):]
                try:
                    value = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise StepParseError(f"value of argument {alt.arg!r} is not JSON: {raw!r} ({exc})") from None
                return Step(alt.kind, text + alt.tail, function=alt.function, arg=alt.arg, value=value)
        raise StepParseError(f"{text!r} is none of the alternatives of the open decision")

    #: what the grammar cannot enforce: repeated items (``uniqueItems``) and a string's length
    #: next to a ``pattern`` (xgrammar follows the pattern alone)
    _UNENFORCED = ("uniqueItems", "minLength", "maxLength")

    def rejects(self, step: Step) -> str | None:
        """Why an argument value the grammar let through breaks its schema anyway, else ``None``."""
        if step.kind is not StepKind.ARG or step.function not in self.by_name:
            return None
        arg = next((a for a in self.by_name[step.function].args if a.name == step.arg), None)
        if arg is None:
            return None
        text = json.dumps(arg.schema)
        if not any(k in text for k in self._UNENFORCED):
            return None
        from .schema import validate_value

        broken = [p for p in validate_value(arg.schema, step.value) if any(k in p for k in self._UNENFORCED)]
        return f"argument {step.arg!r}: {broken[0]}" if broken else None

    def forced_step(self, answer: PartialAnswer) -> Step | None:
        """The next step if it has a single alternative with nothing to generate."""
        if answer.done:
            return None
        decision = self.decision(answer)
        if not decision.forced:
            return None
        alt = decision.alternatives[0]
        return Step(alt.kind, alt.lead + alt.tail, function=alt.function, forced=True)

    def complete_forced(self, answer: PartialAnswer) -> PartialAnswer:
        """``answer`` with every forced step that follows it appended."""
        while (step := self.forced_step(answer)) is not None:
            answer = answer.extend(step)
        return answer

    def settle(self, answer: PartialAnswer) -> PartialAnswer:
        """``answer`` after its forced steps, with the repeated-call rule applied.

        Unless ``limits.repeat_calls``, a call that repeats an earlier call of the answer
        (same name and arguments) is dropped and the answer ends instead: the result is
        the answer before that call followed by ``TOTAL_FINISH``. Every strategy extends
        answers through this method, so no answer ever holds the same call twice.
        """
        answer = self.complete_forced(answer)
        if self.limits.repeat_calls or answer.last is None or answer.last.kind is not StepKind.FUNC_FINISH:
            return answer
        calls = answer.calls
        if calls[-1] not in calls[:-1]:
            return answer
        start = max(i for i, s in enumerate(answer.steps) if s.kind is StepKind.FUNC_NAME)
        head = PartialAnswer(answer.steps[:start])
        return head.extend(Step(StepKind.TOTAL_FINISH, "]"))

    def answer_from_calls(self, calls: Sequence[Call | dict]) -> PartialAnswer:
        """The step sequence that writes ``calls`` (arguments in the given order).

        Used to score given answers and to build training data; raises
        :class:`StepParseError` when a call does not fit the tools.
        """
        answer = self.start()
        for call in calls:
            if answer.done:
                raise StepParseError(f"more calls than max_calls={self.limits.max_calls}")
            if isinstance(call, dict):
                call = Call(call["name"], dict(call.get("arguments", {})))
            sep = CALL_SEP if answer.calls else ""
            answer = answer.extend(self.parse(answer, sep + CALL_OPEN + json.dumps(call.name)))
            for i, (arg, value) in enumerate(call.arguments.items()):
                lead = (ARG_SEP if i else "") + json.dumps(arg) + ": "
                answer = answer.extend(self.parse(answer, lead + json.dumps(value, ensure_ascii=False)))
            answer = answer.extend(self.parse(answer, "}"))
            answer = self.complete_forced(answer)
        return answer if answer.done else answer.extend(self.parse(answer, "]"))


def finite_values(schema: dict | None, limit: int = 16) -> list | None:
    """The values a schema allows when they can be listed (at most ``limit``), else ``None``.

    ``enum`` and ``const`` list themselves; ``boolean`` is ``[true, false]``; ``null`` is
    ``[null]``; a type list or ``anyOf`` of such schemas is the union. Strings, numbers,
    arrays and objects are open.

    >>> finite_values({"type": "string", "enum": ["celsius", "fahrenheit"]})
    ['celsius', 'fahrenheit']
    >>> finite_values({"type": ["boolean", "null"]})
    [True, False, None]
    >>> finite_values({"type": "string"}) is None
    True
    """
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        values = list(schema["enum"])
    elif "const" in schema:
        values = [schema["const"]]
    elif "anyOf" in schema:
        values = []
        for sub in schema["anyOf"]:
            part = finite_values(sub, limit)
            if part is None:
                return None
            values += [v for v in part if not any(v == w and type(v) is type(w) for w in values)]
    else:
        types = schema.get("type")
        types = types if isinstance(types, list) else [types]
        values = []
        for t in types:
            if t == "boolean":
                values += [True, False]
            elif t == "null":
                values.append(None)
            else:
                return None
    return values if 0 < len(values) <= limit else None


def bounded_schema(schema: dict, limits: PlanLimits) -> dict:
    """``schema`` with a length bound on every string and an item bound on every array.

    A grammar keeps text well-formed but cannot make it finish; bounds can.
    """
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k not in ("description", "default", "title")}
    types = out.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "enum" not in out and "const" not in out and "pattern" not in out and "format" not in out:
        out["maxLength"] = min(out.get("maxLength", limits.max_string_length), limits.max_string_length)
        if out.get("minLength", 0) > out["maxLength"]:  # the field's own minLength raises the cap for it
            out["maxLength"] = min(schema.get("maxLength", out["minLength"]), out["minLength"])
    if "array" in types:
        out["maxItems"] = min(out.get("maxItems", limits.max_array_items), limits.max_array_items)
        if "minItems" in out and out["minItems"] > out["maxItems"]:  # the library's cap, not the tool's own maxItems
            out["maxItems"] = min(schema.get("maxItems", out["minItems"]), out["minItems"])
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = bounded_schema(out[key], limits)
    if "properties" in out:
        out["properties"] = {k: bounded_schema(v, limits) for k, v in out["properties"].items()}
    if "anyOf" in out:
        out["anyOf"] = [bounded_schema(s, limits) for s in out["anyOf"]]
    return out


__all__ = [
    "DECISION_TYPES",
    "decision_type",
    "check_decision_types",
    "StepKind",
    "Step",
    "Call",
    "PartialAnswer",
    "Alternative",
    "Decision",
    "PlanLimits",
    "StepPlan",
    "StepParseError",
    "bounded_schema",
    "finite_values",
]
