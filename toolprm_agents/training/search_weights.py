"""Fit the combined search's weights on a held-out split of the judge's training sources.

The default search (:func:`toolprm_agents.search.combined_beam`) ranks a decision's
candidates by ``policy_weight * log p + judge_weight * judge log-odds + vote_weight * log
vote share`` (the last two centred among the siblings). How much the judge should count
depends on how good it is, so the weights are fitted, per judge, as a conditional logit:
at every decision along a gold answer the policy's candidates are proposed as the search
proposes them (``gate`` 1: always branch), labelled right or wrong against the gold answer,
judged, and the weights maximise the probability of the right candidates among their
siblings. The queries are the examples of the judge's own training sources that its
recipe did *not* select (same ordering, the next ones), with every evaluation set's
queries and tools removed (:class:`~toolprm_agents.training.sources.EvalIndex`); half of
them fit, the other half reports pick accuracy against the policy alone and the judge alone.
Nothing here reads an evaluation benchmark.

    python -m toolprm_agents.training.search_weights --recipe training/recipes/cpu-smollm2.yaml \\
        --checkpoint toolprm_agents/checkpoints/toolprm-smollm2 --queries 120 --write

writes ``search_weights`` into the checkpoint's ``toolprm_config.json`` (with ``--write``)
and a report; features are cached in ``--work`` so a stopped run resumes.

Example (the fit itself, on made-up decisions)::

    >>> d = [[((0.0, 1.0, 0.0), True), ((-0.1, -1.0, 0.0), False)]] * 8
    >>> w = fit_weights(d, steps=200)
    >>> w["judge"] > 0
    True
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

FEATURES = ("policy", "judge", "vote")
#: one decision's candidates: ((policy, judge, vote) features[, the judge's raw score], right?)
Decision = list[tuple[tuple[float, ...], bool]]


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _centered(xs: list[float]) -> list[float]:
    m = sum(xs) / len(xs)
    return [x - m for x in xs]


def dev_examples(recipe: dict, n: int, root=None) -> list:
    """``n`` examples of the recipe's sources that its judge never saw, decontaminated."""
    from .sources import EvalIndex, decontaminate, load_sources, stable_seed

    data = recipe["data"]
    seed = int(recipe.get("seed", 0))
    index = EvalIndex.build(data.get("root") or root, require_bfcl=bool(data.get("require_bfcl", False)))
    examples, _ = load_sources(data["sources"], data.get("root") or root, seed=seed, index=index)
    examples, _ = decontaminate(examples, index)
    per_source = data.get("per_source") or {}
    by_source: dict[str, list] = {}
    for ex in examples:
        by_source.setdefault(ex.source, []).append(ex)
    pools = []
    for src, items in sorted(by_source.items()):
        items = sorted(items, key=lambda e: stable_seed("order", seed, e.id))
        used = per_source.get(src)
        pools.append(items[int(used):] if used is not None else [])  # a source taken whole has no unseen part
    out, k = [], 0
    while len(out) < n and any(k < len(p) for p in pools):  # round-robin over sources
        for p in pools:
            if k < len(p) and len(out) < n:
                out.append(p[k])
        k += 1
    return out


def split_examples(data_dir, split: str, n: int) -> list:
    """The first ``n`` examples (stable order) of one split of a judge's dataset, unmasked:
    e.g. its ``calib`` split, which the judge never trained on."""
    from .dataset import load_dataset_split
    from .sources import Example, stable_seed

    seen, out = set(), []
    for r in load_dataset_split(data_dir, split):
        if r["id"] in seen or r.get("masked"):
            continue
        seen.add(r["id"])
        out.append(Example(r["id"], r["source"], json.loads(r["messages"]), json.loads(r["tools"]), json.loads(r["gold"])))
    out.sort(key=lambda e: stable_seed("weights", e.id))
    return out[:n]


def label(prefix, step, gold) -> bool:
    """Whether ``step`` after ``prefix`` is on a way to the gold answer (any argument order)."""
    from ..matching import values_equal
    from ..steps import StepKind

    done = len(prefix.calls)
    remaining = list(gold.calls[done:])
    name, given, _ = prefix.open_call()
    if step.kind is StepKind.TOTAL_FINISH:
        return not remaining and name is None
    if step.kind is StepKind.FUNC_NAME:
        return any(c.name == step.function for c in remaining)
    target = next((c for c in remaining if c.name == name), None)
    if target is None:
        return False
    if step.kind is StepKind.PARAM_FINISH:
        return set(given) == set(target.arguments)
    if step.kind is StepKind.ARG:
        return step.arg in target.arguments and step.arg not in given and values_equal(target.arguments[step.arg], step.value)
    return True


def decisions_of(policy, judge, example, *, m: int = 4, temperature: float = 0.8, seed: int = 0,
                 kinds: list[str] | None = None, types: list[str] | None = None) -> list[Decision]:
    """The labelled, featurised candidate sets at every decision along ``example``'s gold answer
    (with ``kinds``, the step kind of each decision's gold step is appended to it; with
    ``types``, its :func:`~toolprm_agents.steps.decision_type`, which needs no gold answer)."""
    from ..compute import Compute
    from ..prompt import normalize_messages
    from ..schema import to_tool_specs
    from ..search import _judged_pair
    from ..steps import decision_type
    from ..steps import StepParseError, StepPlan

    plan = StepPlan(to_tool_specs(example.tools))
    try:
        gold = plan.answer_from_calls(example.calls)
    except (StepParseError, KeyError, TypeError):
        return []
    msgs = normalize_messages(example.messages)
    compute = Compute()
    session = policy.session(msgs, plan, compute, seed=seed)
    judging = judge.session(msgs, plan, compute, policy_session=session)
    from .branching import gold_decisions

    out: list[Decision] = []
    for _i, prefix, gold_step, cands in gold_decisions(session, gold, m=m, temperature=temperature):
        if len(cands) < 2:
            continue
        if kinds is not None:
            kinds.append(gold_step.kind.name)
        if types is not None:
            types.append(decision_type(c.step.kind for c in cands))
        children = [plan.settle(prefix.extend(c.step)) for c in cands]
        scores = judging.score([_judged_pair(prefix, ch) for ch in children])
        pol = [math.log(max(c.prob if c.prob is not None else 1.0, 1e-12)) + (c.mean_logprob if c.num_tokens else 0.0) for c in cands]
        sampled = [c.count if c.num_tokens else 0 for c in cands]
        total = sum(sampled)
        votes = [math.log(k / total) if k and total else 0.0 for k in sampled]
        jl = _centered([_logit(s) for s in scores])
        vt = _centered(votes) if total else [0.0] * len(cands)
        out.append([((p, j, v, s), label(prefix, c.step, gold)) for p, j, v, s, c in zip(pol, jl, vt, scores, cands)])
    return out


def fit_weights(decisions: Sequence[Decision], *, steps: int = 300, l2: float = 1e-3) -> dict[str, float]:
    """Non-negative weights maximising the probability of the right candidates among their siblings."""
    import torch

    usable = [d for d in decisions if any(r for _, r in d) and not all(r for _, r in d)]
    if not usable:
        return {"policy": 1.0, "judge": 0.0, "vote": 0.0}
    raw = torch.zeros(3, requires_grad=True)  # softplus(raw) >= 0
    feats = [torch.tensor([f[:3] for f, _ in d]) for d in usable]
    rights = [torch.tensor([r for _, r in d]) for d in usable]
    opt = torch.optim.Adam([raw], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        w = torch.nn.functional.softplus(raw)
        loss = sum(-(torch.logsumexp((f @ w)[r], 0) - torch.logsumexp(f @ w, 0)) for f, r in zip(feats, rights)) / len(usable)
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        opt.step()
    w = torch.nn.functional.softplus(raw).detach().tolist()
    return {k: round(float(v), 4) for k, v in zip(FEATURES, w)}


def gate_table(decisions: Sequence[Decision], weights: dict[str, float], gates: Sequence[float] = (0.3, 0.5, 0.7, 0.9)) -> list[dict[str, Any]]:
    """Per ``gate``: how many decisions the combined search would branch and what it gains there.

    A decision is branched when the policy's top candidate's share of the candidates'
    policy probability is below the gate; on branched decisions the table gives how often
    the policy's top and the weighted score's top are right, on committed ones how often
    the policy's top is. A gate is worth its cost only where the weighted pick beats the
    policy's on the decisions it branches.

        >>> d = [[((0.0, 1.0, 0.0), True), ((-3.0, 0.0, 0.0), False)]]
        >>> gate_table(d, {"policy": 1.0, "judge": 1.0}, gates=(0.9, 0.99))[1]["branched"]
        1
    """
    rows = []
    usable = [d for d in decisions if any(r for _, r in d)]
    for g in gates:
        row = {"gate": g, "decisions": len(usable), "branched": 0, "policy_right_branched": 0,
               "weighted_right_branched": 0, "policy_right_committed": 0}
        for d in usable:
            pol = [f[0] for f, _ in d]
            top = max(pol)
            share = 1.0 / sum(math.exp(p - top) for p in pol)
            by_policy = max(range(len(d)), key=lambda i: pol[i])
            if share < g:
                by_weights = max(range(len(d)), key=lambda i: sum(weights.get(k, 0.0) * v for k, v in zip(FEATURES, d[i][0])))
                row["branched"] += 1
                row["policy_right_branched"] += int(d[by_policy][1])
                row["weighted_right_branched"] += int(d[by_weights][1])
            else:
                row["policy_right_committed"] += int(d[by_policy][1])
        rows.append(row)
    return rows


def verify_table(decisions: Sequence[Decision], weights: dict[str, float], gate: float = 0.5,
                 verifies: Sequence[float] = (0.3, 0.5, 0.7)) -> list[dict[str, Any]]:
    """Per ``verify`` threshold (:attr:`SearchConfig.verify`): on the decisions the ``gate``
    commits (the policy's top candidate's share at or above it), how many the judge doubts
    (its raw score of the policy's top below the threshold) and how often the policy's top
    and the weighted score's top are right there (:func:`verify_by_type` over every decision).
    Decisions cached without the judge's raw score (older caches) are left out.

        >>> d = [[((0.0, -2.0, 0.0, 0.1), False), ((-3.0, 2.0, 0.0, 0.9), True)]]
        >>> verify_table(d, {"policy": 1.0, "judge": 1.0}, verifies=(0.5,))[0]["weighted_right_doubted"]
        1
    """
    keys = ("decisions", "committed", "doubted", "policy_right_doubted", "weighted_right_doubted")
    rows = []
    for v in verifies:
        row = verify_by_type(decisions, ["all"] * len(decisions), weights, gate, v).get("all", {})
        rows.append({"gate": gate, "verify": v, **{k: row.get(k, 0) for k in keys}})
    return rows


def verify_by_type(decisions: Sequence[Decision], types: Sequence[str], weights: dict[str, float], gate: float = 0.5,
                   verify: float = 0.5) -> dict[str, dict[str, Any]]:
    """:func:`verify_table` at one threshold, per decision type (``types[i]`` of ``decisions[i]``,
    :func:`~toolprm_agents.steps.decision_type`), with the paired counts on the doubted
    decisions: ``weighted_only`` (the weighted pick right, the policy's wrong), ``policy_only``
    (the other way) and their exact McNemar ``p``.

        >>> d = [[((0.0, -2.0, 0.0, 0.1), False), ((-3.0, 2.0, 0.0, 0.9), True)]] * 6
        >>> verify_by_type(d, ["end"] * 6, {"policy": 1.0, "judge": 1.0})["end"]["weighted_only"]
        6
    """
    from ..evaluation.stats import binom_two_sided_half

    if len(types) != len(decisions):
        raise ValueError(f"{len(types)} decision types for {len(decisions)} decisions")
    rows: dict[str, dict[str, Any]] = {}
    for d, t in zip(decisions, types):
        if not any(r for _, r in d) or not all(len(f) > 3 for f, _ in d):
            continue
        row = rows.setdefault(t, {"decisions": 0, "committed": 0, "doubted": 0, "policy_right_doubted": 0,
                                  "weighted_right_doubted": 0, "weighted_only": 0, "policy_only": 0})
        row["decisions"] += 1
        pol = [f[0] for f, _ in d]
        top = max(pol)
        if 1.0 / sum(math.exp(p - top) for p in pol) < gate:
            continue
        row["committed"] += 1
        by_policy = max(range(len(d)), key=lambda i: pol[i])
        if d[by_policy][0][3] >= verify:
            continue
        by_weights = max(range(len(d)), key=lambda i: sum(weights.get(k, 0.0) * x for k, x in zip(FEATURES, d[i][0])))
        p_right, w_right = bool(d[by_policy][1]), bool(d[by_weights][1])
        row["doubted"] += 1
        row["policy_right_doubted"] += p_right
        row["weighted_right_doubted"] += w_right
        row["weighted_only"] += w_right and not p_right
        row["policy_only"] += p_right and not w_right
    for row in rows.values():
        row["p"] = binom_two_sided_half(row["weighted_only"], row["policy_only"])
    return dict(sorted(rows.items()))


def verify_rule(by_type: dict[str, dict[str, Any]], verify: float = 0.5, alpha: float = 0.05) -> dict[str, Any]:
    """The ``verify`` setting a judge's held-out decisions support: ask the judge about the
    policy's sure choices only at the decision types where, on the decisions it doubts, its
    weighted pick beats the policy's significantly (more ``weighted_only`` than
    ``policy_only``, exact McNemar ``p < alpha``); no such type: ``verify`` 0 (off).

        >>> verify_rule({"end": {"weighted_only": 30, "policy_only": 5, "p": 1e-5},
        ...              "value": {"weighted_only": 2, "policy_only": 1, "p": 1.0}})
        {'verify': 0.5, 'verify_types': ['end']}
    """
    types = [t for t, r in by_type.items() if r["weighted_only"] > r["policy_only"] and r["p"] < alpha]
    return {"verify": verify if types else 0.0, "verify_types": types}


def pick_accuracy(decisions: Sequence[Decision], weights: dict[str, float]) -> tuple[float, int]:
    """Fraction of decisions (with a right candidate) whose top-ranked candidate is right."""
    w = [weights.get(k, 0.0) for k in FEATURES]
    usable = [d for d in decisions if any(r for _, r in d)]
    hits = 0
    for d in usable:
        best = max(range(len(d)), key=lambda i: sum(a * b for a, b in zip(w, d[i][0])))
        hits += d[best][1]
    return (hits / len(usable) if usable else float("nan")), len(usable)


def pick_by_kind(decisions: Sequence[Decision], kinds: Sequence[str], rankings: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Pick accuracy of each ranking (name -> weights) per step kind of the decisions
    (``kinds[i]`` is the kind of ``decisions[i]``), with the decision count.

        >>> d = [[((0.0, 1.0, 0.0), True), ((-1.0, 0.0, 0.0), False)], [((0.0, 1.0, 0.0), False), ((-1.0, 0.0, 0.0), True)]]
        >>> pick_by_kind(d, ["ARG", "FUNC_NAME"], {"judge only": {"judge": 1.0}})["FUNC_NAME"]["judge only"]
        0.0
    """
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds)):
        ds = [d for d, k in zip(decisions, kinds) if k == kind]
        row: dict[str, Any] = {}
        for name, w in rankings.items():
            acc, n = pick_accuracy(ds, w)
            row[name] = round(acc, 4) if n else None
            row["decisions"] = n
        out[kind] = row
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="training/recipes/cpu-smollm2.yaml")
    ap.add_argument("--checkpoint", default=None, help="judge checkpoint (default: the packaged ToolPRM)")
    ap.add_argument("--queries", type=int, default=120)
    ap.add_argument("--expand", "-M", type=int, default=4)
    ap.add_argument("--work", default="runs/search-weights", help="folder for the feature cache and the report")
    ap.add_argument("--budget-minutes", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="store the fitted weights in the checkpoint's toolprm_config.json")
    ap.add_argument("--split", default=None, help="take the queries from this split of --data (e.g. calib: held out from "
                    "the judge's training) instead of the recipe's unselected examples (a recipe that takes every example has none)")
    ap.add_argument("--data", default=None, help="the judge's dataset folder, for --split")
    ap.add_argument("--bfcl", default=None, help="EVALUATION ONLY: the first --queries items of this BFCL category "
                    "(e.g. multiple); reports how the policy, the judge and the checkpoint's stored weights pick among the "
                    "policy's own candidates on the benchmark; fits nothing and never writes (--write is refused)")
    args = ap.parse_args(argv)
    if args.bfcl and args.write:
        ap.error("--bfcl evaluates on a benchmark: nothing fitted there may be written (drop --write)")

    import torch
    import yaml

    from ..judges import CONFIG_NAME, packaged_checkpoint
    from ..backends.transformers_policy import TransformersPolicy
    from ..backends.transformers_judges import load_scorer

    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "decisions.jsonl"
    done, kinds_of, types_of = {}, {}, {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["id"]] = row["decisions"]
                kinds_of[row["id"]] = row.get("kinds")
                types_of[row["id"]] = row.get("types")
    if args.bfcl:
        from .rm_eval import bfcl_examples

        examples = bfcl_examples(args.bfcl, args.queries)
    elif args.split:
        if not args.data:
            ap.error("--split needs --data (the judge's dataset folder)")
        examples = split_examples(args.data, args.split, args.queries)
    else:
        examples = dev_examples(recipe, args.queries)
    checkpoint = args.checkpoint or str(packaged_checkpoint("toolprm"))
    policy = TransformersPolicy()
    judge = load_scorer("toolprm", checkpoint=checkpoint)
    t0 = time.perf_counter()
    with cache.open("a") as f:
        for ex in examples:
            if ex.id in done:
                continue
            if time.perf_counter() - t0 > args.budget_minutes * 60:
                print(f"budget of {args.budget_minutes} min reached; run again to continue", flush=True)
                break
            kinds: list[str] = []
            types: list[str] = []
            try:
                ds = decisions_of(policy, judge, ex, m=args.expand, kinds=kinds, types=types)
            except Exception as exc:  # an example the plan cannot hold (too long, odd schema): skip it, say so
                print(f"skip {ex.id}: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
                ds, kinds, types = [], [], []
            done[ex.id] = [[[list(ft), bool(r)] for ft, r in d] for d in ds]
            kinds_of[ex.id], types_of[ex.id] = kinds, types
            f.write(json.dumps({"id": ex.id, "source": ex.source, "decisions": done[ex.id], "kinds": kinds, "types": types}) + "\n")
            f.flush()
    ids = [ex.id for ex in examples if ex.id in done]
    from .sources import stable_seed

    decisions = {i: [[(tuple(ft), r) for ft, r in d] for d in done[i]] for i in ids}
    if args.bfcl:
        return _evaluate_only(args, checkpoint, ids, decisions, kinds_of, types_of, work)

    fit_ids = {i for i in ids if stable_seed("fit", i) % 2 == 0}
    held_ids = [i for i in ids if i not in fit_ids]
    fit_d = [d for i in ids if i in fit_ids for d in decisions[i]]
    held_d = [d for i in held_ids for d in decisions[i]]
    weights = fit_weights(fit_d)
    rankings = {"policy only": {"policy": 1.0}, "judge only": {"judge": 1.0}, "fitted": weights}
    report = {
        "queries": len(ids),
        "decisions_fit": len(fit_d),
        "decisions_held_out": len(held_d),
        "weights": weights,
        "held_out_pick_accuracy": {
            "policy only": pick_accuracy(held_d, {"policy": 1.0}),
            "judge only": pick_accuracy(held_d, {"judge": 1.0}),
            "policy + judge (1, 1, 1)": pick_accuracy(held_d, {"policy": 1.0, "judge": 1.0, "vote": 1.0}),
            "fitted": pick_accuracy(held_d, weights),
        },
        "gate_held_out": gate_table(held_d, weights),
        "by_kind_held_out": _by_kind(held_ids, decisions, kinds_of, rankings),
        "by_type_held_out": _by_kind(held_ids, decisions, types_of, rankings),
        "verify_held_out": verify_table(held_d, weights),
        "verify_by_type_held_out": verify_by_type(*_typed(held_ids, decisions, types_of), weights),
        "recipe": args.recipe,
        "queries_from": f"{args.data} split {args.split}" if args.split else "the recipe's unselected examples",
        "checkpoint": checkpoint,
    }
    rule = verify_rule(report["verify_by_type_held_out"])
    report["verify_rule"] = {**rule, "rule": "verify 0.5 at the decision types where the weighted pick beats the policy's "
                             "on the held-out decisions the judge doubts (exact McNemar p < 0.05)"}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if args.write:
        path = Path(checkpoint) / CONFIG_NAME
        cfg = json.loads(path.read_text())
        where = f"the {args.split} split of {args.data}" if args.split else f"{Path(args.recipe).name}'s sources"
        cfg["search_weights"] = {**weights, **rule, "fitted_on": f"{len(ids)} held-out queries of {where} "
                                 f"({len(fit_d)} decisions fit the weights; verify chosen on the other "
                                 f"{len(held_d)}; pick accuracy there in the model card)"}
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        print(f"wrote search_weights to {path}")
    return 0


def _typed(ids, decisions: dict, labels_of: dict) -> tuple[list, list]:
    """The decisions of the queries ``ids`` whose cache records a label (kind or type) per
    decision, and those labels (caches written before labels were recorded are left out)."""
    ds, ls = [], []
    for i in ids:
        labels = labels_of.get(i)
        if labels is not None and len(labels) == len(decisions[i]):
            ds += decisions[i]
            ls += labels
    return ds, ls


def _by_kind(ids, decisions: dict, kinds_of: dict, rankings: dict) -> dict:
    """:func:`pick_by_kind` over the queries ``ids`` whose cached decisions carry their kinds."""
    return pick_by_kind(*_typed(ids, decisions, kinds_of), rankings)


def _evaluate_only(args, checkpoint: str, ids: list[str], decisions: dict, kinds_of: dict, types_of: dict, work: Path) -> int:
    """The ``--bfcl`` report: the policy, the judge and the checkpoint's stored weights picking
    among the policy's candidates on a benchmark's gold prefixes. Nothing is fitted."""
    from ..judges import CONFIG_NAME

    stored = json.loads((Path(checkpoint) / CONFIG_NAME).read_text()).get("search_weights") or {"policy": 1.0, "judge": 1.0, "vote": 1.0}
    stored = {k: float(stored[k]) for k in FEATURES if k in stored}
    all_d = [d for i in ids for d in decisions[i]]
    rankings = {"policy only": {"policy": 1.0}, "judge only": {"judge": 1.0}, "stored weights": stored}
    report = {
        "evaluation_only": f"BFCL {args.bfcl}, first {args.queries} items: nothing here was fitted or written",
        "queries": len(ids), "decisions": len(all_d), "stored_weights": stored,
        "pick_accuracy": {name: pick_accuracy(all_d, w) for name, w in rankings.items()},
        "by_kind": _by_kind(ids, decisions, kinds_of, rankings),
        "by_type": _by_kind(ids, decisions, types_of, rankings),
        "gate": gate_table(all_d, stored), "verify": verify_table(all_d, stored),
        "verify_by_type": verify_by_type(*_typed(ids, decisions, types_of), stored), "checkpoint": checkpoint,
    }
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
