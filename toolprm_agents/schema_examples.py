"""Example values: a small JSON value valid for a normalised schema (`example_value`).

Example:
    ```python
    from toolprm_agents.schema_examples import example_value

    example_value({"type": "integer", "minimum": 3})          # 3
    example_value({"type": "string", "format": "date"})       # '2024-01-01'
    ```
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .schema_validate import validate_value

__all__ = ["example_value"]

def example_value(schema: dict) -> Any:
    """A small JSON value valid for the normalised ``schema``.

    Best effort for ``pattern`` (not followed) and for an ``enum`` that contradicts
    its ``type`` (no valid value exists; the first enum value is returned).

    Example:
        ```python
        example_value({"type": "integer", "minimum": 3})            # 3
        example_value({"type": "string", "enum": ["c", "f"]})       # 'c'
        example_value({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]})
        # {'a': False}
        ```
    """
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if "enum" in schema:
        return next((v for v in schema["enum"] if not validate_value(schema, v)), schema["enum"][0])
    if "anyOf" in schema:
        return example_value(schema["anyOf"][0])
    kind = schema.get("type")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "null"
    if kind == "null":
        return None
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return _example_number(schema, integer=kind == "integer")
    if kind == "string":
        return _example_string(schema)
    if kind == "array":
        return [example_value(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    properties = schema.get("properties", {})
    return {name: example_value(properties.get(name, {})) for name in schema.get("required", [])}


_FORMAT_EXAMPLES = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
}


def _example_string(schema: dict) -> str:
    text = _FORMAT_EXAMPLES.get(schema.get("format", ""), "example")
    text += "x" * max(0, schema.get("minLength", 0) - len(text))
    return text[: schema["maxLength"]] if "maxLength" in schema else text


def _example_number(schema: dict, integer: bool) -> int | float:
    lo, lo_open = _bound(schema, "minimum", "exclusiveMinimum", max)
    hi, hi_open = _bound(schema, "maximum", "exclusiveMaximum", min)
    if integer:
        lo_i = None if lo is None else math.floor(lo) + 1 if lo_open else math.ceil(lo)
        hi_i = None if hi is None else math.ceil(hi) - 1 if hi_open else math.floor(hi)
        value = 0 if lo_i is None or lo_i <= 0 else lo_i
        return int(value if hi_i is None or value <= hi_i else hi_i)
    value = 0.0
    if lo is not None and (value < lo or (lo_open and value <= lo)):
        value = lo if not lo_open else (lo + hi) / 2 if hi is not None else lo + 1
    if hi is not None and (value > hi or (hi_open and value >= hi)):
        value = hi if not hi_open else (lo + hi) / 2 if lo is not None else hi - 1
    return float(value)


def _bound(schema: dict, inclusive: str, exclusive: str, tighter: Any) -> tuple[float | None, bool]:
    """The tighter of an inclusive and an exclusive bound, and whether it is exclusive."""
    a, b = schema.get(inclusive), schema.get(exclusive)
    if b is None:
        return a, False
    if a is None or tighter(a, b) == b:
        return b, True
    return a, False
