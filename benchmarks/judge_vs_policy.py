"""Who picks better among the policy's own candidates: the policy, the judge, or their weights?

Reads the reports of ``python -m toolprm_agents.training.search_weights`` -- an evaluation-only
``--bfcl CAT`` run or a fit on a held-out split (``--split calib``) -- and prints one markdown
table: per report, the pick accuracy (the right candidate ranked first, over decisions along the
gold answer that have a right candidate) of each ranking, overall and per step kind of the gold
step.

    python benchmarks/judge_vs_policy.py docs/results/judge-on-policy/probe-*

Example (a made-up report)::

    >>> rep = {"pick_accuracy": {"policy only": [0.5, 4]}, "by_kind": {"ARG": {"policy only": 0.5, "decisions": 4}}}
    >>> print(table({"x": rep}).splitlines()[2])
    | x | all | 4 | 50.0 |
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _parts(report: dict) -> tuple[dict, dict]:
    if "pick_accuracy" in report:
        return report["pick_accuracy"], report.get("by_kind") or {}
    return report["held_out_pick_accuracy"], report.get("by_kind_held_out") or {}


def table(reports: dict[str, dict]) -> str:
    """One row per report and step kind; a column per ranking (the union over reports)."""
    names: list[str] = []
    for rep in reports.values():
        for n in _parts(rep)[0]:
            if n not in names:
                names.append(n)
    lines = ["| report | step kind | decisions | " + " | ".join(names) + " |",
             "|---|---|---:|" + "---:|" * len(names)]
    for label, rep in reports.items():
        overall, by_kind = _parts(rep)
        n = next(iter(overall.values()))[1]
        lines.append(f"| {label} | all | {n} | " + " | ".join(f"{100 * overall[k][0]:.1f}" if k in overall else "" for k in names) + " |")
        for kind, row in by_kind.items():
            cells = [f"{100 * row[k]:.1f}" if row.get(k) is not None else "" for k in names]
            lines.append(f"| {label} | {kind} | {row['decisions']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    reports = {}
    for d in argv:
        path = Path(d) / "report.json" if Path(d).is_dir() else Path(d)
        if not path.is_file():
            print(f"no report at {path}", file=sys.stderr)
            return 2
        reports[path.parent.name] = json.loads(path.read_text())
    if not reports:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(table(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
