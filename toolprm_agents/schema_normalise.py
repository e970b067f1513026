"""The JSON-Schema normaliser: any tool's value schema → one small subset.

The normalised value schema is a small JSON Schema subset:

- ``type``: one of ``string``, ``integer``, ``number``, ``boolean``, ``null``,
  ``array``, ``object`` (always a single string; a list of types becomes ``anyOf``);
- ``enum`` (JSON scalars), ``const``;
- ``items`` (always present on arrays; ``{}`` when the source gave none),
  ``minItems``, ``maxItems``;
- ``properties``, ``required``, ``additionalProperties`` (bool or schema);
- ``anyOf`` (``oneOf`` is read as ``anyOf``);
- ``minLength``, ``maxLength``, ``pattern``, ``format``;
- ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``;
- ``description``, and ``default`` inside nested properties (an argument's own
  default lives in `ArgSpec.default`).

``{}`` means "any JSON value". ``$ref`` is resolved inline, single-element
``allOf`` is inlined, annotation keys (``title``, ``examples``, ...) are dropped,
``uniqueItems`` is kept (the grammar cannot forbid repeated items, so the search drops
a value whose items repeat), and anything the subset cannot express raises
`ToolSpecError` naming the tool and the argument path. An ``enum`` (or ``const``)
that contradicts its ``type`` (``{"type": "integer", "enum": ["1", "2"]}``) is a
`ToolSpecError`: no value could be valid. BFCL's data has such enums and expects
their values; inside :func:`keep_mismatched_enums` (the BFCL benchmark) they are kept
as written. BFCL's ``{"type": "array", "enum": [...]}`` ("a list of these values")
moves the enum onto ``items``.

Example:
    ```python
    from toolprm_agents.schema_normalise import SchemaNormaliser

    SchemaNormaliser("t", {}).normalise({"type": ["string", "null"], "title": "T"}, "x")
    # {'anyOf': [{'type': 'string'}, {'type': 'null'}]}
    ```
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .schema_validate import validate_value
from .tool_spec import ToolSpecError, _check_arg_name, _short

__all__ = ["SchemaNormaliser", "keep_mismatched_enums"]

_TYPE_NAMES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "null": "null",
    "array": "array",
    "object": "object",
    # BFCL spellings
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "any": None,
}
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_ARRAY_KEYS = ("items", "minItems", "maxItems", "uniqueItems")
_OBJECT_KEYS = ("properties", "required", "additionalProperties")
_KEYS_FOR_TYPE = {
    "string": _STRING_KEYS,
    "integer": _NUMBER_KEYS,
    "number": _NUMBER_KEYS,
    "array": _ARRAY_KEYS,
    "object": _OBJECT_KEYS,
    "boolean": (),
    "null": (),
}
_TYPED_KEYS = frozenset(_STRING_KEYS + _NUMBER_KEYS + _ARRAY_KEYS + _OBJECT_KEYS)
_KNOWN_KEYS = _TYPED_KEYS | {
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "prefixItems", "nullable", "description", "default"
}
# Dropped without effect on the value set.
_IGNORED_KEYS = frozenset({
    "title", "examples", "example", "$schema", "$id", "$comment", "$defs", "definitions", "deprecated",
    "readOnly", "writeOnly", "optional", "discriminator", "contentMediaType", "contentEncoding",
})


#: BFCL's tool docs declare ``{"type": "integer", "enum": ["1", "2"]}`` and expect the enum's
#: values; :func:`keep_mismatched_enums` keeps such enums as written (the enum decides)
_KEEP_MISMATCHED_ENUMS: contextvars.ContextVar[bool] = contextvars.ContextVar("keep_mismatched_enums", default=False)


@contextlib.contextmanager
def keep_mismatched_enums():
    """Within this block an ``enum``/``const`` that contradicts its ``type`` is kept as written
    (BFCL's data); outside it such a schema is a :class:`ToolSpecError`."""
    token = _KEEP_MISMATCHED_ENUMS.set(True)
    try:
        yield
    finally:
        _KEEP_MISMATCHED_ENUMS.reset(token)


class SchemaNormaliser:
    """Normalises value schemas of one tool; ``$ref`` resolves against ``root``."""

    def __init__(self, tool: str, root: Any):
        self.tool = tool
        self.root = root

    def error(self, reason: str, path: str) -> ToolSpecError:
        return ToolSpecError(reason, tool=self.tool, path=path or None)

    def normalise(self, node: Any, path: str, refs: frozenset[str] = frozenset()) -> dict:
        if node is True:
            return {}
        if not isinstance(node, Mapping):
            raise self.error(f"schema must be a JSON object, got {type(node).__name__} {_short(node)}", path)
        node = dict(node)
        if "$ref" in node:
            ref = node.pop("$ref")
            if ref in refs:
                raise self.error(f"recursive $ref {ref!r} is not supported", path)
            # Sibling keys (description, default) override the referenced schema's.
            return self.normalise({**self.resolve(ref, path), **node}, path, refs | {ref})
        if "allOf" in node:
            parts = node.pop("allOf")
            if not isinstance(parts, list) or len(parts) != 1:
                count = len(parts) if isinstance(parts, list) else type(parts).__name__
                raise self.error(f"unsupported JSON Schema keyword 'allOf' with {count} schemas (only one can be inlined)", path)
            part = {} if parts[0] is True else parts[0]
            if not isinstance(part, Mapping):
                raise self.error(f"'allOf' entry must be a schema, got {_short(part)}", path)
            return self.normalise({**part, **node}, path, refs)
        for key in node:
            if key not in _KNOWN_KEYS and key not in _IGNORED_KEYS:
                raise self.error(f"unsupported JSON Schema keyword {key!r}", path)

        types = self.types(node.get("type"), path)
        out: dict[str, Any] = {}
        if types is not None and len(types) == 1:
            out["type"] = types[0]
        if "enum" in node:
            out["enum"] = self.enum(node["enum"], path)
        if "const" in node:
            out["const"] = self.scalar(node["const"], "const", path)
        out.update(self.alternatives(node, path, refs))
        out.update(self.object_keys(node, path, refs))
        out.update(self.array_keys(node, path, refs, is_array=types == ["array"]))
        out.update(self.scalar_keys(node, path))
        if "description" in node:
            if not isinstance(node["description"], str):
                raise self.error(f"'description' must be a string, got {_short(node['description'])}", path)
            out["description"] = node["description"]
        if "default" in node:
            out["default"] = copy.deepcopy(node["default"])

        if out.get("type") == "array" and "enum" in out and not {"enum", "const"} & out["items"].keys():
            # BFCL writes {"type": "array", "enum": [scalars...]} for "a list of these values";
            # as written no value could match, so the enum is moved onto the items.
            out["items"] = {**out["items"], "enum": out.pop("enum")}
        if types is not None and not _KEEP_MISMATCHED_ENUMS.get():
            for key in ("enum", "const"):
                values = out.get("enum", []) if key == "enum" else ([out["const"]] if "const" in out else [])
                bad = [v for v in values if not any(
                    not validate_value({"type": t}, v) or (t == "integer" and isinstance(v, float) and v.is_integer())
                    for t in types)]
                if bad:
                    raise self.error(
                        f"'{key}' value(s) {_short(bad)} are not of the declared type {' or '.join(types)}: "
                        f"no such value could be valid (fix 'type' or '{key}')", path)
        if types is not None and len(types) > 1:
            out = self.split_types(out, types, path)
        self.check_satisfiable(out, path)
        if node.get("nullable") is True:
            out = self.nullable(out)
        return out

    def check_satisfiable(self, out: dict, path: str) -> None:
        """Bounds that contradict each other (``minLength`` > ``maxLength`` ...) leave no valid value."""
        for lo, hi in (("minLength", "maxLength"), ("minItems", "maxItems")):
            if lo in out and hi in out and out[lo] > out[hi]:
                raise self.error(f"'{lo}' {out[lo]} is greater than '{hi}' {out[hi]}: no value could be valid", path)
        kind = out.get("type")
        if kind not in ("integer", "number") or "enum" in out or "const" in out:
            return
        low = [(out[k], k == "exclusiveMinimum") for k in ("minimum", "exclusiveMinimum") if k in out]
        high = [(out[k], k == "exclusiveMaximum") for k in ("maximum", "exclusiveMaximum") if k in out]
        if not low or not high:
            return
        (a, a_open), (b, b_open) = max(low, key=lambda x: (x[0], x[1])), min(high, key=lambda x: (x[0], not x[1]))
        if kind == "integer":
            first = math.floor(a) + 1 if a_open or a != math.floor(a) else int(a)
            last = math.ceil(b) - 1 if b_open or b != math.ceil(b) else int(b)
            empty = first > last
        else:
            empty = a > b or (a == b and (a_open or b_open))
        if empty:
            bounds = ", ".join(f"{k} {out[k]!r}" for k in _NUMBER_KEYS if k in out)
            raise self.error(f"no {kind} satisfies {bounds}", path)

    def resolve(self, ref: Any, path: str) -> dict:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise self.error(f"unresolvable $ref {ref!r} (only local '#/...' references are supported)", path)
        target = self.root
        for token in ref[1:].split("/")[1:]:
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise self.error(f"unresolvable $ref {ref!r}", path)
        if not isinstance(target, Mapping):
            raise self.error(f"$ref {ref!r} does not point to a schema", path)
        return dict(target)

    def types(self, declared: Any, path: str) -> list[str] | None:
        """Canonical type names, or None for "any value"."""
        if declared is None:
            return None
        names = declared if isinstance(declared, list) else [declared]
        if not names:
            raise self.error("'type' is an empty list", path)
        canonical: list[str] = []
        for name in names:
            if not isinstance(name, str) or name not in _TYPE_NAMES:
                raise self.error(f"unknown type {name!r} (expected one of {', '.join(_TYPE_NAMES)})", path)
            if _TYPE_NAMES[name] is None:
                return None
            if _TYPE_NAMES[name] not in canonical:
                canonical.append(_TYPE_NAMES[name])
        return canonical

    def enum(self, values: Any, path: str) -> list:
        if not isinstance(values, list) or not values:
            raise self.error(f"'enum' must be a non-empty list, got {_short(values)}", path)
        return [self.scalar(v, "enum", path) for v in values]

    def scalar(self, value: Any, key: str, path: str) -> Any:
        if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            return value
        raise self.error(f"'{key}' values must be JSON scalars, got {_short(value)}", path)

    def alternatives(self, node: dict, path: str, refs: frozenset[str]) -> dict:
        if "anyOf" in node and "oneOf" in node:
            raise self.error("both 'anyOf' and 'oneOf' given", path)
        key = "anyOf" if "anyOf" in node else "oneOf" if "oneOf" in node else None
        if key is None:
            return {}
        branches = node[key]
        if not isinstance(branches, list) or not branches:
            raise self.error(f"'{key}' must be a non-empty list of schemas", path)
        return {"anyOf": [self.normalise(b, path, refs) for b in branches]}

    def object_keys(self, node: dict, path: str, refs: frozenset[str]) -> dict:
        out: dict[str, Any] = {}
        if "properties" in node:
            properties = node["properties"]
            if not isinstance(properties, Mapping):
                raise self.error(f"'properties' must be an object, got {_short(properties)}", path)
            out["properties"] = {}
            for name, schema in properties.items():
                _check_arg_name(name, self.tool, path)
                out["properties"][name] = self.normalise(schema, f"{path}.{name}" if path else name, refs)
        if "additionalProperties" in node:
            extra = node["additionalProperties"]
            out["additionalProperties"] = extra if isinstance(extra, bool) else self.normalise(extra, f"{path}{{}}", refs)
        if "required" in node:
            required = node["required"]
            if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
                raise self.error(f"'required' must be a list of property names, got {_short(required)}", path)
            # Undeclared names are only meaningful for open objects without declared properties.
            if "properties" in out or out.get("additionalProperties") is False:
                for name in required:
                    if name not in out.get("properties", {}):
                        raise self.error(f"'required' names {name!r}, which is not a declared property", path)
            out["required"] = list(dict.fromkeys(required))
        return out

    def array_keys(self, node: dict, path: str, refs: frozenset[str], is_array: bool) -> dict:
        out: dict[str, Any] = {}
        if "prefixItems" in node:
            out["items"] = self.prefix_items(node, path, refs)
        elif "items" in node:
            if isinstance(node["items"], list):
                raise self.error("unsupported tuple-form 'items' (a list of schemas)", path)
            out["items"] = self.normalise(node["items"], f"{path}[]", refs)
        elif is_array:
            out["items"] = {}
        for key in ("minItems", "maxItems"):
            if key in node:
                out[key] = self.count(node[key], key, path)
        if "uniqueItems" in node:
            if not isinstance(node["uniqueItems"], bool):
                raise self.error(f"'uniqueItems' must be true or false, got {_short(node['uniqueItems'])}", path)
            if node["uniqueItems"]:  # kept: the search drops a value whose items repeat
                out["uniqueItems"] = True
        return out

    def prefix_items(self, node: dict, path: str, refs: frozenset[str]) -> dict:
        """A fixed-length tuple of one item type (pydantic ``tuple[float, float]``) as ``items``."""
        prefix = node["prefixItems"]
        if not isinstance(prefix, list) or not prefix:
            raise self.error("'prefixItems' must be a non-empty list of schemas", path)
        items = [self.normalise(p, f"{path}[]", refs) for p in prefix]
        fixed = node.get("minItems") == node.get("maxItems") == len(prefix) and node.get("items") in (None, False)
        if not fixed or any(i != items[0] for i in items):
            raise self.error("unsupported JSON Schema keyword 'prefixItems' (only fixed-length, single-type tuples)", path)
        return items[0]

    def scalar_keys(self, node: dict, path: str) -> dict:
        out: dict[str, Any] = {}
        for key in ("minLength", "maxLength"):
            if key in node:
                out[key] = self.count(node[key], key, path)
        for key in ("pattern", "format"):
            if key in node:
                if not isinstance(node[key], str):
                    raise self.error(f"'{key}' must be a string, got {_short(node[key])}", path)
                out[key] = node[key]
        for key in _NUMBER_KEYS:
            if key in node:
                value = node[key]
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise self.error(f"'{key}' must be a number, got {_short(value)}", path)
                out[key] = value
        return out

    def count(self, value: Any, key: str, path: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(f"'{key}' must be a non-negative integer, got {_short(value)}", path)
        return value

    def split_types(self, out: dict, types: list[str], path: str) -> dict:
        """``{"type": [A, B], ...}`` -> ``{"anyOf": [{"type": A, ...}, {"type": B, ...}]}``."""
        if "enum" in out or "const" in out:  # the listed values already pin the value set
            return {k: v for k, v in out.items() if k not in _TYPED_KEYS}
        if "anyOf" in out:
            raise self.error("a list of types combined with 'anyOf' is not supported", path)
        branches = []
        for t in types:
            branch = {"type": t, **{k: out[k] for k in _KEYS_FOR_TYPE[t] if k in out}}
            if t == "array":
                branch.setdefault("items", {})
            branches.append(branch)
        return {"anyOf": branches, **{k: v for k, v in out.items() if k not in _TYPED_KEYS}}

    @staticmethod
    def nullable(out: dict) -> dict:
        """OpenAPI-style ``nullable: true`` as ``anyOf [schema, null]``."""
        outer = {k: out[k] for k in ("description", "default") if k in out}
        core = {k: v for k, v in out.items() if k not in outer}
        if not core or core.get("type") == "null":
            return out
        return {"anyOf": [core, {"type": "null"}], **outer}
