"""A supplementary judge dataset: new augmented examples, labelled like a recipe's dataset, in
a folder of their own.

A probe judge's features are extracted per dataset split in shards of a fixed shuffle of its
examples (:func:`~toolprm_agents.training.probe.extract`); adding examples to the main dataset
reshuffles them and every shard must be extracted again (hours here). A supplement leaves the
main dataset alone: its examples come from the same recipe's ``examples.jsonl`` (the ``data``
stage's output), are made by :mod:`.augment` (today the same-function parallel join), checked
against every evaluation set again (a joined turn is a new text), perturbed with the recipe's
``perturb`` settings and split by their original query exactly as the main dataset is, so a
supplement's ``train`` never shares a query with the main ``test`` or ``calib``. Its features
go to ``SPLIT-TAG`` shards (``probe --stage extract --data DIR --tag TAG``) that a fit merges in
(``probe --stage fit --with TAG``).

Example:
    python -m toolprm_agents.training.supplement --recipe training/recipes/cpu-smollm2-large.yaml \\
        --same-function 1.0 --out runs/same-function/dataset
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

__all__ = ["build_supplement"]


def build_supplement(recipe: dict, examples: Sequence, *, same_function: float, out_dir: str | Path, index=None) -> dict:
    """Write a dataset folder (train/test/calib parquet, ``stats.json``, ``stats.md``) of the
    same-function parallel examples made from ``examples`` (a recipe's ``examples.jsonl``:
    source examples, augmented and masked ones are skipped) and return its statistics.

    ``index``: the :class:`~toolprm_agents.training.sources.EvalIndex` to decontaminate
    against (default: built from the recipe's ``data.root``)."""
    from .augment import AugmentConfig, augment_examples
    from .dataset import build_rows, save_dataset, statistics
    from .perturb import PerturbConfig, perturb_examples
    from .sources import EvalIndex, decontaminate

    cfg = recipe["data"]
    seed = int(recipe.get("seed", 0))
    test_fraction = float(cfg.get("test_fraction", 0.15))
    originals = [e for e in examples if not e.meta.get("augment") and not e.meta.get("masked")]
    acfg = AugmentConfig(irrelevance=0.0, parallel=0.0, same_function=same_function, seed=seed, test_fraction=test_fraction,
                         max_parallel_calls=int((recipe.get("augment") or {}).get("max_parallel_calls", 4)))
    made, report = augment_examples(originals, acfg)
    if index is None:
        index = EvalIndex.build(cfg.get("root"), require_bfcl=bool(cfg.get("require_bfcl", True)))
    made, dropped = decontaminate(made, index)
    report["dropped_overlapping_eval"] = dropped
    if cfg.get("max_prompt_tokens"):
        from .pipeline import _prompt_filter

        fits = _prompt_filter(recipe)
        n = len(made)
        made = [e for e in made if fits(e)]
        report["dropped_prompt_too_long"] = n - len(made)
    pcfg = {k: v for k, v in (recipe.get("perturb") or {}).items() if k not in ("shard_size", "budget_minutes")}
    records = perturb_examples(made, PerturbConfig(**{"seed": seed, **pcfg}))
    rows = build_rows(records, test_fraction=test_fraction, seed=seed, calib_fraction=float(cfg.get("calib_fraction", 0.0)))
    if not rows:
        raise ValueError("the supplement is empty: no two examples of one source and split call the same function")
    out = Path(out_dir)
    save_dataset(rows, out)
    stats = statistics(rows)
    stats["augmented"] = report
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (out / "stats.md").write_text(format_table(stats) + "\n")
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", required=True, help="the recipe whose data stage made examples.jsonl")
    ap.add_argument("--same-function", type=float, default=1.0, help="share of single-turn examples joined with another "
                    "that calls the same function")
    ap.add_argument("--out", required=True, help="the supplement's dataset folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .pipeline import _out, load_recipe
    from .sources import Example

    recipe = load_recipe(args.recipe)
    path = _out(recipe) / "examples.jsonl"
    if not path.is_file():
        ap.error(f"{path} is missing: run the recipe's data stage first (toolprm-agents train run {args.recipe} --stages data)")
    examples = [Example.from_dict(json.loads(line)) for line in path.open() if line.strip()]
    stats = build_supplement(recipe, examples, same_function=args.same_function, out_dir=args.out)
    print(json.dumps(stats["augmented"]))
    print(format_table(stats))
    return 0


def format_table(stats: dict) -> str:
    from .dataset import format_statistics

    return format_statistics({k: v for k, v in stats.items() if k != "augmented"})


if __name__ == "__main__":
    raise SystemExit(main())
