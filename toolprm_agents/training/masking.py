"""Function masking as Hammer does it (arXiv 2410.04587): names carry no meaning.

A masked example has every function name replaced by a random 5-15-character string and
every (top-level) parameter name by a random 4-10-character string, drawn from letters,
digits, ``_`` and ``.``; the gold calls (and the calls already made in the conversation)
are renamed to match, and the candidate tool list is de-duplicated and shuffled. The
model must then read descriptions instead of pattern-matching names.

Masking is applied to an example with probability ``probability``; whether and how an
example is masked depends only on ``(seed, example id)``, so the same configuration
always gives the same data whatever the order or subset of examples.

Example:
    >>> from toolprm_agents.training.sources import Example
    >>> ex = Example("q1", "demo", [{"role": "user", "content": "Weather in Paris?"}],
    ...              [{"name": "get_weather", "description": "Weather of a city",
    ...                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
    ...              [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    >>> m = mask_example(ex, MaskingConfig(probability=1.0, seed=0))
    >>> m.calls[0]["name"] == m.tools[0]["name"] != "get_weather"
    True
    >>> list(m.calls[0]["arguments"]) == list(m.tools[0]["parameters"]["properties"])
    True
"""

from __future__ import annotations

import copy
import random
import string
from dataclasses import dataclass
from typing import Sequence

from .sources import Example, stable_seed

__all__ = ["MaskingConfig", "mask_example", "apply_masking", "random_function_name", "random_param_name"]

_FIRST = string.ascii_letters + "_"
_REST = string.ascii_letters + string.digits + "_"
_PARAM = string.ascii_letters + string.digits + "_."


@dataclass
class MaskingConfig:
    """``probability``: share of examples masked; ``seed``: makes the choice and the names
    reproducible; ``keep_original``: also keep the unmasked example when one is masked
    (Hammer trains on both); name lengths as in Hammer."""

    probability: float = 0.5
    seed: int = 0
    keep_original: bool = False
    function_name_length: tuple[int, int] = (5, 15)
    param_name_length: tuple[int, int] = (4, 10)

    def __post_init__(self):
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"masking probability must be in [0, 1], got {self.probability}")
        self.function_name_length = tuple(self.function_name_length)
        self.param_name_length = tuple(self.param_name_length)


def random_function_name(rng: random.Random, lo: int = 5, hi: int = 15) -> str:
    """Letters, digits, ``_`` and ``.`` -- shaped so it is a valid tool name (a letter or
    ``_`` first and after every ``.``, no ``.`` at the end)."""
    n = rng.randint(lo, hi)
    out = [rng.choice(_FIRST)]
    while len(out) < n:
        if out[-1] != "." and len(out) < n - 1 and rng.random() < 0.08:
            out.append(".")
        elif out[-1] == ".":
            out.append(rng.choice(_FIRST))
        else:
            out.append(rng.choice(_REST))
    return "".join(out)


def random_param_name(rng: random.Random, lo: int = 4, hi: int = 10) -> str:
    return "".join(rng.choice(_PARAM) for _ in range(rng.randint(lo, hi)))


def _fresh(rng: random.Random, make, used: set[str]) -> str:
    while True:
        name = make(rng)
        if name not in used:
            used.add(name)
            return name


def mask_example(ex: Example, config: MaskingConfig) -> Example:
    """``ex`` with function and parameter names masked (always; see :func:`apply_masking`)."""
    rng = random.Random(stable_seed("mask-names", config.seed, ex.id))
    used_f: set[str] = set()
    fmap: dict[str, str] = {}
    pmap: dict[str, dict[str, str]] = {}
    tools = []
    seen = set()
    for tool in ex.tools:
        if tool["name"] in seen:  # de-duplicate
            continue
        seen.add(tool["name"])
        new = _fresh(rng, lambda r: random_function_name(r, *config.function_name_length), used_f)
        fmap[tool["name"]] = new
        params = copy.deepcopy(tool.get("parameters") or {"type": "object", "properties": {}})
        props = params.get("properties") or {}
        used_p: set[str] = set()
        pm = {k: _fresh(rng, lambda r: random_param_name(r, *config.param_name_length), used_p) for k in props}
        pmap[tool["name"]] = pm
        params["properties"] = {pm[k]: v for k, v in props.items()}
        if "required" in params:
            params["required"] = [pm.get(r, r) for r in params["required"]]
        tools.append({**copy.deepcopy({k: v for k, v in tool.items() if k not in ("name", "parameters")}), "name": new, "parameters": params})
    rng.shuffle(tools)

    def rename(call: dict) -> dict:
        name = call["name"]
        pm = pmap.get(name, {})
        return {"name": fmap.get(name, name), "arguments": {pm.get(k, k): v for k, v in (call.get("arguments") or {}).items()}}

    messages = []
    for m in ex.messages:
        m = copy.deepcopy(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": rename(c.get("function", c))} for c in m["tool_calls"]]
        messages.append(m)
    meta = {**ex.meta, "masked": True, "original_id": ex.meta.get("original_id") or ex.id, "name_map": fmap}  # an augmented example keeps its query's id (the split follows it)
    return Example(ex.id + "#masked", ex.source, messages, tools, [rename(c) for c in ex.calls], meta)


def apply_masking(examples: Sequence[Example], config: MaskingConfig) -> list[Example]:
    """Each example masked with probability ``config.probability`` (decided per example id)."""
    out: list[Example] = []
    for ex in examples:
        hit = random.Random(stable_seed("mask-choice", config.seed, ex.id)).random() < config.probability
        if hit:
            if config.keep_original:
                out.append(ex)
            out.append(mask_example(ex, config))
        else:
            out.append(ex)
    return out
