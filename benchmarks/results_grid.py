"""Run the README's results grid: ``toolprm-agents eval`` over benchmarks x search methods.

Each run is one ``toolprm-agents eval`` command (printed with ``--dry-run``), written to
``runs/eval/<benchmark>_<method>/``. Runs are resumable, so rerunning this script after an
interruption continues where each run stopped and skips finished ones. ``--workers 2``
runs two single-threaded evaluations at once, which on a 2-core machine is faster than
one two-threaded run (small models do not scale across threads).

    python benchmarks/results_grid.py --dry-run              # the commands
    python benchmarks/results_grid.py --workers 2            # everything
    # what was run here: two queues side by side, one core each
    python benchmarks/results_grid.py --workers 1 --only main-greedy --only main-beam &
    python benchmarks/results_grid.py --workers 1 --only baselines --only heatmap --only main-beam &
    python benchmarks/results_table.py runs/eval --heatmap runs/eval/heatmap   # the README tables

Two grid processes may share runs: each run folder is claimed with a lock file, so a run is
done once. Groups (``--only``, in the order given):

* ``main-greedy``, ``main-beam``: greedy and fine-grained beam search (ToolPRM, N=2, M=4) on
  the six benchmarks (first 100 items, or the whole set when smaller);
* ``baselines``: on the first 50 BFCL simple_python items, greedy and beam search with
  ToolPRM (their first 50 items of the runs above, reused) against best-of-N (N=4) with
  ToolPRM and with the ORM, and beam search with the coarse call-level PRM;
* ``heatmap``: beam search with ToolPRM over N (beams kept) x M (samples per beam) on the
  first 20 BFCL simple_python items.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
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
    ("bfcl:irrelevance", 100),
    ("toolalpaca", None),  # 114 items: the whole set
    ("bfcl:parallel", 100),
]
GREEDY = ["--strategy", "greedy"]
BEAM = ["--strategy", "beam", "--beams", "2", "--expand", "4", "--scorer", "toolprm"]
BASELINES = [
    ["--strategy", "best-of-n", "--beams", "4", "--scorer", "toolprm"],
    ["--strategy", "best-of-n", "--beams", "4", "--scorer", "orm"],
    ["--strategy", "beam", "--beams", "2", "--expand", "4", "--scorer", "cprm"],
]
BASELINE_LIMIT = 100
HEATMAP_LIMIT = 20
HEATMAP = [(1, 2), (1, 4), (1, 8), (2, 2), (2, 4), (2, 8), (4, 2), (4, 4), (4, 8)]


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
    """The runs, by group. Runs on the first K items of a method also run on more items
    elsewhere in the grid reuse those items (see :func:`_seed`)."""

    def run(benchmark, limit, method, sub=""):
        out = os.path.join(runs_dir, sub, _slug(benchmark, limit, method))
        return _cmd(benchmark, limit, method, out)

    groups: dict[str, list[list[str]]] = {"main-greedy": [], "main-beam": [], "baselines": [], "heatmap": []}
    for bench, limit in MAIN:
        groups["main-greedy"].append(run(bench, limit, GREEDY))
        groups["main-beam"].append(run(bench, limit, BEAM))
    for method in [GREEDY, BEAM, *BASELINES]:
        groups["baselines"].append(run("bfcl:simple_python", BASELINE_LIMIT, method, sub="baselines"))
    for n, m in HEATMAP:
        method = ["--strategy", "beam", "--beams", str(n), "--expand", str(m), "--scorer", "toolprm"]
        groups["heatmap"].append(run("bfcl:simple_python", HEATMAP_LIMIT, method, sub="heatmap"))
    groups["heatmap"].append(run("bfcl:simple_python", HEATMAP_LIMIT, GREEDY, sub="heatmap"))
    return groups


def _out(cmd: list[str]) -> Path:
    return ROOT / cmd[cmd.index("--out") + 1]


def _seed(cmd: list[str], all_cmds: list[list[str]]) -> None:
    """Start a run from the items another run of the same benchmark and method already
    answered (the same search on the same item gives the same answer: every item is
    searched independently with the same seed; ``--limit`` is not part of a run's identity)."""
    out = _out(cmd)
    if (out / "items.jsonl").exists():
        return

    def identity(c: list[str]) -> list[str]:
        c = [a for a in c[: c.index("--out")] if a != "--quiet"]
        if "--limit" in c:
            i = c.index("--limit")
            c = c[:i] + c[i + 2:]
        return c

    key = identity(cmd)
    for other in all_cmds:
        if other is cmd:
            continue
        k = identity(other)
        src = _out(other)
        if k == key and (src / "items.jsonl").is_file() and (src / "config.json").is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / "config.json", out / "config.json")
            shutil.copy(src / "items.jsonl", out / "items.jsonl")
            return


def _finished(cmd: list[str]) -> bool:
    """results.json is written when a run ends; an interrupted run has none (or an older one)."""
    import json

    out = _out(cmd)
    limit = int(cmd[cmd.index("--limit") + 1]) if "--limit" in cmd else None
    try:
        res = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return res.get("config", {}).get("limit") == limit and res.get("n", 0) > 0


def _lock(out: Path) -> bool:
    """Claim a run folder (two grid processes may share the queue); a dead owner's lock is taken over."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".grid-lock"
    try:
        pid = int(lock.read_text())
        os.kill(pid, 0)
        return False  # another grid process is running it
    except (OSError, ValueError):
        pass
    lock.write_text(str(os.getpid()))
    return True


def _run(cmd: list[str], log_dir: Path, all_cmds: list[list[str]]) -> tuple[list[str], int | None, float]:
    out = _out(cmd)
    if _finished(cmd) or not _lock(out):
        return cmd, None, 0.0
    log = log_dir / (out.name + ".log")
    t0 = time.time()
    try:
        _seed(cmd, all_cmds)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
            # the lock names the process writing the folder: if this grid process dies, the
            # evaluation it started still holds the run (``eval`` itself also locks the folder)
            (out / ".grid-lock").write_text(str(proc.pid))
            rc = proc.wait()
    finally:
        (out / ".grid-lock").unlink(missing_ok=True)
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
    order = list(dict.fromkeys(args.only)) if args.only else list(groups)  # --only's order is the run order
    cmds = [c for g in order for c in groups[g]]
    if args.dry_run:
        for g in order:
            print(f"# {g}")
            for c in groups[g]:
                print(shlex.join(c))
        return 0
    log_dir = ROOT / args.runs_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cmds if not _finished(c)]
    print(f"{len(todo)} of {len(cmds)} runs to do, {args.workers} at a time; logs in {log_dir}", flush=True)
    failed = 0
    with ThreadPoolExecutor(args.workers) as pool:
        all_cmds = [c for cs in groups.values() for c in cs]
        for cmd, rc, secs in pool.map(lambda c: _run(c, log_dir, all_cmds), todo):
            name = _out(cmd).name
            if rc is None:
                print(f"{time.strftime('%H:%M:%S')} {name}: done or taken by another grid process", flush=True)
                continue
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            failed += rc != 0
            print(f"{time.strftime('%H:%M:%S')} {name}: {status} in {secs / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
