"""Per-argument confidence, runner-up calls and abstention over API-Bank's tools.

    python examples/abstention_apibank.py                  # threshold 0.5
    python examples/abstention_apibank.py --abstain-below 0.3

Each request goes once through a ToolPRM node (SmolLM2-135M-Instruct and the packaged
ToolPRM, the default combined beam search) over two of API-Bank's level-1 APIs
(:class:`toolprm_agents.apibank.ApiBank`). For each it prints what no plain tool-calling
stack reports: the score of every decision of the chosen call (function, each argument),
the ranked runner-up calls, and -- when the weakest score is below ``--abstain-below`` --
the text the node answers with *instead* of calling, naming the argument it is unsure of.
Half of the requests leave out an argument the API requires (a password, a date), so a
good judge would be unsure exactly there.

The scores are the judge's (or, where the policy was sure, the policy's) step
probabilities. They are **not calibrated**: read them as a ranking, and pick the threshold
on your own data. The first run loads SmolLM2 (about 20 s).
"""

from __future__ import annotations

import argparse
import time

from langchain_core.messages import HumanMessage

from toolprm_agents import SearchConfig, ToolPRMNode
from toolprm_agents.apibank import ApiBank

# (the APIs offered, the user's message, what a careful assistant would do)
REQUESTS = [
    (["GetUserToken", "QueryBalance"], "Get my user token. My username is JohnDoe and my password is pass123.", "call"),
    (["GetUserToken", "QueryBalance"], "Get my user token. My username is JohnDoe.", "ask for the password"),
    (["QueryStock", "GetToday"], "Query the stock price of the stock code SQ on 2022-03-14.", "call"),
    (["QueryStock", "GetToday"], "What was the stock price of SQ?", "ask for the date"),
    (["Calculator", "Wiki"], "Calculate the formula (5+6)*3.", "call"),
]


def fmt_call(call: dict) -> str:
    return f"{call['name']}({', '.join(f'{k}={v!r}' for k, v in call['arguments'].items())})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--abstain-below", type=float, default=0.5)
    p.add_argument("--beams", "-N", type=int, default=2)
    p.add_argument("--expand", "-M", type=int, default=4)
    args = p.parse_args()

    bank = ApiBank()
    node = ToolPRMNode(
        bank.tools(),
        config=SearchConfig(beams=args.beams, expand=args.expand, max_string_length=32, max_calls=1),
        abstain_below=args.abstain_below,
    )
    for apis, question, careful in REQUESTS:
        t = time.perf_counter()
        msg = node.invoke({"messages": [HumanMessage(question)]}, {"configurable": {"toolprm": {"tool_names": apis}}})["messages"][0]
        meta = msg.response_metadata["toolprm"]
        print(f"user:  {question}    (a careful assistant would: {careful})")
        calls = [{"name": c["name"], "arguments": c["args"]} for c in msg.tool_calls] or meta.get("abstained_calls") or []
        for row in meta.get("argument_scores", []):
            if row["score"] is None:
                continue
            what = f"{row['function']}.{row['arg']} = {row['value']!r}" if row.get("arg") else f"{row['kind']} {row['function'] or ''}".rstrip()
            print(f"   score {row['score']:.2f}  {what}")
        conf = meta.get("confidence")
        if conf is not None:
            print(f"   confidence (weakest step) {conf:.2f}")
        for alt in meta.get("alternatives", [])[:2]:
            print(f"   runner-up ({alt['score']:.2f}): {'; '.join(fmt_call(c) for c in alt['calls']) or 'no call'}")
        if msg.tool_calls:
            print(f"   -> calls {'; '.join(fmt_call(c) for c in calls)}")
        elif meta.get("reason") == "abstain":
            print(f"   -> abstains instead of calling {'; '.join(fmt_call(c) for c in calls)}:")
            print(f"      \"{msg.content}\"")
        else:
            print(f"   -> answers in text ({meta.get('reason')}): {msg.content!r}")
        print(f"   ({time.perf_counter() - t:.1f} s)\n")


if __name__ == "__main__":
    main()
