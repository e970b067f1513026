"""Step labels: is *this* step right, given the gold calls and the steps before it?

Each step of an answer (see :mod:`toolprm_agents.steps`) is judged on its own, left to
right, against the gold calls and the prefix -- never against the answer's final outcome:

* ``FUNC_NAME`` is right when the function is that of a gold call not yet made;
* ``ARG`` is right when the open call's function is a gold call's and the argument is one
  of its arguments with an equal value (BFCL-style normalisation, :func:`values_equal`),
  or an argument the gold call leaves out given at the tool's declared default; among
  several gold calls to one function, the one the call's right arguments so far point to;
* ``PARAM_FINISH`` (and the forced ``FUNC_FINISH`` after it) is right when no gold argument
  of that call is missing (one whose gold value is the tool's default may be left out);
* ``TOTAL_FINISH`` is right when every gold call has been made (for the "no call" answer:
  when there is no gold call).

A completed call uses up the gold call it best matches, so repeated calls to one function
are judged against the gold calls still open. Because each label depends only on the
prefix up to its step, a right early step stays ``+`` whatever comes after it
(:func:`label_steps` of a prefix is a prefix of the labels of any continuation).

Judgement units: a ToolPRM (``step``) judges each decided step, a C-PRM (``call``) each
completed call, an ORM (``answer``) the whole answer; :func:`judged_labels` gives the
label of each unit as :func:`toolprm_agents.search.judge_pairs` cuts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..matching import BFCL, match_one_to_one
from ..matching import values_equal as _values_equal
from ..schema import MISSING, ToolSpec
from ..search import judge_pairs
from ..steps import Call, PartialAnswer, Step, StepKind

__all__ = [
    "values_equal",
    "StepLabel",
    "label_steps",
    "answer_correct",
    "judged_labels",
]

def values_equal(value: Any, gold: Any) -> bool:
    """Whether a produced ``value`` equals a ``gold`` value, BFCL-style (:data:`~toolprm_agents.matching.BFCL`).

    Strings ignore case, spaces and ``,./-_*^``; an int equals the same float (``5 == 5.0``)
    but a string never equals a number (``"5" != 5``) and a bool only a bool; lists compare
    item by item in order, objects key by key.
    """
    return _values_equal(gold, value, BFCL)


@dataclass(frozen=True)
class StepLabel:
    """The verdict on one step: ``label`` True (``+``) or False (``-``) and why."""

    index: int
    kind: StepKind
    label: bool
    reason: str
    forced: bool = False


def _as_call(c: Call | Mapping) -> Call:
    return c if isinstance(c, Call) else Call(c["name"], dict(c.get("arguments") or {}))


def _default(tools: Mapping[str, ToolSpec], fn: str, arg: str) -> Any:
    spec = tools.get(fn)
    if spec is None:
        return MISSING
    for a in spec.args:
        if a.name == arg:
            return a.default
    return MISSING


def _missing(gold: Call, given: Mapping[str, Any], tools: Mapping[str, ToolSpec]) -> list[str]:
    out = []
    for k, v in gold.arguments.items():
        if k in given:
            continue
        d = _default(tools, gold.name, k)
        if d is not MISSING and values_equal(v, d):
            continue  # leaving it out gives the same call
        out.append(k)
    return out


def _match_count(gold: Call, given: Mapping[str, Any]) -> int:
    return sum(1 for k, v in given.items() if k in gold.arguments and values_equal(v, gold.arguments[k]))


def label_steps(
    answer: PartialAnswer | Sequence[Step],
    gold: Sequence[Call | Mapping],
    tools: Sequence[ToolSpec] | Mapping[str, ToolSpec] = (),
) -> list[StepLabel]:
    """The label of every step of ``answer`` (complete or not), forced steps included.

    ``tools`` (optional) gives argument defaults: a gold argument at its default may be
    omitted, a non-gold argument given at its default is harmless.
    """
    steps = answer.steps if isinstance(answer, PartialAnswer) else tuple(answer)
    tmap = tools if isinstance(tools, Mapping) else {t.name: t for t in tools}
    remaining = [_as_call(g) for g in gold]
    out: list[StepLabel] = []
    name: str | None = None
    given: dict[str, Any] = {}
    good: dict[str, Any] = {}

    def candidates() -> list[Call]:
        same = [g for g in remaining if g.name == name]
        fitting = [g for g in same if all(k in g.arguments and values_equal(v, g.arguments[k]) for k, v in good.items())]
        return fitting or same

    for i, s in enumerate(steps):
        if s.kind is StepKind.FUNC_NAME:
            name, given, good = s.function, {}, {}
            ok = any(g.name == name for g in remaining)
            why = "a gold call not yet made" if ok else ("no gold call left" if not remaining else "not the function of any gold call left")
        elif s.kind is StepKind.ARG:
            cands = candidates()
            given[s.arg] = s.value
            if not cands:
                ok, why = False, "argument of a call that matches no gold call"
            elif any(s.arg in g.arguments and values_equal(s.value, g.arguments[s.arg]) for g in cands):
                ok, why = True, "gold argument with the gold value"
            elif any(s.arg in g.arguments for g in cands):
                ok, why = False, "gold argument with a wrong value"
            else:
                d = _default(tmap, name, s.arg)
                ok = d is not MISSING and values_equal(s.value, d)
                why = "not a gold argument, but at its default" if ok else "not a gold argument"
            if ok:
                good[s.arg] = s.value
        elif s.kind in (StepKind.PARAM_FINISH, StepKind.FUNC_FINISH):
            cands = candidates()
            if not cands:
                ok, why = False, "closes a call that matches no gold call"
            else:
                gaps = min((_missing(g, given, tmap) for g in cands), key=len)
                ok = not gaps
                why = "no gold argument missing" if ok else f"gold argument(s) missing: {', '.join(gaps)}"
            if s.kind is StepKind.FUNC_FINISH:
                same = [g for g in remaining if g.name == name]
                if same:  # the made call uses up the gold call it matches best
                    remaining.remove(max(same, key=lambda g: (_match_count(g, given), -len(_missing(g, given, tmap)))))
                name, given, good = None, {}, {}
        elif s.kind is StepKind.TOTAL_FINISH:
            ok = not remaining
            why = "every gold call made" if ok else f"{len(remaining)} gold call(s) not made"
        else:  # pragma: no cover - StepKind is closed
            raise ValueError(f"unknown step kind {s.kind!r}")
        out.append(StepLabel(i, s.kind, ok, why, s.forced))
    return out


def answer_correct(calls: Sequence[Call | Mapping], gold: Sequence[Call | Mapping], tools: Sequence[ToolSpec] | Mapping[str, ToolSpec] = ()) -> bool:
    """Whether ``calls`` equal ``gold`` as a multiset (order free; values as in :func:`values_equal`)."""
    tmap = tools if isinstance(tools, Mapping) else {t.name: t for t in tools}
    left = [_as_call(g) for g in gold]
    calls = [_as_call(c) for c in calls]
    if len(calls) != len(left):
        return False

    def same(c: Call, g: Call) -> bool:
        if c.name != g.name or _missing(g, c.arguments, tmap):
            return False
        for k, v in c.arguments.items():
            if k in g.arguments:
                if not values_equal(v, g.arguments[k]):
                    return False
            else:
                d = _default(tmap, c.name, k)
                if d is MISSING or not values_equal(v, d):
                    return False
        return True

    return None not in match_one_to_one(calls, left, same)


def judged_labels(
    answer: PartialAnswer,
    gold: Sequence[Call | Mapping],
    unit: str,
    tools: Sequence[ToolSpec] | Mapping[str, ToolSpec] = (),
    step_labels: Sequence[StepLabel] | None = None,
) -> list[tuple[PartialAnswer, PartialAnswer, bool]]:
    """``(context, judged, label)`` for each unit a scorer of ``unit`` judges along ``answer``.

    A judged unit is right when every step it adds is right (a step unit adds one decided
    step and the forced ones after it; a call unit a whole call); an ORM's answer unit is
    right when the answer's calls equal the gold calls (:func:`answer_correct`).
    """
    labels = step_labels if step_labels is not None else label_steps(answer, gold, tools)
    out = []
    for ctx, judged in judge_pairs(answer, unit):  # type: ignore[arg-type]
        if unit == "answer":
            ok = answer_correct(judged.calls, gold, tools) and judged.done
        else:
            ok = all(l.label for l in labels[len(ctx.steps) : len(judged.steps)])
        out.append((ctx, judged, ok))
    return out
