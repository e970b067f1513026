"""The main job on the embedded default: ``toolprm-agents demo``.

Runs the ToolPRM search (SmolLM2-135M-Instruct as the policy, the default ToolPRM as the
judge, the default combined beam search) on a handful of BFCL and API-Bank tasks, printing
each task, the chosen calls, the confidence of every decided step (the judge's score where
the search asked it, else the policy's probability) and the step judge's score of every step
of the chosen answer, the verdict of the benchmark's checker
(the official BFCL AST checker; exact match for API-Bank) and the accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .cli import COMMANDS, add_search_options, build_search

DEFAULT_TASKS = "bfcl:simple_python=4,bfcl:multiple=2,bfcl:irrelevance=1,apibank:l1=4"


def _parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default=DEFAULT_TASKS, help=f"benchmark=count list (default {DEFAULT_TASKS})")
    add_search_options(p)


def _demo(args: argparse.Namespace) -> int:
    """Run the ToolPRM agent on a few BFCL and API-Bank tasks and print calls, scores, accuracy."""
    from .evaluation.benchmarks import load_benchmark

    t0 = time.perf_counter()
    print(f"loading SmolLM2-135M-Instruct and the default ToolPRM ({args.strategy}, N={args.beams}, M={args.expand})...", flush=True)
    search = build_search(args)
    from .search import NEEDS_SCORER

    if args.strategy.replace("-", "_") in NEEDS_SCORER:
        scorer = search.scorer
        trained = getattr(getattr(scorer, "config", None), "trained", None)
        print(f"judge: {scorer.name}{'' if trained is None else (' (trained)' if trained else ' (untrained base: zero-shot judge)')}")
    # the step judge's verdict on every step of the chosen answer (also where the gate did not ask it)
    judged = args.strategy.replace("-", "_") in NEEDS_SCORER and getattr(search.scorer, "granularity", None) == "step"
    totals: dict[str, list[bool]] = {}
    for spec in args.tasks.split(","):
        name, _, count = spec.partition("=")
        bench = load_benchmark(name)
        for item in bench.items()[: int(count or 3)]:
            question = item.messages[-1]["content"] if item.messages else ""
            print(f"\n[{name}] {item.id}: {question[:160]}")
            if not item.tools:
                score = bench.score(item, [], True)
                print("  no tools offered: no call")
            else:
                result = search.search(item.messages, item.tools, keep_session=judged)
                score = bench.score(item, result.tool_calls(), result.complete)
                print(f"  calls: {json.dumps(result.tool_calls(), ensure_ascii=False)}")
                rows = result.argument_scores()
                verdicts = search.judge_answer(item.messages, item.tools, result) if judged else []
                verdicts = verdicts if len(verdicts) == len(rows) else [None] * len(rows)
                result.session = None  # its KV caches are no longer needed
                for row, v in zip(rows, verdicts):
                    what = f"{row['arg']}={json.dumps(row['value'], ensure_ascii=False)}" if "arg" in row else (row["function"] or "")
                    score_txt = "  -  " if row["score"] is None else f"{row['score']:.3f}"
                    judge_txt = "" if v is None else f"  judge {v:.3f}"
                    print(f"    {score_txt}{judge_txt}  {row['kind']:<12} {what[:100]}")
                c = result.compute
                print(f"  {c.seconds:.1f}s, {c.tokens_generated} tokens generated, {c.scorer_calls} judgements, "
                      f"branched at {c.decisions_branched}/{c.decisions} decisions{' (budget ran out)' if result.budget_exhausted else ''}")
            verdict = "correct" if score.correct else f"wrong ({score.error_type}: {(score.error or '')[:120]})"
            print(f"  -> {verdict}")
            totals.setdefault(name, []).append(bool(score.correct))
    print("\naccuracy")
    flat = [v for vs in totals.values() for v in vs]
    for name, vs in totals.items():
        print(f"  {name:<22} {sum(vs)}/{len(vs)}")
    print(f"  {'all':<22} {sum(flat)}/{len(flat)} = {100 * sum(flat) / max(1, len(flat)):.0f}%  ({time.perf_counter() - t0:.0f}s)")
    return 0


COMMANDS["demo"] = (_parser, _demo)

if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
