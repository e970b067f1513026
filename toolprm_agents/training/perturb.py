"""Hard negatives without a model: gold steps perturbed the way tool-calling policies err.

Every example's gold answer (:meth:`~toolprm_agents.steps.StepPlan.answer_from_calls`) is
copied with one step made wrong, in the proportions that tool-call reward-model work
reports for real errors (:data:`MIX`): a wrong value (43 %), a wrong function (27 %), the
wrong number of calls (16 %), a missing required or asked-for argument (3 %) and other
slips (11 %: an argument the gold call does not hold, a number written as a string).

==================  ==================================================================
type / subtype      the wrong step
==================  ==================================================================
wrong_value         an ``ARG`` step whose value is ...
  other_span        another span or number of the same conversation (or another gold value)
  near_copy         the gold value with one digit or character changed
  scale             a unit or scale change (6.5 -> 0.065, 30 -> 3000)
  overlong          the value plus the words that follow it in the conversation
  empty             ``""`` (``[]`` for a list)
wrong_function      a sibling function of the same tool list at a ``FUNC_NAME`` step
wrong_call_count
  end_early         ``TOTAL_FINISH`` where a gold call is still open (no call at all for one call)
  repeat            the last gold call again instead of ``TOTAL_FINISH``
  unrelated         a call to another tool instead of ``TOTAL_FINISH`` (any call, for "no call")
  extra             another call to a gold function (when every tool is a gold one)
missing_argument    ``PARAM_FINISH`` with a gold argument (not at its default) left out
other
  extra_argument    an argument the gold call does not give, at a non-default value
  type_change       ``"5"`` for ``5`` or ``5`` for ``"5"``
==================  ==================================================================

A perturbed answer is the gold prefix, the wrong step, and -- for a share of them
(``continue_share``) -- the rest of the answer written on (the gold remainder, or the wrong
call completed), so the judge also sees the states after a mistake. Each one is checked
with the project's labeller (:func:`~toolprm_agents.training.labels.label_steps`): the
prefix must be right and the wrong step wrong, otherwise it is dropped (counted in the
report). Everything depends only on ``(seed, example id)``.

Records have the rollout format (:mod:`.rollouts`), so :mod:`.dataset` labels and packs
them like any other answers::

    {"id", "example", "answers": [{"steps", "origin": "gold" | "perturb:TYPE:SUBTYPE",
     "target": index of the wrong step, "done", "count": 0}, ...]}

Example:
    >>> from toolprm_agents.training.sources import Example
    >>> ex = Example("q", "demo", [{"role": "user", "content": "Book 2 rooms in Oslo for 6.5 nights"}],
    ...     [{"name": "book", "description": "", "parameters": {"type": "object", "properties": {
    ...        "city": {"type": "string"}, "rooms": {"type": "integer"}}, "required": ["city"]}},
    ...      {"name": "cancel", "description": "", "parameters": {"type": "object", "properties": {}}}],
    ...     [{"name": "book", "arguments": {"city": "Oslo", "rooms": 2}}])
    >>> rec = perturb_example(ex, PerturbConfig(per_example=8, seed=0))
    >>> rec["answers"][0]["origin"], len(rec["answers"]) > 4
    ('gold', True)
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..schema import MISSING
from ..steps import ARG_SEP, CALL_OPEN, CALL_SEP, PartialAnswer, PlanLimits, Step, StepKind, StepParseError, StepPlan
from .labels import label_steps, values_equal
from .sources import Example, stable_seed

__all__ = ["MIX", "PerturbConfig", "perturb_example", "perturb_examples", "conversation_spans"]

#: share of each error type among the perturbations (tool-call RM work on real errors)
MIX: dict[str, float] = {
    "wrong_value": 0.43,
    "wrong_function": 0.27,
    "wrong_call_count": 0.16,
    "missing_argument": 0.03,
    "other": 0.11,
}


@dataclass
class PerturbConfig:
    """``per_example``: perturbations drawn per example (duplicates and rejects dropped);
    ``continue_share``: share written on past the wrong step (``continue_by_type`` per type);
    ``mix``: type shares."""

    per_example: int = 12
    continue_share: float = 0.5
    #: a wrong call written on gives several negatives at once (every argument of a wrong
    #: function is wrong): those types are continued less, so the negative *steps* keep
    #: close to the error mix too
    continue_by_type: dict = field(default_factory=lambda: {"wrong_function": 0.15, "wrong_call_count": 0.25})
    seed: int = 0
    mix: dict = field(default_factory=lambda: dict(MIX))
    max_tries: int = 4  # per draw: tries of the drawn type before another type is drawn


# ------------------------------------------------------------------------------------------
# values from the conversation

_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"[\"'“‘]([^\"'”’\n]{1,60})[\"'”’]")
_CAPS = re.compile(r"\b[A-Z][\w'&-]*(?:\s+(?:of|de|the|and|[A-Z][\w'&-]*))*")
_WORD = re.compile(r"[\w@.'-]+")


def _texts(ex: Example) -> list[str]:
    out = []
    for m in ex.messages:
        c = m.get("content")
        if isinstance(c, str) and c and m.get("role") in ("user", "tool"):
            out.append(c)
    return out


_STOP = frozenset("""a an the of to in on at for from by with and or but is are was be been it its this that these those
i me my we our you your he she they them his her their what which who whom how when where why can could would should
will shall do does did please need want like tell find get give show me about also then some any all no not as so""".split())


def _good_span(s: str) -> bool:
    """A span a model could mistake for a value: not a stop word, not starting or ending with one."""
    words = s.lower().split()
    if not words or words[0] in _STOP or words[-1] in _STOP:
        return False
    return len(s) >= 3 or any(ch.isdigit() for ch in s)


def conversation_spans(ex: Example) -> dict[str, list]:
    """Candidate wrong values: ``numbers`` and string ``spans`` of the conversation, and the
    example's gold ``values`` (a value of one argument put in another is a real error)."""
    nums: list = []
    spans: list[str] = []
    for t in _texts(ex):
        for m in _NUM.finditer(t):
            s = m.group()
            nums.append(float(s) if "." in s else int(s))
        spans += [m.group(1).strip() for m in _QUOTED.finditer(t)]
        spans += [m.group().strip() for m in _CAPS.finditer(t)]
        words = _WORD.findall(t)
        for n in (1, 2, 3):
            spans += [" ".join(words[i : i + n]) for i in range(0, max(0, len(words) - n + 1))]
    values = [v for c in ex.calls for v in (c.get("arguments") or {}).values()]
    spans = [s.strip(".,;:!?") for s in spans]
    spans = [s for s in dict.fromkeys(spans) if s and len(s) <= 80 and _good_span(s)]
    return {"numbers": list(dict.fromkeys(nums)), "spans": spans, "values": values}


def _type_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return "other"


def _differs(new: Any, gold: Any) -> bool:
    return not values_equal(new, gold)


def _near_copy(v: Any, rng: random.Random) -> Any:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        s = repr(v)
        pos = [i for i, ch in enumerate(s) if ch.isdigit()]
        if not pos:
            return None
        i = rng.choice(pos)
        d = (int(s[i]) + rng.randint(1, 9)) % 10
        if i == 0 and d == 0 and len(s) > 1 and s[1] != ".":
            d = 1 + (int(s[i]) % 9)
        t = s[:i] + str(d) + s[i + 1 :]
        try:
            return type(v)(float(t)) if isinstance(v, float) else int(t)
        except ValueError:
            return None
    if isinstance(v, str):
        pos = [i for i, ch in enumerate(v) if ch.isalnum()]
        if not pos:
            return None
        i = rng.choice(pos)
        ch = v[i]
        if ch.isdigit():
            new = str((int(ch) + rng.randint(1, 9)) % 10)
        else:
            letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != ch.lower()]
            new = rng.choice(letters)
            new = new.upper() if ch.isupper() else new
        return v[:i] + new + v[i + 1 :]
    if isinstance(v, list) and v:
        i = rng.randrange(len(v))
        inner = _near_copy(v[i], rng)
        return None if inner is None else v[:i] + [inner] + v[i + 1 :]
    return None


def _scaled(x: float | int, f: float) -> float | int:
    y = x * f
    if isinstance(x, int) and f >= 1:
        return int(y)
    y = round(y, 10)
    return int(y) if isinstance(x, int) and float(y).is_integer() and f >= 1 else y


def _scale(v: Any, rng: random.Random, integer: bool) -> Any:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        if v == 0:
            return None
        factors = [10, 100, 1000] if integer else [0.01, 100, 0.001, 1000, 0.1, 10]
        return _scaled(v, rng.choice(factors))
    if isinstance(v, str):
        m = _NUM.search(v)
        if not m:
            return None
        s = m.group()
        x = float(s) if "." in s else int(s)
        if x == 0:
            return None
        y = _scaled(x, rng.choice([0.01, 100, 0.001, 1000]))
        return v[: m.start()] + (repr(y) if isinstance(y, float) else str(y)) + v[m.end() :]
    return None


def _overlong(v: Any, ex: Example, rng: random.Random) -> Any:
    """The value as the conversation writes it, plus the next one to three words (the span
    runs on: ``"the garage door"`` for ``"garage"``); trailing punctuation dropped."""
    if not isinstance(v, str) or not v.strip():
        return None
    for t in _texts(ex):
        i = t.lower().find(v.lower())
        if i < 0:
            continue
        rest = re.split(r"[.!?](?:\s|$)|\n", t[i + len(v) :], maxsplit=1)[0]  # within the sentence
        words = list(re.finditer(r"[^\W_][\w'&@.-]*", rest))
        if not words:
            continue
        k = rng.randint(1, min(3, len(words)))
        end = words[k - 1].end()
        new = (t[i : i + len(v)] + rest[:end]).rstrip(".,;:!?")
        if "\n" not in new:
            return new
    return None


def _other_span(v: Any, pools: dict, rng: random.Random, schema: dict) -> Any:
    t = _type_of(v)
    kind = schema.get("type") if isinstance(schema, dict) else None
    if t in ("int", "float"):
        cands = [x for x in pools["numbers"] + [x for x in pools["values"] if _type_of(x) in ("int", "float")] if not isinstance(x, bool)]
        if kind == "integer" or t == "int":
            cands = [int(x) for x in cands if float(x).is_integer()]
    elif t == "str":
        cands = pools["spans"] + [x for x in pools["values"] if isinstance(x, str)]
        if isinstance(schema, dict) and isinstance(schema.get("enum"), list):
            cands = [x for x in schema["enum"] if isinstance(x, str)] or cands
    elif t == "bool":
        return not v
    elif t == "list":
        if not v:
            return None
        inner = _other_span(v[0], pools, rng, (schema or {}).get("items") or {}) if _type_of(v[0]) != "list" else None
        return None if inner is None else [inner] + v[1:]
    else:
        return None
    cands = [c for c in dict.fromkeys(cands) if _differs(c, v) and c != ""]
    return rng.choice(cands) if cands else None


def _spec_schema(plan: StepPlan, fn: str, arg: str) -> dict:
    spec = plan.by_name.get(fn)
    if spec is None:
        return {}
    return next((a.schema for a in spec.args if a.name == arg), {}) or {}


def _default(plan: StepPlan, fn: str, arg: str) -> Any:
    spec = plan.by_name.get(fn)
    if spec is None:
        return MISSING
    return next((a.default for a in spec.args if a.name == arg), MISSING)


def _fill_value(schema: dict, pools: dict, rng: random.Random) -> Any:
    """A plausible value for an argument with nothing gold to go on (from the conversation)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    if kind == "boolean":
        return rng.choice([True, False])
    if kind in ("integer", "number"):
        nums = [x for x in pools["numbers"] if kind == "number" or float(x).is_integer()]
        return int(rng.choice(nums)) if nums and kind == "integer" else (rng.choice(nums) if nums else rng.randint(1, 10))
    if kind == "array":
        return [rng.choice(pools["spans"])] if pools["spans"] else []
    if kind == "object":
        return {}
    return rng.choice(pools["spans"]) if pools["spans"] else "value"


# ------------------------------------------------------------------------------------------
# writing answers


def _arg_lead(answer: PartialAnswer, arg: str) -> str:
    return (ARG_SEP if answer.open_call()[1] else "") + json.dumps(arg) + ": "


def _arg(plan: StepPlan, answer: PartialAnswer, arg: str, value: Any) -> PartialAnswer:
    return answer.extend(plan.parse(answer, _arg_lead(answer, arg) + json.dumps(value, ensure_ascii=False)))


def _param_finish(plan: StepPlan, answer: PartialAnswer) -> PartialAnswer:
    try:
        step = plan.parse(answer, "}")
    except StepParseError:  # a required argument is missing: outside the grammar, still a state to judge
        step = Step(StepKind.PARAM_FINISH, "}", function=answer.open_call()[0])
    return plan.complete_forced(answer.extend(step))


def _func(plan: StepPlan, answer: PartialAnswer, name: str) -> PartialAnswer:
    sep = CALL_SEP if answer.calls else ""
    return plan.complete_forced(answer.extend(plan.parse(answer, sep + CALL_OPEN + json.dumps(name))))


def _calls(plan: StepPlan, answer: PartialAnswer, calls: Sequence[dict], finish: bool = True) -> PartialAnswer:
    for c in calls:
        answer = _func(plan, answer, c["name"])
        if answer.open_call()[2]:  # no arguments: already closed by forced steps
            continue
        for k, v in (c.get("arguments") or {}).items():
            answer = _arg(plan, answer, k, v)
        answer = _param_finish(plan, answer)
    if finish and not answer.done:
        answer = answer.extend(plan.parse(answer, "]"))
    return answer


def _positions(gold: PartialAnswer) -> dict[str, list[tuple[int, int]]]:
    """Indices of the gold answer's decided steps by kind, with the call each belongs to."""
    out: dict[str, list[tuple[int, int]]] = {k.value: [] for k in StepKind}
    call = -1
    for i, s in enumerate(gold.steps):
        if s.kind is StepKind.FUNC_NAME:
            call += 1
        if not s.forced:
            out[s.kind.value].append((i, call))
    return out


class _Maker:
    def __init__(self, ex: Example, plan: StepPlan, gold: PartialAnswer, rng: random.Random, config: PerturbConfig):
        self.ex, self.plan, self.gold, self.rng, self.config = ex, plan, gold, rng, config
        self.pos = _positions(gold)
        self.pools = conversation_spans(ex)
        self.calls = [dict(c) for c in ex.calls]

    def go_on(self, kind: str) -> bool:
        return self.rng.random() < self.config.continue_by_type.get(kind, self.config.continue_share)

    def rest_after_call(self, k: int) -> list[dict]:
        return self.calls[k + 1 :]

    # each returns (answer, index of the wrong step, subtype) or None when it does not apply
    def wrong_value(self):
        if not self.pos["ARG"]:
            return None
        i, k = self.rng.choice(self.pos["ARG"])
        step = self.gold.steps[i]
        prefix = PartialAnswer(self.gold.steps[:i])
        schema = _spec_schema(self.plan, step.function, step.arg)
        integer = schema.get("type") == "integer" or isinstance(step.value, int)
        makers = {
            "other_span": lambda: _other_span(step.value, self.pools, self.rng, schema),
            "near_copy": lambda: _near_copy(step.value, self.rng),
            "scale": lambda: _scale(step.value, self.rng, integer),
            "overlong": lambda: _overlong(step.value, self.ex, self.rng),
            "empty": lambda: ("" if isinstance(step.value, str) and step.value else ([] if isinstance(step.value, list) and step.value else None)),
        }
        order = list(makers)
        self.rng.shuffle(order)
        for sub in order:
            new = makers[sub]()
            if new is None or not _differs(new, step.value):
                continue
            answer = _arg(self.plan, prefix, step.arg, new)
            if self.go_on("wrong_value"):
                answer = PartialAnswer(answer.steps + self.gold.steps[i + 1 :])
            return answer, i, sub
        return None

    def wrong_function(self):
        if not self.pos["FUNC_NAME"]:
            return None
        i, k = self.rng.choice(self.pos["FUNC_NAME"])
        left = {c["name"] for c in self.calls[k:]}
        siblings = [t.name for t in self.plan.tools if t.name not in left]
        if not siblings:
            return None
        name = self.rng.choice(siblings)
        prefix = PartialAnswer(self.gold.steps[:i])
        answer = _func(self.plan, prefix, name)
        target = len(prefix.steps)
        if self.go_on("wrong_function"):
            gold_args = self.calls[k]["arguments"]
            spec = self.plan.by_name[name]
            args = {}
            for a in spec.args:  # the sibling's arguments: gold values where the name matches, else required ones
                if a.name in gold_args:
                    args[a.name] = gold_args[a.name]
                elif a.name in spec.required:
                    args[a.name] = _fill_value(a.schema, self.pools, self.rng)
            if not answer.open_call()[2]:
                for kk, v in args.items():
                    answer = _arg(self.plan, answer, kk, v)
                answer = _param_finish(self.plan, answer)
            answer = _calls(self.plan, answer, self.rest_after_call(k))
        return answer, target, "sibling"

    def wrong_call_count(self):
        subs = ["end_early", "repeat", "unrelated"] if self.calls else ["unrelated"]
        self.rng.shuffle(subs)
        for sub in subs:
            if sub == "end_early":
                i, _ = self.rng.choice(self.pos["FUNC_NAME"])
                prefix = PartialAnswer(self.gold.steps[:i])
                try:
                    return prefix.extend(self.plan.parse(prefix, "]")), i, sub
                except StepParseError:
                    continue
            end = self.pos["TOTAL_FINISH"][-1][0]
            prefix = PartialAnswer(self.gold.steps[:end])
            if sub == "repeat":
                call = self.calls[-1]
            else:
                names = [t.name for t in self.plan.tools if t.name not in {c["name"] for c in self.calls}]
                if not names:  # every tool is a gold one: an extra call to one of them, with other values
                    names, sub = [t.name for t in self.plan.tools], "extra"
                spec = self.plan.by_name[self.rng.choice(names)]
                call = {"name": spec.name, "arguments": {a.name: _fill_value(a.schema, self.pools, self.rng) for a in spec.args if a.name in spec.required}}
            answer = _func(self.plan, prefix, call["name"])
            if self.go_on("wrong_call_count"):
                answer = _calls(self.plan, prefix, [call])
            return answer, end, sub
        return None

    def missing_argument(self):
        cands = []
        for i, k in self.pos["PARAM_FINISH"]:
            args = self.calls[k]["arguments"]
            for a, v in args.items():
                d = _default(self.plan, self.calls[k]["name"], a)
                if d is MISSING or not values_equal(v, d):
                    cands.append((k, a))
        if not cands:
            return None
        k, drop = self.rng.choice(cands)
        fn_i = [i for i, kk in self.pos["FUNC_NAME"] if kk == k][0]
        answer = PartialAnswer(self.gold.steps[: fn_i + 1])
        for a, v in self.calls[k]["arguments"].items():
            if a != drop:
                answer = _arg(self.plan, answer, a, v)
        target = len(answer.steps)
        answer = _param_finish(self.plan, answer)
        if self.go_on("missing_argument"):
            answer = _calls(self.plan, answer, self.rest_after_call(k))
        req = drop in self.plan.by_name[self.calls[k]["name"]].required
        return answer, target, "required" if req else "optional"

    def other(self):
        subs = ["extra_argument", "type_change"]
        self.rng.shuffle(subs)
        for sub in subs:
            if sub == "extra_argument":
                cands = []
                for i, k in self.pos["PARAM_FINISH"]:
                    c = self.calls[k]
                    spec = self.plan.by_name[c["name"]]
                    cands += [(i, k, a) for a in spec.args if a.name not in c["arguments"]]
                if not cands:
                    continue
                i, k, a = self.rng.choice(cands)
                value = _fill_value(a.schema, self.pools, self.rng)
                if a.default is not MISSING and values_equal(value, a.default):
                    continue
                prefix = PartialAnswer(self.gold.steps[:i])
                answer = _arg(self.plan, prefix, a.name, value)
                if self.go_on("other"):
                    answer = _calls(self.plan, _param_finish(self.plan, answer), self.rest_after_call(k))
                return answer, i, sub
            else:
                cands = [(i, k) for i, k in self.pos["ARG"] if _type_of(self.gold.steps[i].value) in ("int", "float") or (isinstance(self.gold.steps[i].value, str) and _NUM.fullmatch(self.gold.steps[i].value.strip() or "x"))]
                if not cands:
                    continue
                i, k = self.rng.choice(cands)
                step = self.gold.steps[i]
                v = step.value
                new = str(v) if not isinstance(v, str) else (float(v) if "." in v else int(v))
                prefix = PartialAnswer(self.gold.steps[:i])
                answer = _arg(self.plan, prefix, step.arg, new)
                if self.go_on("other"):
                    answer = PartialAnswer(answer.steps + self.gold.steps[i + 1 :])
                return answer, i, sub
        return None


def perturb_example(ex: Example, config: PerturbConfig | None = None) -> dict:
    """The record of ``ex``: its gold answer and its perturbed answers (see the module docstring)."""
    config = config or PerturbConfig()
    rng = random.Random(stable_seed("perturb", config.seed, ex.id))
    from ..schema import to_tool_specs

    plan = StepPlan(to_tool_specs(ex.tools), PlanLimits(max_calls=len(ex.calls) + 3, max_string_length=10**6, max_array_items=10**6))
    gold = plan.answer_from_calls(ex.calls)
    maker = _Maker(ex, plan, gold, rng, config)
    types, weights = zip(*[(t, w) for t, w in config.mix.items() if w > 0])
    answers = [{"steps": [s.to_dict() for s in gold.steps], "origin": "gold", "done": True, "count": 0}]
    seen = {gold.text}
    report = {"drawn": 0, "kept": 0, "rejected_by_labeller": 0, "nothing_new": 0}
    for _ in range(config.per_example):
        report["drawn"] += 1
        kind = rng.choices(types, weights)[0]
        kept = False
        for attempt in range(2 * config.max_tries):
            if attempt == config.max_tries:  # this type does not apply (or gives nothing new) here: another one
                kind = rng.choices(types, weights)[0]
            try:
                got = getattr(maker, kind)()
            except StepParseError:
                got = None
            if got is None:
                continue
            answer, target, sub = got
            if answer.text in seen:
                continue
            labels = label_steps(answer, ex.calls, plan.tools)
            if labels[target].label or not all(l.label for l in labels[:target]):
                report["rejected_by_labeller"] += 1
                continue
            seen.add(answer.text)
            report["kept"] += 1
            answers.append({"steps": [s.to_dict() for s in answer.steps], "origin": f"perturb:{kind}:{sub}", "target": target, "done": answer.done, "count": 0})
            kept = True
            break
        if not kept:
            report["nothing_new"] += 1
    return {"id": ex.id, "example": ex.to_dict(), "answers": answers, "config": asdict(config), "report": report}


def perturb_examples(examples: Sequence[Example], config: PerturbConfig | None = None) -> list[dict]:
    """:func:`perturb_example` of each example (an example whose gold answer does not fit its
    tools gets a record with only an ``error``)."""
    out = []
    for ex in examples:
        try:
            out.append(perturb_example(ex, config))
        except (StepParseError, KeyError, TypeError, ValueError) as exc:
            out.append({"id": ex.id, "example": ex.to_dict(), "answers": [], "error": f"{type(exc).__name__}: {exc}"})
    return out
