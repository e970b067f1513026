"""The one base class of every error the library raises on bad input.

Anything the library raises because of what a caller gave it (a tool schema, a message
list, a setting, a checkpoint folder, a served endpoint) subclasses :class:`ToolPRMError`;
the CLI prints those as one line and exits 2. Any other exception is a bug.

Example:
    >>> from toolprm_agents.errors import ToolPRMError
    >>> try:
    ...     raise ToolPRMError("tool 'f': argument 'x': unknown type 'strnig'")
    ... except ToolPRMError as exc:
    ...     print(exc)
    tool 'f': argument 'x': unknown type 'strnig'
"""

from __future__ import annotations


class ToolPRMError(Exception):
    """Bad input to toolprm-agents: the message names what was wrong."""


class ConfigError(ToolPRMError, ValueError):
    """A setting is out of its range (a thread count, a port, a backend reference)."""


class PromptTooLongError(ToolPRMError, ValueError):
    """The prompt does not fit the model's context window (also importable from ``toolprm_agents.context``)."""


__all__ = ["ConfigError", "PromptTooLongError", "ToolPRMError"]
