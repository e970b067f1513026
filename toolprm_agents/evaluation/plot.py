"""Plots over evaluation runs (matplotlib, Agg backend, PNG).

* :func:`plot_accuracy_vs_compute` -- accuracy against mean compute per item, one colour
  per method (greedy, best-of-N with each scorer, beam search with each scorer; a line
  joins each method's frontier: its runs more accurate than all its cheaper ones), one
  panel per benchmark, each accuracy with its 95 % Wilson interval as an error bar, on a
  y-axis from 0 to just above the highest interval (:func:`y_limits`: the same for every
  method of a benchmark, so 8 vs 10 % does not look like a cliff);
* :func:`plot_grid_heatmap` -- accuracy of beam search over its N (beams kept) x M
  (samples per beam) grid, one panel per benchmark and scorer: "explore more, retain
  less" predicts the best cells at small N and large M; each cell shows its Wilson
  interval.

Runs are ``results.json`` files (or folders holding them; :func:`find_runs` searches
folders recursively).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from .stats import wilson
from ..steps import DECISION_TYPES

X_AXES = {
    "tokens": ("tokens_total", "mean tokens per item (prefilled + generated + read by the scorer)"),
    "generated": ("tokens_generated", "mean tokens generated per item"),
    "passes": ("forward_passes", "mean policy forward passes per item"),
    "seconds": ("seconds", "mean search seconds per item"),
}


def find_runs(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Load every ``results.json`` under ``paths`` (files or folders), each with ``_path`` set."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / "results.json").is_file():
            files.append(p / "results.json")
        elif p.is_dir():
            files += sorted(p.rglob("results.json"))
        else:
            raise FileNotFoundError(f"{p}: no such run folder or results.json")
    runs, seen = [], set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        data = json.loads(f.read_text(encoding="utf-8"))
        data["_path"] = str(f)
        runs.append(data)
    if not runs:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, paths))}")
    return runs


def _search(run: dict) -> dict:
    return (run.get("config") or {}).get("search") or {}


def _scorer(run: dict) -> str | None:
    sc = (run.get("config") or {}).get("scorer")
    if not sc:
        return None
    name = sc.get("name", "?")
    pretty = {"toolprm": "ToolPRM", "orm": "ORM", "cprm": "C-PRM", "likelihood": "likelihood"}.get(name, name)
    ck = str(sc.get("checkpoint") or "").replace("\\", "/")
    folder = ck.removeprefix("packaged:").rstrip("/").rsplit("/", 1)[-1]
    if folder and not ck.startswith("packaged:") and "toolprm_agents/checkpoints/" not in ck:
        pretty += f" [{folder}]"  # a judge of one's own, told apart from the packaged one of that kind
    return pretty + (" (untrained)" if sc.get("trained") is False else "")


def method_label(run: dict) -> str:
    """``greedy``, ``self-consistency``, ``best-of-N, ORM``, ``beam, ToolPRM (untrained)``
    (the paper's judge-only beam), ``combined, ToolPRM`` (beam search with ``rank="combined"``), ..."""
    s = _search(run)
    strategy = s.get("strategy", "?")
    if strategy == "greedy":
        return "greedy"
    if strategy == "self_consistency":
        return "self-consistency"
    name = {"best_of_n": "best-of-N", "beam": "beam"}.get(strategy, strategy)
    if strategy == "beam" and s.get("rank") == "combined":
        name = "combined"
    scorer = _scorer(run)
    label = f"{name}, {scorer}" if scorer else name
    resolved = (run.get("config") or {}).get("resolved") or {}
    verify = s.get("verify") if s.get("verify") is not None else resolved.get("verify")
    if float(verify or 0) > 0:
        label += f", verify {float(verify):g}"
        types = s.get("verify_types") if s.get("verify_types") is not None else resolved.get("verify_types")
        if types and set(types) != set(DECISION_TYPES):
            label += f" ({'/'.join(types)})"
    return label


def run_counts(run: dict) -> tuple[int, int]:
    """``(correct, n)`` of a run (``correct`` from the accuracy where an old file lacks it)."""
    n = int(run.get("n") or 0)
    k = run.get("correct")
    if k is None:
        k = round(run.get("accuracy", 0.0) * n)
    return int(k), n


def accuracy_interval(run: dict) -> tuple[float, float, float]:
    """``(accuracy, low, high)`` in %: the accuracy and its 95 % Wilson interval."""
    k, n = run_counts(run)
    lo, hi = wilson(k, n)
    return 100 * run.get("accuracy", k / n if n else 0.0), 100 * lo, 100 * hi


Y_MARGIN = 5.0  # percentage points above the highest interval


def y_limits(runs: Sequence[dict]) -> dict[str, tuple[float, float]]:
    """Each benchmark's accuracy axis, in %: from 0 to the highest upper Wilson bound of its
    runs plus :data:`Y_MARGIN` (at most 105), one axis shared by all its methods."""
    top: dict[str, float] = defaultdict(float)
    for r in runs:
        top[r["benchmark"]] = max(top[r["benchmark"]], accuracy_interval(r)[2])
    return {b: (0.0, min(105.0, t + Y_MARGIN)) for b, t in top.items()}


def point_label(run: dict) -> str:
    s = _search(run)
    if s.get("strategy") == "beam":
        return f"N{s.get('beams')}M{s.get('expand')}"
    if s.get("strategy") == "best_of_n":
        return f"N{s.get('beams')}"
    return ""


def _figure(n_panels: int, width: float = 5.0, height: float = 3.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat)[:n_panels]


def plot_accuracy_vs_compute(runs: Sequence[dict], out: str | os.PathLike, *, x: str = "tokens", title: str | None = None) -> Path:
    """Accuracy against mean compute per item; one line per method, one panel per benchmark."""
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}: choose one of {', '.join(X_AXES)}")
    key, xlabel = X_AXES[x]
    by_bench: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_bench[r["benchmark"]].append(r)
    ylims = y_limits(runs)
    plt, fig, axes = _figure(len(by_bench))
    for ax, (bench, rs) in zip(axes, sorted(by_bench.items())):
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            groups[method_label(r)].append(r)
        colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
        for label, g in sorted(groups.items()):
            g = sorted(g, key=lambda r: (r["compute"]["mean"].get(key, 0.0), -r["accuracy"]))
            xs = [r["compute"]["mean"].get(key, 0.0) for r in g]
            ys = [100 * r["accuracy"] for r in g]
            color = next(colors)
            marker = "s" if label == "greedy" else ("o" if label.startswith(("beam", "combined")) else "^")
            ax.scatter(xs, ys, marker=marker, color=color, label=label, zorder=3)
            cis = [accuracy_interval(r) for r in g]  # 95 % Wilson intervals as error bars
            ax.errorbar(xs, ys, yerr=[[max(0.0, y - lo) for y, (_, lo, _) in zip(ys, cis)],
                                      [max(0.0, hi - y) for y, (_, _, hi) in zip(ys, cis)]],
                        fmt="none", ecolor=color, elinewidth=1.0, capsize=3, alpha=0.7, zorder=2)
            # the method's frontier: each point more accurate than every cheaper one
            front, best = [], -1.0
            for xv, yv in zip(xs, ys):
                if yv > best:
                    front.append((xv, yv))
                    best = yv
            if len(front) > 1:
                ax.plot(*zip(*front), color=color, linewidth=1.2, alpha=0.8)
            for r, xv, yv in zip(g, xs, ys):
                if point_label(r):
                    ax.annotate(point_label(r), (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=7)
        n = sorted({r["n"] for r in rs})
        ax.set_title(f"{bench} (n={'/'.join(map(str, n))})", fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy (%), 95 % Wilson interval", fontsize=8)
        ax.set_ylim(*ylims[bench])
        xs_all = [r["compute"]["mean"].get(key, 0.0) for r in rs]
        if min(xs_all) > 0 and max(xs_all) / min(xs_all) > 20:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out, title)


def grid_cells(runs: Sequence[dict]) -> dict[tuple[str, str], dict[tuple[int, int], dict]]:
    """Beam runs as ``{(benchmark, scorer): {(N, M): run}}`` (the latest run wins a cell)."""
    cells: dict[tuple[str, str], dict[tuple[int, int], dict]] = defaultdict(dict)
    for r in runs:
        s = _search(r)
        if s.get("strategy") != "beam":
            continue
        cells[(r["benchmark"], _scorer(r) or "?")][(int(s["beams"]), int(s["expand"]))] = r
    return cells


def plot_grid_heatmap(runs: Sequence[dict], out: str | os.PathLike, *, title: str | None = None) -> Path:
    """Beam-search accuracy over the N x M grid; each cell also shows mean tokens per item."""
    cells = grid_cells(runs)
    if not cells:
        raise ValueError("no beam-search runs to put on an N x M grid")
    import numpy as np

    plt, fig, axes = _figure(len(cells), width=4.6, height=3.8)
    for ax, ((bench, scorer), grid) in zip(axes, sorted(cells.items())):
        ns = sorted({n for n, _ in grid})
        ms = sorted({m for _, m in grid})
        acc = np.full((len(ns), len(ms)), np.nan)
        for (n, m), r in grid.items():
            acc[ns.index(n), ms.index(m)] = 100 * r["accuracy"]
        lo, hi = float(np.nanmin(acc)), float(np.nanmax(acc))
        if hi - lo < 2.0:  # one cell, or all alike: a readable colour range around them
            lo, hi = max(0.0, (lo + hi) / 2 - 5), min(100.0, (lo + hi) / 2 + 5)
        im = ax.imshow(acc, cmap="viridis", origin="lower", aspect="auto", vmin=lo, vmax=hi)
        for (n, m), r in grid.items():
            value, lo_ci, hi_ci = accuracy_interval(r)
            tokens = r["compute"]["mean"].get("tokens_total", 0.0)
            ax.text(ms.index(m), ns.index(n), f"{value:.1f}\n[{lo_ci:.0f}, {hi_ci:.0f}]\n{tokens / 1000:.1f}k tok",
                    ha="center", va="center",
                    fontsize=7, color="white" if (value - lo) / (hi - lo) < 0.5 else "black")
        ax.set_xticks(range(len(ms)), [str(m) for m in ms])
        ax.set_yticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("M: samples per beam (explore)", fontsize=8)
        ax.set_ylabel("N: beams kept (retain)", fontsize=8)
        ax.set_title(f"{bench}, beam ({scorer})", fontsize=9)
        fig.colorbar(im, ax=ax, label="accuracy (%)")
    return _save(fig, out, title)


__all__ = ["accuracy_interval", "find_runs", "grid_cells", "method_label", "plot_accuracy_vs_compute", "plot_grid_heatmap",
           "run_counts", "y_limits"]


def _save(fig, out: str | os.PathLike, title: str | None) -> Path:
    """Title, lay out and write ``fig`` as a PNG at ``out`` (parents created); close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
