"""An API-Bank agent with real, executable tools: calls run against API-Bank's database.

    python examples/apibank_agent.py                         # greedy search (fastest)
    python examples/apibank_agent.py --strategy beam -N 2 -M 4   # ToolPRM beam search

The tools are API-Bank's level-1 APIs implemented in Python over a private copy of its
simulated database (:class:`toolprm_agents.apibank.ApiBank`). Each conversation
names the APIs it may use (``configurable={"toolprm": {"tool_names": [...]}}``: the search reads
only those specs; the ToolNode can run all 49). Every call the ToolPRM node chooses is
executed by LangGraph's ToolNode, its result goes back into the conversation, and the
agent ends with a text answer. The first run loads SmolLM2-135M-Instruct (about 20 s).
"""

from __future__ import annotations

import argparse
import time

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from toolprm_agents.agent import create_toolprm_agent
from toolprm_agents.apibank import ApiBank
from toolprm_agents.search import SearchConfig

# (the APIs a conversation may use, the user's message)
CONVERSATIONS = [
    (["QueryStock", "GetUserToken"], "Query the stock price of the stock code SQ on 2022-03-14."),
    (["GetUserToken", "QueryBalance"], "Get my user token. My username is JohnDoe and my password is pass123."),
    (["Calculator"], "Calculate the formula (5+6)*3."),
    (["EmergencyKnowledge", "SymptomSearch"], "Search emergency knowledge for the symptom headache."),
]


def show(messages) -> None:
    for m in messages:
        if isinstance(m, HumanMessage):
            print(f"  user:   {m.content}")
        elif isinstance(m, AIMessage) and m.tool_calls:
            meta = m.response_metadata.get("toolprm", {})
            score = f" (score {meta['score']:.3f})" if meta.get("score") is not None else ""
            for c in m.tool_calls:
                print(f"  call:   {c['name']}({', '.join(f'{k}={v!r}' for k, v in c['args'].items())}){score}")
        elif isinstance(m, ToolMessage):
            text = m.content if len(m.content) <= 160 else m.content[:157] + "..."
            print(f"  result: {text}")
        elif isinstance(m, AIMessage):
            why = m.response_metadata.get("toolprm", {}).get("reason")
            print(f"  agent:  {m.content}" + (f"   [{why}]" if why else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--strategy", default="greedy", choices=["greedy", "best_of_n", "beam"])
    p.add_argument("--beams", "-N", type=int, default=2)
    p.add_argument("--expand", "-M", type=int, default=4)
    p.add_argument("--max-tool-rounds", type=int, default=2)
    args = p.parse_args()

    bank = ApiBank()  # a fresh copy of API-Bank's database
    agent = create_toolprm_agent(
        bank.tools(),
        search=SearchConfig(strategy=args.strategy, beams=args.beams, expand=args.expand, max_string_length=32),
        max_tool_rounds=args.max_tool_rounds,
    )
    for i, (apis, question) in enumerate(CONVERSATIONS, 1):
        print(f"--- conversation {i} (APIs: {', '.join(apis)})")
        t = time.perf_counter()
        out = agent.invoke({"messages": [("user", question)]}, {"configurable": {"toolprm": {"tool_names": apis}}})
        show(out["messages"])
        print(f"  ({time.perf_counter() - t:.1f} s)\n")


if __name__ == "__main__":
    main()
