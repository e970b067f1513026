"""Validity of emitted calls on BFCL simple_python with SmolLM2 (issue 2's acceptance check).

For each of the first ``--limit`` entries, runs each ``--strategies`` search and checks that
every emitted call parses and validates against its function's schema; prints the valid
rate, the accuracy by the official BFCL AST checker when the evaluation package can load
it, and seconds per item.

    python benchmarks/bfcl_validity.py --limit 50 --strategies greedy,beam
"""

from __future__ import annotations

import argparse
import json
import time

from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.search import SearchConfig, ToolPRMSearch


def load_bfcl(category: str, limit: int) -> list[dict]:
    try:
        from toolprm_agents.evaluation.bfcl import load_bfcl as load
    except ImportError:  # the evaluation package is optional here
        load = None
    if load is not None:
        return list(load(category, limit=limit))
    import importlib.util
    from pathlib import Path

    root = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0]) / "data"
    with open(root / f"BFCL_v4_{category}.json") as f:
        return [json.loads(line) for _, line in zip(range(limit), f)]


def official_checker():
    try:
        from toolprm_agents.evaluation.bfcl import check_bfcl
    except ImportError:
        return None
    return check_bfcl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--category", default="simple_python")
    ap.add_argument("--strategies", default="greedy,beam")
    ap.add_argument("--beams", type=int, default=2)
    ap.add_argument("--expand", type=int, default=8)
    ap.add_argument("--out", default=None, help="write per-item results (JSONL)")
    args = ap.parse_args()
    items = load_bfcl(args.category, args.limit)
    policy = TransformersPolicy()
    check = official_checker()
    out = open(args.out, "w") if args.out else None
    for strategy in args.strategies.split(","):
        search = ToolPRMSearch(policy, "toolprm", SearchConfig(strategy=strategy, beams=args.beams, expand=args.expand))
        valid = correct = 0
        t0 = time.perf_counter()
        for item in items:
            messages = [m for turn in item["question"] for m in turn]
            result = search.search(messages, item["function"])
            specs = {s.name: s for s in to_tool_specs(item["function"])}
            ok = result.complete and bool(result.calls) and all(
                c.name in specs and not validate_call(specs[c.name], c.arguments) for c in result.calls
            )
            valid += ok
            good = None
            if check is not None:
                good = bool(check(item, result.tool_calls(), args.category))
                correct += good
            if out:
                out.write(json.dumps({"strategy": strategy, "id": item["id"], "calls": result.tool_calls(), "valid": ok, "correct": good, "seconds": result.compute.seconds}) + "\n")
            print(f"{strategy:>9} {item['id']:<20} valid={ok!s:<5} correct={good!s:<5} {json.dumps(result.tool_calls())[:110]}", flush=True)
        dt = time.perf_counter() - t0
        acc = f"{correct}/{len(items)} = {100 * correct / len(items):.1f}%" if check else "n/a (evaluation package missing)"
        print(f"== {strategy}: valid {valid}/{len(items)} = {100 * valid / len(items):.1f}%, accuracy {acc}, {dt / len(items):.2f} s/item", flush=True)


if __name__ == "__main__":
    main()
