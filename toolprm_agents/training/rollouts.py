"""Rollout collection: the project's own policy explores answers, recorded step by step.

For each example, the policy (:class:`~toolprm_agents.policy.TransformersPolicy` or any
:class:`~toolprm_agents.policy.Policy`) runs a scorer-free beam exploration with the
search's own :func:`~toolprm_agents.search.expand`: every round, each of ``beams`` open
answers is expanded with ``expand`` samples at ``temperature`` (de-duplicated, with
counts); every distinct child is recorded (a labelled step, whether it is kept or not);
``beams`` open children are kept at random, weighted by how often the policy sampled
them (no reward model is involved, so the data is not biased towards any judge);
finished children are trajectories. The gold answer (built by
:meth:`~toolprm_agents.steps.StepPlan.answer_from_calls`) is recorded too.

Output: one JSON line per example, appended and flushed as soon as it is done; a run
that is interrupted and started again skips the ids already in the file (a torn last
line is ignored and rewritten), so collection continues where it stopped::

    {"id": ..., "example": {...}, "answers": [{"steps": [...], "origin": "gold"|"sample",
     "done": true, "count": 3}, ...], "seconds": 4.2, "compute": {...}, "config": {...}}

``answers`` holds the maximal answers only (every recorded partial answer is a prefix of
one of them), so a trie of them is the whole exploration tree.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..compute import Compute
from ..prompt import normalize_messages
from ..schema import to_tool_specs
from ..search import expand
from ..steps import PartialAnswer, PlanLimits, Step, StepKind, StepPlan
from .sources import Example, stable_seed

log = logging.getLogger(__name__)

__all__ = [
    "RolloutConfig",
    "collect_rollouts",
    "collect_one",
    "explore",
    "read_rollouts",
    "step_from_dict",
    "answer_from_record",
    "plan_for",
]


@dataclass
class RolloutConfig:
    """How answers are explored (see the module docstring).

    ``max_rounds`` bounds the decisions of one answer; ``max_calls``/``max_string_length``/
    ``max_array_items`` are the plan's bounds; ``include_gold`` records the gold answer;
    ``max_seconds`` (per example) stops an exploration early (what it found is kept);
    ``extra_calls``: calls allowed beyond the gold answer's count (``None``: ``max_calls``).
    """

    beams: int = 2
    expand: int = 4
    temperature: float = 0.8
    seed: int = 0
    max_rounds: int = 24
    max_calls: int = 6
    max_string_length: int = 64
    max_array_items: int = 8
    include_gold: bool = True
    max_seconds: float | None = None
    extra_calls: int | None = 1

    def limits(self, n_gold: int | None = None) -> PlanLimits:
        """The plan's bounds; with ``extra_calls`` set, an answer may hold at most that many
        calls more than the gold answer (a small policy otherwise repeats calls until
        ``max_calls``, which costs time and teaches nothing new)."""
        calls = self.max_calls
        if self.extra_calls is not None and n_gold is not None:
            calls = max(1, min(calls, n_gold + self.extra_calls))
        return PlanLimits(calls, self.max_string_length, self.max_array_items, True)


def plan_for(example: Example | dict, limits: PlanLimits | None = None) -> StepPlan:
    tools = example.tools if isinstance(example, Example) else example["tools"]
    return StepPlan(to_tool_specs(tools), limits)


def step_from_dict(d: dict) -> Step:
    return Step(StepKind(d["kind"]), d["text"], d.get("function"), d.get("arg"), d.get("value"), bool(d.get("forced", False)))


def answer_from_record(steps: Iterable[dict]) -> PartialAnswer:
    return PartialAnswer(tuple(step_from_dict(s) for s in steps))


def _maximal(answers: dict[str, tuple[PartialAnswer, int, str]]) -> list[tuple[PartialAnswer, int, str]]:
    """Drop answers whose text is a prefix of another's (their steps are in the longer one)."""
    texts = sorted(answers, key=len, reverse=True)
    kept: list[str] = []
    for t in texts:
        a = answers[t][0]
        if any(answers[k][0].steps[: len(a.steps)] == a.steps for k in kept):
            continue
        kept.append(t)
    return [answers[t] for t in kept]


def explore(policy_session, plan: StepPlan, config: RolloutConfig, rng: random.Random, deadline: float | None = None) -> dict[str, tuple[PartialAnswer, int, str]]:
    """Scorer-free beam exploration; returns every distinct answer seen: text -> (answer, count, origin)."""
    seen: dict[str, tuple[PartialAnswer, int, str]] = {}
    frontier = [plan.complete_forced(plan.start())]
    for _ in range(config.max_rounds):
        pool: list[tuple[PartialAnswer, int]] = []
        for beam in frontier:
            for child, count in expand(policy_session, plan, beam, config.expand, config.temperature, "step"):
                prev = seen.get(child.text)
                seen[child.text] = (child, count + (prev[1] if prev else 0), "sample")
                pool.append((child, count))
        open_ = [(c, n) for c, n in pool if not c.done]
        frontier = []
        while open_ and len(frontier) < config.beams:  # weighted sampling without replacement
            total = sum(n for _, n in open_)
            r, acc = rng.random() * total, 0.0
            for j, (c, n) in enumerate(open_):
                acc += n
                if r < acc:
                    frontier.append(c)
                    open_.pop(j)
                    break
            else:
                frontier.append(open_.pop()[0])
        if not frontier or (deadline is not None and time.monotonic() > deadline):
            break
    return seen


def read_rollouts(path: str | os.PathLike) -> list[dict]:
    """The complete records of a rollout file (a torn last line is skipped)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    with p.open() as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn write: the run was interrupted here
            try:
                out.append(json.loads(line))
            except ValueError:
                log.warning("%s: skipping an unreadable line", path)
    return out


def _repair(path: Path) -> None:
    """Cut a torn last line (an interrupted write) so appends start on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with path.open("r+b") as f:
        f.truncate(cut)


def collect_rollouts(
    examples: Sequence[Example],
    policy,
    out_path: str | os.PathLike,
    config: RolloutConfig | None = None,
    *,
    progress: bool | Callable[[int, int, dict], None] = True,
    budget_seconds: float | None = None,
    collect: Callable | None = None,
) -> list[dict]:
    """Explore every example not yet in ``out_path`` and append its record; returns all records.

    ``policy``: a :class:`~toolprm_agents.policy.Policy` (e.g. ``TransformersPolicy()``).
    Safe to interrupt: run it again with the same arguments to continue. ``budget_seconds``
    stops starting new examples once that much time has passed (the rest wait for a rerun).
    ``collect(example, policy, config) -> record`` replaces :func:`collect_one` (gold-prefix
    branching, :mod:`.branching`, writes its records through this same resumable loop).
    """
    collect = collect or collect_one
    config = config or RolloutConfig()
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair(path)
    done_ids = {r["id"] for r in read_rollouts(path)}
    todo = [ex for ex in examples if ex.id not in done_ids]
    bar = None
    if progress is True:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(examples), initial=len(examples) - len(todo), desc="rollouts" if collect is collect_one else "branches", unit="query")
        except ImportError:  # pragma: no cover
            bar = None
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    with path.open("a") as f:
        for k, ex in enumerate(todo):
            if deadline is not None and time.monotonic() > deadline:
                log.warning("rollouts: time budget of %.0f s spent; %d examples left (run again to continue)", budget_seconds, len(todo) - k)
                break
            rec = collect(ex, policy, config)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(answers=len(rec["answers"]), s=f"{rec['seconds']:.1f}")
            elif callable(progress):
                progress(k + 1, len(todo), rec)
    if bar is not None:
        bar.close()
    return read_rollouts(path)


def collect_one(ex: Example, policy, config: RolloutConfig) -> dict:
    """The record of one example (see the module docstring)."""
    t0 = time.monotonic()
    plan = plan_for(ex, config.limits(len(ex.calls)))
    seen: dict[str, tuple[PartialAnswer, int, str]] = {}
    compute = Compute()
    error = None
    try:
        session = policy.session(normalize_messages(ex.messages), plan, compute, seed=stable_seed("rollout", config.seed, ex.id) % (2**63))
        rng = random.Random(stable_seed("beams", config.seed, ex.id))
        deadline = t0 + config.max_seconds if config.max_seconds else None
        seen = explore(session, plan, config, rng, deadline)
    except Exception as exc:  # a prompt too long for the model, a tool the grammar cannot express
        error = f"{type(exc).__name__}: {exc}"
        log.warning("rollouts for %s failed: %s", ex.id, error)
    if config.include_gold:
        gold = plan.answer_from_calls(ex.calls)
        prev = seen.get(gold.text)
        seen[gold.text] = (gold, prev[1] if prev else 0, "gold")
    compute.stop_clock()
    answers = [
        {"steps": [s.to_dict() for s in a.steps], "origin": origin, "done": a.done, "count": count}
        for a, count, origin in _maximal(seen)
    ]
    return {
        "id": ex.id,
        "example": ex.to_dict(),
        "answers": answers,
        "seconds": round(time.monotonic() - t0, 3),
        "compute": compute.to_dict(),
        "config": asdict(config),
        "error": error,
    }
