"""Command line: ``toolprm-agents call "QUESTION" --tools tools.json``.

Prints the chosen calls as JSON (``[{"name": ..., "arguments": {...}}]``) on stdout and a
progress line per search round on stderr. ``--verbose`` prints the whole search result
(scores, trace, compute) instead.

Subcommands register themselves through :data:`COMMANDS` so that other modules (the
evaluation) add theirs without touching this one's parsing of ``call``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


#: help text of each SearchConfig field on the command line (the options themselves, their
#: types and defaults come from the dataclass, so there is one place for each setting)
SEARCH_HELP = {
    "strategy": "greedy, beam (default), best-of-n or self-consistency",
    "beams": "N: beams kept (beam) or answers sampled (best-of-n, self-consistency)",
    "expand": "M: alternatives kept, or values sampled, where a beam branches",
    "rank": "beam ranking: combined (policy + judge + votes, default) or prm (the paper's judge-only ranking)",
    "gate": "branch only where the policy's top alternative is below this probability",
    "verify": "also branch where the step judge scores the policy's sure choice below this (0: off; default: the judge checkpoint's, else 0)",
    "verify_types": "decision types where --verify asks the judge, comma-separated: end, arg_end, name, value (default: the judge checkpoint's, else all)",
    "judge_weight": "weight of the judge's log-odds in the combined score (default: the checkpoint's, else 1)",
    "policy_weight": "weight of the policy's log-probability in the combined score",
    "vote_weight": "weight of the sampled values' vote share in the combined score",
    "aggregation": "how step scores combine: last, min, prod, mean",
    "temperature": "sampling temperature",
    "seed": "random seed",
    "budget_seconds": "wall-time budget of one search (0: none)",
    "budget_tokens": "token budget of one search (0: none)",
    "max_calls": "calls in one answer at most",
    "max_string_length": "characters of a string value without its own maxLength",
    "max_array_items": "items of an array without its own maxItems",
    "allow_no_call": "whether 'no call' is an answer",
    "repeat_calls": "whether one answer may repeat a call",
    "max_rounds": "search rounds at most",
}
SHORT = {"beams": "-N", "expand": "-M"}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _decision_types(text: str) -> tuple[str, ...]:
    from .steps import check_decision_types

    try:
        return check_decision_types(text, "decision types")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_search_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs a search: one per :class:`SearchConfig` field."""
    import dataclasses
    import typing

    from .search import STRATEGIES, SearchConfig

    hints = typing.get_type_hints(SearchConfig)
    for f in dataclasses.fields(SearchConfig):
        flags = ["--" + f.name.replace("_", "-")] + ([SHORT[f.name]] if f.name in SHORT else [])
        kw: dict = {"default": f.default, "dest": f.name, "help": SEARCH_HELP.get(f.name, f.name.replace("_", " "))}
        hint = hints[f.name]
        args = typing.get_args(hint)
        if f.name == "verify_types":
            kw["type"] = _decision_types
        elif f.name == "strategy":
            kw["choices"] = [n for k in STRATEGIES for n in {k, k.replace("_", "-")}]
        elif typing.get_origin(hint) is typing.Literal:
            kw["choices"] = list(args)
        elif hint is bool:
            kw["type"] = _bool
        elif hint is int:
            kw["type"] = int
        else:  # float and optional floats
            kw["type"] = float
        p.add_argument(*flags, **kw)
    p.add_argument("--scorer", default="toolprm", choices=["toolprm", "orm", "cprm", "likelihood"])
    p.add_argument("--prm", default=None, help="judge: a checkpoint directory (default: the packaged one for --scorer), "
                   "'vllm:PATH' or an OpenAI-compatible server URL 'http://host:port/v1[#model]'")
    p.add_argument("--policy", default=None, help="policy model: 'smollm2' (default), a checkpoint directory, a .gguf file, "
                   "'vllm:PATH' or an OpenAI-compatible server URL 'http://host:port/v1[#model]'")
    p.add_argument("--threads", type=int, default=None, help="torch threads (transformers backend only)")


def search_config(args: argparse.Namespace):
    """The :class:`SearchConfig` the parsed options describe."""
    import dataclasses

    from .search import SearchConfig

    return SearchConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig) if hasattr(args, f.name)})


def search_options_changed(args: argparse.Namespace) -> list[str]:
    """The command-line options that differ from :class:`SearchConfig`'s defaults, as ``--opt value`` pairs."""
    import dataclasses

    from .search import SearchConfig

    cfg, out = search_config(args), []
    for f in dataclasses.fields(SearchConfig):
        v = getattr(cfg, f.name)
        if v != f.default:
            text = ",".join(v) if isinstance(v, tuple) else str(v)
            out += ["--" + f.name.replace("_", "-"), text.replace("_", "-") if f.name == "strategy" else text]
    return out


def build_search(args: argparse.Namespace):
    """A :class:`~toolprm_agents.search.ToolPRMSearch` from command-line options.

    ``--policy`` and ``--prm`` pick the backend (:mod:`toolprm_agents.backends`): a model or
    judge checkpoint path runs on transformers here, ``vllm:PATH`` on an in-process vLLM
    engine, ``http://host:port/v1`` on an OpenAI-compatible server.
    """
    from .backends import load_judge, load_policy
    from .search import ToolPRMSearch

    config = search_config(args)
    policy = load_policy(args.policy, num_threads=args.threads)
    from .search import NEEDS_SCORER

    scorer = load_judge(args.prm, args.scorer, policy=policy) if config.strategy in NEEDS_SCORER else None
    return ToolPRMSearch(policy, scorer, config)


def progress_printer(stream=sys.stderr):
    def on_event(event: dict) -> None:
        if event.get("type") != "round":
            return
        cands = event["candidates"]
        kept = [c for c in cands if c.get("kept")]
        best = max(kept, key=lambda c: c["score"] if c.get("score") is not None else 0.0) if kept else None
        desc = f"{best['kind']} {best['text'].strip()[:60]!r}" if best else "-"
        score = f" score={best['score']:.3f}" if best and best.get("score") is not None else ""
        print(f"[round {event['round']:>2}] {len(cands)} candidates, kept {len(kept)}: {desc}{score}", file=stream, flush=True)

    return on_event


def load_tools(path: str) -> list:
    """The tool list in a JSON file (a :class:`~toolprm_agents.schema.ToolSpecError` if it is not one)."""
    from .schema import ToolSpecError

    p = Path(path)
    if not p.is_file():
        raise ToolSpecError(f"tools file {path!r} does not exist")
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ToolSpecError(f"tools file {path!r} is not JSON (UTF-8): {exc}") from None
    if isinstance(data, dict):
        data = data.get("tools", [data])
    if not isinstance(data, list):
        raise ToolSpecError(f"tools file {path!r} must hold a JSON list of function schemas")
    return data


def _call_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="the user's request ('-' reads it from stdin)")
    p.add_argument("--tools", required=True, help="JSON file: a list of OpenAI-style function schemas (or BFCL function docs)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the whole search result (scores, trace, compute)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    add_search_options(p)


def _call(args: argparse.Namespace) -> int:
    """Find the tool calls for one question and print them as JSON."""
    from .schema import ToolSpecError, to_tool_specs

    if args.question == "-":  # invalid UTF-8 is kept (as surrogates) so the error names it
        raw = getattr(sys.stdin, "buffer", None)
        question = raw.read().decode("utf-8", "surrogateescape") if raw is not None else sys.stdin.read()
    else:
        question = args.question
    try:
        tools = to_tool_specs(load_tools(args.tools))
    except ToolSpecError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"loading models ({args.policy or 'smollm2'}, scorer {args.scorer if args.strategy != 'greedy' else 'none'})...", file=sys.stderr, flush=True)
    search = build_search(args)
    result = search.search(question, tools, on_event=None if args.quiet else progress_printer())
    if args.verbose:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(json.dumps(result.tool_calls(), ensure_ascii=False))
    if not result.complete:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    if not args.quiet:
        c = result.compute
        print(f"done in {c.seconds:.1f}s: {c.tokens_generated} tokens generated, {c.forward_passes} policy passes, "
              f"{c.scorer_calls} judgements" + (f", score {result.score:.3f}" if result.score is not None else ""), file=sys.stderr)
    return 0


COMMANDS["call"] = (_call_parser, _call)


def _register_optional_commands() -> None:
    """Import modules that add subcommands (kept optional so `call` works without them)."""
    import importlib

    for mod in ("toolprm_agents.demo", "toolprm_agents.evaluation.cli", "toolprm_agents.training.cli"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod.startswith(exc.name):
                raise


def main(argv: list[str] | None = None) -> int:
    _register_optional_commands()
    parser = argparse.ArgumentParser(prog="toolprm-agents", description="ToolPRM-guided search for LLM tool calls")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=(COMMANDS[name][1].__doc__ or "").strip().split("\n")[0] or None))
    args = parser.parse_args(argv)
    from .errors import ToolPRMError

    try:
        return COMMANDS[args.command][1](args)
    except ToolPRMError as exc:  # bad input: its message is meant for the user, on one line
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2


if __name__ == "__main__":  # run through the package module, so subcommands register in one place
    from toolprm_agents.cli import main as _main

    sys.exit(_main())
