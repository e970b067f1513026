"""Gold-prefix branching: the policy's own alternatives at every decision of the gold answer.

Far cheaper than full rollouts: along each example's gold answer (teacher-forced), every
decided step is one batched decision of the policy (:meth:`PolicySession.decide
<toolprm_agents.interfaces.PolicySession.decide>` with the gate open, as the search
proposes when it branches): the exact top ``m`` alternatives of a finite decision (function
names, the end of the arguments, the end of the answer, argument names, enum and boolean
values) and, for an open value, the greedy value plus ``m`` samples. Each alternative is
recorded as the answer ``gold prefix + alternative`` (its forced steps settled), and the
dataset labels it against the gold answer with the project's labeller
(:func:`~toolprm_agents.training.labels.label_steps`), like every other answer.

**Off-gold prefixes.** For a share (``offgold_share``) of the wrong alternatives, the
policy continues greedily after the wrong step (at most ``offgold_steps`` more
decisions), so the judge also sees states after a mistake.

:func:`gold_decisions` is the walk itself; :mod:`.search_weights` fits the combined
search's weights on the same walk. Records have the rollout format (:mod:`.rollouts`) and
are written through the same resumable loop (appended and fsynced per query; a rerun skips
the ids already written; ``budget_seconds`` stops starting new queries)::

    {"id", "example", "answers": [{"steps", "origin": "gold" | "branch" | "offgold",
     "done", "count"}], "seconds", "compute", "config", "error"}

    python -m toolprm_agents.training.branching --recipe training/recipes/cpu-smollm2-large.yaml \\
        --queries 5 --threads 1          # a smoke run (the pipeline's ``branches`` stage does all)
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Iterator

from ..compute import Compute
from ..interfaces import Candidate
from ..prompt import normalize_messages
from ..steps import PartialAnswer, PlanLimits, StepKind
from .labels import label_steps
from .rollouts import plan_for
from .sources import Example, stable_seed

__all__ = ["BranchConfig", "gold_decisions", "branch_one", "collect_branches"]


@dataclass
class BranchConfig:
    """``m``: alternatives per finite decision and samples per open value; ``temperature``
    of those samples; ``offgold_share``: share of wrong alternatives continued greedily for
    at most ``offgold_steps`` decisions; plan bounds as in
    :class:`~toolprm_agents.training.rollouts.RolloutConfig`; ``max_seconds`` per query
    (what was found is kept)."""

    m: int = 4
    temperature: float = 0.8
    offgold_share: float = 0.3
    offgold_steps: int = 6
    seed: int = 0
    max_string_length: int = 32
    max_array_items: int = 4
    extra_calls: int = 1
    max_seconds: float | None = None

    def limits(self, n_gold: int) -> PlanLimits:
        return PlanLimits(max(1, n_gold + self.extra_calls), self.max_string_length, self.max_array_items, True)


def gold_decisions(session, gold: PartialAnswer, *, m: int, temperature: float, deadline: float | None = None) -> Iterator[tuple[int, PartialAnswer, object, list[Candidate]]]:
    """``(index, gold prefix, gold step, candidates)`` at every decided step of ``gold``:
    the session's exact alternatives with the gate open (``gate=2``: always branch) and
    ``m`` sampled values for an open value."""
    for i, gold_step in enumerate(gold.steps):
        if gold_step.forced:
            continue
        if deadline is not None and time.monotonic() > deadline:
            return
        prefix = PartialAnswer(gold.steps[:i])
        prop = session.decide(prefix, m=m, temperature=temperature, gate=2.0, samples=m)
        yield i, prefix, gold_step, prop.candidates


def _last_decided_ok(answer: PartialAnswer, gold_calls, tools) -> bool:
    labels = label_steps(answer, gold_calls, tools)
    decided = [l for l in labels if not l.forced]
    return bool(decided) and decided[-1].label


def branch_one(ex: Example, policy, config: BranchConfig) -> dict:
    """The record of one example: its gold answer, every alternative along it, and the
    off-gold continuations (see the module docstring)."""
    t0 = time.monotonic()
    plan = plan_for(ex, config.limits(len(ex.calls)))
    compute = Compute()
    answers: dict[str, dict] = {}
    error = None
    rng = random.Random(stable_seed("offgold", config.seed, ex.id))
    gold = plan.answer_from_calls(ex.calls)

    def record(answer: PartialAnswer, origin: str, count: int) -> None:
        prev = answers.get(answer.text)
        if prev is None:
            answers[answer.text] = {"steps": [s.to_dict() for s in answer.steps], "origin": origin, "done": answer.done, "count": count}
        else:
            prev["count"] += count

    record(gold, "gold", 0)
    try:
        session = policy.session(normalize_messages(ex.messages), plan, compute, seed=stable_seed("branch", config.seed, ex.id) % (2**63))
        deadline = t0 + config.max_seconds if config.max_seconds else None
        for i, prefix, gold_step, cands in gold_decisions(session, gold, m=config.m, temperature=config.temperature, deadline=deadline):
            for c in cands:
                child = plan.settle(prefix.extend(c.step))
                if child.steps[: i + 1] == gold.steps[: i + 1] and gold.text.startswith(child.text):
                    continue  # the gold step itself: already in the gold answer
                record(child, "branch", c.count)
                if child.done or _last_decided_ok(child, ex.calls, plan.tools) or rng.random() >= config.offgold_share:
                    continue
                answer = child  # continue greedily after the wrong step
                for _ in range(config.offgold_steps):
                    if answer.done or (deadline is not None and time.monotonic() > deadline):
                        break
                    nxt = session.decide(answer, m=1, temperature=0.0, gate=0.0, samples=0).candidates
                    if not nxt:
                        break
                    answer = plan.settle(answer.extend(nxt[0].step))
                if answer.text != child.text:
                    record(answer, "offgold", 0)
    except Exception as exc:  # a prompt too long for the model, a tool the grammar cannot express
        error = f"{type(exc).__name__}: {exc}"
    compute.stop_clock()
    # drop answers that are a prefix of another (their steps are in the longer one)
    texts = sorted(answers, key=len, reverse=True)
    maximal: list[str] = []
    for t in texts:
        a = answers[t]
        if any(answers[k]["steps"][: len(a["steps"])] == a["steps"] and answers[k]["origin"] == a["origin"] for k in maximal):
            continue
        maximal.append(t)
    keep = set(maximal)
    kept = [a for t, a in answers.items() if t in keep]
    return {
        "id": ex.id,
        "example": ex.to_dict(),
        "answers": kept,
        "seconds": round(time.monotonic() - t0, 3),
        "compute": compute.to_dict(),
        "config": asdict(config),
        "error": error,
    }


def collect_branches(examples, policy, out_path, config: BranchConfig | None = None, *, progress=True, budget_seconds: float | None = None) -> list[dict]:
    """:func:`branch_one` for every example not yet in ``out_path`` (resumable; see
    :func:`~toolprm_agents.training.rollouts.collect_rollouts`)."""
    from .rollouts import collect_rollouts

    return collect_rollouts(examples, policy, out_path, config or BranchConfig(), progress=progress, budget_seconds=budget_seconds, collect=branch_one)


def main(argv=None) -> int:
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description="gold-prefix branching on a recipe's examples (a smoke run; the pipeline's branches stage runs it all)")
    ap.add_argument("--recipe", default="training/recipes/cpu-smollm2-large.yaml")
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--out", default="runs/branch-smoke/branches.jsonl")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-minutes", type=float, default=None)
    args = ap.parse_args(argv)
    import torch

    from ..backends import load_policy
    from .pipeline import _out, load_recipe, stage_data

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    examples = stage_data(recipe, _out(recipe))
    examples = sorted(examples, key=lambda e: stable_seed("branch-order", e.id))[: args.queries]
    cfg = dict(recipe.get("branches") or {})
    policy_ref = cfg.pop("policy", "smollm2")
    max_step_tokens = int(cfg.pop("max_step_tokens", 16))
    for k in ("budget_minutes", "max_queries", "enabled"):
        cfg.pop(k, None)
    config = BranchConfig(**cfg)
    policy = load_policy(policy_ref, max_step_tokens=max_step_tokens)
    t0 = time.monotonic()
    recs = collect_branches(examples, policy, Path(args.out), config, budget_seconds=args.budget_minutes * 60 if args.budget_minutes else None)
    secs = [r["seconds"] for r in recs]
    print(json.dumps({"queries": len(recs), "answers": sum(len(r["answers"]) for r in recs), "seconds_per_query": round(sum(secs) / max(1, len(secs)), 2), "wall": round(time.monotonic() - t0, 1), "errors": [r["error"] for r in recs if r.get("error")]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
