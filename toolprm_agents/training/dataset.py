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
    "save_dataset",
    "load_dataset_split",
    "JudgeUnitGroup",
    "judge_units",
    "group_rows",
    "statistics",
    "format_statistics",
]

UNITS = {"toolprm": "step", "cprm": "call", "orm": "answer"}


def split_of(base_id: str, test_fraction: float, seed: int = 0) -> str:
    """``"test"`` for about ``test_fraction`` of queries (by a hash of the query id), else ``"train"``."""
    return "test" if (stable_seed("split", seed, base_id) % 100_000) < test_fraction * 100_000 else "train"


def _base_id(ex: dict) -> str:
    return (ex.get("meta") or {}).get("original_id") or ex["id"].split("#")[0]


def build_rows(records: Iterable[dict], *, test_fraction: float = 0.15, seed: int = 0) -> list[dict]:
    """Dataset rows (one per recorded answer) from rollout records."""
    rows = []
    for rec in records:
        ex = rec["example"]
        plan = plan_for(ex)
        base = _base_id(ex)
        split = split_of(base, test_fraction, seed)
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


def save_dataset(rows: Sequence[dict], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``train.parquet`` and ``test.parquet`` (Hugging Face ``datasets``) under ``out_dir``."""
    from datasets import Dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "test"):
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


def statistics(rows: Sequence[dict]) -> dict:
    """Counts per split: queries, trajectories (complete answers) and step / call units,
    each positive and negative (the step units are the ToolPRM's training samples)."""
    stats: dict = {}
    for split in ("train", "test"):
        part = [r for r in rows if r["split"] == split]
        s = {"queries": len({r["id"] for r in part}), "base_queries": len({r["base_id"] for r in part})}
        traj = [r for r in part if r["done"]]
        s["trajectories_pos"] = sum(r["answer_label"] == 1 for r in traj)
        s["trajectories_neg"] = sum(r["answer_label"] == 0 for r in traj)
        s["sampled_trajectories"] = sum(1 for r in traj if r["count"] > 0)
        for kind, key in (("toolprm", "steps"), ("cprm", "calls")):
            units = [u for g in judge_units(part, kind) for u in g.units]
            s[f"{key}_pos"] = sum(1 for u in units if u[2])
            s[f"{key}_neg"] = sum(1 for u in units if not u[2])
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
    for split in ("train", "test"):
        s = stats.get(split)
        if not s:
            continue
        lines.append(
            f"| {split} | {s['queries']} | {s['trajectories_pos']} | {s['trajectories_neg']} | {s['steps_pos']} | "
            f"{s['steps_neg']} | {s['calls_pos']} | {s['calls_neg']} |"
        )
    srcs = "; ".join(f"{split}: " + ", ".join(f"{k} {v}" for k, v in stats[split]["sources"].items()) for split in ("train", "test") if split in stats)
    lines.append("")
    lines.append(f"Queries by source ({srcs}); masked queries: " + ", ".join(f"{split} {stats[split]['masked_queries']}" for split in ("train", "test") if split in stats) + ".")
    return "\n".join(lines)
