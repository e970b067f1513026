"""Markdown tables of evaluation runs (``results.json`` files), for the README.

    python benchmarks/results_table.py runs/eval --baselines runs/eval/baselines --heatmap runs/eval/heatmap

Prints (1) accuracy per benchmark (rows) and method (columns); (2) one row per run with its
items, accuracy, valid answers, mean tokens and seconds per item, the summed search time and
the command that reproduces it; (3) where the main runs' wrong answers go wrong (the
checkers' error types, grouped); (4) the same rows for ``--baselines``; (5) with
``--heatmap``, beam-search accuracy over N x M.
Seconds are summed over items (``compute.seconds``), so a resumed run still reports its
whole search time.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toolprm_agents.evaluation.plot import find_runs, method_label  # noqa: E402

METHOD_ORDER = ["greedy", "best-of-N, ORM", "best-of-N, ToolPRM", "beam, C-PRM", "beam, ToolPRM"]
BENCH_ORDER = ["bfcl:simple_python", "bfcl:multiple", "bfcl:parallel", "bfcl:irrelevance", "apibank:l1", "apibank:l2", "toolalpaca"]


def _method(run: dict) -> str:
    s = run["config"]["search"]
    label = method_label(run)
    if s["strategy"] == "beam":
        return f"{label} N{s['beams']} M{s['expand']}"
    if s["strategy"] == "best_of_n":
        return f"{label} N{s['beams']}"
    return label


def _order(key: str, order: list[str]) -> tuple[int, str]:
    for i, o in enumerate(order):
        if key.startswith(o):
            return i, key
    return len(order), key


def _total_seconds(run: dict) -> float:
    return sum(it["compute"].get("seconds", 0.0) for it in run["items"])


def accuracy_table(runs: list[dict]) -> str:
    cells: dict[tuple[str, str], dict] = {}
    for r in runs:
        cells[(r["benchmark"], _method(r))] = r
    benches = sorted({b for b, _ in cells}, key=lambda b: _order(b, BENCH_ORDER))
    methods = sorted({m for _, m in cells}, key=lambda m: _order(m, METHOD_ORDER))
    lines = ["| benchmark (items) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for b in benches:
        ns = sorted({cells[(b, m)]["n"] for m in methods if (b, m) in cells})
        row = [f"{b} ({'/'.join(map(str, ns))})"]
        best = max(cells[(b, m)]["accuracy"] for m in methods if (b, m) in cells)
        for m in methods:
            r = cells.get((b, m))
            if r is None:
                row.append("not run")
                continue
            acc = f"{100 * r['accuracy']:.1f}"
            row.append(f"**{acc}**" if r["accuracy"] == best else acc)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def runs_table(runs: list[dict]) -> str:
    lines = [
        "| benchmark | method | items | accuracy % | valid % | tokens/item | s/item | search time | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (_order(r["benchmark"], BENCH_ORDER), _order(_method(r), METHOD_ORDER))):
        m = r["compute"]["mean"]
        cmd = r["config"].get("command") or ""
        lines.append(
            f"| {r['benchmark']} | {_method(r)} | {r['n']} | {100 * r['accuracy']:.1f} | {100 * r['valid_rate']:.1f} | "
            f"{m['tokens_total']:.0f} | {m['seconds']:.2f} | {_total_seconds(r) / 60:.1f} min | `{cmd}` |"
        )
    return "\n".join(lines)


# The checkers' error types (BFCL's ``checker:kind``, Hammer's and jsonl's kinds), grouped.
ERROR_GROUPS = [
    ("correct", lambda t: t is None),
    ("called, should not", lambda t: t.startswith("irrelevance_error")),
    ("wrong function", lambda t: t.endswith("wrong_func_name") or t == "wrong_name"),
    ("wrong number of calls", lambda t: t.endswith("wrong_count")),
    ("wrong or missing argument value", lambda t: t.startswith(("value_error", "type_error")) or t in ("wrong_value", "missing_argument", "extra_argument") or t.endswith(("missing_optional", "missing_required", "cannot_find_match"))),
    ("no answer", lambda t: t == "no_answer" or t.startswith("ast_decoder")),
]


def error_group(item: dict) -> str:
    """The :data:`ERROR_GROUPS` name of an item's outcome (``"other"`` for an unlisted type)."""
    t = None if item.get("correct") else (item.get("error_type") or "no_answer")
    return next((name for name, match in ERROR_GROUPS if match(t)), "other")


def error_table(runs: list[dict]) -> str:
    """Items per outcome group, one row per run: where the search helps and where it hurts."""
    groups = [name for name, _ in ERROR_GROUPS] + ["other"]
    counts = {id(r): defaultdict(int) for r in runs}
    for r in runs:
        for it in r["items"]:
            counts[id(r)][error_group(it)] += 1
    used = [g for g in groups if any(counts[id(r)][g] for r in runs)]
    lines = ["| benchmark | method | items | " + " | ".join(used) + " |", "|---" * (len(used) + 3) + "|"]
    for r in sorted(runs, key=lambda r: (_order(r["benchmark"], BENCH_ORDER), _order(_method(r), METHOD_ORDER))):
        lines.append(f"| {r['benchmark']} | {_method(r)} | {r['n']} | " + " | ".join(str(counts[id(r)][g]) for g in used) + " |")
    return "\n".join(lines)


def heatmap_table(runs: list[dict]) -> str:
    grid: dict[tuple[int, int], dict] = {}
    greedy = None
    for r in runs:
        s = r["config"]["search"]
        if s["strategy"] == "beam":
            grid[(s["beams"], s["expand"])] = r
        elif s["strategy"] == "greedy":
            greedy = r
    ns, ms = sorted({n for n, _ in grid}), sorted({m for _, m in grid})
    lines = ["| N (kept) \\ M (samples) | " + " | ".join(f"M={m}" for m in ms) + " |", "|---" * (len(ms) + 1) + "|"]
    for n in ns:
        row = [f"N={n}"]
        for m in ms:
            r = grid.get((n, m))
            row.append(f"{100 * r['accuracy']:.1f} ({r['compute']['mean']['seconds']:.1f} s)" if r else "not run")
        lines.append("| " + " | ".join(row) + " |")
    if greedy:
        lines.append(f"\ngreedy on the same items: {100 * greedy['accuracy']:.1f} ({greedy['compute']['mean']['seconds']:.1f} s/item)")
    return "\n".join(lines)


def _direct_runs(folder: str) -> list[dict]:
    """The runs directly inside ``folder`` (not in its sub-folders such as baselines/, heatmap/)."""
    paths = sorted(str(p.parent) for p in Path(folder).glob("*/results.json"))
    return find_runs(paths) if paths else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("main", help="folder whose sub-folders are the main runs (e.g. runs/eval)")
    p.add_argument("--baselines", default=None, help="folder of the baseline comparison's runs")
    p.add_argument("--heatmap", default=None, help="folder of the N x M grid's runs")
    args = p.parse_args(argv)
    runs = _direct_runs(args.main)
    everything = list(runs)
    if runs:
        print("### Accuracy (%), main runs\n")
        print(accuracy_table(runs))
        print("\n" + runs_table(runs))
        print("\n### Where the answers go wrong (items per outcome)\n")
        print(error_table(runs))
    if args.baselines and (base := _direct_runs(args.baselines)):
        everything += base
        print("\n### Baselines at comparable compute\n")
        print(runs_table(base))
    if args.heatmap and (hm := _direct_runs(args.heatmap)):
        everything += hm
        print("\n### Beam search with ToolPRM over N x M: accuracy % (s/item)\n")
        print(heatmap_table(hm))
    machines = {(r["run"].get("machine") or {}).get("processor") for r in everything}
    cpus = {(r["run"].get("machine") or {}).get("cpus") for r in everything}
    print(f"\nmachine: {', '.join(sorted(map(str, machines)))}; {', '.join(map(str, cpus))} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
