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

__all__ = ["AugmentConfig", "irrelevant", "parallel", "augment_examples"]

JOINERS = (" Also, ", "\n", " And then: ", ". In addition, ", " Besides that, ")


@dataclass
class AugmentConfig:
    """``irrelevance``: share of examples with calls copied as an irrelevance example;
    ``parallel``: share of single-turn examples joined with another of the same split and
    source; ``max_parallel_calls``: the joined answer's most calls; ``test_fraction`` and
    ``seed``: the dataset split (pairs never cross it)."""

    irrelevance: float = 0.15
    parallel: float = 0.3
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
    return out, report
