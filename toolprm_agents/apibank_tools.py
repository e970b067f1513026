"""Moved to :mod:`toolprm_agents.apibank` (kept until graphs/ and examples/ import it from there)."""

from .apibank import DATA_DIR, ApiBank, ApiBankError, api_specs

__all__ = ["ApiBank", "ApiBankError", "api_specs", "DATA_DIR"]
