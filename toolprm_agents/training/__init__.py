"""Training the judges: data construction, rollouts, step labels, training and evaluation.

The pipeline (each module usable on its own):

1. :mod:`.sources` -- Seal-Tools, glaive and API-Bank level-3 in one form
   (:class:`~.sources.Example`: messages, tools, gold calls), with the evaluation sets
   (BFCL, API-Bank level 1/2, ToolAlpaca) kept out by :func:`~.sources.decontaminate`;
2. :mod:`.masking` -- Hammer-style function masking; :mod:`.augment` -- irrelevance ("no call"
   is right) and parallel (two requests, two calls) examples;
3. :mod:`.rollouts` -- the project's policy explores answers step by step (resumable);
   :mod:`.branching` -- the policy's alternatives at every decision of the gold answer
   (resumable); :mod:`.perturb` -- hard negatives from gold steps, no model;
4. :mod:`.labels` -- each step labelled against the gold calls and its prefix;
5. :mod:`.dataset` -- Hugging Face parquet files and Table-1 statistics;
6. :mod:`.trainer` -- ToolPRM, ORM and C-PRM trainers (``transformers.Trainer``, LoRA via ``peft``);
7. :mod:`.rm_eval` -- held-out loss, step/trajectory accuracy and AUROC (per step kind and
   negative type, reliability); :mod:`.calibration` -- Platt scaling on a calibration split;
8. :mod:`.pipeline` / :mod:`.cli` -- recipes (``training/recipes``) and ``toolprm-agents train``.

Heavy dependencies (``datasets``, ``peft``) are imported where they are used.
"""

from .labels import StepLabel, answer_correct, judged_labels, label_steps, values_equal
from .masking import MaskingConfig, apply_masking, mask_example
from .sources import EvalIndex, Example, decontaminate, load_apibank_lv3, load_glaive, load_seal_tools, load_sources

__all__ = [
    "Example",
    "EvalIndex",
    "decontaminate",
    "load_sources",
    "load_seal_tools",
    "load_glaive",
    "load_apibank_lv3",
    "MaskingConfig",
    "mask_example",
    "apply_masking",
    "StepLabel",
    "label_steps",
    "answer_correct",
    "judged_labels",
    "values_equal",
]
