"""Irrelevance and parallel augmentation: new examples whose right answer is no call, or two calls.

* **Irrelevance** -- an example with its gold tool(s) taken out of the tool list: no offered
  tool does what the user asked, so the right answer is "no call" (``calls == []``) and any
  call is wrong. A tool list left empty gets one or two tools of another example (whose
  functions the user did not ask for). Examples whose conversation already called a removed
  tool are not used (the history would contradict the tool list).
* **Parallel** -- two independent single-turn requests joined into one user turn
  (``"<a> Also, <b>"``), with the union of their tools: both requests' calls are right
  (in any order) and stopping after the first is wrong. Only examples of the same split
  (:func:`~toolprm_agents.training.dataset.split_of`) are joined, so the held-out split
  never shares a query with the training split; a name defined differently by the two tool
  lists rules a pair out.
* **Same-function parallel** -- the same join for two requests that call **the same function**
  with their own arguments: the answer calls it twice, and the second call is right. The
  second request is another example calling the same function (one definition in both tool
  lists) where there is one, else the first request restated with other values: each argument
  value written once in the request (a string, or a whole number) is replaced by another value
  of an argument of that name in the same split (strings) or another number, in the text and
  in the call alike. The sources hold almost none of these (1 of 2,464 training queries
  of ``cpu-smollm2-large``), while the repeated-call perturbation teaches that a second call of
  the same function is wrong; without them a judge says "stop" after the first of two asked-for
  calls of one function (BFCL's parallel category is made of them).

The augmented examples keep ``meta.original_id`` (the query they come from: the split
follows it) and ``meta.augment`` (``"irrelevance"`` / ``"parallel"``). Choices depend only
on ``(seed, example ids)``. Run :func:`~toolprm_agents.training.sources.decontaminate` and
function masking (:mod:`.masking`) on the result, as the pipeline does.

Example:
    >>> from toolprm_agents.training.sources import Example
    >>> t = lambda n: {"name": n, "description": "", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}
    >>> a = Example("a", "s", [{"role": "user", "content": "Do f on 1"}], [t("f"), t("g")], [{"name": "f", "arguments": {"x": "1"}}])
    >>> b = Example("b", "s", [{"role": "user", "content": "Do h on 2"}], [t("h")], [{"name": "h", "arguments": {"x": "2"}}])
    >>> irrelevant(a, [b]).calls, [x["name"] for x in irrelevant(a, [b]).tools]
    ([], ['g'])
    >>> p = parallel(a, b, joiner=" Also, ")
    >>> p.messages[0]["content"], [c["name"] for c in p.calls]
    ('Do f on 1 Also, do h on 2', ['f', 'h'])
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass
from typing import Sequence

from .sources import Example, stable_seed

__all__ = ["AugmentConfig", "irrelevant", "parallel", "same_function_pairs", "augment_examples"]

JOINERS = (" Also, ", "\n", " And then: ", ". In addition, ", " Besides that, ")


@dataclass
class AugmentConfig:
    """``irrelevance``: share of examples with calls copied as an irrelevance example;
    ``parallel``: share of single-turn examples joined with another of the same split and
    source; ``same_function``: share of single-turn examples joined with another of the same
    split and source that calls the same function (:func:`same_function_pairs`);
    ``max_parallel_calls``: the joined answer's most calls; ``test_fraction`` and ``seed``:
    the dataset split (pairs never cross it)."""

    irrelevance: float = 0.15
    parallel: float = 0.3
    same_function: float = 0.0
    max_parallel_calls: int = 4
    seed: int = 0
    test_fraction: float = 0.15


def _base(ex: Example) -> str:
    return ex.meta.get("original_id") or ex.id.split("#")[0]


def _called(ex: Example) -> set[str]:
    out = set()
    for m in ex.messages:
        for c in m.get("tool_calls") or []:
            out.add(c.get("function", c).get("name", ""))
    return out


def irrelevant(ex: Example, donors: Sequence[Example], rng: random.Random | None = None) -> Example | None:
    """``ex`` without its gold tools (no call is right), or ``None`` when that cannot be made."""
    rng = rng or random.Random(stable_seed("irrelevance", ex.id))
    gold = {c["name"] for c in ex.calls}
    if not gold or gold & _called(ex):
        return None
    tools = [copy.deepcopy(t) for t in ex.tools if t["name"] not in gold]
    if not tools:
        pool = [d for d in donors if d.id != ex.id and not gold & set(d.tool_names())]
        if not pool:
            return None
        donor = pool[rng.randrange(len(pool))]
        tools = [copy.deepcopy(t) for t in donor.tools if t["name"] not in gold][: rng.randint(1, 2)]
        if not tools:
            return None
    meta = {**ex.meta, "original_id": _base(ex), "augment": "irrelevance", "removed_tools": sorted(gold)}
    return Example(ex.id + "#irrelevant", ex.source, copy.deepcopy(ex.messages), tools, [], meta)


def _single_turn(ex: Example) -> str | None:
    if len(ex.messages) == 1 and ex.messages[0].get("role") == "user" and isinstance(ex.messages[0].get("content"), str) and ex.calls:
        return ex.messages[0]["content"].strip()
    return None


def _split_time(text: str) -> tuple[str, str]:
    """API-Bank's ``"...\n(Current time: T)"`` as ``("...", "(Current time: T)")``."""
    head, sep, tail = text.rpartition("\n(Current time:")
    if sep and tail.strip().endswith(")"):
        return head.strip(), sep.strip() + tail
    return text, ""


def parallel(a: Example, b: Example, *, joiner: str = " Also, ") -> Example | None:
    """``a``'s and ``b``'s requests in one turn, both answers' calls right; ``None`` if they
    cannot be joined (not single-turn, or a tool name defined twice differently)."""
    qa, qb = _single_turn(a), _single_turn(b)
    if qa is None or qb is None or a.id == b.id:
        return None
    tools = {t["name"]: t for t in a.tools}
    for t in b.tools:
        if t["name"] in tools and json.dumps(tools[t["name"]], sort_keys=True) != json.dumps(t, sort_keys=True):
            return None
        tools.setdefault(t["name"], t)
    qa, ta = _split_time(qa)
    qb, tb = _split_time(qb)
    if ta and tb and ta != tb:
        return None  # two different "current times": dates in the calls would disagree
    sep = joiner if not joiner.startswith(".") or not qa.endswith((".", "?", "!")) else " " + joiner[2:]
    text = qa + sep + (qb[0].lower() + qb[1:] if sep.endswith(", ") and qb[:1].isupper() and not qb[1:2].isupper() else qb)
    when = ta or tb
    if when:
        text += "\n" + when
    meta = {"original_id": _base(a), "augment": "parallel", "joined": [a.id, b.id]}
    return Example(f"{a.id}+{b.id}", a.source, [{"role": "user", "content": text}], [copy.deepcopy(t) for t in tools.values()], copy.deepcopy(a.calls + b.calls), meta)


def _function_key(ex: Example) -> str | None:
    """The one function every gold call of ``ex`` calls, with its definition; ``None`` if
    the calls use several functions, none, or one the tool list does not define."""
    names = {c["name"] for c in ex.calls}
    tool = next((t for t in ex.tools if t["name"] in names), None)
    if len(names) != 1 or tool is None:
        return None
    return json.dumps(tool, sort_keys=True)


def _value_pool(examples: Sequence[Example]) -> dict[str, list[str]]:
    """Argument name -> the distinct string values the examples' gold calls give it."""
    pool: dict[str, set[str]] = {}
    for ex in examples:
        for c in ex.calls:
            for k, v in (c.get("arguments") or {}).items():
                if isinstance(v, str) and 2 <= len(v) <= 40:
                    pool.setdefault(k, set()).add(v)
    return {k: sorted(v) for k, v in pool.items()}


def restated(ex: Example, pool: dict[str, list[str]], rng: random.Random) -> tuple[str, dict] | None:
    """``ex``'s request with other values, and its call with them: every argument value written
    exactly once in the request -- a string that ``pool`` (argument name -> values) has three
    other values for, or a whole number -- replaced in both; ``None`` if none can be.

        >>> ex = Example("a", "s", [{"role": "user", "content": "Weather in Paris for 3 days"}], [],
        ...              [{"name": "w", "arguments": {"city": "Paris", "days": 3}}])
        >>> text, call = restated(ex, {"city": ["London", "Oslo", "Paris", "Rome"]}, random.Random(0))
        >>> text == f"Weather in {call['arguments']['city']} for {call['arguments']['days']} days", call["arguments"]["city"] != "Paris"
        (True, True)
    """
    import re

    text = _single_turn(ex)
    if text is None or len(ex.calls) != 1:
        return None
    call = copy.deepcopy(ex.calls[0])
    args = call.get("arguments") or {}
    changed = False
    for k, v in list(args.items()):
        if isinstance(v, bool):
            continue
        if isinstance(v, str):
            others = [o for o in pool.get(k, []) if o != v and o not in text]
            pattern = re.escape(v)
            if len(others) < 3 or len(v) < 2:
                continue
            new = others[rng.randrange(len(others))]
        elif isinstance(v, int) and 0 <= v < 10**6:
            pattern = rf"(?<![\w.]){v}(?![\w.])"
            new = v
            while new == v or re.search(rf"(?<![\w.]){new}(?![\w.])", text):
                new = rng.randint(max(1, v // 2), 2 * v + 10)
        else:
            continue
        if len(re.findall(pattern, text)) != 1:
            continue
        text = re.sub(pattern, lambda _m: str(new), text)
        args[k] = new
        changed = True
    return (text, call) if changed else None


def same_function_pairs(examples: Sequence[Example], config: AugmentConfig, split_of_base) -> tuple[list[Example], int]:
    """Same-function parallel examples: a ``config.same_function`` share of the single-turn
    examples, each joined with another of the same source and split (``split_of_base(base
    id)``) whose gold calls call the same function with the same definition (pairs of identical
    answers are skipped: two equal calls are a repeat, not two requests; a pair is joined in
    one order only); a one-call example without such a partner is joined with itself
    :func:`restated` with other values. Returns the examples and how many drawn examples could
    be joined with neither.

        >>> from toolprm_agents.training.sources import Example
        >>> t = {"name": "f", "description": "", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}
        >>> a = Example("a", "s", [{"role": "user", "content": "Do f on 1"}], [t], [{"name": "f", "arguments": {"x": "1"}}])
        >>> b = Example("b", "s", [{"role": "user", "content": "Do f on 2"}], [t], [{"name": "f", "arguments": {"x": "2"}}])
        >>> got, _ = same_function_pairs([a, b], AugmentConfig(same_function=1.0), lambda base: "train")
        >>> len(got), sorted(c["arguments"]["x"] for c in got[0].calls), got[0].meta["same_function"]
        (1, ['1', '2'], True)
    """
    groups: dict[tuple, list[Example]] = {}
    for ex in examples:
        key = _function_key(ex) if _single_turn(ex) is not None and not ex.meta.get("augment") else None
        if key is not None:
            groups.setdefault((ex.source, split_of_base(_base(ex)), key), []).append(ex)
    pools: dict[str, dict[str, list[str]]] = {}
    for split in {k[1] for k in groups}:
        pools[split] = _value_pool([e for (_, sp, _), items in groups.items() if sp == split for e in items])
    out, missing, joined = [], 0, set()
    for key, items in sorted(groups.items()):
        items = sorted(items, key=lambda e: stable_seed("same-function-order", config.seed, e.id))
        for ex in items:
            r = random.Random(stable_seed("augment-same-function", config.seed, ex.id))
            if r.random() >= config.same_function:
                continue
            partners = [o for o in items if o.id != ex.id and _base(o) != _base(ex) and o.calls != ex.calls
                        and len(ex.calls) + len(o.calls) <= config.max_parallel_calls and frozenset((ex.id, o.id)) not in joined]
            joiner = r.choice(JOINERS)
            got = parallel(ex, partners[r.randrange(len(partners))], joiner=joiner) if partners else None
            if got is None and len(ex.calls) == 1:
                again = restated(ex, pools[key[1]], r)
                if again is not None:
                    twin = Example(ex.id + "#again", ex.source, [{"role": "user", "content": again[0]}], ex.tools, [again[1]],
                                   {"original_id": _base(ex)})
                    got = parallel(ex, twin, joiner=joiner)
            if got is None:
                missing += 1
                continue
            got.meta["same_function"] = True
            joined.add(frozenset(got.meta["joined"]))
            out.append(got)
    return out, missing


def augment_examples(examples: Sequence[Example], config: AugmentConfig | None = None) -> tuple[list[Example], dict]:
    """The augmented examples (irrelevance and parallel; the originals are not repeated) and counts."""
    from .dataset import split_of

    config = config or AugmentConfig()
    out: list[Example] = []
    report = {"irrelevance": 0, "parallel": 0, "irrelevance_not_possible": 0, "parallel_not_possible": 0}
    by_source: dict[str, list[Example]] = {}
    for ex in examples:
        by_source.setdefault(ex.source, []).append(ex)
    for ex in examples:
        r = random.Random(stable_seed("augment-irrelevance", config.seed, ex.id))
        if ex.calls and r.random() < config.irrelevance:
            got = irrelevant(ex, by_source[ex.source], r)
            if got is None:
                report["irrelevance_not_possible"] += 1
            else:
                out.append(got)
                report["irrelevance"] += 1
    groups: dict[tuple[str, str], list[Example]] = {}
    for ex in examples:
        if _single_turn(ex) is not None:
            groups.setdefault((ex.source, split_of(_base(ex), config.test_fraction, config.seed)), []).append(ex)
    for key, items in sorted(groups.items()):
        items = sorted(items, key=lambda e: stable_seed("parallel-order", config.seed, e.id))
        for ex in items:
            r = random.Random(stable_seed("augment-parallel", config.seed, ex.id))
            if r.random() >= config.parallel or len(items) < 2:
                continue
            got = None
            for _ in range(4):
                other = items[r.randrange(len(items))]
                if other.id == ex.id or len(ex.calls) + len(other.calls) > config.max_parallel_calls:
                    continue
                got = parallel(ex, other, joiner=r.choice(JOINERS))
                if got is not None:
                    break
            if got is None:
                report["parallel_not_possible"] += 1
            else:
                out.append(got)
                report["parallel"] += 1
    if config.same_function > 0:
        same, missing = same_function_pairs(examples, config, lambda base: split_of(base, config.test_fraction, config.seed))
        known = {e.id for e in out}
        same = [e for e in same if e.id not in known]  # the plain join may have drawn the same pair
        out += same
        report["parallel_same_function"], report["same_function_not_possible"] = len(same), missing
    return out, report
