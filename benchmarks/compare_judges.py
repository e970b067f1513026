"""Two probe judges on the same held-out decisions: pick accuracy, paired.

Reads the test split's extracted features (``python -m toolprm_agents.training.probe --stage
extract --policy-made``) and scores every unit with each probe judge. A decision is the units
that extend one context (a gold prefix): the gold step, its perturbations and, where the
branches stage reached the query, the policy's own alternatives. Prints pick accuracy (the
top-scored unit right, over decisions with a right and a wrong unit) overall, split by whether
the decision holds a policy-made alternative, per step kind, and the exact McNemar test of the
first judge against the last on the same decisions.

    python benchmarks/compare_judges.py toolprm_agents/checkpoints/toolprm-probe-smollm2 runs/s21/toolprm-probe-branches

"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path


def main(argv=None) -> int:
    from toolprm_agents.evaluation.stats import mcnemar
    from toolprm_agents.interfaces import ScorerError
    from toolprm_agents.training.dataset import load_dataset_split, origin_group, unit_table
    from toolprm_agents.training.probe import POLICY_ORIGINS, load_probe_checkpoint, score_units, split_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="probe judge folders")
    ap.add_argument("--features", default="runs/probe/features")
    ap.add_argument("--data", default="runs/cpu-smollm2-large/dataset")
    args = ap.parse_args(argv)
    feats = split_features(args.features, "test", policy_made=True)
    if not feats["labels"]:
        raise SystemExit(f"no test features in {args.features}: run the probe's extract stage first")
    info = unit_table(load_dataset_split(args.data, "test"), "toolprm")
    scores = {}
    for ck in args.checkpoints:
        try:
            scores[ck] = score_units(load_probe_checkpoint(ck)[1], feats)
        except ScorerError as exc:
            raise SystemExit(f"{ck} is not a probe judge: {exc}") from None
    by_ctx = defaultdict(list)
    for key in scores[args.checkpoints[0]]:
        if key in info:
            by_ctx[(key[0], info[key]["context"])].append(key)
    picks: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for keys in by_ctx.values():
        labels = [bool(scores[args.checkpoints[0]][k][1]) for k in keys]
        if all(labels) or not any(labels):
            continue
        made = {origin_group(info[k]["origin"]) for k in keys} & set(POLICY_ORIGINS)
        tag = "with a policy-made alternative" if made else "gold and perturbations only"
        for ck in args.checkpoints:
            best = max(keys, key=lambda k: scores[ck][k][0])
            for group in ("all", tag, "kind " + info[keys[0]]["step_kind"]):
                picks[group][ck].append(bool(scores[ck][best][1]))
    names = [Path(ck).name for ck in args.checkpoints]
    print("| decisions | n | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for group, per in sorted(picks.items()):
        vals = [per[ck] for ck in args.checkpoints]
        print(f"| {group} | {len(vals[0])} | " + " | ".join(f"{100 * sum(v) / len(v):.1f}" for v in vals) + " |")
    test = mcnemar(picks["all"][args.checkpoints[0]], picks["all"][args.checkpoints[-1]])
    print(f"\nonly {names[0]} right: {test.a_only}; only {names[-1]} right: {test.b_only}; exact McNemar p = {test.p:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
