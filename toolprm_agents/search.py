"""Search strategies over the decision steps of a tool-calling answer.

Each strategy is one function over a :class:`SearchConfig`:

* :func:`greedy_search` -- constrained greedy decoding, one step at a time (no scorer);
* :func:`best_of_n` -- ``N`` complete answers sampled, ranked by the scorer (a PRM's
  step scores aggregated, or an ORM's single score);
* :func:`beam_search` -- the paper's fine-grained beam search: keep ``N`` beams, expand
  each with ``M`` sampled next steps, score every candidate, keep the best ``N``. The
  expansion unit follows the scorer: one step for ToolPRM (and likelihood), one call for
  a coarse PRM, one answer for an ORM. "Explore more, retain less": large M, small N.

:class:`ToolPRMSearch` ties a policy, a scorer and a config together::

    >>> search = ToolPRMSearch(TransformersPolicy(), "toolprm", SearchConfig(beams=2, expand=8))  # doctest: +SKIP
    >>> result = search.search("What's the weather in Paris?", [get_weather])                   # doctest: +SKIP
    >>> result.tool_calls()                                                                      # doctest: +SKIP
    [{'name': 'get_weather', 'arguments': {'city': 'Paris'}}]

Every search returns the chosen calls, a trace (each round's candidates, their scores,
kept or pruned) and the compute it spent.
"""

from __future__ import annotations

from .errors import ToolPRMError

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Sequence

from .compute import Compute
from .policy import PolicySession
from .prompt import normalize_messages
from .schema import to_tool_specs
from .scorers import Granularity, Scorer, ScorerSession, is_judge_point, load_scorer
from .steps import Call, PartialAnswer, PlanLimits, StepPlan

Strategy = Literal["greedy", "best_of_n", "beam"]
Aggregation = Literal["last", "min", "prod", "mean"]
EventHandler = Callable[[dict], None]


class SearchError(ToolPRMError, ValueError):
    """A search configuration is invalid."""


@dataclass
class SearchConfig:
    """How to search.

    Attributes:
        strategy: ``"greedy"``, ``"best_of_n"`` or ``"beam"``.
        beams: N -- beams kept (beam search) or answers sampled (best-of-N).
        expand: M -- samples drawn from each beam at each expansion (beam search).
        aggregation: how a beam's step scores combine: ``last``, ``min``, ``prod``, ``mean``.
        temperature: sampling temperature for best-of-N and beam expansions.
        seed: makes sampling reproducible.
        max_calls, max_string_length, max_array_items, allow_no_call: bounds of the answer
            (see :class:`~toolprm_agents.steps.PlanLimits`).
        max_rounds: a bound on search rounds (one round decides one step of every beam).
    """

    strategy: Strategy = "beam"
    beams: int = 2
    expand: int = 8
    aggregation: Aggregation = "last"
    temperature: float = 0.8
    seed: int = 0
    max_calls: int = 8
    max_string_length: int = 128
    max_array_items: int = 16
    allow_no_call: bool = True
    max_rounds: int = 256

    def __post_init__(self):
        self.strategy = self.strategy.replace("-", "_")  # type: ignore[assignment]
        if self.strategy not in ("greedy", "best_of_n", "beam"):
            raise SearchError(f"unknown strategy {self.strategy!r}: choose greedy, best_of_n or beam")
        if self.aggregation not in ("last", "min", "prod", "mean"):
            raise SearchError(f"unknown aggregation {self.aggregation!r}: choose last, min, prod or mean")
        for name in ("beams", "expand", "max_calls", "max_rounds", "max_string_length", "max_array_items"):
            if int(getattr(self, name)) < 1:
                raise SearchError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.temperature < 0:
            raise SearchError(f"temperature must be >= 0, got {self.temperature}")
        if self.strategy != "greedy" and self.temperature == 0 and self.expand > 1:
            raise SearchError("sampling strategies need temperature > 0 (temperature 0 gives one candidate)")

    @property
    def limits(self) -> PlanLimits:
        return PlanLimits(self.max_calls, self.max_string_length, self.max_array_items, self.allow_no_call)

    def replace(self, **changes) -> "SearchConfig":
        return SearchConfig(**{**asdict(self), **changes})


@dataclass
class SearchResult:
    """What a search found.

    ``calls`` are the chosen calls (empty for the "no call" answer); ``complete`` is False
    when no candidate answer could be completed within the bounds (then ``error`` says
    why and ``calls`` is empty -- never a half-made call); ``score`` is the chosen
    answer's aggregated score (``None`` for greedy); ``trace`` lists each round's
    candidates; ``compute`` what it cost.
    """

    calls: list[Call]
    answer: PartialAnswer | None
    score: float | None
    complete: bool
    trace: list[dict]
    compute: Compute
    config: SearchConfig
    error: str | None = None
    step_scores: list[float] = field(default_factory=list)
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    budget_exhausted: bool = False

    def argument_scores(self) -> list[dict[str, Any]]:
        """Each decided step of the chosen answer with its score (``None`` where unscored).

        ``[{"kind": "ARG", "function": "get_weather", "arg": "city", "value": "Paris", "score": 0.93}, ...]``;
        with a step-level scorer every model-made step has a score, with coarser scorers only
        the steps at judge points do.
        """
        if self.answer is None:
            return []
        out, scores = [], list(self.step_scores)
        decided = [s for s in self.answer.steps if not s.forced]
        # step_scores follow the judged steps in order; a step-level scorer judges each decided step
        per_step = scores if len(scores) == len(decided) else [None] * len(decided)
        for step, score in zip(decided, per_step):
            row = {"kind": step.kind.value, "function": step.function, "score": score}
            if step.arg is not None:
                row["arg"], row["value"] = step.arg, step.value
            out.append(row)
        return out

    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls as ``[{"name": ..., "arguments": {...}}]``."""
        return [c.to_dict() for c in self.calls]

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.tool_calls(),
            "complete": self.complete,
            "error": self.error,
            "score": self.score,
            "step_scores": self.step_scores,
            "argument_scores": self.argument_scores(),
            "alternatives": self.alternatives,
            "budget_exhausted": self.budget_exhausted,
            "answer_text": self.answer.text if self.answer else None,
            "strategy": self.config.strategy,
            "config": asdict(self.config),
            "compute": self.compute.to_dict(),
            "trace": self.trace,
        }


# ------------------------------------------------------------------------------------------


def aggregate(scores: Sequence[float], how: Aggregation) -> float:
    if not scores:
        return 1.0
    if how == "last":
        return scores[-1]
    if how == "min":
        return min(scores)
    if how == "prod":
        return math.prod(scores)
    return sum(scores) / len(scores)


@dataclass
class Beam:
    answer: PartialAnswer
    scores: list[float] = field(default_factory=list)
    count: int = 1

    def value(self, how: Aggregation) -> float:
        return aggregate(self.scores, how)


def _step_once(policy: PolicySession, plan: StepPlan, answer: PartialAnswer, n: int, temperature: float):
    """``answer`` extended by each distinct candidate for its open decision (forced steps included)."""
    return [(plan.complete_forced(answer.extend(c.step)), c) for c in policy.propose(answer, n, temperature)]


def rollout(policy: PolicySession, plan: StepPlan, answer: PartialAnswer, temperature: float, until: Granularity) -> PartialAnswer | None:
    """Sample one step at a time from ``answer`` until a judge point of ``until`` (None if a step was dropped)."""
    while True:
        nxt = _step_once(policy, plan, answer, 1, temperature)
        if not nxt:
            return None
        answer = nxt[0][0]
        if is_judge_point(answer, until):
            return answer


def expand(policy: PolicySession, plan: StepPlan, answer: PartialAnswer, m: int, temperature: float, unit: Granularity) -> list[tuple[PartialAnswer, int]]:
    """``m`` samples from ``answer`` up to the next judge point, de-duplicated: ``[(child, count)]``."""
    children: dict[str, tuple[PartialAnswer, int]] = {}

    def add(done: PartialAnswer, count: int) -> None:
        prev = children.get(done.text)
        children[done.text] = (done, count + (prev[1] if prev else 0))

    for child, cand in _step_once(policy, plan, answer, m, temperature):
        if is_judge_point(child, unit):
            add(child, cand.count)
            continue
        for _ in range(cand.count):  # each sample continues on its own
            done = rollout(policy, plan, child, temperature, unit)
            if done is not None:
                add(done, 1)
    return list(children.values())


def judge_pairs(answer: PartialAnswer, unit: Granularity) -> list[tuple[PartialAnswer, PartialAnswer]]:
    """The (context, judged) pairs a scorer of ``unit`` scores along a complete answer."""
    pairs, ctx = [], PartialAnswer()
    for i in range(1, len(answer.steps) + 1):
        prefix = PartialAnswer(answer.steps[:i])
        nxt = answer.steps[i] if i < len(answer.steps) else None
        if is_judge_point(prefix, unit) and not (nxt is not None and nxt.forced):
            pairs.append((ctx, prefix))
            ctx = prefix
    return pairs


def _trace_round(rnd: int, parents: list[Beam], pool: list[tuple[int, Beam, float]], kept: set[int], how: Aggregation) -> dict:
    return {
        "round": rnd,
        "beams": [p.answer.text for p in parents],
        "candidates": [
            {
                "parent": parent,
                "text": b.answer.text[len(parents[parent].answer.text):],
                "kind": b.answer.last.kind.value if b.answer.last else None,
                "score": s,
                "aggregate": b.value(how),
                "count": b.count,
                "done": b.answer.done,
                "kept": i in kept,
            }
            for i, (parent, b, s) in enumerate(pool)
        ],
    }


# ------------------------------------------------------------------------------------------
# strategies


def greedy_search(policy: PolicySession, plan: StepPlan, config: SearchConfig, on_event: EventHandler | None = None):
    """Constrained greedy decoding: the most likely candidate at every decision."""
    answer, trace = plan.complete_forced(plan.start()), []
    for rnd in range(config.max_rounds):
        if answer.done:
            return Beam(answer), trace
        nxt = _step_once(policy, plan, answer, 1, 0.0)
        if not nxt:
            return None, trace
        answer = nxt[0][0]
        event = {"round": rnd, "beams": [""], "candidates": [{"parent": 0, "text": nxt[0][1].step.text, "kind": nxt[0][1].step.kind.value, "score": None, "kept": True, "done": answer.done}]}
        trace.append(event)
        if on_event:
            on_event({"type": "round", **event})
    return None, trace


def best_of_n(policy: PolicySession, scorer: ScorerSession, unit: Granularity, plan: StepPlan, config: SearchConfig, on_event: EventHandler | None = None):
    """Sample ``config.beams`` complete answers; return the best by aggregated score."""
    root = plan.complete_forced(plan.start())
    answers = expand(policy, plan, root, config.beams, config.temperature, "answer")
    pairs, owner = [], []
    for k, (ans, _) in enumerate(answers):
        for pair in judge_pairs(ans, unit):
            pairs.append(pair)
            owner.append(k)
    scores = scorer.score(pairs) if pairs else []
    beams = [Beam(ans, [], count) for ans, count in answers]
    for k, s in zip(owner, scores):
        beams[k].scores.append(s)
    if not beams:
        return None, []
    best = max(range(len(beams)), key=lambda i: beams[i].value(config.aggregation))
    event = _trace_round(0, [Beam(root)], [(0, b, b.value(config.aggregation)) for b in beams], {best}, config.aggregation)
    if on_event:
        on_event({"type": "round", **event})
    return beams[best], [event]


def beam_search(policy: PolicySession, scorer: ScorerSession, unit: Granularity, plan: StepPlan, config: SearchConfig, on_event: EventHandler | None = None):
    """Fine-grained beam search: keep N beams, expand each with M samples, keep the best N."""
    beams = [Beam(plan.complete_forced(plan.start()))]
    finished: list[Beam] = []
    trace: list[dict] = []
    for rnd in range(config.max_rounds):
        pool: list[tuple[int, Beam]] = []
        for p, beam in enumerate(beams):
            for child, count in expand(policy, plan, beam.answer, config.expand, config.temperature, unit):
                pool.append((p, Beam(child, list(beam.scores), count)))
        if not pool:
            break
        scores = scorer.score([(beams[p].answer, b.answer) for p, b in pool])
        for (_, b), s in zip(pool, scores):
            b.scores.append(s)
        order = sorted(range(len(pool)), key=lambda i: -pool[i][1].value(config.aggregation))
        kept = set(order[: config.beams])
        event = _trace_round(rnd, beams, [(p, b, s) for (p, b), s in zip(pool, scores)], kept, config.aggregation)
        trace.append(event)
        if on_event:
            on_event({"type": "round", **event})
        survivors = [pool[i][1] for i in order[: config.beams]]
        finished += [b for b in survivors if b.answer.done]
        beams = [b for b in survivors if not b.answer.done]
        if not beams:
            break
    if not finished:
        return None, trace
    return max(finished, key=lambda b: b.value(config.aggregation)), trace


# ------------------------------------------------------------------------------------------


class ToolPRMSearch:
    """A policy, a scorer and a search config: ``search(messages, tools) -> SearchResult``.

    Args:
        policy: a :class:`~toolprm_agents.policy.Policy` (``None``: SmolLM2 on transformers).
        scorer: a :class:`~toolprm_agents.scorers.Scorer` or a name (``toolprm``, ``orm``,
            ``cprm``, ``likelihood``); unused by greedy search.
        config: a :class:`SearchConfig` (``None``: beam search, N=2, M=8).

    Example:
        >>> search = ToolPRMSearch(config=SearchConfig(strategy="greedy"))   # doctest: +SKIP
        >>> search.search("Add 2 and 3", [add]).tool_calls()                 # doctest: +SKIP
        [{'name': 'add', 'arguments': {'a': 2, 'b': 3}}]
    """

    def __init__(self, policy=None, scorer: Scorer | str | None = "toolprm", config: SearchConfig | None = None):
        if policy is None:
            from .policy import TransformersPolicy

            policy = TransformersPolicy()
        self.policy = policy
        self._scorer_spec = scorer
        self._scorer: Scorer | None = scorer if isinstance(scorer, Scorer) else None
        self.config = config or SearchConfig()

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = load_scorer(self._scorer_spec or "toolprm", policy=self.policy)
        return self._scorer

    def search(self, messages: Any, tools: Sequence[Any], *, config: SearchConfig | None = None, on_event: EventHandler | None = None) -> SearchResult:
        """Find the best tool calls for the conversation ``messages`` over ``tools``."""
        config = config or self.config
        plan = StepPlan(to_tool_specs(tools), config.limits)
        msgs = normalize_messages(messages)
        compute = Compute()
        policy = self.policy.session(msgs, plan, compute, seed=config.seed)
        if config.strategy == "greedy":
            best, trace = greedy_search(policy, plan, config, on_event)
        else:
            scorer = self.scorer
            session = scorer.session(msgs, plan, compute, policy_session=policy)
            run = best_of_n if config.strategy == "best_of_n" else beam_search
            best, trace = run(policy, session, scorer.granularity, plan, config, on_event)
        compute.stop_clock()
        if best is None:
            return SearchResult([], None, None, False, trace, compute, config,
                                error="no candidate answer could be completed within the bounds (max_step_tokens, max_rounds)")
        score = best.value(config.aggregation) if best.scores else None
        return SearchResult(list(best.answer.calls), best.answer, score, True, trace, compute, config, step_scores=best.scores)


__all__ = [
    "SearchConfig",
    "SearchResult",
    "SearchError",
    "ToolPRMSearch",
    "greedy_search",
    "best_of_n",
    "beam_search",
    "aggregate",
    "judge_pairs",
]
