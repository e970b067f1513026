"""BFCL through the ToolPRM node: a few ``simple_python`` tasks, calls checked against the answers.

    python examples/bfcl_agent.py                      # tasks 0-2, beam search N=2, M=4
    python examples/bfcl_agent.py --tasks 5 --start 10 --strategy greedy

Each task is one user question and one function doc (never executed); the graph's
``agent`` node is a :class:`~toolprm_agents.node.ToolPRMNode` reading the docs from the
state, as in ``graphs/bfcl_agent.py``. The check is a simplified form of BFCL's AST
checker: the right function, every required argument present, every value among the
accepted ones (``""`` in the accepted list means the argument may be left out).

The data is the ``bfcl-eval`` package's (``bfcl_eval/data``); the first run loads
SmolLM2-135M-Instruct (about 20 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from toolprm_agents.node import ToolPRMNode
from toolprm_agents.search import SearchConfig


def bfcl_data_dir() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this example needs the bfcl-eval package: pip install bfcl-eval")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_tasks(start: int, count: int) -> list[tuple[dict, dict]]:
    data = bfcl_data_dir()
    tasks = [json.loads(line) for line in (data / "BFCL_v4_simple_python.json").read_text().splitlines()]
    answers = {a["id"]: a for a in map(json.loads, (data / "possible_answer" / "BFCL_v4_simple_python.json").read_text().splitlines())}
    return [(t, answers[t["id"]]) for t in tasks[start : start + count]]


def check(call: dict[str, Any] | None, truth: list[dict], functions: list[dict]) -> tuple[bool, str]:
    """Simplified BFCL check of one call against the ground truth (``[{name: {arg: [accepted]}}]``)."""
    if call is None:
        return False, "no call"
    (name, accepted), = truth[0].items()
    if call["name"] != name:
        return False, f"wrong function {call['name']}"
    required = next(f for f in functions if f["name"] == name)["parameters"].get("required", [])
    for arg in required:
        if arg not in call["args"]:
            return False, f"missing {arg}"
    for arg, value in call["args"].items():
        if arg not in accepted:
            return False, f"unexpected argument {arg}"
        ok = accepted[arg]
        if value not in ok and not (isinstance(value, str) and value.lower() in [str(v).lower() for v in ok]):
            return False, f"{arg}={value!r} not in {ok}"
    return True, "ok"


class BFCLState(MessagesState):
    functions: list[dict]


def build_graph(config: SearchConfig):
    node = ToolPRMNode(None, config=config, tools_key="functions", max_answer_tokens=32)
    builder = StateGraph(BFCLState)
    builder.add_node("agent", node)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--strategy", default="beam", choices=["greedy", "best_of_n", "beam"])
    p.add_argument("--beams", "-N", type=int, default=2)
    p.add_argument("--expand", "-M", type=int, default=4)
    args = p.parse_args()
    graph = build_graph(SearchConfig(strategy=args.strategy, beams=args.beams, expand=args.expand))
    correct = 0
    tasks = load_tasks(args.start, args.tasks)
    for task, answer in tasks:
        question = task["question"][0][-1]["content"]
        t = time.perf_counter()
        out = graph.invoke({"messages": task["question"][0], "functions": task["function"]})
        seconds = time.perf_counter() - t
        msg = out["messages"][-1]
        call = msg.tool_calls[0] if isinstance(msg, AIMessage) and msg.tool_calls else None
        ok, why = check(call, answer["ground_truth"], task["function"])
        correct += ok
        meta = msg.response_metadata["toolprm"]
        score = f"{meta['score']:.3f}" if meta.get("score") is not None else "-"
        print(f"[{task['id']}] {question}")
        if call:
            print(f"  call:  {call['name']}({json.dumps(call['args'])})")
        else:
            print(f"  text:  {msg.content!r}")
        print(f"  truth: {json.dumps(answer['ground_truth'][0])}")
        print(f"  {'CORRECT' if ok else 'WRONG: ' + why} | {meta['strategy']} score={score} | {seconds:.1f} s, "
              f"{meta['compute']['tokens_generated']} tokens sampled, {meta['compute']['scorer_calls']} PRM calls")
    print(f"\n{correct}/{len(tasks)} correct ({args.strategy}, N={args.beams}, M={args.expand})")


if __name__ == "__main__":
    main()
