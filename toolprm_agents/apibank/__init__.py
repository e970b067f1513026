"""API-Bank's level-1 APIs as executable LangChain tools over its simulated database.

A subpackage of its own (924 lines of tools and 3 MB of API-Bank's data), imported only by
what uses it: the API-Bank agent graph and example, and its tests. See :mod:`.tools`.

Example:
    >>> from toolprm_agents.apibank import ApiBank
    >>> ApiBank().call("GetUserToken", username="JohnDoe", password="pass123")
    {'token': 'a9s8d7f6g5h4j3k2l1'}
"""

from .tools import DATA_DIR, ApiBank, ApiBankError, api_specs

__all__ = ["ApiBank", "ApiBankError", "api_specs", "DATA_DIR"]
