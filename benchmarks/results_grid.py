"""Run the README's results grid: ``toolprm-agents eval`` over benchmarks x search methods.

Each run is one ``toolprm-agents eval`` command (printed with ``--dry-run``), written to
``runs/eval/<benchmark>_<method>/``. Runs are resumable, so rerunning this script after an
interruption continues where each run stopped and skips finished ones. ``--workers 2``
runs two single-threaded evaluations at once, which on a 2-core machine is faster than
one two-threaded run (small models do not scale across threads).

    python benchmarks/results_grid.py --dry-run              # the commands
    python benchmarks/results_grid.py --workers 2            # everything, in priority order
    python benchmarks/results_grid.py --only heatmap         # one group
    toolprm-agents plot runs/eval --out docs/results          # then the plots
    python benchmarks/results_table.py runs/eval              # and the README table

Groups, in the order they run (most informative first):

* ``main``: greedy and fine-grained beam search (ToolPRM, N=2, M=4) on the six benchmarks;
* ``baselines``: best-of-N (N=4) with the ORM and with ToolPRM, and beam search with the
  coarse call-level PRM, on BFCL simple_python;
* ``heatmap``: beam search with ToolPRM over N in {1, 2, 4} x M in {2, 4, 8} on the first
  30 BFCL simple_python items;
* ``baselines-apibank``: the baselines on API-Bank L1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (benchmark, limit): 100 items or the whole set when it is smaller.
MAIN = [
    ("bfcl:simple_python", 100),
    ("apibank:l1", 100),
    ("bfcl:multiple", 100),
    ("toolalpaca", None),  # 114 items: the whole set
    ("bfcl:irrelevance", 100),
    ("bfcl:parallel", 100),
]
GREEDY = ["--strategy", "greedy"]
BEAM = ["--strategy", "beam", "--beams", "2", "--expand", "4", "--scorer", "toolprm"]
BASELINES = [
    ["--strategy", "best-of-n", "--beams", "4", "--scorer", "toolprm"],
    ["--strategy", "best-of-n", "--beams", "4", "--scorer", "orm"],
    ["--strategy", "beam", "--beams", "2", "--expand", "4", "--scorer", "cprm"],
]
HEATMAP_LIMIT = 30


def _cmd(benchmark: str, limit: int | None, method: list[str], out: str) -> list[str]:
    cmd = ["toolprm-agents", "eval", "--benchmark", benchmark]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd + method + ["--threads", "1", "--quiet", "--out", out]


def _slug(benchmark: str, limit: int | None, method: list[str]) -> str:
    opts = dict(zip(method[::2], method[1::2]))
    strategy = opts["--strategy"]
    if strategy == "greedy":
        tag = "greedy"
    elif strategy == "best-of-n":
        tag = f"best-of-n_N{opts['--beams']}_{opts['--scorer']}"
    else:
        tag = f"beam_N{opts['--beams']}_M{opts['--expand']}_{opts['--scorer']}"
    name = benchmark.replace(":", "-")
    return f"{name}{'_first' + str(limit) if limit else ''}_{tag}"


def grid(runs_dir: str) -> dict[str, list[list[str]]]:
    def run(benchmark, limit, method, sub=""):
        out = os.path.join(runs_dir, sub, _slug(benchmark, limit, method))
        return _cmd(benchmark, limit, method, out)

    groups: dict[str, list[list[str]]] = {"main": [], "baselines": [], "heatmap": [], "baselines-apibank": []}
    for bench, limit in MAIN:
        groups["main"] += [run(bench, limit, GREEDY), run(bench, limit, BEAM)]
    for method in BASELINES:
        groups["baselines"].append(run("bfcl:simple_python", 100, method))
        groups["baselines-apibank"].append(run("apibank:l1", 100, method))
    for n in (1, 2, 4):
        for m in (2, 4, 8):
            method = ["--strategy", "beam", "--beams", str(n), "--expand", str(m), "--scorer", "toolprm"]
            groups["heatmap"].append(run("bfcl:simple_python", HEATMAP_LIMIT, method, sub="heatmap"))
    groups["heatmap"].append(run("bfcl:simple_python", HEATMAP_LIMIT, GREEDY, sub="heatmap"))
    return groups


def _finished(cmd: list[str]) -> bool:
    """results.json is written when a run ends; an interrupted run has none (or an older one)."""
    import json

    out = Path(cmd[cmd.index("--out") + 1])
    limit = int(cmd[cmd.index("--limit") + 1]) if "--limit" in cmd else None
    try:
        res = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return res.get("config", {}).get("limit") == limit and res.get("n", 0) > 0


def _run(cmd: list[str], log_dir: Path) -> tuple[list[str], int, float]:
    out = cmd[cmd.index("--out") + 1]
    log = log_dir / (Path(out).name + ".log")
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    return cmd, rc, time.time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs-dir", default="runs/eval")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", action="append", help="run only these groups (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    args = p.parse_args(argv)

    groups = grid(args.runs_dir)
    unknown = set(args.only or []) - set(groups)
    if unknown:
        p.error(f"unknown group(s) {sorted(unknown)}; choose from {list(groups)}")
    cmds = [c for g, cs in groups.items() if not args.only or g in args.only for c in cs]
    if args.dry_run:
        for g, cs in groups.items():
            if args.only and g not in args.only:
                continue
            print(f"# {g}")
            for c in cs:
                print(shlex.join(c))
        return 0
    log_dir = ROOT / args.runs_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cmds if not _finished(c)]
    print(f"{len(todo)} of {len(cmds)} runs to do, {args.workers} at a time; logs in {log_dir}", flush=True)
    failed = 0
    with ThreadPoolExecutor(args.workers) as pool:
        for cmd, rc, secs in pool.map(lambda c: _run(c, log_dir), todo):
            name = Path(cmd[cmd.index("--out") + 1]).name
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            failed += rc != 0
            print(f"{time.strftime('%H:%M:%S')} {name}: {status} in {secs / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
