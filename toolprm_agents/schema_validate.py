"""Validating values and calls against normalised schemas, with the ``jsonschema`` package.

The checking is `jsonschema`'s (Draft 2020-12, format checking for the formats that are
cheap and unambiguous: ``date``, ``email``, ``ipv4``, ``ipv6``, ``uuid``). Three rules
are the library's own, set on the validator: a float is never an ``integer`` (even
``2.0``: the grammar never emits one), NaN and infinities are not numbers, and a tuple
is an array (Python callers pass them). A ``pattern`` Python cannot compile (an
ECMA-only construct) is not checked.

What this module adds is the wording: `jsonschema`'s errors become short messages with
the value's path (``guests[0].age: -1 is less than the minimum 0``), one per problem,
in the order a reader walks the value; a node whose ``type``, ``const``, ``enum`` or
``anyOf`` fails reports only that.

Example:
    ```python
    from toolprm_agents.schema_validate import validate_value

    validate_value({"type": "integer"}, 2.0)
    # ['expected integer, got number 2.0']
    validate_value({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, {"n": 0})
    # ['n: 0 is less than the minimum 1']
    ```
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from jsonschema import _keywords

from .tool_spec import _short

if TYPE_CHECKING:
    from .tool_spec import ToolSpec

__all__ = ["validate_call", "validate_value"]

#: formats whose check is cheap and whose meaning nobody disputes (``time`` and
#: ``date-time`` are left out: RFC 3339 demands a UTC offset that tool callers often omit)
CHECKED_FORMATS = ("date", "email", "ipv4", "ipv6", "uuid")


def _is_number(checker: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


_TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many({
    "integer": lambda checker, value: isinstance(value, int) and not isinstance(value, bool),
    "number": _is_number,
    "array": lambda checker, value: isinstance(value, (list, tuple)),
    "object": lambda checker, value: isinstance(value, Mapping),
})


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Any:
    """`jsonschema`'s ``pattern``, except that a pattern Python cannot compile is not checked."""
    try:
        re.compile(pattern)
    except re.error:
        return
    yield from _keywords.pattern(validator, pattern, instance, schema)


_Validator = jsonschema.validators.extend(
    Draft202012Validator, validators={"pattern": _pattern}, type_checker=_TYPE_CHECKER
)
_FORMAT_CHECKER = FormatChecker(CHECKED_FORMATS)


def _errors(schema: dict, value: Any) -> list[ValidationError]:
    return list(_Validator(schema, format_checker=_FORMAT_CHECKER).iter_errors(value))


def validate_value(schema: dict, value: Any) -> list[str]:
    """Violations of the normalised ``schema`` by ``value``; empty when valid.

    Integers are valid numbers, but a float is never an integer (even ``2.0``) and a
    bool is neither. ``pattern`` uses Python ``re.search``; ``format`` is checked for
    `CHECKED_FORMATS`.

    Example:
        ```python
        validate_value({"type": "integer"}, 2.0)
        # ['expected integer, got number 2.0']
        validate_value({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, {"n": 0})
        # ['n: 0 is less than the minimum 1']
        ```
    """
    return [f"{path}: {msg}" if path else msg for path, msg in _messages(_errors(schema, value), value)]


def validate_call(spec: ToolSpec, arguments: Any) -> list[str]:
    """Violations of ``spec`` by a call's ``arguments``: unknown, missing and invalid values.

    Example:
        ```python
        validate_call(spec, {"city": 3, "colour": "red"})
        # ["unknown argument 'colour'", "argument 'city': expected string, got integer 3"]
        ```
    """
    if not isinstance(arguments, Mapping):
        return [f"arguments must be a JSON object, got {_json_type(arguments)} {_short(arguments)}"]
    schema = {
        "type": "object",
        "properties": {a.name: a.schema for a in spec.args},
        "required": list(spec.required),
        "additionalProperties": False,
    }
    errors = _errors(schema, arguments)
    problems = []
    if any(e.validator == "additionalProperties" and not e.path for e in errors):
        problems += [f"unknown argument {name!r}" for name in arguments if name not in schema["properties"]]
    problems += [f"missing required argument {name!r}" for name in spec.required if name not in arguments]
    inner = [e for e in errors if e.path]
    problems += [f"argument {path!r}: {msg}" for path, msg in _messages(inner, arguments)]
    return problems


# --------------------------------------------------------------------------- wording

#: the keywords whose failure is the only thing said about a node, first one first
_SOLE = ("type", "const", "enum", "anyOf")
#: the order of a node's own messages (its children's come after them)
_RANK = {k: i for i, k in enumerate((
    *_SOLE, "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minItems", "maxItems", "uniqueItems", "required",
))}
_BOUND_WORDS = {
    "minimum": "less than the minimum",
    "maximum": "greater than the maximum",
    "exclusiveMinimum": "not greater than the exclusive minimum",
    "exclusiveMaximum": "not less than the exclusive maximum",
}


def _messages(errors: list[ValidationError], root: Any) -> list[tuple[str, str]]:
    """``(path, message)`` for each problem in ``errors``, in reading order.

    ``errors`` are relative to ``root`` (their ``relative_path`` walks down from it).
    """
    # a failed type/const/enum/anyOf silences everything else the same schema node says of the same value
    sole: dict[tuple, int] = {}
    for e in errors:
        if e.validator in _SOLE:
            node = (tuple(e.relative_schema_path)[:-1], tuple(e.relative_path))
            sole[node] = min(sole.get(node, len(_SOLE)), _SOLE.index(e.validator))
    kept = []
    for e in errors:
        schema_path, path = tuple(e.relative_schema_path), tuple(e.relative_path)
        if not any(_silenced(e.validator, schema_path, path, node, first) for node, first in sole.items()):
            kept.append(e)

    entries: list[tuple[list, str, str]] = []
    said_required: set[tuple] = set()
    for e in kept:
        path = list(e.relative_path)
        if e.validator == "additionalProperties":  # one message per unexpected property, where it stands
            properties = e.schema.get("properties", {})
            for name in e.instance:
                if name not in properties:
                    entries.append((_order(root, [*path, name]), _where(path), f"unexpected property {name!r}"))
            continue
        if e.validator == "required":  # said once for all the missing names, in their declared order
            if tuple(path) in said_required:
                continue
            said_required.add(tuple(path))
            for name in e.validator_value:
                if name not in e.instance:
                    entries.append(
                        (_order(root, path) + [(0, _RANK["required"])], _where(path), f"missing required property {name!r}"))
            continue
        rank = _RANK.get(e.validator, len(_RANK))
        entries.append((_order(root, path) + [(0, rank)], _where(path), _message(e)))
    entries.sort(key=lambda entry: entry[0])  # stable: same-place messages keep jsonschema's order
    return [(where, msg) for _, where, msg in entries]


def _silenced(keyword: str, schema_path: tuple, path: tuple, node: tuple, first: int) -> bool:
    """Whether an error is hidden by the failed ``_SOLE[first]`` of schema ``node`` on a value."""
    node_schema, node_path = node
    if schema_path[: len(node_schema)] != node_schema or path[: len(node_path)] != node_path:
        return False  # said of another node or another value
    at_node = schema_path == (*node_schema, keyword) and path == node_path
    return not (at_node and keyword in _SOLE and _SOLE.index(keyword) == first)


def _order(root: Any, path: list) -> list[tuple[int, int]]:
    """A sort key that walks ``path`` down from ``root``: array index, or the key's place in the object."""
    key, node = [], root
    for step in path:
        if isinstance(node, Mapping):
            key.append((1, list(node).index(step) if step in node else len(node)))
        else:
            key.append((1, step if isinstance(step, int) else 0))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    return key


def _where(path: list) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else str(step)
    return out


def _message(e: ValidationError) -> str:
    value, expected = e.instance, e.validator_value
    kind = e.validator
    if kind == "type":
        return f"expected {expected}, got {_json_type(value)} {_short(value)}"
    if kind == "const":
        return f"expected {_short(expected)}, got {_short(value)}"
    if kind == "enum":
        return f"{_short(value)} is not one of {_short(expected)}"
    if kind == "anyOf":
        branches: dict[int, list[ValidationError]] = {}
        for sub in e.context or []:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        reasons = "; ".join(_messages(branches[i], value)[0][1] for i in sorted(branches))
        return f"{_short(value)} matches none of the {len(expected)} alternatives ({reasons})"
    if kind == "minLength":
        return f"string shorter than minLength {expected}"
    if kind == "maxLength":
        return f"string longer than maxLength {expected}"
    if kind == "pattern":
        return f"{_short(value)} does not match pattern {expected!r}"
    if kind == "format":
        return f"{_short(value)} is not a valid {expected}"
    if kind in _BOUND_WORDS:
        return f"{value!r} is {_BOUND_WORDS[kind]} {expected!r}"
    if kind == "minItems":
        return f"array has fewer than minItems {expected} items"
    if kind == "maxItems":
        return f"array has more than maxItems {expected} items"
    if kind == "uniqueItems":
        for i, item in enumerate(value):
            if any(jsonschema._utils.equal(item, earlier) for earlier in value[:i]):
                return f"items are not unique (uniqueItems): item {i} {_short(item)} repeats an earlier one"
    return e.message  # a keyword outside the normalised subset: jsonschema's own words


def _json_type(value: Any) -> str:
    """The JSON type name of ``value`` by the rules above (a Python type name when it has none)."""
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPE_CHECKER.is_type(value, kind):
            return kind
    return type(value).__name__
