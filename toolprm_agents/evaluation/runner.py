"""The evaluation loop: answer every item, score it, save it as it finishes, summarise.

:func:`run_eval` writes into one output folder:

* ``config.json`` -- what the run is (benchmark, data fingerprint, search settings);
* ``items.jsonl`` -- one record per finished item, appended (and flushed) as each
  finishes, so an interrupted run keeps its work: rerunning the same command skips the
  items already there. A different configuration in an existing folder is an error
  (:class:`EvalConfigError`); ``--limit`` may change between runs (a larger limit
  continues, a smaller one reports on the first K items).
* ``results.json`` -- ``{"benchmark", "config", "accuracy", "valid_rate", "n", "correct",
  "metrics", "error_types", "compute", "run", "items": [{"id", "calls", "correct",
  "error", "error_type", "complete", "search_error", "score", "compute", "alternatives",
  "alternatives_correct", ...}]}``;
* ``results.md`` -- the same, for people.

Each item also keeps the search's first :data:`MAX_ALTERNATIVES` ranked alternatives
(``alternatives``: ``[{"calls", "score", "truncated"}]``, best first) and whether the
benchmark's checker scores each correct (``alternatives_correct``; a truncated one never
is): the headroom a perfect re-ranker would have (oracle@K). Records written before these
fields existed load unchanged.

``accuracy`` is the fraction of items the benchmark scores correct; ``valid_rate`` the
fraction for which the search completed a well-formed answer (a call list, possibly
empty). Items offering no tools are answered "no call" without running the model (with
no tools there is no other answer) and say so in ``note``. Every item is searched with
the same config (and seed), independently of the others, so results do not depend on
the order items run in or on interruptions.
"""

from __future__ import annotations

from ..errors import ToolPRMError

import contextlib
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from ..compute import Compute
from .base import Benchmark, EvalItem
from .benchmarks import load_benchmark

CONFIG_FILE = "config.json"
ITEMS_FILE = "items.jsonl"
RESULTS_FILE = "results.json"
REPORT_FILE = "results.md"

# settings that may change between runs in one folder without changing any item's answer
NON_IDENTITY_KEYS = ("limit", "threads", "command")
COMPUTE_KEYS = tuple(k for k in Compute().to_dict()) + ("tokens_total",)
MAX_ALTERNATIVES = 8  # ranked alternatives kept and scored per item (oracle@K for K <= 8)
NO_TOOLS_NOTE = "no tools offered: the only possible answer is no call; recorded without running the model"


class EvalConfigError(ToolPRMError, ValueError):
    """The output folder holds a run with a different configuration."""


class EvalBusyError(EvalConfigError):
    """Another evaluation is writing the same output folder right now."""


LOCK_FILE = ".eval-lock"


def _lock_folder(out: Path):
    """Hold an exclusive lock on ``out`` (released when the returned file is closed or the
    process dies), so two evaluations never append to the same ``items.jsonl``."""
    import fcntl

    fh = open(out / LOCK_FILE, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise EvalBusyError(f"another evaluation is writing {out} right now; wait for it or use another --out") from None
    return fh


def compute_dict(compute: Compute | dict | None) -> dict[str, Any]:
    """A compute record with ``tokens_total`` = tokens generated + prefilled + read by the scorer."""
    d = compute.to_dict() if isinstance(compute, Compute) else dict(compute or Compute().to_dict())
    d.pop("_t0", None)
    d["tokens_total"] = int(d.get("tokens_generated", 0)) + int(d.get("prefill_tokens", 0)) + int(d.get("scorer_tokens", 0))
    return d


# ------------------------------------------------------------------------------------------
# one item


def answer_item(benchmark: Benchmark, item: EvalItem, get_search: Callable[[], Any]) -> dict:
    """Search ``item`` and score the answer: the record ``items.jsonl`` keeps."""
    from ..prompt import MessageError
    from ..schema import ToolSpecError, keep_mismatched_enums, to_tool_specs

    record: dict[str, Any] = {"id": item.id}
    alternatives: list[dict] = []
    if not item.tools:
        calls, complete, search_error, score, compute, note = [], True, None, None, compute_dict(None), NO_TOOLS_NOTE
    else:
        note = None
        try:
            with keep_mismatched_enums() if getattr(benchmark, "keeps_mismatched_enums", False) else contextlib.nullcontext():
                specs = to_tool_specs(item.tools)  # the item's own tool definitions may be invalid
            result = get_search().search(item.messages, specs)
        except (ToolSpecError, MessageError) as exc:  # the item's data, not the search
            calls, complete, score = [], False, None
            search_error = f"{type(exc).__name__}: {exc}"
            compute = compute_dict(None)
        else:
            calls = result.tool_calls()
            complete = bool(result.complete)
            search_error = result.error
            score = result.score
            compute = compute_dict(result.compute)
            alternatives = [
                {"calls": list(a.get("calls") or []), "score": a.get("score"), "truncated": bool(a.get("truncated"))}
                for a in list(getattr(result, "alternatives", None) or [])[:MAX_ALTERNATIVES]
            ]
            record["budget_exhausted"] = bool(getattr(result, "budget_exhausted", False))
    record.update({"calls": calls, "complete": complete, "search_error": search_error, "score": score, "compute": compute,
                   "alternatives": alternatives})
    if note:
        record["note"] = note
    return _scored(benchmark, item, record)


def _scored(benchmark: Benchmark, item: EvalItem, record: dict) -> dict:
    s = benchmark.score(item, record["calls"], record["complete"])
    out = {
        "id": record["id"],
        "calls": record["calls"],
        "correct": bool(s.correct),
        "error": s.error,
        "error_type": s.error_type,
        "complete": record["complete"],
        "search_error": record.get("search_error"),
        "score": record.get("score"),
        "compute": compute_dict(record.get("compute")),
    }
    if record.get("budget_exhausted"):
        out["budget_exhausted"] = True
    if "alternatives" in record:  # rescored with the current checker, like the chosen calls
        alts = list(record["alternatives"])[:MAX_ALTERNATIVES]
        out["alternatives"] = alts
        out["alternatives_correct"] = [
            False if a.get("truncated") else bool(benchmark.score(item, a.get("calls") or [], True).correct) for a in alts
        ]
    elif "alternatives_correct" in record:
        out["alternatives_correct"] = [bool(c) for c in record["alternatives_correct"]][:MAX_ALTERNATIVES]
    if s.details:
        out["details"] = s.details
    if record.get("note"):
        out["note"] = record["note"]
    return out


# ------------------------------------------------------------------------------------------
# the output folder


def identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS}


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{p}: absent there, {b[k]!r} here")
            elif k not in b:
                out.append(f"{p}: {a[k]!r} there, absent here")
            else:
                out += _diff(a[k], b[k], p)
        return out
    return [] if a == b else [f"{path}: {a!r} there, {b!r} here"]


def prepare_folder(out: Path, config: dict) -> None:
    """Create ``out`` for ``config``, or check that the run already there has the same one."""
    out.mkdir(parents=True, exist_ok=True)
    cfg_path, items_path = out / CONFIG_FILE, out / ITEMS_FILE
    if cfg_path.is_file():
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise EvalConfigError(f"{cfg_path} is not JSON ({exc}); delete the folder or choose another --out") from None
        diffs = _diff(identity(old), identity(config))
        if diffs:
            raise EvalConfigError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs)}); "
                "use another --out folder, or delete this one to start over"
            )
    elif items_path.exists():
        raise EvalConfigError(f"{out} has {ITEMS_FILE} but no {CONFIG_FILE}: not a run this tool started; choose another --out")
    cfg_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def read_items(path: Path) -> dict[str, dict]:
    """Finished item records by id; a torn last line (an interrupted write) is dropped."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    records: dict[str, dict] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not line.endswith("\n"):
                raise ValueError("unterminated")
        except ValueError:
            if i == len(lines) - 1:  # torn write at the end: drop it and rewrite the file
                path.write_text("".join(lines[:i]), encoding="utf-8")
                break
            raise EvalConfigError(f"{path}: line {i + 1} is not JSON; the file is damaged") from None
        records[rec["id"]] = rec
    return records


# ------------------------------------------------------------------------------------------
# summary


def summarize(benchmark: Benchmark, config: dict, records: Sequence[dict], run: dict | None = None) -> dict:
    n = len(records)
    correct = sum(1 for r in records if r["correct"])
    valid = sum(1 for r in records if r["complete"])
    total = {k: 0 for k in COMPUTE_KEYS}
    for r in records:
        for k in COMPUTE_KEYS:
            total[k] += r["compute"].get(k, 0)
    mean = {k: (total[k] / n if n else 0.0) for k in COMPUTE_KEYS}
    searched = [r for r in records if not r.get("note")]
    return {
        "benchmark": benchmark.name,
        "config": config,
        "accuracy": correct / n if n else 0.0,
        "valid_rate": valid / n if n else 0.0,
        "n": n,
        "correct": correct,
        "skipped_no_tools": n - len(searched),
        "metrics": benchmark.summarize(records),
        "error_types": dict(Counter(r["error_type"] for r in records if not r["correct"]).most_common()),
        "compute": {"total": total, "mean": mean},
        "run": run or {},
        "items": list(records),
    }


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:  # pragma: no cover
        pass
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception:  # pragma: no cover
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ------------------------------------------------------------------------------------------
# the loop


def run_eval(
    benchmark: str | Benchmark,
    search: Any,
    out_dir: str | os.PathLike,
    *,
    config: dict | None = None,
    limit: int | None = None,
    progress: bool = True,
    stream=None,
) -> dict:
    """Evaluate ``search`` on ``benchmark``; write and return ``results.json``'s content.

    Args:
        benchmark: a name (``bfcl:simple_python``, ``apibank:l1``, ``jsonl:PATH``, ...) or
            a :class:`~toolprm_agents.evaluation.base.Benchmark`.
        search: a :class:`~toolprm_agents.search.ToolPRMSearch` (anything with
            ``search(messages, tools)``), or a function returning one -- called only if
            some item needs searching (a finished run reloads no model).
        out_dir: the output folder (created; resumed if it holds the same run).
        config: what identifies the search (recorded; compared on resume). Default: read
            from ``search.config`` and its scorer.
        limit: the first ``limit`` items only.
        progress: a progress bar on ``stream`` (stderr).

    Raises:
        EvalConfigError: ``out_dir`` holds a run with a different configuration.
        EvalBusyError: another evaluation is writing ``out_dir``.
    """
    stream = stream or sys.stderr
    bench = load_benchmark(benchmark)
    if limit is not None and limit < 1:
        raise EvalConfigError(f"limit must be at least 1, got {limit}")
    lazy = callable(search) and not hasattr(search, "search")
    searcher: list[Any] = []

    def get_search():
        if not searcher:
            searcher.append(search() if lazy else search)
        return searcher[0]

    if config is None:
        config = describe_search(get_search())
    all_items = bench.items()
    items = all_items[:limit] if limit else all_items
    full_config = {"benchmark": bench.name, "data": bench.fingerprint(), **config, "limit": limit}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _lock_folder(out):
        return _run_locked(bench, get_search, out, full_config, config, items, progress, stream)


def _run_locked(bench: Benchmark, get_search: Callable, out: Path, full_config: dict, config: dict,
                items: list, progress: bool, stream) -> dict:
    prepare_folder(out, full_config)
    done = read_items(out / ITEMS_FILE)

    by_id = {it.id: it for it in items}
    todo = [it for it in items if it.id not in done]
    resumed = len(items) - len(todo)
    t0 = time.perf_counter()
    bar = _progress(len(items), resumed, bench.name, stream, progress)
    n_ok = sum(1 for it in items if it.id in done and done[it.id]["correct"])
    n_valid = sum(1 for it in items if it.id in done and done[it.id]["complete"])
    n_done = resumed
    try:
        with open(out / ITEMS_FILE, "a", encoding="utf-8") as f:
            for item in todo:
                rec = answer_item(bench, item, get_search)
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
                done[item.id] = rec
                n_done += 1
                n_ok += rec["correct"]
                n_valid += rec["complete"]
                if bar is not None:
                    bar.set_postfix(acc=f"{n_ok / n_done:.3f}", valid=f"{n_valid / n_done:.3f}", refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    records = [_scored(bench, by_id[it.id], done[it.id]) for it in items]  # rescored: current checker
    run = {
        "wall_seconds": time.perf_counter() - t0,
        "items_searched_now": len(todo),
        "items_resumed": resumed,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": config.get("command"),
        "machine": machine_info(),
    }
    results = summarize(bench, full_config, records, run)
    write_results(out, results)
    return results


def _progress(total: int, initial: int, desc: str, stream, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return None
    return tqdm(total=total, initial=initial, desc=desc, file=stream, unit="item", dynamic_ncols=True)


def describe_search(search: Any) -> dict:
    """The config record of a :class:`~toolprm_agents.search.ToolPRMSearch`."""
    cfg = getattr(search, "config", None)
    out: dict[str, Any] = {"search": asdict(cfg) if cfg is not None else None}
    if cfg is not None and cfg.strategy != "greedy":
        scorer = search.scorer
        out["scorer"] = {
            "name": getattr(scorer, "name", type(scorer).__name__),
            "checkpoint": str(getattr(scorer, "checkpoint", "")) or None,
            "trained": getattr(getattr(scorer, "config", None), "trained", None),
        }
        if cfg.strategy == "beam" and cfg.rank == "combined" and hasattr(search, "settings"):
            from ..search import settings_record

            out["resolved"] = settings_record(search.settings(cfg))  # what the checkpoint filled in
    else:
        out["scorer"] = None
    policy = getattr(search, "policy", None)
    out["policy"] = str(getattr(policy, "model_path", None) or "smollm2") if policy is not None else None
    return out


# ------------------------------------------------------------------------------------------
# writing


def write_results(out: Path, results: dict) -> None:
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(out / RESULTS_FILE)
    (out / REPORT_FILE).write_text(render_markdown(results), encoding="utf-8")


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def describe_config(config: dict) -> str:
    s = config.get("search") or {}
    strategy = s.get("strategy", "?")
    parts = [strategy.replace("_", "-")]
    if strategy == "beam":
        parts.append(f"N={s.get('beams')} beams, M={s.get('expand')} expansions")
    elif strategy == "best_of_n":
        parts.append(f"N={s.get('beams')} samples")
    sc = config.get("scorer")
    if sc:
        parts.append(f"scorer {sc.get('name')}" + ("" if sc.get("trained") else " (untrained)" if sc.get("trained") is False else ""))
    if strategy != "greedy":
        parts.append(f"T={s.get('temperature')}, aggregation {s.get('aggregation')}")
    parts.append(f"seed {s.get('seed')}")
    return ", ".join(parts)


def render_markdown(results: dict) -> str:
    cfg = results["config"]
    m = results["compute"]["mean"]
    run = results.get("run") or {}
    mach = run.get("machine") or {}
    lines = [
        f"# Evaluation: {results['benchmark']}",
        "",
        "| | |",
        "|---|---|",
        f"| accuracy | **{_pct(results['accuracy'])}** ({results['correct']}/{results['n']}) |",
        f"| valid answers | {_pct(results['valid_rate'])} |",
        f"| search | {describe_config(cfg)} |",
        f"| policy | {cfg.get('policy')} |",
        f"| data | {cfg.get('data')} |",
        f"| mean per item | {m['tokens_total']:.0f} tokens ({m['prefill_tokens']:.0f} prefilled, {m['tokens_generated']:.0f} generated, "
        f"{m['scorer_tokens']:.0f} read by the scorer), {m['forward_passes']:.1f} policy passes, "
        f"{m['scorer_calls']:.1f} judgements, {m['seconds']:.2f} s |",
        f"| search time, all items | {results['compute']['total']['seconds']:.1f} s |",
    ]
    if results.get("skipped_no_tools"):
        lines.append(f"| no tools offered | {results['skipped_no_tools']} item(s) answered \"no call\" without the model |")
    if mach:
        lines.append(f"| machine | {mach.get('processor')}, {mach.get('cpus')} CPUs, torch {mach.get('torch')} ({mach.get('torch_threads')} threads) |")
    if run.get("command"):
        lines.append(f"| command | `{run['command']}` |")
    lines.append("")
    metrics = results.get("metrics") or {}
    if "name" in metrics and "arguments" in metrics:
        lines += [
            "## Hammer's metrics (micro-averaged)",
            "",
            "| | precision | recall | F1 |",
            "|---|---|---|---|",
        ]
        for key in ("name", "arguments"):
            v = metrics[key]
            lines.append(f"| {key} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} |")
        lines.append("")
    if results.get("error_types"):
        lines += ["## Wrong answers by type", "", "| error type | items |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in results["error_types"].items()]
        lines.append("")
        wrong = [r for r in results["items"] if not r["correct"]][:20]
        lines += ["## First wrong answers", "", "| id | error | calls |", "|---|---|---|"]
        for r in wrong:
            calls = json.dumps(r["calls"], ensure_ascii=False)
            calls = calls if len(calls) <= 160 else calls[:157] + "..."
            err = f"{r['error_type']}: {r['error'] or ''}"
            err = err if len(err) <= 160 else err[:157] + "..."
            lines.append(f"| {r['id']} | {_md(err)} | `{_md(calls)}` |")
        lines.append("")
    return "\n".join(lines)


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def comparable(results: dict) -> dict:
    """``results`` without what legitimately differs between identical runs (timings, run info)."""
    out = json.loads(json.dumps(results, default=str))
    out.pop("run", None)
    for k in ("total", "mean"):
        out["compute"][k].pop("seconds", None)
    for it in out["items"]:
        it["compute"].pop("seconds", None)
    return out


__all__ = [
    "EvalBusyError",
    "EvalConfigError",
    "answer_item",
    "comparable",
    "compute_dict",
    "describe_search",
    "read_items",
    "render_markdown",
    "run_eval",
    "summarize",
]
