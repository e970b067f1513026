"""toolprm-agents: ToolPRM-guided fine-grained search for LLM tool calls.

The public surface, in the order data flows (schemas -> steps -> policy/scorer -> search)::

    from toolprm_agents import ToolPRMSearch, SearchConfig, TransformersPolicy
    search = ToolPRMSearch(TransformersPolicy(), "toolprm", SearchConfig(beams=2, expand=8))
    search.search("What's the weather in Paris?", [get_weather]).tool_calls()
"""

from .compute import Compute
from .policy import Candidate, Policy, PolicySession, TransformersPolicy
from .schema import ToolSpec, ToolSpecError, to_tool_spec, to_tool_specs
from .scorers import CoarsePRM, JudgeConfig, LikelihoodScorer, OutcomeRM, Scorer, ToolPRM, load_scorer
from .search import SearchConfig, SearchResult, ToolPRMSearch
from .steps import Call, PartialAnswer, Step, StepKind, StepPlan

__version__ = "0.1.0"

__all__ = [
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
