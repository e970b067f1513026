"""Moved to :mod:`toolprm_agents.apibank`; this module only re-exports it for old imports."""

from .apibank import DATA_DIR, ApiBank, ApiBankError, api_specs

__all__ = ["ApiBank", "ApiBankError", "api_specs", "DATA_DIR"]
