"""``toolprm-agents eval`` and ``toolprm-agents plot`` (registered into :data:`toolprm_agents.cli.COMMANDS`).

    toolprm-agents eval --benchmark bfcl:simple_python --limit 20 --strategy greedy
    toolprm-agents eval --benchmark apibank:l1 --strategy beam --beams 2 --expand 4 --out runs/eval/l1-beam
    toolprm-agents plot runs/eval --out runs/plots
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from ..cli import COMMANDS, add_search_options, build_search, search_config, search_options_changed
from ..interfaces import ScorerError
from ..judges import JudgeConfig, packaged_checkpoint
from ..search import NEEDS_SCORER
from .benchmarks import benchmark_names, benchmark_slug, load_benchmark

DEFAULT_RUNS_DIR = Path("runs") / "eval"


def _eval_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--benchmark", "-b", required=True,
        help="one of: " + ", ".join(benchmark_names()) + " (jsonl:PATH: your own items, see docs/evaluation.md)",
    )
    p.add_argument("--limit", "-k", type=int, default=None, help="evaluate the first K items only")
    p.add_argument("--out", "-o", default=None, help=f"output folder (default: {DEFAULT_RUNS_DIR}/<benchmark>_<method>)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_search_options(p)


def scorer_record(args: argparse.Namespace) -> dict | None:
    """What scores the candidates (None for greedy), without loading it."""
    if search_config(args).strategy not in NEEDS_SCORER:
        return None
    name, checkpoint, config = _judge(args)
    if name == "likelihood":
        return {"name": "likelihood", "checkpoint": None, "trained": None}
    return {"name": name, "checkpoint": checkpoint, "trained": bool(config.trained) if config is not None else None}


def _judge(args: argparse.Namespace) -> tuple[str, str | None, JudgeConfig | None]:
    """``(scorer name, checkpoint as recorded, its JudgeConfig)`` of the options, without
    loading the judge; the config is ``None`` for the likelihood scorer and for a judge whose
    config cannot be read here (a server or vLLM judge)."""
    name = args.scorer.lower().replace("-", "")
    if name == "likelihood":
        return name, None, None
    if args.prm:
        checkpoint, where = args.prm, Path(args.prm)
    else:
        where = packaged_checkpoint(name)
        checkpoint = f"packaged:{where.name}"
    try:
        return name, checkpoint, JudgeConfig.load(where)
    except ScorerError:
        return name, checkpoint, None


def method_tag(args: argparse.Namespace) -> str:
    cfg = search_config(args)
    if cfg.strategy == "greedy":
        tag = "greedy"
    elif cfg.strategy == "best_of_n":
        tag = f"best-of-n_N{cfg.beams}_{args.scorer}"
    elif cfg.strategy == "self_consistency":
        tag = f"self-consistency_N{cfg.beams}"
    elif cfg.rank == "prm" or args.scorer not in ("toolprm", "likelihood"):
        tag = f"beam_N{cfg.beams}_M{cfg.expand}_{args.scorer}"  # the paper's judge-ranked beam
    else:
        tag = f"combined_N{cfg.beams}_M{cfg.expand}_{args.scorer}"
    if cfg.seed:
        tag += f"_seed{cfg.seed}"
    return tag


def eval_command(args: argparse.Namespace, out: str) -> str:
    """The canonical command line that reproduces this run."""
    cfg = search_config(args)
    parts = ["toolprm-agents", "eval", "--benchmark", args.benchmark]
    if args.limit:
        parts += ["--limit", str(args.limit)]
    parts += search_options_changed(args)
    if cfg.strategy in NEEDS_SCORER:
        parts += ["--scorer", args.scorer]
        if args.prm:
            parts += ["--prm", args.prm]
    if args.policy:
        parts += ["--policy", args.policy]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    parts += ["--out", out]
    return shlex.join(parts)


def resolved_record(args: argparse.Namespace) -> dict | None:
    """The combined search's weights and ``verify`` setting as the run will use them (the
    judge checkpoint's ``search_weights`` where the options leave them open), without loading
    the judge; ``None`` for other strategies or a judge whose config cannot be read here."""
    from ..search import resolve_settings, settings_record

    cfg = search_config(args)
    if not (cfg.strategy == "beam" and cfg.rank == "combined"):
        return None
    name, _, config = _judge(args)
    if name != "likelihood" and config is None:
        return None  # a server or vLLM judge: its settings are read when it loads
    return settings_record(resolve_settings(cfg, (config.search_weights if config is not None else None) or {}))


def eval_config(args: argparse.Namespace, out: str) -> dict:
    config = {
        "search": asdict(search_config(args)),
        "scorer": scorer_record(args),
        "policy": args.policy or "smollm2",
        "threads": args.threads,
        "command": eval_command(args, out),
    }
    resolved = resolved_record(args)
    if resolved is not None:
        config["resolved"] = resolved
    return config


def _eval(args: argparse.Namespace) -> int:
    """Evaluate a search configuration on a benchmark; write results.json and results.md."""
    from .runner import run_eval

    bench = load_benchmark(args.benchmark)
    bench.items()  # fail early on a missing or malformed data file
    out = args.out or str(DEFAULT_RUNS_DIR / f"{benchmark_slug(args.benchmark)}_{method_tag(args)}")
    config = eval_config(args, out)
    if not args.quiet:
        print(f"{bench.name}: {out} ({config['command']})", file=sys.stderr, flush=True)
    try:
        results = run_eval(bench, lambda: build_search(args), out, config=config, limit=args.limit, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished items are kept in {out}/items.jsonl; rerun the same command to continue", file=sys.stderr)
        return 130
    m = results["compute"]["mean"]
    print(
        f"{results['benchmark']}: accuracy {results['accuracy']:.3f} ({results['correct']}/{results['n']}), "
        f"valid {results['valid_rate']:.3f}, mean {m['tokens_total']:.0f} tokens and {m['seconds']:.2f} s per item "
        f"-> {out}/results.json"
    )
    return 0


def _plot_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders, results.json files, or folders to search for them")
    p.add_argument("--out", "-o", default="plots", help="folder for the PNGs (default: plots)")
    p.add_argument("--x", default="tokens", choices=["tokens", "generated", "passes", "seconds"], help="compute axis (default: tokens)")
    p.add_argument("--title", default=None)


def _plot(args: argparse.Namespace) -> int:
    """Plot accuracy against compute, and the beam N x M heatmap, from evaluation runs."""
    from .plot import find_runs, grid_cells, plot_accuracy_vs_compute, plot_grid_heatmap

    try:
        runs = find_runs(args.runs)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    written = [plot_accuracy_vs_compute(runs, out / "accuracy_vs_compute.png", x=args.x, title=args.title)]
    if grid_cells(runs):
        written.append(plot_grid_heatmap(runs, out / "heatmap.png", title=args.title))
    else:
        print("no beam-search runs: no heatmap", file=sys.stderr)
    for w in written:
        print(w)
    return 0


COMMANDS["eval"] = (_eval_parser, _eval)
COMMANDS["plot"] = (_plot_parser, _plot)
