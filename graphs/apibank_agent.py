"""An agent over API-Bank's 49 level-1 APIs, really executed (``apibank_agent`` in langgraph.json).

The tools are :class:`toolprm_agents.apibank.ApiBank`'s: Python implementations over
API-Bank's simulated database (accounts, agenda, alarms, meetings, bank, stocks, hospital,
smart home, ...). This module's graph shares one database for all its runs (a demo
server); ``build_graph()`` makes one with a fresh database.

All 49 API specs make a long prompt (about 6,000 tokens): give the APIs a conversation
needs with ``configurable={"toolprm": {"tool_names": ["GetUserToken", "AddAgenda"]}}`` to search over
those only (the ToolNode can still run any of them). Importing this module loads no model.
"""

from __future__ import annotations

from toolprm_agents.agent import create_toolprm_agent
from toolprm_agents.apibank import ApiBank
from toolprm_agents.backends import backends_from_env
from toolprm_agents.search import SearchConfig

DEFAULT_SEARCH = SearchConfig(strategy="beam", beams=2, expand=4)
SYSTEM_PROMPT = "The user's credentials, dates and names are in the conversation; a token comes from GetUserToken."


def build_graph(*, bank: ApiBank | None = None, policy=None, scorer="toolprm", search: SearchConfig | None = None, checkpointer=None, **kwargs):
    """The API-Bank agent over ``bank`` (default: a fresh :class:`ApiBank`)."""
    bank = bank or ApiBank()
    kwargs.setdefault("system_prompt", SYSTEM_PROMPT)
    return create_toolprm_agent(bank.tools(), policy=policy, scorer=scorer, search=search or DEFAULT_SEARCH, checkpointer=checkpointer, name="apibank_agent", **kwargs)


# TOOLPRM_POLICY / TOOLPRM_PRM: a served policy and judge (see toolprm_agents.backends)
graph = build_graph(**backends_from_env())
