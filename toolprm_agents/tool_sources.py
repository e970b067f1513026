"""Tool sources: LangChain tools, pydantic models, typed functions, OpenAI / BFCL dicts → `ToolSpec`.

Tools reach the library in many shapes. `to_tool_spec` turns any of them into a
:class:`~toolprm_agents.tool_spec.ToolSpec` (value schemas normalised by
:mod:`toolprm_agents.schema_normalise`); `to_tool_specs` does a list and rejects an
empty one or repeated names. MCP tools come in as LangChain tools (e.g. loaded with
``langchain-mcp-adapters``).

Example:
    ```python
    from pydantic import BaseModel, Field
    from toolprm_agents.tool_sources import to_tool_specs

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
    ```
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic
import pydantic_core
from langchain_core.tools import BaseTool

from .schema_normalise import SchemaNormaliser
from .tool_spec import MISSING, ArgSpec, ToolSpec, ToolSpecError, _check_tool_name, _short

__all__ = ["to_tool_spec", "to_tool_specs"]

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
        schema = SchemaNormaliser(name, schema).normalise(schema, param.name)
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
    root = SchemaNormaliser(name, parameters).normalise(parameters, "", refs=frozenset({"#"}))
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
