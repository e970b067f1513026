"""The normalised tool: a name, a description and typed arguments (`ToolSpec`, `ArgSpec`).

Every tool source (see :mod:`toolprm_agents.tool_sources`) ends here; the rest of the
library (prompting, grammar building, validation) only ever sees this form. A bad
definition is a `ToolSpecError` naming the tool and the argument path.

Example:
    ```python
    from toolprm_agents.tool_spec import ArgSpec, ToolSpec

    spec = ToolSpec("get_weather", "Current weather.", (
        ArgSpec("city", {"type": "string"}, required=True),
        ArgSpec("unit", {"type": "string", "enum": ["c", "f"]}, required=False, default="c"),
    ))
    spec.required                                  # ('city',)
    spec.to_openai()["function"]["parameters"]["properties"]["unit"]["default"]   # 'c'
    ```
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from .errors import ToolPRMError

__all__ = ["MISSING", "ArgSpec", "ToolSpec", "ToolSpecError"]


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


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
