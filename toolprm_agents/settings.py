"""Per-run settings of the ToolPRM node and middleware: ``config["configurable"]["toolprm"]``.

One dict under one key, so ToolPRM's settings never collide with another component's
``configurable`` keys. Its keys are the fields of
:class:`~toolprm_agents.search.SearchConfig` (read from the dataclass, so a new field is a
new key; ``N``/``M`` are accepted for ``beams``/``expand``) and the run options in
:data:`RUN_KEYS`. The old top-level keys (``configurable["strategy"]``, ``["N"]``, ...) are
still read, with a ``DeprecationWarning``; the nested dict wins where both are given. An
unknown key, or a ``toolprm`` value that is not a dict, raises :class:`SettingsError`.

Example:
    >>> from toolprm_agents.settings import run_settings
    >>> s = run_settings({"configurable": {"thread_id": "1", "toolprm": {"N": 4, "abstain_below": 0.5}}})
    >>> s.search, s.run
    ({'beams': 4}, {'abstain_below': 0.5})
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ToolPRMError
from .search import SearchConfig

#: the search settings: every field of SearchConfig
SEARCH_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SearchConfig))
#: the node's and middleware's own per-run options
RUN_KEYS: tuple[str, ...] = ("scorer", "max_tool_rounds", "tool_names", "abstain_below")
#: the paper's names for beams (N) and expansions (M)
ALIASES = {"N": "beams", "M": "expand", "n": "beams", "m": "expand"}
#: top-level ``configurable`` keys read before settings moved under "toolprm" (deprecated)
LEGACY_KEYS: tuple[str, ...] = (
    "strategy", "beams", "expand", "aggregation", "temperature", "seed", "max_calls", "max_string_length",
    "max_array_items", "allow_no_call", "max_rounds", "N", "M", "n", "m", "scorer", "max_tool_rounds", "tool_names",
)
CONFIG_KEY = "toolprm"


class SettingsError(ToolPRMError, ValueError):
    """``configurable["toolprm"]`` is not a dict or holds an unknown key (the message names it)."""


@dataclass
class RunSettings:
    """Resolved per-run settings: ``search`` (SearchConfig changes) and ``run`` (RUN_KEYS)."""

    search: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.run.get(key, default)


def settings_doc() -> str:
    """The accepted keys, for docstrings and error messages."""
    return ", ".join(SEARCH_KEYS + RUN_KEYS)


def run_settings(config: Mapping[str, Any] | None, *, owner: str = "ToolPRM") -> RunSettings:
    """The ToolPRM settings in ``config["configurable"]`` (nested dict first, legacy keys deprecated)."""
    conf = dict((config or {}).get("configurable") or {})
    merged: dict[str, Any] = {}
    legacy = [k for k in LEGACY_KEYS if k in conf and conf[k] is not None]
    if legacy:
        warnings.warn(
            f"{owner}: top-level configurable keys {legacy} are deprecated; put ToolPRM settings under "
            f'configurable["{CONFIG_KEY}"] (e.g. {{"{CONFIG_KEY}": {{"{ALIASES.get(legacy[0], legacy[0])}": ...}}}})',
            DeprecationWarning,
            stacklevel=3,
        )
        for k in legacy:
            merged[ALIASES.get(k, k)] = conf[k]
    nested = conf.get(CONFIG_KEY)
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise SettingsError(f'{owner}: configurable["{CONFIG_KEY}"] must be a dict of settings, got {type(nested).__name__}')
        for k, v in nested.items():
            key = ALIASES.get(k, k)
            if key not in SEARCH_KEYS and key not in RUN_KEYS:
                raise SettingsError(f'{owner}: unknown setting configurable["{CONFIG_KEY}"][{k!r}]; the settings are: {settings_doc()}')
            merged[key] = v
    out = RunSettings()
    for k, v in merged.items():
        if v is None:
            continue
        (out.search if k in SEARCH_KEYS else out.run)[k] = v
    return out


__all__ = ["run_settings", "RunSettings", "SettingsError", "SEARCH_KEYS", "RUN_KEYS", "ALIASES", "LEGACY_KEYS", "settings_doc"]
