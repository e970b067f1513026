"""Tool schemas: one normalised description of a tool, from many sources.

This module gathers the public names of five modules, each one idea, so that
``from toolprm_agents.schema import ...`` keeps working:

- :mod:`toolprm_agents.tool_spec`: the normalised tool (`ToolSpec`, `ArgSpec`, `ToolSpecError`, `MISSING`);
- :mod:`toolprm_agents.tool_sources`: LangChain (MCP through it) / pydantic / function / OpenAI / BFCL → `ToolSpec`
  (`to_tool_spec`, `to_tool_specs`);
- :mod:`toolprm_agents.schema_normalise`: the JSON-Schema subset every value schema is brought to
  (`keep_mismatched_enums` for BFCL's data);
- :mod:`toolprm_agents.schema_validate`: values and calls checked with the ``jsonschema`` package
  (`validate_value`, `validate_call`);
- :mod:`toolprm_agents.schema_examples`: a small valid value for a schema (`example_value`).

Example:
    ```python
    from toolprm_agents.schema import to_tool_specs, validate_call

    specs = to_tool_specs([{"name": "math.factorial", "description": "Factorial of n.",
                            "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}},
                                           "required": ["n"]}}])
    validate_call(specs[0], {"n": "5"})   # ["argument 'n': expected integer, got string '5'"]
    ```
"""

from __future__ import annotations

from .schema_examples import example_value
from .schema_normalise import SchemaNormaliser, keep_mismatched_enums
from .schema_validate import validate_call, validate_value
from .tool_sources import to_tool_spec, to_tool_specs
from .tool_spec import MISSING, ArgSpec, ToolSpec, ToolSpecError

__all__ = [
    "MISSING",
    "ArgSpec",
    "SchemaNormaliser",
    "ToolSpec",
    "ToolSpecError",
    "example_value",
    "keep_mismatched_enums",
    "to_tool_spec",
    "to_tool_specs",
    "validate_call",
    "validate_value",
]
