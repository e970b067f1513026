"""Tool schemas: one normalised description of a tool, from many sources.

Tools reach the library in many shapes: pydantic models, LangChain tools, plain
typed functions, OpenAI function dicts and BFCL function docs. `to_tool_spec`
turns any of them into a `ToolSpec`: a name, a description and an ordered tuple
of `ArgSpec`, each carrying a *normalised* JSON Schema for its value. The rest
of the library (prompting, grammar building, validation) only ever sees that form.

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
    from pydantic import BaseModel, Field
    from toolprm_agents.schema import to_tool_specs

    class get_weather(BaseModel):
        '''Current weather for a city.'''
        city: str = Field(description="City name")
        unit: str = "celsius"

    bfcl_doc = {
        "name": "math.factorial",
        "description": "Factorial of n.",
        "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    }
    specs = to_tool_specs([get_weather, bfcl_doc])
    specs[0].required                    # ('city',)
    specs[1].arg("n").schema             # {'type': 'integer'}
    specs[1].to_openai()["function"]["name"]   # 'math.factorial'
    ```
"""

from __future__ import annotations

from .errors import ToolPRMError

import contextlib
import contextvars
import copy
import inspect
import json
import math
import re
import typing
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pydantic
import pydantic_core
from langchain_core.tools import BaseTool

from .schema_validate import validate_call, validate_value

__all__ = [
    "MISSING",
    "ArgSpec",
    "ToolSpec",
    "ToolSpecError",
    "example_value",
    "to_tool_spec",
    "to_tool_specs",
    "validate_call",
    "validate_value",
]


class ToolSpecError(ToolPRMError, ValueError):
    """A tool definition is invalid or uses something the normalised form cannot express.

    The message names the tool (when known) and the argument path (when relevant),
    then says what is wrong, e.g.
    ``tool 'book': argument 'guests[].age': unsupported JSON Schema keyword 'not'``.
    The parts are also available as ``tool``, ``path`` and ``reason``.
    """

    def __init__(self, reason: str, *, tool: str | None = None, path: str | None = None):
        self.tool = tool
        self.path = path
        self.reason = reason
        prefix = f"tool {tool!r}: " if tool is not None else ""
        if path:
            prefix += f"argument {path!r}: "
        super().__init__(prefix + reason)


class _Missing:
    """Type of `MISSING`; a falsy singleton that survives copy and pickle."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict) -> _Missing:
        return self

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Sentinel for "no default" (distinct from a default of ``None``)."""


_TOOL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_MAX_TOOL_NAME_LENGTH = 128


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a tool.

    Attributes:
        name: The argument name.
        schema: Normalised JSON Schema of the value (keeps ``description``; never
            has a top-level ``default``).
        required: Whether a call must supply the argument.
        default: The source's default value, or `MISSING`.
        description: The argument description ("" when none).

    Example:
        ```python
        ArgSpec("unit", {"type": "string", "enum": ["c", "f"]}, required=False, default="c")
        ```
    """

    name: str
    schema: dict
    required: bool
    default: Any = MISSING
    description: str = ""


@dataclass(frozen=True)
class ToolSpec:
    """A tool in normalised form; build one with `to_tool_spec` rather than by hand.

    Attributes:
        name: Tool name (identifier-like; dotted names such as ``math.factorial`` allowed).
        description: Tool description ("" when none).
        args: Arguments in the source's declared order.

    Example:
        ```python
        spec = to_tool_spec({"name": "add", "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 0}},
            "required": ["a"],
        }})
        spec.required              # ('a',)
        spec.arg("b").default      # 0
        spec.to_json_schema()["properties"]["b"]   # {'type': 'integer', 'default': 0}
        ```
    """

    name: str
    description: str
    args: tuple[ArgSpec, ...]

    def __post_init__(self) -> None:
        _check_tool_name(self.name)
        if not isinstance(self.description, str):
            raise ToolSpecError("description must be a string", tool=self.name)
        args = tuple(self.args)
        object.__setattr__(self, "args", args)
        seen: set[str] = set()
        for arg in args:
            if not isinstance(arg, ArgSpec):
                raise ToolSpecError(f"args must be ArgSpec instances, got {type(arg).__name__}", tool=self.name)
            _check_arg_name(arg.name, self.name, "")
            if arg.name in seen:
                raise ToolSpecError(f"duplicate argument name {arg.name!r}", tool=self.name)
            seen.add(arg.name)

    def arg(self, name: str) -> ArgSpec:
        """The argument called ``name``; raises `ToolSpecError` (not KeyError) if absent."""
        for arg in self.args:
            if arg.name == name:
                return arg
        known = ", ".join(repr(a.name) for a in self.args) or "none"
        raise ToolSpecError(f"no argument {name!r} (arguments: {known})", tool=self.name)

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the required arguments, in declared order."""
        return tuple(a.name for a in self.args if a.required)

    def to_json_schema(self) -> dict:
        """The parameters object schema, with descriptions and defaults restored."""
        properties = {}
        for arg in self.args:
            schema = copy.deepcopy(arg.schema)
            if arg.description and "description" not in schema:
                schema["description"] = arg.description
            if arg.default is not MISSING:
                schema["default"] = copy.deepcopy(arg.default)
            properties[arg.name] = schema
        return {"type": "object", "properties": properties, "required": list(self.required)}

    def to_openai(self) -> dict:
        """The tool as an OpenAI ``{"type": "function", "function": {...}}`` dict."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.to_json_schema(),
            },
        }


# --------------------------------------------------------------------------- sources

_ACCEPTED = (
    "a ToolSpec, a langchain_core BaseTool (e.g. from @tool), a pydantic BaseModel subclass, "
    "a typed Python function, an OpenAI function dict ({'type': 'function', 'function': {...}} "
    "or {'name', 'description', 'parameters'}) or a BFCL function doc"
)


def to_tool_spec(tool: Any) -> ToolSpec:
    """Normalise one tool definition into a `ToolSpec`.

    Args:
        tool: A `ToolSpec` (returned unchanged), a LangChain ``BaseTool``, a pydantic
            model class, a typed function, an OpenAI function dict (wrapped or bare)
            or a BFCL function doc (BFCL types ``dict``/``float``/``tuple``/``any``).

    Returns:
        The normalised `ToolSpec`.

    Raises:
        ToolSpecError: The object is not a recognised tool, or its definition is invalid
            or uses a JSON Schema construct outside the normalised subset.

    Example:
        ```python
        def get_weather(city: str, days: int = 1) -> str:
            '''Weather forecast.

            Args:
                city: City name.
                days: How many days ahead.
            '''

        spec = to_tool_spec(get_weather)
        spec.description                 # 'Weather forecast.'
        spec.arg("city").description     # 'City name.'
        spec.required                    # ('city',)
        ```
    """
    if isinstance(tool, ToolSpec):
        return tool
    if isinstance(tool, BaseTool):
        name, description, parameters = _from_langchain_tool(tool)
    elif isinstance(tool, type) and issubclass(tool, pydantic.BaseModel):
        name, description, parameters = _from_pydantic_model(tool)
    elif isinstance(tool, Mapping):
        name, description, parameters = _from_function_dict(tool)
    elif inspect.isroutine(tool):
        name, description, parameters = _from_function(tool)
    else:
        raise ToolSpecError(f"cannot make a tool from {type(tool).__name__} object {_short(tool)}; expected {_ACCEPTED}")
    return _build_spec(name, description, parameters)


def to_tool_specs(tools: Iterable[Any]) -> list[ToolSpec]:
    """Normalise a list of tools; rejects an empty list and duplicate names.

    Example:
        ```python
        to_tool_specs([get_weather, {"name": "math.factorial", "parameters": {...}}])
        to_tool_specs([])                     # ToolSpecError: empty tool list ...
        to_tool_specs([get_weather, get_weather])   # ToolSpecError: duplicate tool name ...
        ```
    """
    if isinstance(tools, (Mapping, str, bytes, BaseTool)) or not isinstance(tools, Iterable):
        raise ToolSpecError(f"expected an iterable of tools, got a single {type(tools).__name__}")
    specs = [to_tool_spec(t) for t in tools]
    if not specs:
        raise ToolSpecError("empty tool list: at least one tool is required")
    first_index: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.name in first_index:
            raise ToolSpecError(f"duplicate tool name {spec.name!r} (tools #{first_index[spec.name]} and #{i})")
        first_index[spec.name] = i
    return specs


def _from_langchain_tool(tool: BaseTool) -> tuple[str, str, Any]:
    name = tool.name
    schema = tool.tool_call_schema
    try:
        if isinstance(schema, Mapping):
            parameters = dict(schema)
        elif isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
            parameters = schema.model_json_schema()
        else:  # e.g. a pydantic v1 model: let LangChain do the conversion
            from langchain_core.utils.function_calling import convert_to_openai_tool

            parameters = convert_to_openai_tool(tool)["function"]["parameters"]
    except ToolSpecError:
        raise
    except Exception as exc:
        raise ToolSpecError(f"cannot derive a JSON schema from the LangChain tool: {exc}", tool=str(name)) from exc
    return name, tool.description or "", parameters


def _from_pydantic_model(model: type[pydantic.BaseModel]) -> tuple[str, str, Any]:
    name = model.__name__
    try:
        parameters = model.model_json_schema()
    except Exception as exc:
        raise ToolSpecError(f"cannot derive a JSON schema from the pydantic model: {exc}", tool=name) from exc
    return name, inspect.cleandoc(model.__doc__) if model.__doc__ else "", parameters


def _from_function_dict(doc: Mapping) -> tuple[str, str, Any]:
    if doc.get("type") == "function" and isinstance(doc.get("function"), Mapping):
        doc = doc["function"]
    if "name" not in doc:
        raise ToolSpecError(
            f"dict with keys {sorted(map(str, doc))} is not a recognised tool definition: "
            "expected {'type': 'function', 'function': {'name', 'description', 'parameters'}} "
            "or a bare {'name', 'description', 'parameters'} (OpenAI / BFCL)"
        )
    name = doc["name"]
    _check_tool_name(name)
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise ToolSpecError(f"description must be a string, got {type(description).__name__}", tool=name)
    parameters = doc.get("parameters")
    return name, description, {"type": "object", "properties": {}} if parameters is None else parameters


def _from_function(fn: Any) -> tuple[str, str, dict]:
    name = getattr(fn, "__name__", repr(fn))
    _check_tool_name(name)
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # builtins without signatures, unresolvable forward references
        raise ToolSpecError(f"cannot inspect the function signature: {exc}", tool=name) from exc
    summary, arg_docs = _parse_google_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, dict] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolSpecError("variadic parameters (*args / **kwargs) are not supported", tool=name, path=param.name)
        if param.name not in hints:
            raise ToolSpecError("parameter has no type annotation", tool=name, path=param.name)
        try:
            schema = pydantic.TypeAdapter(hints[param.name]).json_schema()
        except Exception as exc:
            raise ToolSpecError(
                f"cannot derive a JSON schema from annotation {hints[param.name]!r}: {exc}", tool=name, path=param.name
            ) from exc
        # Each annotation has its own "$defs": normalise it against its own root now.
        schema = _SchemaNormaliser(name, schema).normalise(schema, param.name)
        if param.name in arg_docs and "description" not in schema:
            schema["description"] = arg_docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:
                schema["default"] = pydantic_core.to_jsonable_python(param.default)
            except Exception as exc:
                raise ToolSpecError(
                    f"default {param.default!r} is not JSON-serialisable", tool=name, path=param.name
                ) from exc
        properties[param.name] = schema
    return name, summary, {"type": "object", "properties": properties, "required": required}


_ARGS_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters)\s*:\s*$")
_ANY_SECTION_RE = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE_RE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_google_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """First paragraph of ``doc`` and the descriptions in its Google-style ``Args:`` section."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ANY_SECTION_RE.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    in_args, current, arg_indent = False, None, None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 0 and _ARGS_SECTION_RE.match(stripped):
            in_args, current, arg_indent = True, None, None
            continue
        if not in_args or not stripped:
            continue
        if indent == 0:  # the next section starts
            in_args = False
            continue
        match = _ARG_LINE_RE.match(stripped)
        if arg_indent is None:
            arg_indent = indent
        if match and indent == arg_indent:
            current = match.group(1)
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(summary), args


def _build_spec(name: Any, description: Any, parameters: Any) -> ToolSpec:
    _check_tool_name(name)
    if not isinstance(description, str):
        raise ToolSpecError(f"description must be a string, got {type(description).__name__}", tool=name)
    if not isinstance(parameters, Mapping):
        raise ToolSpecError(f"parameters must be a JSON object schema, got {type(parameters).__name__}", tool=name)
    untyped_object = "properties" in parameters or "$ref" in parameters or not parameters
    if parameters.get("type") is None and not untyped_object:
        raise ToolSpecError("parameters must be an object schema (type 'object' with 'properties')", tool=name)
    root = _SchemaNormaliser(name, parameters).normalise(parameters, "", refs=frozenset({"#"}))
    if "anyOf" in root or root.get("type", "object") != "object":
        got = "anyOf" if "anyOf" in root else root["type"]
        raise ToolSpecError(f"parameters must be an object schema (type 'object'), got {got!r}", tool=name)
    properties = root.get("properties", {})
    required = root.get("required", [])
    for req in required:
        if req not in properties:
            raise ToolSpecError(f"'required' names {req!r}, which is not a declared argument", tool=name)
    args = []
    for arg_name, schema in properties.items():
        schema = dict(schema)
        default = schema.pop("default", MISSING)
        args.append(ArgSpec(arg_name, schema, arg_name in required, default, schema.get("description", "")))
    spec = ToolSpec(name, description, tuple(args))
    try:  # the tool's text reaches the tokenizer: it must be valid Unicode
        json.dumps(spec.to_openai(), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolSpecError(
            f"the tool's text is not valid Unicode (a lone surrogate {exc.object[exc.start]!r}; invalid UTF-8 read "
            "with surrogateescape gives these): fix its encoding", tool=name
        ) from None
    return spec


def _check_tool_name(name: Any) -> None:
    if not isinstance(name, str):
        raise ToolSpecError(f"tool name must be a string, got {type(name).__name__} {_short(name)}")
    if len(name) > _MAX_TOOL_NAME_LENGTH:
        raise ToolSpecError(f"invalid tool name {name!r}: longer than {_MAX_TOOL_NAME_LENGTH} characters")
    if not _TOOL_NAME_RE.match(name):
        raise ToolSpecError(
            f"invalid tool name {name!r}: expected letters, digits, '_' or '-' (not starting with a digit), "
            "optionally in '.'-separated parts"
        )


def _check_arg_name(name: Any, tool: str, parent: str) -> None:
    if not isinstance(name, str) or not name:
        raise ToolSpecError(f"invalid argument name {name!r}: must be a non-empty string", tool=tool, path=parent or None)
    bad = next((c for c in name if c in '"\\' or unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ToolSpecError(
            f"invalid argument name {name!r}: contains {bad!r} (quotes, backslashes and control characters are not allowed)",
            tool=tool,
            path=parent or None,
        )


# --------------------------------------------------------------------------- normalisation

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


class _SchemaNormaliser:
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


# --------------------------------------------------------------------------- values


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


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
