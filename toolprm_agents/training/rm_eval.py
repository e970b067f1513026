"""Reward-model evaluation on a held-out split: loss, step accuracy, trajectory accuracy, AUROC.

For a judge (a trained checkpoint loaded through the core's scorers, or a model in
memory) and the dataset rows of the held-out split:

* ``loss`` -- mean ``-log p(label token)`` over the judge's own judgements (what it was
  trained on: steps for ToolPRM, calls for C-PRM, answers for ORM); ``pair_loss`` -- the
  same with ``p`` the two-label softmax the scorer reads;
* ``unit_acc`` / ``unit_auroc`` -- accuracy (score > 0.5) and AUROC of those judgements
  (for ToolPRM this is *step accuracy*, the paper's Table 2 metric);
* ``step_acc`` / ``step_auroc`` -- every judge scored on the *step* units (the common
  yardstick of the paper's comparison: ORM and C-PRM read a partial answer as if it were
  complete), so the three judges are compared on the same judgements;
* ``traj_acc`` / ``traj_auroc`` -- each complete answer's score (the minimum over its
  units, as :func:`~toolprm_agents.search.aggregate` ``"min"``) against whether the answer
  is correct;
* ``pick_acc`` -- over queries with both a right and a wrong complete answer: how often
  the answer with the best score is a right one (what best-of-N would gain).

Scores are the softmax over the two label logits, as
:class:`~toolprm_agents.scorers.JudgeSession` computes them; the judgements are read in
packed sequences (:func:`~toolprm_agents.training.trainer.pack_group`), which give the
same logits as scoring each one alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import torch

from ..scorers import JudgeConfig
from ..search import judge_pairs
from .dataset import UNITS, judge_units
from .trainer import JudgeFormat, JudgementDataset, collate, judgement_logits

__all__ = ["auroc", "score_judgements", "evaluate_judge", "evaluate_checkpoint", "judge_weights", "format_metrics"]


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``: ties count half); NaN without both classes."""
    from sklearn.metrics import roc_auc_score

    ys = [1 if y else 0 for y in labels]
    if len(set(ys)) < 2:
        return float("nan")
    return float(roc_auc_score(ys, list(scores)))


@torch.inference_mode()
def score_judgements(model, tokenizer, judge: JudgeConfig, rows: Sequence[dict], kind: str, *, max_length: int = 2048, progress: bool = False):
    """Scores of every ``kind`` judgement in ``rows``:
    ``{(group id, judged text): (p_plus, label, nll over the vocabulary, nll over the two labels)}``."""
    fmt = JudgeFormat(judge, tokenizer)
    ds = JudgementDataset(rows, kind, fmt, max_length)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[tuple[str, str], tuple[float, int, float]] = {}
    it = range(len(ds))
    if progress:
        try:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=f"eval {kind}", unit="seq")
        except ImportError:  # pragma: no cover
            pass
    for i in it:
        item = ds[i]
        batch = {k: v.to(device) for k, v in collate([item], dtype).items()}
        logits, targets, binary = judgement_logits(model, batch)
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        plus, minus = fmt.label_ids
        p = torch.softmax(logits[:, [plus, minus]], dim=-1)[:, 0]
        packed = item["packed"]
        for key, pp, y, l in zip(packed.keys, p.tolist(), binary.tolist(), nll.tolist()):
            out[(packed.group_id, key)] = (pp, int(y), l, -math.log(max(pp if y else 1.0 - pp, 1e-12)))
    if was_training:
        model.train()
    return out, ds.dropped


def evaluate_judge(model, tokenizer, judge: JudgeConfig, rows: Sequence[dict], *, max_length: int = 2048, progress: bool = False, step_yardstick: bool = True) -> dict:
    """The metrics of the module docstring for one judge on held-out ``rows``."""
    kind = judge.kind
    own, dropped = score_judgements(model, tokenizer, judge, rows, kind, max_length=max_length, progress=progress)
    metrics: dict = {"kind": kind, "unit": UNITS[kind], "judgements": len(own), "dropped_too_long": dropped}
    vals = list(own.values())
    if vals:
        metrics["loss"] = sum(v[2] for v in vals) / len(vals)
        metrics["pair_loss"] = sum(v[3] for v in vals) / len(vals)
        metrics["unit_acc"] = sum((v[0] > 0.5) == bool(v[1]) for v in vals) / len(vals)
        metrics["unit_auroc"] = auroc([v[0] for v in vals], [v[1] for v in vals])
        metrics["unit_pos_rate"] = sum(v[1] for v in vals) / len(vals)
    if step_yardstick:
        if kind == "toolprm":
            steps = own
        else:
            steps, _ = score_judgements(model, tokenizer, judge, rows, "toolprm", max_length=max_length, progress=progress)
        sv = list(steps.values())
        if sv:
            metrics["step_acc"] = sum((v[0] > 0.5) == bool(v[1]) for v in sv) / len(sv)
            metrics["step_auroc"] = auroc([v[0] for v in sv], [v[1] for v in sv])
    # trajectories: complete answers, scored by the minimum over their units
    unit = UNITS[kind]
    traj_scores, traj_labels = [], []
    per_query: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for g in judge_units(rows, kind):
        for answer, label in g.answers:
            keys = [judged.text for _, judged in judge_pairs(answer, unit)]  # type: ignore[arg-type]
            scores = [own[(g.id, k)][0] for k in keys if (g.id, k) in own]
            if len(scores) != len(keys) or label < 0:
                continue
            s = min(scores)
            traj_scores.append(s)
            traj_labels.append(label)
            per_query[g.id].append((s, label))
    if traj_scores:
        metrics["trajectories"] = len(traj_scores)
        metrics["traj_acc"] = sum((s > 0.5) == bool(y) for s, y in zip(traj_scores, traj_labels)) / len(traj_scores)
        metrics["traj_auroc"] = auroc(traj_scores, traj_labels)
    mixed = [v for v in per_query.values() if any(y for _, y in v) and not all(y for _, y in v)]
    if mixed:
        metrics["pick_queries"] = len(mixed)
        metrics["pick_acc"] = sum(max(v, key=lambda t: t[0])[1] for v in mixed) / len(mixed)
    return metrics


def evaluate_checkpoint(checkpoint, rows: Sequence[dict], *, kind: str | None = None, max_length: int = 2048, progress: bool = False) -> dict:
    """Load a judge checkpoint the way the search does (:func:`~toolprm_agents.scorers.load_scorer`) and evaluate it."""
    from ..scorers import load_scorer

    if kind is None:
        kind = JudgeConfig.load(checkpoint).kind
    scorer = load_scorer(kind, checkpoint=checkpoint)
    with judge_weights(scorer):
        return evaluate_judge(scorer.model, scorer.tokenizer, scorer.config, rows, max_length=max_length, progress=progress)


def judge_weights(scorer):
    """The scorer's own weights in force: a judge whose adapter sits on a shared base has it
    switched on only inside ``scorer.active()``."""
    import contextlib

    active = getattr(scorer, "active", None)
    return active() if callable(active) else contextlib.nullcontext()


_COLUMNS = [
    ("loss", "loss (own unit)"),
    ("unit_acc", "acc (own unit)"),
    ("unit_auroc", "AUROC (own unit)"),
    ("step_acc", "step acc"),
    ("step_auroc", "step AUROC"),
    ("traj_acc", "trajectory acc"),
    ("traj_auroc", "trajectory AUROC"),
    ("pick_acc", "pick acc"),
]


def format_metrics(results: dict[str, dict]) -> str:
    """A Markdown table of several judges' metrics (rows: judges)."""
    head = "| judge | unit | judgements | " + " | ".join(c for _, c in _COLUMNS) + " |"
    sep = "|---|---|---:|" + "---:|" * len(_COLUMNS)
    lines = [head, sep]
    for name, m in results.items():
        cells = []
        for key, _ in _COLUMNS:
            v = m.get(key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("n/a")
            elif key == "loss":
                cells.append(f"{v:.4f}")
            else:
                cells.append(f"{100 * v:.2f}")
        lines.append(f"| {name} | {m.get('unit', '')} | {m.get('judgements', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
