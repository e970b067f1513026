"""toolprm-agents: ToolPRM-guided fine-grained search for LLM tool calls.

The public surface: the LangGraph/LangChain integration first (a middleware for
``langchain.agents.create_agent``, a node for your own graph, a ready-made agent, and
wrapping an agent you have), then the search itself, in the order data flows (schemas ->
steps -> policy/scorer -> search)::

    from toolprm_agents import ToolPRMMiddleware, ToolPRMNode, create_toolprm_agent, wrap_agent
    from toolprm_agents import ToolPRMSearch, SearchConfig, TransformersPolicy, ToolPRMError
    search = ToolPRMSearch(TransformersPolicy(), "toolprm", SearchConfig(beams=2, expand=8))
    search.search("What's the weather in Paris?", [get_weather]).tool_calls()

Every name is imported on first use, so ``import toolprm_agents`` loads neither torch nor
LangGraph.
"""

from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562), so ``import toolprm_agents.backends.openai_server``
# does not load torch through this package's __init__.
_EXPORTS = {
    "ToolPRMError": ".errors",
    "ToolPRMMiddleware": ".middleware",
    "ToolPRMNode": ".node",
    "create_toolprm_agent": ".agent",
    "wrap_agent": ".agent",
    "WrapError": ".agent",
    "Compute": ".compute",
    "Candidate": ".interfaces",
    "Policy": ".interfaces",
    "PolicySession": ".interfaces",
    "Scorer": ".interfaces",
    "TransformersPolicy": ".policy",
    "ToolSpec": ".schema",
    "ToolSpecError": ".schema",
    "to_tool_spec": ".schema",
    "to_tool_specs": ".schema",
    "JudgeConfig": ".judges",
    "CoarsePRM": ".scorers",
    "LikelihoodScorer": ".scorers",
    "OutcomeRM": ".scorers",
    "ToolPRM": ".scorers",
    "load_scorer": ".scorers",
    "SearchConfig": ".search",
    "SearchResult": ".search",
    "ToolPRMSearch": ".search",
    "Call": ".steps",
    "PartialAnswer": ".steps",
    "Step": ".steps",
    "StepKind": ".steps",
    "StepPlan": ".steps",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover
    from .agent import WrapError, create_toolprm_agent, wrap_agent
    from .errors import ToolPRMError
    from .middleware import ToolPRMMiddleware
    from .node import ToolPRMNode
    from .compute import Compute
    from .interfaces import Candidate, Policy, PolicySession, Scorer
    from .judges import JudgeConfig
    from .backends.transformers_policy import TransformersPolicy
    from .schema import ToolSpec, ToolSpecError, to_tool_spec, to_tool_specs
    from .backends.transformers_judges import CoarsePRM, LikelihoodScorer, OutcomeRM, ToolPRM, load_scorer
    from .search import SearchConfig, SearchResult, ToolPRMSearch
    from .steps import Call, PartialAnswer, Step, StepKind, StepPlan

__version__ = "0.1.0"

__all__ = [
    "ToolPRMError",
    "ToolPRMMiddleware",
    "ToolPRMNode",
    "WrapError",
    "create_toolprm_agent",
    "wrap_agent",
    "Call",
    "Candidate",
    "CoarsePRM",
    "Compute",
    "JudgeConfig",
    "LikelihoodScorer",
    "OutcomeRM",
    "PartialAnswer",
    "Policy",
    "PolicySession",
    "Scorer",
    "SearchConfig",
    "SearchResult",
    "Step",
    "StepKind",
    "StepPlan",
    "ToolPRM",
    "ToolPRMSearch",
    "ToolSpec",
    "ToolSpecError",
    "TransformersPolicy",
    "load_scorer",
    "to_tool_spec",
    "to_tool_specs",
]
