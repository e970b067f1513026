"""Validity of emitted calls on BFCL simple_python with SmolLM2 (issue 2's acceptance check).

For each of the first ``--limit`` entries, runs each ``--strategies`` search and checks that
the answer is complete and every emitted call parses and validates against its function's
schema (checked here independently of the grammar; a "no call" answer is well-formed and
counted apart); prints the valid rate, the accuracy by the official BFCL
AST checker and seconds per item.

    python benchmarks/bfcl_validity.py --limit 50 --strategies greedy,beam
"""

from __future__ import annotations

import argparse
import json
import time

from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.search import SearchConfig, ToolPRMSearch


def load_items(category: str, limit: int):
    from toolprm_agents.evaluation.benchmarks import load_benchmark

    bench = load_benchmark(f"bfcl:{category}")
    return bench, bench.items()[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--category", default="simple_python")
    ap.add_argument("--strategies", default="greedy,beam")
    ap.add_argument("--beams", type=int, default=2)
    ap.add_argument("--expand", type=int, default=8)
    ap.add_argument("--out", default=None, help="write per-item results (JSONL)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a shared machine)")
    args = ap.parse_args()
    bench, items = load_items(args.category, args.limit)
    policy = TransformersPolicy(num_threads=args.threads)
    out = open(args.out, "w") if args.out else None
    for strategy in args.strategies.split(","):
        search = ToolPRMSearch(policy, "toolprm", SearchConfig(strategy=strategy, beams=args.beams, expand=args.expand))
        valid = correct = no_call = 0
        t0 = time.perf_counter()
        for item in items:
            result = search.search(item.messages, item.tools)
            specs = {s.name: s for s in to_tool_specs(item.tools)}
            no_call += result.complete and not result.calls  # a well-formed answer with no call in it
            ok = result.complete and all(
                c.name in specs and not validate_call(specs[c.name], c.arguments) for c in result.calls
            )
            valid += ok
            good = bool(bench.score(item, result.tool_calls(), result.complete).correct)  # the official AST checker
            correct += good
            if out:
                out.write(json.dumps({"strategy": strategy, "id": item.id, "calls": result.tool_calls(), "valid": ok, "correct": good, "seconds": result.compute.seconds}) + "\n")
            print(f"{strategy:>9} {item.id:<20} valid={ok!s:<5} correct={good!s:<5} {json.dumps(result.tool_calls())[:110]}", flush=True)
        dt = time.perf_counter() - t0
        acc = f"{correct}/{len(items)} = {100 * correct / len(items):.1f}%"
        print(f"== {strategy}: valid {valid}/{len(items)} = {100 * valid / len(items):.1f}% ({no_call} of them 'no call'), "
              f"accuracy {acc}, {dt / len(items):.2f} s/item", flush=True)


if __name__ == "__main__":
    main()
