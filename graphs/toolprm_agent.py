"""The default ToolPRM agent over a small demo tool set (``toolprm_agent`` in langgraph.json).

``START -> agent ⇄ tools``: the ToolPRM node searches for tool calls, LangGraph's ToolNode
runs them, the results go back to the next search, and the node ends with a text answer.
Importing this module loads no model: SmolLM2 and the ToolPRM load on the first call.

Per-run settings through ``configurable["toolprm"]``: any SearchConfig field (``strategy``,
``beams``, ``expand``, ``temperature``, ``seed``, ...), ``scorer``, ``max_tool_rounds``,
``tool_names``, ``abstain_below``.

    >>> from toolprm_agent import graph                                    # doctest: +SKIP
    >>> graph.invoke({"messages": [("user", "What's the weather in Paris?")]})  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import operator

from langchain_core.tools import tool

from toolprm_agents.agent import create_toolprm_agent
from toolprm_agents.backends import backends_from_env
from toolprm_agents.search import SearchConfig

# a demo world: fixed data, so runs are reproducible
_WEATHER = {"paris": ("sunny", 21), "london": ("rainy", 14), "tokyo": ("cloudy", 18), "new york": ("windy", 16), "berlin": ("sunny", 19)}
_RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Pow: operator.pow}


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather for a city.

    Args:
        city: the city name, e.g. "Paris".
        unit: "celsius" or "fahrenheit".
    """
    sky, temp = _WEATHER.get(city.strip().lower(), ("clear", 20))
    if unit.lower().startswith("f"):
        return f"{city}: {sky}, {temp * 9 / 5 + 32:.0f} °F"
    return f"{city}: {sky}, {temp} °C"


@tool
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / ** and parentheses, e.g. "12 * (3 + 4)"."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError("unsupported expression")

    try:
        return str(ev(ast.parse(expression, mode="eval")))
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"


@tool
def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money between USD, EUR, GBP and JPY."""
    a, b = from_currency.upper(), to_currency.upper()
    if a not in _RATES or b not in _RATES:
        return f"error: unknown currency (known: {', '.join(_RATES)})"
    return f"{amount} {a} = {amount / _RATES[a] * _RATES[b]:.2f} {b}"


DEMO_TOOLS = [get_weather, calculate, convert_currency]
DEFAULT_SEARCH = SearchConfig(strategy="beam", beams=2, expand=4)


def build_graph(*, policy=None, scorer="toolprm", search: SearchConfig | None = None, checkpointer=None, **kwargs):
    """The demo agent (``policy=None``: SmolLM2, loaded on the first call)."""
    return create_toolprm_agent(DEMO_TOOLS, policy=policy, scorer=scorer, search=search or DEFAULT_SEARCH, checkpointer=checkpointer, name="toolprm_agent", **kwargs)


# TOOLPRM_POLICY / TOOLPRM_PRM: a served policy and judge (see toolprm_agents.backends)
graph = build_graph(**backends_from_env())
