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

from ..judges import JudgeConfig
from ..search import judge_pairs
from .dataset import UNITS, judge_units
from .trainer import JudgeFormat, JudgementDataset, collate, judgement_logits

__all__ = ["auroc", "score_judgements", "evaluate_judge", "evaluate_checkpoint", "judge_weights", "format_metrics", "step_breakdown", "format_breakdown"]


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
            metrics.update(step_breakdown(steps, rows, (judge.metadata or {}).get("calibration")))
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


def _summary(vals: list[tuple[float, int]]) -> dict:
    right = [p for p, y in vals if y]
    wrong = [p for p, y in vals if not y]
    return {
        "n": len(vals), "pos": len(right), "neg": len(wrong),
        "acc": sum((p > 0.5) == bool(y) for p, y in vals) / len(vals) if vals else float("nan"),
        "auroc": auroc([p for p, _ in vals], [y for _, y in vals]),
        "mean_right": sum(right) / len(right) if right else float("nan"),
        "mean_wrong": sum(wrong) / len(wrong) if wrong else float("nan"),
    }


def step_breakdown(steps: dict, rows: Sequence[dict], calibration: dict | None = None, kind: str = "toolprm") -> dict:
    """Where a step judge fails: accuracy, AUROC and mean score of right / wrong steps per
    step kind (FUNC_NAME, ARG, PARAM_FINISH, TOTAL_FINISH; FUNC_FINISH is always forced and
    judged with the step before it) and per origin of the step (``gold``, ``branch``,
    ``perturb:TYPE`` ...: a negative's type); "pick" accuracy over decisions (the units that
    extend one context are one decision's alternatives: is the best-scored one right, among
    decisions with a right and a wrong one); and a reliability table (score deciles).
    With a ``calibration`` fit the same summary is given for the calibrated scores.
    ``kind``: the judge whose units ``steps`` holds (``cprm``: calls, ``orm``: answers, each
    filed under the kind of its first decided step; an ORM's decisions are its queries)."""
    from .calibration import calibrate, reliability_table
    from .dataset import origin_group, unit_table

    info = unit_table(rows, kind)
    by_kind: dict[str, list] = defaultdict(list)
    by_origin: dict[str, list] = defaultdict(list)
    by_ctx: dict[tuple[str, str], list] = defaultdict(list)
    for key, v in steps.items():
        u = info.get(key)
        if u is None:
            continue
        by_kind[u["step_kind"]].append((v[0], v[1]))
        by_origin[origin_group(u["origin"])].append((v[0], v[1]))
        by_ctx[(key[0], u["context"])].append((v[0], v[1]))
    mixed = [d for d in by_ctx.values() if any(y for _, y in d) and not all(y for _, y in d)]
    out = {
        "step_by_kind": {k: _summary(v) for k, v in sorted(by_kind.items())},
        "step_by_origin": {k: _summary(v) for k, v in sorted(by_origin.items())},
        "decision_pick_acc": sum(max(d, key=lambda t: t[0])[1] for d in mixed) / len(mixed) if mixed else float("nan"),
        "decisions": len(mixed),
        "reliability": reliability_table([v[0] for v in steps.values()], [v[1] for v in steps.values()]),
    }
    allv = list(steps.values())
    out["step_mean_right"] = _summary([(v[0], v[1]) for v in allv])["mean_right"]
    out["step_mean_wrong"] = _summary([(v[0], v[1]) for v in allv])["mean_wrong"]
    if calibration:
        cal = [(calibrate(v[0], calibration), v[1]) for v in allv]
        c = _summary(cal)
        out["calibrated"] = {"acc": c["acc"], "mean_right": c["mean_right"], "mean_wrong": c["mean_wrong"],
                             "reliability": reliability_table([p for p, _ in cal], [y for _, y in cal])}
    return out


def format_breakdown(name: str, m: dict) -> str:
    """Markdown tables of :func:`step_breakdown` for one judge."""
    lines = []
    for what, title in (("step_by_kind", "step kind"), ("step_by_origin", "origin / negative type")):
        if what not in m:
            continue
        lines += ["", f"{name}, by {title}:", "", f"| {title} | steps | + | - | acc | AUROC | mean score right | mean score wrong |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for k, v in m[what].items():
            f = lambda x: "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"  # noqa: E731
            lines.append(f"| {k} | {v['n']} | {v['pos']} | {v['neg']} | {f(v['acc'])} | {f(v['auroc'])} | {f(v['mean_right'])} | {f(v['mean_wrong'])} |")
    if "reliability" in m:
        lines += ["", f"{name}, reliability (equal-count score deciles):", "", "| decile | n | score range | share right | mean score right | mean score wrong |", "|---:|---:|---|---:|---:|---:|"]
        for b in m["reliability"]:
            f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            lines.append(f"| {b['bin']} | {b['n']} | {b['lo']:.3f}-{b['hi']:.3f} | {b['share_right']:.3f} | {f(b['mean_score_right'])} | {f(b['mean_score_wrong'])} |")
    if "decision_pick_acc" in m:
        lines += ["", f"{name}: decision pick accuracy {m['decision_pick_acc']:.3f} over {m['decisions']} decisions with a right and a wrong alternative."]
    return "\n".join(lines)


def evaluate_checkpoint(checkpoint, rows: Sequence[dict], *, kind: str | None = None, max_length: int = 2048, progress: bool = False) -> dict:
    """Load a judge checkpoint the way the search does (:func:`~toolprm_agents.scorers.load_scorer`) and evaluate it."""
    from ..backends.transformers_judges import load_scorer

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
    for name, m in results.items():
        if "step_by_kind" in m and m.get("kind") == "toolprm":
            lines.append(format_breakdown(name, m))
    return "\n".join(lines)


def bfcl_examples(category: str, n: int) -> list:
    """The first ``n`` items of a BFCL category as :class:`~.sources.Example` (gold calls
    from the possible answer; none for irrelevance): for *evaluating* only."""
    from ..evaluation.bfcl import ground_truth_calls, load_category
    from .sources import Example

    return [Example(f"bfcl/{it.id}", "bfcl", it.messages, it.tools, ground_truth_calls(it.expected, it.tools))
            for it in load_category(category)[:n]]


def bfcl_rows(category: str, n: int, *, per_example: int = 12, seed: int = 0) -> list[dict]:
    """Dataset rows (split ``test``) of the first ``n`` items of a BFCL category: each item's gold
    answer (one the possible answer accepts; "no call" for irrelevance) and its model-free
    perturbations (:mod:`.perturb`), labelled like the training data. For *evaluating* a judge
    on the benchmark's own queries and tools only -- never for training or fitting anything.
    """
    from .dataset import build_rows
    from .perturb import PerturbConfig, perturb_examples

    exs = bfcl_examples(category, n)
    rows = build_rows(perturb_examples(exs, PerturbConfig(per_example=per_example, seed=seed)), test_fraction=1.0, seed=seed)
    return [r for r in rows if r["split"] == "test"]
