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

from .errors import PromptTooLongError, ToolPRMError

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Sequence

from .compute import Compute
from .interfaces import Candidate, PolicySession
from .prompt import normalize_messages
from .schema import to_tool_specs
from .backends.transformers_judges import Granularity, Scorer, ScorerSession, is_judge_point, load_scorer
from .steps import DECISION_TYPES, Call, PartialAnswer, PlanLimits, Step, StepKind, StepPlan, check_decision_types

Strategy = Literal["greedy", "best_of_n", "beam", "self_consistency"]
Rank = Literal["combined", "prm"]
Aggregation = Literal["last", "min", "prod", "mean"]
EventHandler = Callable[[dict], None]


class SearchError(ToolPRMError, ValueError):
    """A search configuration is invalid."""


@dataclass
class SearchConfig:
    """How to search.

    Attributes:
        strategy: ``"greedy"``, ``"beam"``, ``"best_of_n"`` or ``"self_consistency"``
            (:data:`STRATEGIES`).
        beams: N -- beams kept (beam search) or answers sampled (best-of-N, self-consistency).
        expand: M -- alternatives kept, or values sampled, where a beam branches.
        rank: how beam search ranks candidates. ``"combined"`` (default): the policy's
            exact probability of each alternative, the judge's log-odds and, for sampled
            values, their vote share, weighted by ``policy_weight``/``judge_weight``/
            ``vote_weight``; branches only where the policy is unsure (``gate``); the final
            answer by weighted vote. With ``judge_weight=0`` it is the policy's own ranking.
            ``"prm"``: the paper's search -- M samples at every step, ranked by the judge alone.
        gate: the combined search branches at a decision only when the policy's most
            probable alternative (or a token of the greedy value) is below this probability.
        verify: where the policy is sure (at or above ``gate``), the combined search with a
            step judge still asks the judge about the policy's choice, and branches there too
            when the judge's score is below ``verify`` (a calibrated judge's 0.5: "more likely
            wrong than right"); 0: never ask where the policy is sure; ``None`` (default): the
            judge checkpoint's ``search_weights["verify"]``, else 0.
        verify_types: the decision types (:data:`~toolprm_agents.steps.DECISION_TYPES`) where
            ``verify`` asks the judge: ``end`` (another call or the end of the answer, "no
            call" included), ``arg_end``, ``name``, ``value``. ``None`` (default): the judge
            checkpoint's ``search_weights["verify_types"]`` (chosen on its calib split), else all.
        judge_weight, policy_weight, vote_weight: the combined score's weights (``None``:
            the judge checkpoint's ``search_weights``, else 1.0, 1.0, 1.0).
        aggregation: how a beam's step scores combine for ``rank="prm"``, best-of-N and the
            reported score: ``last``, ``min``, ``prod``, ``mean``.
        temperature: sampling temperature for sampled candidates.
        seed: makes sampling reproducible.
        budget_seconds, budget_tokens: a search's budget in wall time and in tokens the
            policy and the judge generate or read after the prompt (0: none). When it runs out the best finished answer is returned,
            else the best partial one completed greedily, else no call, with
            ``SearchResult.budget_exhausted`` set.
        max_calls, max_string_length, max_array_items, allow_no_call, repeat_calls: bounds
            of the answer (see :class:`~toolprm_agents.steps.PlanLimits`).
        max_rounds: a bound on search rounds (one round decides one step of every beam).
    """

    strategy: Strategy = "beam"
    beams: int = 2
    expand: int = 4
    rank: Rank = "combined"
    gate: float = 0.5
    verify: float | None = None
    verify_types: tuple[str, ...] | None = None
    judge_weight: float | None = None
    policy_weight: float | None = None
    vote_weight: float | None = None
    aggregation: Aggregation = "last"
    temperature: float = 0.8
    seed: int = 0
    budget_seconds: float = 60.0
    budget_tokens: int = 0
    max_calls: int = 8
    max_string_length: int = 128
    max_array_items: int = 16
    allow_no_call: bool = True
    repeat_calls: bool = False
    max_rounds: int = 256

    def __post_init__(self):
        self.strategy = self.strategy.replace("-", "_")  # type: ignore[assignment]
        if self.strategy not in STRATEGIES:
            raise SearchError(f"unknown strategy {self.strategy!r}: choose {', '.join(STRATEGIES)}")
        if self.rank not in ("combined", "prm"):
            raise SearchError(f"unknown rank {self.rank!r}: choose combined or prm")
        if not (0.0 <= float(self.gate) <= 1.0):
            raise SearchError(f"gate must be a probability in [0, 1], got {self.gate!r}")
        if self.verify is not None and not (isinstance(self.verify, (int, float)) and 0.0 <= float(self.verify) <= 1.0):
            raise SearchError(f"verify must be a probability in [0, 1] (0: off), got {self.verify!r}")
        if self.verify_types is not None:
            self.verify_types = check_decision_types(self.verify_types, "verify_types", SearchError)
        for name in ("judge_weight", "policy_weight", "vote_weight"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(float(v)) and float(v) >= 0):
                raise SearchError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(float(self.budget_seconds)) and self.budget_seconds >= 0):
            raise SearchError(f"budget_seconds must be a finite number >= 0 (0: no budget), got {self.budget_seconds!r}")
        if int(self.budget_tokens) < 0:
            raise SearchError(f"budget_tokens must be >= 0 (0: no budget), got {self.budget_tokens!r}")
        if self.aggregation not in ("last", "min", "prod", "mean"):
            raise SearchError(f"unknown aggregation {self.aggregation!r}: choose last, min, prod or mean")
        for name in ("beams", "expand", "max_calls", "max_rounds", "max_string_length", "max_array_items"):
            if int(getattr(self, name)) < 1:
                raise SearchError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not math.isfinite(float(self.temperature)) or self.temperature < 0:
            raise SearchError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.strategy != "greedy" and self.temperature == 0 and self.expand > 1:
            raise SearchError("sampling strategies need temperature > 0 (temperature 0 gives one candidate)")

    @property
    def limits(self) -> PlanLimits:
        return PlanLimits(self.max_calls, self.max_string_length, self.max_array_items, self.allow_no_call, self.repeat_calls)

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
    #: the policy session the search ran in, when asked for (``search(..., keep_session=True)``):
    #: a text answer by the same policy (``session.reply``) reuses it. It holds the prompt's
    #: KV caches, so it is not kept by default.
    session: PolicySession | None = field(default=None, repr=False, compare=False)

    @property
    def confidence(self) -> float | None:
        """The chosen answer's weakest step score (``min`` of ``step_scores``; ``None`` without scores).

        Not calibrated: a judge's or the policy's probability of a step, not a measured
        chance that the call is right.
        """
        scores = [s for s in self.step_scores if s is not None]
        return min(scores) if scores else None

    def weakest_argument(self) -> dict[str, Any] | None:
        """The row of :meth:`argument_scores` with the lowest score (``None`` without scores)."""
        rows = [r for r in self.argument_scores() if r["score"] is not None]
        return min(rows, key=lambda r: r["score"]) if rows else None

    def runner_ups(self) -> list[dict[str, Any]]:
        """The ranked alternatives other than the chosen calls, best first (``{"calls", "score", ...}``)."""
        chosen = self.tool_calls()
        return [a for a in self.alternatives if a["calls"] != chosen]

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
            "confidence": self.confidence,
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
    """A partial answer being searched, with what the search knows of it.

    ``scores``: the judge's scores along it (``rank="prm"``, best-of-N); ``total``: the
    combined score summed over its decisions and ``decisions`` their number
    (``rank="combined"``); ``confidence``: per decided step, the judge's score where it
    judged the step, else the policy's probability of it; ``truncated``: a value in it was
    cut at the step's token bound.
    """

    answer: PartialAnswer
    scores: list[float] = field(default_factory=list)
    count: int = 1
    total: float = 0.0
    decisions: int = 0
    confidence: list[float] = field(default_factory=list)
    truncated: bool = False
    logprob: float = 0.0

    def value(self, how: Aggregation) -> float:
        return aggregate(self.scores, how)

    @property
    def mean(self) -> float:
        """The combined score per decision (answers of different lengths compare fairly)."""
        return self.total / self.decisions if self.decisions else 0.0


def _step_once(policy: PolicySession, plan: StepPlan, answer: PartialAnswer, n: int, temperature: float):
    """``answer`` extended by each distinct candidate for its open decision (forced steps included)."""
    return [(plan.settle(answer.extend(c.step)), c) for c in _keep_valid(plan, policy.propose(answer, n, temperature))]


def _keep_valid(plan: StepPlan, cands, compute: Compute | None = None, run: "SearchRun | None" = None):
    """Candidates whose value the schema allows (what the grammar cannot enforce, repeated items
    under ``uniqueItems`` or a length beside a ``pattern``, is checked here; such a value is
    dropped, counted, and the last reason kept for the result's error)."""
    kept = []
    for c in cands:
        why = plan.rejects(c.step)
        if why is None:
            kept.append(c)
        elif run is not None:
            run.rejected = why
    if compute is not None:
        compute.candidates_dropped += len(cands) - len(kept)
    return kept


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


def canonical(calls: Sequence[Call]) -> str:
    """One key for answers with the same calls, whatever the order of calls and arguments."""
    return json.dumps(sorted(json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False) for c in calls))


def _trace_round(rnd: int, parents: list[Beam], pool: list[tuple[int, Beam, float]], kept: set[int], how: Aggregation) -> dict:
    return {
        "round": rnd,
        "beams": [p.answer.text for p in parents],
        "candidates": [
            {
                "parent": parent,
                "text": b.answer.text[len(parents[parent].answer.text):] if b.answer.text.startswith(parents[parent].answer.text) else b.answer.text,
                "kind": b.answer.last.kind.value if b.answer.last else None,
                "score": s,
                "aggregate": b.value(how) if b.scores else b.mean,
                "count": b.count,
                "done": b.answer.done,
                "kept": i in kept,
            }
            for i, (parent, b, s) in enumerate(pool)
        ],
    }


# ------------------------------------------------------------------------------------------
# one search run: what every strategy gets


@dataclass
class Found:
    """What a strategy returns: the chosen beam (``None``: nothing could be completed), the
    trace, the ranked alternatives (``[(beam, share)]``, best first) and whether the budget ran out."""

    best: Beam | None
    trace: list[dict]
    ranked: list[tuple[Beam, float]] = field(default_factory=list)
    budget_exhausted: bool = False


class SearchRun:
    """One search: the policy and scorer sessions, the plan, the config, the budget.

    Every strategy is a function ``strategy(run) -> Found`` (:data:`STRATEGIES`), as in
    search-and-learn's ``APPROACHES``.
    """

    def __init__(self, policy: PolicySession, plan: StepPlan, config: SearchConfig, compute: Compute,
                 scorer: Callable[[], ScorerSession] | None = None, unit: Granularity = "step",
                 on_event: EventHandler | None = None, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 verify: tuple[float, tuple[str, ...]] | None = None):
        self.policy, self.plan, self.config, self.compute = policy, plan, config, compute
        self._scorer_factory, self._scorer = scorer, None
        self.unit, self.on_event = unit, on_event
        self.policy_weight, self.judge_weight, self.vote_weight = weights
        # where the policy is sure, ask the judge below this score, at these decision types
        if verify is None:
            r = resolve_settings(config, None)
            verify = (r["verify"], r["verify_types"])
        self.verify, self.verify_types = verify
        self.t0 = time.perf_counter()
        self._base_tokens = self._tokens()  # the prompt, read before the search starts
        self.rejected: str | None = None  # the last value dropped for breaking its schema

    def _tokens(self) -> int:
        c = self.compute
        return c.tokens_generated + c.prefill_tokens + c.scorer_tokens

    @property
    def scorer(self) -> ScorerSession | None:
        if self._scorer is None and self._scorer_factory is not None:
            self._scorer = self._scorer_factory()
        return self._scorer

    def exhausted(self, grace: float = 0.0) -> bool:
        cfg = self.config
        if cfg.budget_seconds and time.perf_counter() - self.t0 > cfg.budget_seconds * (1.0 + grace):
            return True
        used = self._tokens() - self._base_tokens
        return bool(cfg.budget_tokens) and used > cfg.budget_tokens * (1.0 + grace)

    def emit(self, event: dict) -> None:
        if self.on_event:
            self.on_event({"type": "round", **event})

    def step(self, answer: PartialAnswer, m: int, *, gate: float | None = None, samples: int = 0) -> list[tuple[PartialAnswer, Candidate]]:
        cfg = self.config
        prop = self.policy.decide(answer, m=m, temperature=cfg.temperature, gate=cfg.gate if gate is None else gate, samples=samples)
        return [(self.plan.settle(answer.extend(c.step)), c) for c in _keep_valid(self.plan, prop.candidates, self.compute, self)]

    def complete_greedily(self, beam: Beam, grace: float) -> Beam | None:
        """``beam`` finished by the policy's most probable alternative at each decision."""
        for _ in range(self.config.max_rounds):
            if beam.answer.done:
                return beam
            if self.exhausted(grace):
                return None
            nxt = self.step(beam.answer, 1)
            if not nxt:
                return None
            child, cand = nxt[0]
            beam = Beam(child, list(beam.scores), 1, beam.total, beam.decisions + 1,
                        beam.confidence + [cand.prob if cand.prob is not None else math.exp(cand.logprob)],
                        beam.truncated or cand.truncated, beam.logprob + cand.logprob)
        return beam if beam.answer.done else None


def step_confidences(confidence: Sequence[float | None], answer: PartialAnswer) -> list[float | None]:
    """One confidence per decided step of ``answer``, from a beam's one per decision.

    Every decision adds one decided step, except where the repeated-call rule
    (:meth:`StepPlan.settle`) dropped the call just made and ended the answer: that call's
    decisions then lie between the kept steps' and the end's, and are left out (the last
    decision's confidence stands for the end of the answer)."""
    decided = sum(not s.forced for s in answer.steps)
    conf = list(confidence)
    if len(conf) > decided >= 1:
        conf = conf[: decided - 1] + conf[-1:]
    return conf


def _judged_pair(parent: PartialAnswer, child: PartialAnswer) -> tuple[PartialAnswer, PartialAnswer]:
    """The ``(context, candidate)`` a step judge reads for ``child``: its parent, or, where the
    repeated-call rule rewrote the answer, the child without its last step."""
    return (parent if child.text.startswith(parent.text) else PartialAnswer(child.steps[:-1]), child)


def _no_call(plan: StepPlan) -> Beam | None:
    """The "no call" answer, where the plan allows it (the last resort when a budget runs out)."""
    if not plan.limits.allow_no_call:
        return None
    return Beam(PartialAnswer((Step(StepKind.TOTAL_FINISH, "]"),)))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _centered(values: list[float]) -> list[float]:
    mean = sum(values) / len(values) if values else 0.0
    return [v - mean for v in values]


def weighted_vote(beams: Sequence[Beam], extra: Sequence[float] | None = None) -> list[tuple[Beam, float]]:
    """Finished answers grouped by their calls (any order), weighted by ``exp`` of their
    per-decision combined score (plus ``extra``), best group first: ``[(beam, share)]``."""
    if not beams:
        return []
    scores = [b.mean + (extra[i] if extra else 0.0) for i, b in enumerate(beams)]
    top = max(scores)
    groups: dict[str, list[tuple[float, Beam]]] = {}
    for b, sc in zip(beams, scores):
        groups.setdefault(canonical(b.answer.calls), []).append((math.exp(sc - top), b))
    total = sum(w for g in groups.values() for w, _ in g)
    ranked = []
    for members in groups.values():
        weight = sum(w for w, _ in members)
        rep = max(members, key=lambda wb: (not wb[1].truncated, wb[0]))[1]
        ranked.append((rep, weight / total))
    ranked.sort(key=lambda r: (not r[0].truncated, r[1]), reverse=True)
    return ranked


# ------------------------------------------------------------------------------------------
# strategies


def greedy_search(run: SearchRun) -> Found:
    """The policy's most probable alternative at every decision (exact where listable).

    A decision whose first alternative cannot be completed within its bounds backs off to
    the next one (:meth:`PolicySession.decide`); a repeated call ends the answer.
    """
    beam, trace = Beam(run.plan.settle(run.plan.start())), []
    for rnd in range(run.config.max_rounds):
        if beam.answer.done:
            return Found(beam, trace, [(beam, 1.0)])
        if run.exhausted():
            done = run.complete_greedily(beam, grace=0.25)
            return Found(done or _no_call(run.plan), trace, [], budget_exhausted=True)
        nxt = run.step(beam.answer, 1)
        if not nxt:
            return Found(None, trace)
        child, cand = nxt[0]
        conf = cand.prob if cand.prob is not None else math.exp(cand.logprob)
        beam = Beam(child, [], 1, beam.total, beam.decisions + 1, beam.confidence + [conf],
                    beam.truncated or cand.truncated, beam.logprob + cand.logprob)
        event = {"round": rnd, "beams": [""], "candidates": [{"parent": 0, "text": cand.step.text, "kind": cand.step.kind.value,
                                                              "score": None, "policy": conf, "kept": True, "done": child.done}]}
        trace.append(event)
        run.emit(event)
    return Found(None, trace)


def combined_beam(run: SearchRun) -> Found:
    """Beam search over the policy's exact alternatives, the judge and votes combined.

    Each round every beam makes its next decision. Where the policy is sure (its most
    probable alternative at or above ``gate``) the beam takes it without asking the judge;
    where it is unsure, its ``expand`` most probable alternatives (and sampled values for an
    open value) are scored: ``policy_weight * log p`` (length-normalised for values)
    ``+ judge_weight * judge log-odds + vote_weight * log vote share``, the last two centred
    among the siblings. The ``beams`` best by summed score survive; the answer is chosen by
    a weighted vote over the finished ones.
    """
    cfg, plan = run.config, run.plan
    beams = [Beam(plan.settle(plan.start()))]
    finished: list[Beam] = []
    trace: list[dict] = []
    exhausted = False
    for rnd in range(cfg.max_rounds):
        if run.exhausted():
            exhausted = True
            break
        pool: list[tuple[int, Beam, float | None]] = []
        for p, beam in enumerate(beams):
            children = run.step(beam.answer, cfg.expand, samples=cfg.expand)
            if not children:
                continue
            only = children[0][1]
            can_judge = run.unit == "step" and run.judge_weight > 0 and run.scorer is not None
            if (len(children) == 1 and run.verify > 0 and cfg.expand > 1 and not (only.prob == 1.0 and only.num_tokens == 0)
                    and can_judge and plan.decision(beam.answer).type in run.verify_types):
                # the policy was sure (a forced step is not a choice): does the judge agree?
                verdict = run.scorer.score([_judged_pair(beam.answer, children[0][0])])[0]
                if verdict < run.verify:
                    run.compute.decisions_doubted += 1
                    run.compute.decisions -= 1  # the same decision, now with every alternative
                    children = run.step(beam.answer, cfg.expand, gate=1.0, samples=cfg.expand) or children
            else:
                verdict = None
            judged: list[float | None] = [verdict] if len(children) == 1 and verdict is not None else [None] * len(children)
            if len(children) > 1 and can_judge:
                judged = list(run.scorer.score([_judged_pair(beam.answer, child) for child, _ in children]))
            sampled = [c.count if c.num_tokens else 0 for _, c in children]
            n_sampled = sum(sampled)
            votes = [math.log(k / n_sampled) if k and n_sampled else 0.0 for k in sampled]
            judge_terms = _centered([_logit(j) for j in judged]) if judged[0] is not None else [0.0] * len(children)
            vote_terms = _centered(votes) if n_sampled and len(children) > 1 else [0.0] * len(children)
            for (child, c), j, jt, vt in zip(children, judged, judge_terms, vote_terms):
                prob = c.prob if c.prob is not None else 1.0
                pol = math.log(max(prob, 1e-12)) + (c.mean_logprob if c.num_tokens else 0.0)
                inc = run.policy_weight * pol + run.judge_weight * jt + run.vote_weight * vt
                conf = j if j is not None else prob * (c.min_prob if c.num_tokens else 1.0)
                b = Beam(child, beam.scores + ([j] if j is not None else []), c.count, beam.total + inc, beam.decisions + 1,
                         beam.confidence + [conf], beam.truncated or c.truncated, beam.logprob + c.logprob)
                pool.append((p, b, j))
        if not pool:
            break
        order = sorted(range(len(pool)), key=lambda i: -pool[i][1].total)
        kept = set(order[: cfg.beams])
        event = _trace_round(rnd, beams, pool, kept, cfg.aggregation)
        for cand, (_, b, _) in zip(event["candidates"], pool):
            cand["combined"] = b.total
        trace.append(event)
        run.emit(event)
        survivors = [pool[i][1] for i in order[: cfg.beams]]
        finished += [b for b in survivors if b.answer.done]
        beams = [b for b in survivors if not b.answer.done]
        if not beams:
            break
    if exhausted and beams:
        # a live beam that ranks above every finished answer (often only an early "no call")
        # is completed greedily and joins the vote, rather than being dropped for the budget
        best = max(beams, key=lambda b: b.mean)
        if not finished or best.mean > max(b.mean for b in finished):
            done = run.complete_greedily(best, grace=0.25)
            finished += [done] if done is not None else []
        if not finished:
            return Found(_no_call(plan), trace, [], budget_exhausted=True)
    extra = None
    if finished and run.unit != "step" and run.judge_weight > 0 and run.scorer is not None:
        # a call- or answer-level judge weighs in on the finished answers
        scores = []
        for b in finished:
            pairs = judge_pairs(b.answer, run.unit)
            s = run.scorer.score(pairs) if pairs else []
            b.scores = list(s)
            scores.append(_logit(aggregate(s, cfg.aggregation)))
        extra = [run.judge_weight * v / max(1, b.decisions) for v, b in zip(_centered(scores), finished)]
    ranked = weighted_vote(finished, extra)
    if not ranked:
        return Found(None, trace, budget_exhausted=exhausted)
    return Found(ranked[0][0], trace, ranked, budget_exhausted=exhausted)


def prm_beam(run: SearchRun) -> Found:
    """The paper's fine-grained beam search: keep N beams, expand each with M samples, keep
    the N best by the judge's aggregated score (the judge alone ranks)."""
    cfg, plan, policy, scorer, unit = run.config, run.plan, run.policy, run.scorer, run.unit
    beams = [Beam(plan.settle(plan.start()))]
    finished: list[Beam] = []
    trace: list[dict] = []
    exhausted = False
    for rnd in range(cfg.max_rounds):
        if run.exhausted():
            exhausted = True
            break
        pool: list[tuple[int, Beam]] = []
        for p, beam in enumerate(beams):
            for child, count in expand(policy, plan, beam.answer, cfg.expand, cfg.temperature, unit):
                pool.append((p, Beam(child, list(beam.scores), count)))
        if not pool:
            break
        scores = scorer.score([_judged_pair(beams[p].answer, b.answer) for p, b in pool])
        for (p, b), s in zip(pool, scores):
            b.scores.append(s)
            if unit == "step" and not b.answer.text.startswith(beams[p].answer.text):
                # the repeated-call rule dropped the call just made and ended the answer: the
                # dropped call's step scores leave the aggregate (min/prod/mean) with its steps
                b.scores = step_confidences(b.scores, b.answer)
            b.confidence = list(b.scores)
        order = sorted(range(len(pool)), key=lambda i: -pool[i][1].value(cfg.aggregation))
        kept = set(order[: cfg.beams])
        event = _trace_round(rnd, beams, [(p, b, s) for (p, b), s in zip(pool, scores)], kept, cfg.aggregation)
        trace.append(event)
        run.emit(event)
        survivors = [pool[i][1] for i in order[: cfg.beams]]
        finished += [b for b in survivors if b.answer.done]
        beams = [b for b in survivors if not b.answer.done]
        if not beams:
            break
    if exhausted and beams:
        best = max(beams, key=lambda b: b.value(cfg.aggregation))
        if not finished or best.value(cfg.aggregation) > max(b.value(cfg.aggregation) for b in finished):
            done = run.complete_greedily(best, grace=0.25)
            finished += [done] if done is not None else []
        if not finished:
            return Found(_no_call(plan), trace, [], budget_exhausted=True)
    if not finished:
        return Found(None, trace, budget_exhausted=exhausted)
    ranked = sorted(finished, key=lambda b: -b.value(cfg.aggregation))
    return Found(ranked[0], trace, [(b, b.value(cfg.aggregation)) for b in ranked], budget_exhausted=exhausted)


def beam_search(run: SearchRun) -> Found:
    """Fine-grained beam search: ``rank="combined"`` (default) or the paper's ``rank="prm"``.

    The combined search judges single decisions, so it needs a step-level scorer (ToolPRM,
    likelihood); with a call- or answer-level judge (C-PRM, ORM) the beam expands to that
    judge's points and ranks by it, as in the paper.
    """
    if run.config.rank == "combined" and run.unit == "step":
        return combined_beam(run)
    return prm_beam(run)


def _sampled_answers(run: SearchRun, k: int) -> list[Beam]:
    root = run.plan.settle(run.plan.start())
    answers = []
    for child, count in expand(run.policy, run.plan, root, k, run.config.temperature, "answer"):
        answers.append(Beam(child, [], count))
    return answers


def best_of_n(run: SearchRun) -> Found:
    """Sample ``beams`` complete answers; return the best by the judge's aggregated score."""
    cfg = run.config
    beams = _sampled_answers(run, cfg.beams)
    if not beams:
        return Found(None, [])
    pairs, owner = [], []
    for k, b in enumerate(beams):
        for pair in judge_pairs(b.answer, run.unit):
            pairs.append(pair)
            owner.append(k)
    scores = run.scorer.score(pairs) if pairs else []
    for k, s in zip(owner, scores):
        beams[k].scores.append(s)
    for b in beams:
        b.confidence = list(b.scores)
    best = max(range(len(beams)), key=lambda i: beams[i].value(cfg.aggregation))
    event = _trace_round(0, [Beam(run.plan.settle(run.plan.start()))], [(0, b, b.value(cfg.aggregation)) for b in beams], {best}, cfg.aggregation)
    run.emit(event)
    ranked = sorted(beams, key=lambda b: -b.value(cfg.aggregation))
    return Found(beams[best], [event], [(b, b.value(cfg.aggregation)) for b in ranked])


def self_consistency(run: SearchRun) -> Found:
    """Majority vote over ``beams`` sampled answers (no judge): the cheapest baseline a judge
    must beat at equal tokens. Ties go to the answers' summed sample counts' first member."""
    beams = _sampled_answers(run, run.config.beams)
    if not beams:
        return Found(None, [])
    groups: dict[str, list[Beam]] = {}
    for b in beams:
        groups.setdefault(canonical(b.answer.calls), []).append(b)
    total = sum(b.count for b in beams)
    ranked = sorted(((g[0], sum(b.count for b in g) / total) for g in groups.values()), key=lambda r: -r[1])
    event = {"round": 0, "beams": [""], "candidates": [{"parent": 0, "text": b.answer.text, "kind": "TOTAL_FINISH", "score": share,
                                                        "count": sum(x.count for x in groups[canonical(b.answer.calls)]), "kept": i == 0, "done": True}
                                                       for i, (b, share) in enumerate(ranked)]}
    run.emit(event)
    return Found(ranked[0][0], [event], ranked)


#: strategy name -> function over one :class:`SearchRun`
STRATEGIES: dict[str, Callable[[SearchRun], Found]] = {
    "greedy": greedy_search,
    "beam": beam_search,
    "best_of_n": best_of_n,
    "self_consistency": self_consistency,
}
NEEDS_SCORER = {"beam", "best_of_n"}


# ------------------------------------------------------------------------------------------


def uses_stored_settings(config: SearchConfig) -> bool:
    """Whether ``config`` leaves a setting to the judge checkpoint's ``search_weights`` (only
    the combined beam search reads them)."""
    open_ = any(getattr(config, k) is None for k in ("policy_weight", "judge_weight", "vote_weight", "verify", "verify_types"))
    return open_ and config.strategy == "beam" and config.rank == "combined"


def resolve_settings(config: SearchConfig, stored: dict | None) -> dict[str, Any]:
    """The combined search's weights and ``verify`` setting: each from ``config`` where it is
    set, else from a judge checkpoint's ``search_weights`` (``stored``), else the defaults
    (weights 1, ``verify`` off, every decision type). ``stored`` is ignored where the search
    reads no stored setting (:func:`uses_stored_settings`).

        >>> resolve_settings(SearchConfig(judge_weight=0.0), {"policy": 0.1, "judge": 0.7, "verify": 0.5, "verify_types": ["end"]})
        {'weights': (0.1, 0.0, 1.0), 'verify': 0.5, 'verify_types': ('end',)}
    """
    stored = (stored or {}) if uses_stored_settings(config) else {}
    weights = tuple(float(getattr(config, f"{k}_weight")) if getattr(config, f"{k}_weight") is not None else float(stored.get(k, 1.0))
                    for k in ("policy", "judge", "vote"))
    threshold = config.verify if config.verify is not None else stored.get("verify", 0.0)
    types = config.verify_types if config.verify_types is not None else stored.get("verify_types", DECISION_TYPES)
    return {"weights": weights, "verify": float(threshold), "verify_types": tuple(types)}


def settings_record(settings: dict[str, Any]) -> dict[str, Any]:
    """:func:`resolve_settings`' result as a run records it (``resolved`` in its config.json)."""
    return {"weights": list(settings["weights"]), "verify": settings["verify"], "verify_types": list(settings["verify_types"])}


class ToolPRMSearch:
    """A policy, a scorer and a search config: ``search(messages, tools) -> SearchResult``.

    Args:
        policy: a :class:`~toolprm_agents.policy.Policy` (``None``: SmolLM2 on transformers).
        scorer: a :class:`~toolprm_agents.scorers.Scorer` or a name (``toolprm``, ``orm``,
            ``cprm``, ``likelihood``); unused by greedy search and self-consistency.
        config: a :class:`SearchConfig` (``None``: the default combined beam search).

    Example:
        >>> search = ToolPRMSearch(config=SearchConfig(strategy="greedy"))   # doctest: +SKIP
        >>> search.search("Add 2 and 3", [add]).tool_calls()                 # doctest: +SKIP
        [{'name': 'add', 'arguments': {'a': 2, 'b': 3}}]
    """

    def __init__(self, policy=None, scorer: Scorer | str | None = "toolprm", config: SearchConfig | None = None):
        if policy is None:
            from .backends.transformers_policy import TransformersPolicy

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

    def _stored(self, config: SearchConfig) -> dict:
        """The judge checkpoint's ``search_weights`` where the combined search leaves a setting to it."""
        if uses_stored_settings(config) and self._scorer_spec is not None:
            return getattr(getattr(self.scorer, "config", None), "search_weights", None) or {}
        return {}

    def settings(self, config: SearchConfig) -> dict[str, Any]:
        """:func:`resolve_settings` of ``config`` with this search's judge checkpoint."""
        return resolve_settings(config, self._stored(config))

    def weights(self, config: SearchConfig) -> tuple[float, float, float]:
        """(policy, judge, vote) weights: the config's, else the judge checkpoint's ``search_weights``, else 1."""
        return self.settings(config)["weights"]

    def verify(self, config: SearchConfig) -> tuple[float, tuple[str, ...]]:
        """(threshold, decision types) of ``verify``: the config's, else the judge checkpoint's
        ``search_weights["verify"]`` / ``["verify_types"]``, else off / every type."""
        r = self.settings(config)
        return r["verify"], r["verify_types"]

    def judge_answer(self, messages: Any, tools: Sequence[Any], result: SearchResult) -> list[float | None]:
        """The step judge's score of every decided step of ``result``'s answer, in order (``[]``
        without an answer or a step-level scorer): also the steps the uncertainty gate committed
        without asking the judge. With ``search(..., keep_session=True)`` the policy's KV cache is reused.
        """
        if result.answer is None or self._scorer_spec is None or self.scorer.granularity != "step":
            return []
        config = self.config
        plan = StepPlan(to_tool_specs(tools), config.limits)
        pairs = judge_pairs(result.answer, "step")
        if not pairs:
            return []
        session = self.scorer.session(normalize_messages(messages), plan, Compute(), policy_session=result.session)
        return list(session.score(pairs))

    def search(self, messages: Any, tools: Sequence[Any], *, config: SearchConfig | None = None, on_event: EventHandler | None = None,
               keep_session: bool = False) -> SearchResult:
        """Find the best tool calls for the conversation ``messages`` over ``tools``.

        ``keep_session``: keep the policy session (and its KV caches) in ``SearchResult.session``.
        """
        config = config or self.config
        plan = StepPlan(to_tool_specs(tools), config.limits)
        msgs = normalize_messages(messages)
        compute = Compute()
        policy = self.policy.session(msgs, plan, compute, seed=config.seed)
        factory, unit = None, "step"
        if config.strategy in NEEDS_SCORER and self._scorer_spec is not None:
            scorer = self.scorer
            unit = scorer.granularity
            factory = lambda: scorer.session(msgs, plan, compute, policy_session=policy)  # noqa: E731
        elif config.strategy in NEEDS_SCORER and not (config.strategy == "beam" and config.rank == "combined"):
            raise SearchError(f"strategy {config.strategy!r} needs a scorer")
        settings = self.settings(config) if factory is not None else None
        weights = settings["weights"] if settings else (1.0, 0.0, 1.0)
        verify = (settings["verify"], settings["verify_types"]) if settings else (0.0, DECISION_TYPES)
        run = SearchRun(policy, plan, config, compute, factory, unit, on_event, weights, verify)
        if factory is not None and not (config.strategy == "beam" and config.rank == "combined" and unit == "step"):
            run.scorer  # the paper's strategies judge from the first round
        try:
            found = STRATEGIES[config.strategy](run)
        except PromptTooLongError as exc:  # the answer grew past the context window mid-search
            compute.stop_clock()
            return SearchResult([], None, None, False, [], compute, config,
                                error=f"the search stopped: {exc} (shorten the conversation or the tool list, "
                                      "or bound the arguments' lengths)")
        compute.stop_clock()
        kept = policy if keep_session else None
        best = found.best
        alternatives = [{"calls": [c.to_dict() for c in b.answer.calls], "score": share, "truncated": b.truncated}
                        for b, share in found.ranked]
        if best is None:
            return SearchResult([], None, None, False, found.trace, compute, config, alternatives=alternatives,
                                budget_exhausted=found.budget_exhausted, session=kept,
                                error="no candidate answer could be completed within the bounds (max_step_tokens, max_rounds)"
                                      + (f"; a value was dropped for breaking its schema ({run.rejected})" if run.rejected else ""))
        if best.truncated:
            return SearchResult([], best.answer, None, False, found.trace, compute, config, alternatives=alternatives,
                                budget_exhausted=found.budget_exhausted, step_scores=step_confidences(best.confidence, best.answer), session=kept,
                                error="a value reached the step's token bound and was cut there, so no complete answer "
                                      "was found (raise the policy's max_step_tokens or give the argument a maxLength)")
        voted = config.strategy == "self_consistency" or (config.strategy == "beam" and config.rank == "combined" and unit == "step")
        if voted and found.ranked:
            score = found.ranked[0][1]  # the chosen answer's share of the vote
        else:
            score = best.value(config.aggregation) if best.scores else None
        return SearchResult(list(best.answer.calls), best.answer, score, True, found.trace, compute, config,
                            step_scores=step_confidences(best.confidence, best.answer), alternatives=alternatives,
                            budget_exhausted=found.budget_exhausted, session=kept)


__all__ = [
    "SearchConfig",
    "SearchResult",
    "SearchError",
    "ToolPRMSearch",
    "greedy_search",
    "best_of_n",
    "beam_search",
    "combined_beam",
    "prm_beam",
    "self_consistency",
    "weighted_vote",
    "canonical",
    "resolve_settings",
    "settings_record",
    "STRATEGIES",
    "SearchRun",
    "Found",
    "aggregate",
    "judge_pairs",
]
