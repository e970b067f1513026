"""``toolprm-agents train ...``: the training pipeline from the command line.

    toolprm-agents train run training/recipes/cpu-smollm2.yaml        # the whole pipeline (resumable)
    toolprm-agents train run RECIPE --stages data,rollouts             # some stages only
    toolprm-agents train run RECIPE --set rollouts.beams=1 --force eval
    toolprm-agents train stage RECIPE rollouts                         # one stage
    toolprm-agents train stats RECIPE                                  # dataset statistics table
    toolprm-agents train eval RECIPE                                   # held-out RM table
    toolprm-agents train overlap [--examples runs/x/examples.jsonl]    # evaluation-set overlap check
    toolprm-agents train dry-run training/recipes/gpu-qwen2.5-1.5b.yaml --base-model PATH

Registered into :data:`toolprm_agents.cli.COMMANDS` as ``train``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..cli import COMMANDS


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="train_command", required=True)

    def recipe_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("recipe", help="recipe file (YAML/JSON) or a name under training/recipes/")
        q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value (repeatable), e.g. rollouts.beams=1")
        q.add_argument("--output-dir", default=None, help="where the run's files go (default: the recipe's output_dir)")

    q = sub.add_parser("run", help="run the pipeline (data, rollouts, branches, synth, dataset, train, calibrate, eval, install); finished stages are skipped")
    recipe_args(q)
    q.add_argument("--stages", default=None, help="comma-separated stages to run (default: all)")
    q.add_argument("--force", default="", help="comma-separated stages to redo even if their output exists")

    q = sub.add_parser("stage", help="run one stage")
    recipe_args(q)
    q.add_argument("stage", choices=["data", "rollouts", "branches", "synth", "dataset", "train", "calibrate", "eval", "install"])
    q.add_argument("--force", action="store_true")
    q.add_argument("--kind", action="append", choices=["toolprm", "orm", "cprm"], help="train only these judges")

    q = sub.add_parser("stats", help="print the dataset statistics table of a run")
    recipe_args(q)

    q = sub.add_parser("eval", help="print (computing if needed) the held-out reward-model table of a run")
    recipe_args(q)
    q.add_argument("--force", action="store_true")

    q = sub.add_parser("overlap", help="check that training examples share no query or tool name with the evaluation sets")
    q.add_argument("--examples", default=None, help="examples.jsonl of a run (default: every source, after decontamination)")
    q.add_argument("--data-root", default=None)

    q = sub.add_parser("dry-run", help="build each judge's trainer without training (checks a recipe)")
    recipe_args(q)
    q.add_argument("--base-model", default=None, help="a local model to stand in for the recipe's base model")


def _recipe(args):
    from .pipeline import apply_overrides, load_recipe

    recipe = apply_overrides(load_recipe(args.recipe), args.overrides)
    if args.output_dir:
        recipe["output_dir"] = args.output_dir
    return recipe


def _run(args: argparse.Namespace) -> int:
    """Train reward models: data, rollouts, labels, training, evaluation (see `train -h`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from . import pipeline

    cmd = args.train_command
    if cmd == "overlap":
        from .sources import EvalIndex, Example, data_root, decontaminate, load_sources

        index = EvalIndex.build(args.data_root)
        if args.examples:
            examples = [Example.from_dict(json.loads(l)) for l in open(args.examples) if l.strip()]
        else:
            examples, _ = load_sources({"seal-tools": {}, "glaive": {}, "api-bank-lv3": {}}, args.data_root, index=index)
            examples, dropped = decontaminate(examples, index)
            print(f"dropped while loading: {json.dumps(dropped)}", file=sys.stderr)
        hits = [(ex.id, index.overlaps(ex)) for ex in examples]
        hits = [(i, w) for i, w in hits if w]
        print(json.dumps({"examples": len(examples), "overlapping": len(hits), "first": hits[:10], "missing_eval_sets": index.missing}, indent=2))
        return 1 if hits else 0
    recipe = _recipe(args)
    out = pipeline._out(recipe)
    if cmd == "run":
        stages = args.stages.split(",") if args.stages else pipeline.STAGES
        bad = [s for s in stages if s not in pipeline.STAGES]
        if bad:
            print(f"error: unknown stage(s) {bad}; choose from {', '.join(pipeline.STAGES)}", file=sys.stderr)
            return 2
        res = pipeline.run_pipeline(recipe, stages=stages, force=[s for s in args.force.split(",") if s])
        for name in ("dataset/stats.md", "eval/metrics.md"):
            p = out / name
            if p.is_file():
                print(f"\n{name}:\n{p.read_text()}")
        print(json.dumps(res, indent=2))
        return 0
    if cmd == "stage":
        kinds = args.kind or pipeline.KINDS
        res = pipeline.run_stage(recipe, args.stage, force=args.force, kinds=kinds)
        if isinstance(res, dict):
            print(json.dumps(res, indent=2, default=str))
        return 0
    if cmd == "stats":
        from .dataset import format_statistics

        p = out / "dataset" / "stats.json"
        if not p.is_file():
            print(f"error: {p} does not exist: run the dataset stage first", file=sys.stderr)
            return 2
        print(format_statistics(json.loads(p.read_text())))
        return 0
    if cmd == "eval":
        from .rm_eval import format_metrics

        print(format_metrics(pipeline.run_stage(recipe, "eval", force=args.force)))
        return 0
    if cmd == "dry-run":
        print(json.dumps(pipeline.dry_run(recipe, base_model=args.base_model), indent=2, default=str))
        return 0
    return 2


COMMANDS["train"] = (_configure, _run)
