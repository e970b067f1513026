"""The labelled dataset: rollouts + step labels, saved as Hugging Face ``datasets`` parquet.

One row per recorded answer (a maximal answer of an example's exploration tree, see
:mod:`.rollouts`), with its example, its steps and their labels::

    id, base_id, split, source, masked, messages, tools, gold, origin, count, done,
    text, steps, step_labels, answer_label

(``messages``, ``tools``, ``gold`` and ``steps`` are JSON strings; ``step_labels`` holds 1/0
per step; ``answer_label`` is 1/0 for a complete answer, -1 for a partial one.)

The split is by query: an example and its masked twin always land on the same side, so
the held-out split never shares a query with the training split.

:func:`judge_units` turns the rows of one example into what a judge of one granularity
is trained on: the distinct ``(context, judged, label)`` units along all its answers
(:func:`~toolprm_agents.training.labels.judged_labels`). :func:`statistics` counts steps
and trajectories, positive and negative, per split (the paper's Table 1).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..steps import PartialAnswer
from .labels import answer_correct, judged_labels, label_steps
from .rollouts import answer_from_record, plan_for
from .sources import Example, stable_seed

__all__ = [
    "build_rows",
    "split_of",
    "merge_records",
    "unit_table",
    "origin_group",
    "save_dataset",
    "load_dataset_split",
    "JudgeUnitGroup",
    "judge_units",
    "group_rows",
    "statistics",
    "format_statistics",
]

UNITS = {"toolprm": "step", "cprm": "call", "orm": "answer"}


def split_of(base_id: str, test_fraction: float, seed: int = 0, calib_fraction: float = 0.0) -> str:
    """``"test"`` for about ``test_fraction`` of queries (by a hash of the query id), ``"calib"``
    for the next ``calib_fraction`` (held out for calibrating the judge's scores), else ``"train"``.
    With ``calib_fraction == 0`` the split is the same as before it existed."""
    h = stable_seed("split", seed, base_id) % 100_000
    if h < test_fraction * 100_000:
        return "test"
    return "calib" if h < (test_fraction + calib_fraction) * 100_000 else "train"


def _base_id(ex: dict) -> str:
    return (ex.get("meta") or {}).get("original_id") or ex["id"].split("#")[0]


def build_rows(records: Iterable[dict], *, test_fraction: float = 0.15, seed: int = 0, calib_fraction: float = 0.0) -> list[dict]:
    """Dataset rows (one per recorded answer) from rollout records (also gold-prefix branches
    and perturbations: :func:`merge_records` joins the records of one example)."""
    rows = []
    for rec in records:
        ex = rec["example"]
        if not rec["answers"]:
            continue
        plan = plan_for(ex)
        base = _base_id(ex)
        split = split_of(base, test_fraction, seed, calib_fraction)
        for k, a in enumerate(rec["answers"]):
            answer = answer_from_record(a["steps"])
            labels = label_steps(answer, ex["calls"], plan.tools)
            ok = answer_correct(answer.calls, ex["calls"], plan.tools) if answer.done else None
            rows.append(
                {
                    "id": ex["id"],
                    "base_id": base,
                    "split": split,
                    "source": ex["source"],
                    "masked": bool((ex.get("meta") or {}).get("masked", False)),
                    "augment": str((ex.get("meta") or {}).get("augment", "")),
                    "messages": json.dumps(ex["messages"], ensure_ascii=False),
                    "tools": json.dumps(ex["tools"], ensure_ascii=False),
                    "gold": json.dumps(ex["calls"], ensure_ascii=False),
                    "answer_index": k,
                    "origin": a.get("origin", "sample"),
                    "count": int(a.get("count", 0)),
                    "done": bool(answer.done),
                    "text": answer.text,
                    "steps": json.dumps(a["steps"], ensure_ascii=False),
                    "step_labels": [int(l.label) for l in labels],
                    "answer_label": -1 if ok is None else int(ok),
                }
            )
    return rows


def merge_records(*sources: Iterable[dict]) -> list[dict]:
    """Records of the same example id joined into one (answers in order, the first of equal
    texts kept): perturbations, gold-prefix branches and rollouts of one query become one
    exploration tree, so their shared prefixes are judged once."""
    by_id: dict[str, dict] = {}
    seen: dict[str, set[str]] = {}
    for records in sources:
        for rec in records:
            if not rec.get("answers"):
                continue
            cur = by_id.get(rec["id"])
            if cur is None:
                cur = by_id[rec["id"]] = {"id": rec["id"], "example": rec["example"], "answers": []}
                seen[rec["id"]] = set()
            for a in rec["answers"]:
                key = "".join(s["text"] for s in a["steps"])
                if key not in seen[rec["id"]]:
                    seen[rec["id"]].add(key)
                    cur["answers"].append(a)
    return list(by_id.values())


def save_dataset(rows: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``train.parquet``, ``test.parquet`` and ``calib.parquet`` (Hugging Face ``datasets``) under ``out_dir``."""
    from datasets import Dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "test", "calib"):
        part = [r for r in rows if r["split"] == split]
        path = out / f"{split}.parquet"
        if part:
            Dataset.from_list(part).to_parquet(str(path))
        elif path.exists():
            path.unlink()
        paths[split] = path
    return paths


def load_dataset_split(data_dir: str | os.PathLike, split: str) -> list[dict]:
    """The rows of one split (``train``/``test``) as dicts."""
    from datasets import Dataset

    path = Path(data_dir) / f"{split}.parquet"
    if not path.is_file():
        return []
    return Dataset.from_parquet(str(path)).to_list()


# ------------------------------------------------------------------------------------------


@dataclass
class JudgeUnitGroup:
    """The judge units of one example: its conversation, tools, and for each judged unit
    ``(context, judged, label)``; a trie of the answers is implied by the contexts."""

    id: str
    messages: list[dict]
    tools: list[dict]
    units: list[tuple[PartialAnswer, PartialAnswer, bool]]
    answers: list[tuple[PartialAnswer, int]]  # complete answers and their answer label


def group_rows(rows: Iterable[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["id"]].append(r)
    return groups


def judge_units(rows: Sequence[dict], kind: str) -> list[JudgeUnitGroup]:
    """Per example, the distinct units a judge of ``kind`` (toolprm/cprm/orm) is trained on."""
    unit = UNITS[kind]
    out = []
    for gid, group in group_rows(rows).items():
        first = group[0]
        ex = Example(gid, first["source"], json.loads(first["messages"]), json.loads(first["tools"]), json.loads(first["gold"]))
        plan = plan_for(ex)
        seen: dict[str, tuple[PartialAnswer, PartialAnswer, bool]] = {}
        answers = []
        for r in group:
            answer = answer_from_record(json.loads(r["steps"]))
            for ctx, judged, ok in judged_labels(answer, ex.calls, unit, plan.tools):
                seen.setdefault(judged.text, (ctx, judged, ok))
            if answer.done:
                answers.append((answer, int(r["answer_label"])))
        if seen:
            out.append(JudgeUnitGroup(gid, ex.messages, ex.tools, list(seen.values()), answers))
    return out


# ------------------------------------------------------------------------------------------


def origin_group(origin: str) -> str:
    """``perturb:wrong_value:near_copy`` -> ``perturb:wrong_value`` (``gold``, ``branch`` ... as they are)."""
    parts = origin.split(":")
    return ":".join(parts[:2])


def unit_table(rows: Sequence[dict], kind: str = "toolprm") -> dict[tuple[str, str], dict]:
    """Every distinct judged unit of ``kind``: ``(example id, judged text) -> {"label",
    "step_kind" (the kind of the unit's decided step), "origin" (of the first answer that
    holds it, e.g. ``gold``, ``branch``, ``offgold``, ``sample``, ``perturb:TYPE:SUBTYPE``),
    "context" (the text it extends: units with one context are one decision's alternatives)}``."""
    unit = UNITS[kind]
    out: dict[tuple[str, str], dict] = {}
    for gid, group in group_rows(rows).items():
        first = group[0]
        ex = Example(gid, first["source"], json.loads(first["messages"]), json.loads(first["tools"]), json.loads(first["gold"]))
        plan = plan_for(ex)
        for r in group:
            answer = answer_from_record(json.loads(r["steps"]))
            for ctx, judged, ok in judged_labels(answer, ex.calls, unit, plan.tools):
                key = (gid, judged.text)
                if key in out:
                    continue
                decided = judged.steps[len(ctx.steps)] if len(judged.steps) > len(ctx.steps) else judged.steps[-1]
                out[key] = {"label": int(ok), "step_kind": decided.kind.value, "origin": r.get("origin", "sample"), "context": ctx.text}
    return out


def _balance(units: Iterable[dict], key) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for u in units:
        b = out.setdefault(key(u), {"pos": 0, "neg": 0})
        b["pos" if u["label"] else "neg"] += 1
    return dict(sorted(out.items()))


def statistics(rows: Sequence[dict]) -> dict:
    """Counts per split: queries, trajectories (complete answers) and step / call units,
    each positive and negative (the step units are the ToolPRM's training samples)."""
    stats: dict = {}
    for split in ("train", "test", "calib"):
        part = [r for r in rows if r["split"] == split]
        if not part and split == "calib":
            continue
        s = {"queries": len({r["id"] for r in part}), "base_queries": len({r["base_id"] for r in part}),
             "distinct_conversations": len({r["messages"] for r in part})}
        traj = [r for r in part if r["done"]]
        s["trajectories_pos"] = sum(r["answer_label"] == 1 for r in traj)
        s["trajectories_neg"] = sum(r["answer_label"] == 0 for r in traj)
        s["sampled_trajectories"] = sum(1 for r in traj if r["count"] > 0)
        steps = list(unit_table(part, "toolprm").values())
        s["steps_pos"] = sum(1 for u in steps if u["label"])
        s["steps_neg"] = sum(1 for u in steps if not u["label"])
        calls = list(unit_table(part, "cprm").values())
        s["calls_pos"] = sum(1 for u in calls if u["label"])
        s["calls_neg"] = sum(1 for u in calls if not u["label"])
        s["steps_by_kind"] = _balance(steps, lambda u: u["step_kind"])
        s["steps_by_origin"] = _balance(steps, lambda u: origin_group(u["origin"]))
        s["steps_by_origin_detail"] = _balance(steps, lambda u: u["origin"])
        s["augmented_queries"] = {k: len({r["id"] for r in part if r.get("augment") == k}) for k in sorted({r.get("augment", "") for r in part}) if k}
        s["sources"] = {}
        for r in part:
            s["sources"].setdefault(r["source"], set()).add(r["id"])
        s["sources"] = {k: len(v) for k, v in sorted(s["sources"].items())}
        s["masked_queries"] = len({r["id"] for r in part if r["masked"]})
        stats[split] = s
    return stats


def format_statistics(stats: dict) -> str:
    """A Markdown table like the paper's Table 1."""
    lines = [
        "| split | queries | trajectories + | trajectories - | steps + | steps - | calls + | calls - |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    splits = [x for x in ("train", "test", "calib") if stats.get(x)]
    summary = stats.get("summary")
    for split in splits:
        s = stats[split]
        lines.append(
            f"| {split} | {s['queries']} | {s['trajectories_pos']} | {s['trajectories_neg']} | {s['steps_pos']} | "
            f"{s['steps_neg']} | {s['calls_pos']} | {s['calls_neg']} |"
        )
    srcs = "; ".join(f"{split}: " + ", ".join(f"{k} {v}" for k, v in stats[split]["sources"].items()) for split in splits)
    lines.append("")
    lines.append(f"Queries by source ({srcs}); masked queries: " + ", ".join(f"{split} {stats[split]['masked_queries']}" for split in splits) + ".")
    for what, title in (("steps_by_kind", "step kind"), ("steps_by_origin", "origin")):
        if not all(what in stats[x] for x in splits):
            continue
        keys = sorted({k for x in splits for k in stats[x][what]})
        lines += ["", f"Step units by {title} (+ / -, share of +):", "",
                  f"| {title} | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        for k in keys:
            cells = []
            for x in splits:
                b = stats[x][what].get(k, {"pos": 0, "neg": 0})
                n = b["pos"] + b["neg"]
                cells.append(f"{b['pos']} / {b['neg']} ({100 * b['pos'] / n:.0f} %)" if n else "-")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    if summary:
        lines += ["", f"In all: {summary['examples']} examples ({', '.join(f'{k} {v}' for k, v in summary['examples_by_kind'].items())}), "
                  f"{summary['distinct_user_texts']} distinct user texts ({summary['distinct_user_texts_from_sources']} from the sources as they are), "
                  f"{summary['labelled_step_units']} labelled step units."]
        if summary.get("perturbation_mix"):
            lines.append("Perturbed answers by error type: " + ", ".join(f"{k.split(':')[-1]} {100 * v:.1f} %" for k, v in summary["perturbation_mix"].items())
                         + f" (of {summary['perturbed_answers']}); negative step units by origin: "
                         + ", ".join(f"{k} {100 * v[1]:.1f} %" for k, v in summary["negative_step_units_by_origin"].items()) + ".")
    return "\n".join(lines)
