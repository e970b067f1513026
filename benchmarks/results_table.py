"""Markdown tables of evaluation runs (``results.json`` files), for the README.

    python benchmarks/results_table.py runs/eval --baselines runs/eval/baselines --heatmap runs/eval/heatmap
    python benchmarks/results_table.py --runs runs/eval2     # runs still being written, read from items.jsonl

Prints (1) accuracy per benchmark (rows) and method (columns); (2) one row per run with its
items, accuracy, oracle@8, valid answers, mean tokens and seconds per item, the summed
search time and the command that reproduces it; (3) search vs greedy: each run against
the greedy run of its benchmark on the items both answered (matched by id), with the
difference's paired-bootstrap 95 % interval and the exact McNemar p; (4) headroom:
oracle@K, the items where the chosen answer or any of the search's first K ranked
alternatives is correct ("-" for runs made before alternatives were recorded); (5) where
the main runs' wrong answers go wrong (the checkers' error types, grouped); (6) the same
rows for ``--baselines``; (7) with ``--heatmap``, beam-search accuracy over N x M.
Every accuracy carries its 95 % Wilson interval, ``44.0 [34.7, 53.8]``.

``--runs DIR`` reads every sub-folder of ``DIR`` that holds a run (``config.json`` +
``items.jsonl``, e.g. ``bfcl-simple_python_greedy``, ``bfcl-simple_python_combined_N2_M4_toolprm``)
from its ``items.jsonl``, finished or not, without writing anything: the live view of a
queue of evaluations. The main folder's sub-folders without a ``results.json`` (runs still
going) are read the same way. Methods are named from each run's ``config``, not the
folder name.
Seconds are summed over items (``compute.seconds``), so a resumed run still reports its
whole search time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toolprm_agents.evaluation.plot import find_runs, method_label, run_counts  # noqa: E402
from toolprm_agents.evaluation.stats import fmt_ci, fmt_p, mcnemar, oracle_at_k, paired, paired_bootstrap  # noqa: E402

METHOD_ORDER = ["greedy", "self-consistency", "best-of-N, ORM", "best-of-N, ToolPRM", "beam, C-PRM", "beam, ToolPRM", "combined"]
ORACLE_KS = (1, 2, 4, 8)
BENCH_ORDER = ["bfcl:simple_python", "bfcl:multiple", "bfcl:parallel", "bfcl:irrelevance", "apibank:l1", "apibank:l2", "toolalpaca"]


def _method(run: dict) -> str:
    s = run["config"]["search"]
    label = method_label(run)
    if s["strategy"] == "beam":
        return f"{label} N{s['beams']} M{s['expand']}"
    if s["strategy"] in ("best_of_n", "self_consistency"):
        return f"{label} N{s['beams']}"
    return label


def _acc(run: dict) -> str:
    """The run's accuracy (%) with its 95 % Wilson interval."""
    return fmt_ci(*run_counts(run))


def _oracle(run: dict, k: int) -> str:
    """oracle@k (%) with its Wilson interval over the items that record alternatives, or "-"."""
    o = oracle_at_k(run.get("items") or [], k)
    if o is None:
        return "-"
    hits, n = o
    return fmt_ci(hits, n) + ("" if n == run.get("n") else f" (n={n})")


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
            ci = _acc(r)[len(acc):]
            row.append((f"**{acc}**" if r["accuracy"] == best else acc) + ci)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def runs_table(runs: list[dict]) -> str:
    lines = [
        "| benchmark | method | items | accuracy % [95 % CI] | oracle@8 % | valid % | tokens/item | s/item | search time | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (_order(r["benchmark"], BENCH_ORDER), _order(_method(r), METHOD_ORDER))):
        m = r["compute"]["mean"]
        cmd = r["config"].get("command") or ""
        lines.append(
            f"| {r['benchmark']} | {_method(r)} | {_n(r)} | {_acc(r)} | {_oracle(r, 8)} | {100 * r['valid_rate']:.1f} | "
            f"{m['tokens_total']:.0f} | {m['seconds']:.2f} | {_total_seconds(r) / 60:.1f} min | `{cmd}` |"
        )
    return "\n".join(lines)


def _n(run: dict) -> str:
    return f"{run['n']} (running)" if run.get("_live") and not run.get("_finished") else str(run["n"])


def greedy_runs(runs: list[dict]) -> dict[str, dict]:
    """The greedy run of each benchmark (the one with the most items where there are several)."""
    out: dict[str, dict] = {}
    for r in runs:
        if r["config"]["search"]["strategy"] == "greedy" and r["n"] > out.get(r["benchmark"], {"n": -1})["n"]:
            out[r["benchmark"]] = r
    return out


def search_vs_greedy_table(runs: list[dict], seed: int = 0, resamples: int = 2000) -> str:
    """Each non-greedy run against its benchmark's greedy run, on the items both answered.

    Items are matched by id (runs may cover different items: the intersection is used and
    its size given); the difference is search minus greedy in points with its paired
    bootstrap 95 % interval (``seed``, ``resamples``), and the exact McNemar p-value over
    the items only one of them got right ("wins" search-only / greedy-only).
    """
    greedy = greedy_runs(runs)
    lines = [
        "| benchmark | method | paired items | greedy % [95 % CI] | search % [95 % CI] | difference, points [95 % CI] | "
        "wins search/greedy | McNemar p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (_order(r["benchmark"], BENCH_ORDER), _order(_method(r), METHOD_ORDER))):
        g = greedy.get(r["benchmark"])
        if g is None or r is g or r["config"]["search"]["strategy"] == "greedy":
            continue
        ids, a, b = paired(g["items"], r["items"])
        n = len(ids)
        if n == 0:
            lines.append(f"| {r['benchmark']} | {_method(r)} | 0 | - | - | - | - | - |")
            continue
        d = paired_bootstrap(a, b, seed=seed, resamples=resamples)
        t = mcnemar(a, b)
        lines.append(
            f"| {r['benchmark']} | {_method(r)} | {n} | {fmt_ci(sum(a), n)} | {fmt_ci(sum(b), n)} | "
            f"{100 * d.diff:+.1f} [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}] | {t.b_only}/{t.a_only} | {fmt_p(t.p)} |"
        )
    return "\n".join(lines)


def oracle_table(runs: list[dict], ks: tuple[int, ...] = ORACLE_KS) -> str:
    """Headroom per run: accuracy beside oracle@K (chosen answer or any of the first K ranked
    alternatives correct), each with its Wilson interval; "-" where alternatives were not recorded."""
    lines = ["| benchmark | method | items | accuracy % | " + " | ".join(f"oracle@{k} %" for k in ks) + " |",
             "|---" * (len(ks) + 4) + "|"]
    for r in sorted(runs, key=lambda r: (_order(r["benchmark"], BENCH_ORDER), _order(_method(r), METHOD_ORDER))):
        lines.append(f"| {r['benchmark']} | {_method(r)} | {_n(r)} | {_acc(r)} | " + " | ".join(_oracle(r, k) for k in ks) + " |")
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
            row.append(f"{_acc(r)} ({r['compute']['mean']['seconds']:.1f} s)" if r else "not run")
        lines.append("| " + " | ".join(row) + " |")
    if greedy:
        lines.append(f"\ngreedy on the same items: {_acc(greedy)} ({greedy['compute']['mean']['seconds']:.1f} s/item)")
    return "\n".join(lines)


COMPUTE_MEAN_KEYS = ("tokens_total", "tokens_generated", "prefill_tokens", "scorer_tokens", "forward_passes", "scorer_calls", "seconds")


def _read_items_readonly(path: Path) -> list[dict]:
    """``items.jsonl``'s records (the last per id), skipping a torn last line; never writes
    (the run may be appending to it right now)."""
    records: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        records[rec["id"]] = rec
    return list(records.values())


METHOD_SUFFIX = re.compile(r"_(greedy|combined|beam|prm|best_of_n|bon|self_consistency|sc)(_.*)?$")


def _bench_from_folder(name: str) -> str:
    """``bfcl-simple_python_combined_N2_M4_toolprm`` -> ``bfcl:simple_python`` (only where a
    run's config.json does not say its benchmark).

    >>> _bench_from_folder("bfcl-simple_python_greedy"), _bench_from_folder("apibank-l1_combined_N2_M4_toolprm")
    ('bfcl:simple_python', 'apibank:l1')
    """
    return METHOD_SUFFIX.sub("", name).replace("-", ":", 1)


def load_live_run(folder: str | Path) -> dict | None:
    """A run read from its folder's ``config.json`` and ``items.jsonl`` (finished or still
    running), shaped like ``results.json`` (``_live`` set, ``_finished`` when it has all its
    items); ``None`` when the folder holds no run."""
    folder = Path(folder)
    cfg_path, items_path = folder / "config.json", folder / "items.jsonl"
    if not (cfg_path.is_file() and items_path.is_file()):
        return None
    config = json.loads(cfg_path.read_text(encoding="utf-8"))
    items = _read_items_readonly(items_path)
    n = len(items)
    correct = sum(1 for it in items if it.get("correct"))
    total = {k: sum((it.get("compute") or {}).get(k, 0) for it in items) for k in COMPUTE_MEAN_KEYS}
    results = folder / "results.json"
    finished = results.is_file() and json.loads(results.read_text(encoding="utf-8")).get("n") == n
    return {
        "benchmark": config.get("benchmark") or _bench_from_folder(folder.name),
        "config": config,
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "valid_rate": sum(1 for it in items if it.get("complete")) / n if n else 0.0,
        "n": n,
        "compute": {"total": total, "mean": {k: (v / n if n else 0.0) for k, v in total.items()}},
        "run": {},
        "items": items,
        "_path": str(folder),
        "_live": True,
        "_finished": finished,
    }


def live_runs(folder: str) -> list[dict]:
    """Every run directly inside ``folder``, read from its ``items.jsonl`` (see :func:`load_live_run`)."""
    runs = [r for p in sorted(Path(folder).iterdir()) if p.is_dir() and (r := load_live_run(p)) is not None and r["n"]]
    if not runs:
        raise FileNotFoundError(f"no run (config.json + items.jsonl) under {folder}")
    return runs


def _direct_runs(folder: str) -> list[dict]:
    """The runs directly inside ``folder`` (not in its sub-folders such as baselines/, heatmap/):
    their ``results.json``, or for a run still going its ``items.jsonl``."""
    paths = sorted(str(p.parent) for p in Path(folder).glob("*/results.json"))
    runs = find_runs(paths) if paths else []
    for p in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
        if p.is_dir() and not (p / "results.json").is_file() and (r := load_live_run(p)) is not None and r["n"]:
            runs.append(r)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("main", nargs="?", default=None, help="folder whose sub-folders are the main runs (e.g. runs/eval)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="folder of runs read from their items.jsonl, finished or not (e.g. runs/eval2 with "
                        "bfcl-simple_python_greedy/, bfcl-simple_python_combined_N2_M4_toolprm/, ...)")
    p.add_argument("--baselines", default=None, help="folder of the baseline comparison's runs")
    p.add_argument("--heatmap", default=None, help="folder of the N x M grid's runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap (default 0)")
    p.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples (default 2000)")
    args = p.parse_args(argv)
    if not args.main and not args.runs:
        p.error("give a runs folder (positional) or --runs DIR")
    runs = _direct_runs(args.main) if args.main else []
    if args.runs:
        runs += live_runs(args.runs)
    everything = list(runs)
    base = _direct_runs(args.baselines) if args.baselines else []
    if runs:
        print("### Accuracy (%) [95 % Wilson interval], main runs\n")
        print(accuracy_table(runs))
        print("\n" + runs_table(runs))
    if runs or base:
        print("\n### Search vs greedy on the same items (paired bootstrap 95 % CI; exact McNemar)\n")
        print(search_vs_greedy_table(runs + base, seed=args.seed, resamples=args.resamples))
        print("\n### Headroom: oracle@K (chosen answer or any of the first K ranked alternatives correct)\n")
        print(oracle_table(runs + base))
    if runs:
        print("\n### Where the answers go wrong (items per outcome)\n")
        print(error_table(runs))
    if base:
        everything += base
        print("\n### Baselines at comparable compute\n")
        print(runs_table(base))
    if args.heatmap and (hm := _direct_runs(args.heatmap)):
        everything += hm
        print("\n### Beam search with ToolPRM over N x M: accuracy % [95 % CI] (s/item)\n")
        print(heatmap_table(hm))
    machines = {(r["run"].get("machine") or {}).get("processor") for r in everything} - {None}
    cpus = {(r["run"].get("machine") or {}).get("cpus") for r in everything} - {None}
    if machines or cpus:
        print(f"\nmachine: {', '.join(sorted(map(str, machines)))}; {', '.join(map(str, sorted(cpus)))} CPUs")
    else:
        print("\nmachine: not recorded (runs read from items.jsonl; results.json records it when a run finishes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
