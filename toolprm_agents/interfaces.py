"""The backend-neutral interfaces: what a policy and a scorer are, without torch.

A :class:`Policy` opens a :class:`PolicySession` for one search (one conversation, one
tool set); the session proposes :class:`Candidate` next steps for any partial answer. A
:class:`Scorer` opens a :class:`ScorerSession` that scores ``(context, candidate)`` pairs
in [0, 1]. Every backend (transformers, vLLM, an OpenAI-compatible server) implements
these; this module imports neither torch nor a backend, so the served backends load on a
machine without torch.

What a scorer may share with the policy is said, not probed: a policy session offers a
:class:`SharedContext` (:meth:`PolicySession.shared_context`) -- which weights, which
prompt, and the cache object over that prompt -- and a scorer reuses the cache only when
its own weights and prompt match (:meth:`SharedContext.reuse`).

Example:
    >>> from toolprm_agents.interfaces import SharedContext
    >>> model, other = object(), object()
    >>> shared = SharedContext(weights=model, prompt=(1, 2, 3), cache={"kv": "..."})
    >>> shared.reuse(model, (1, 2, 3))
    {'kv': '...'}
    >>> shared.reuse(other, (1, 2, 3)) is None
    True
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from .compute import Compute
from .errors import ToolPRMError
from .steps import PartialAnswer, Step, StepKind, StepPlan

__all__ = [
    "Candidate",
    "Granularity",
    "Policy",
    "PolicySession",
    "Proposal",
    "Scorer",
    "ScorerError",
    "ScorerSession",
    "SharedContext",
    "is_judge_point",
    "merge_candidates",
]

Granularity = Literal["step", "call", "answer"]


class ScorerError(ToolPRMError, RuntimeError):
    """A scorer could not be loaded or used (the message names the file or field)."""


# ------------------------------------------------------------------------------------------
# policy


@dataclass
class Candidate:
    """A proposed next step.

    ``logprob``: the policy's log-probability of the generated tokens (unconstrained,
    temperature 1); ``count``: how many of the samples produced this same text;
    ``truncated``: the value reached the step's token bound and was closed there;
    ``min_prob``: the lowest probability the policy gave any of its tokens among those the
    grammar allowed (1.0 for fixed text; low means the policy was unsure somewhere);
    ``prob``: for an exactly scored alternative, its probability among all the
    decision's alternatives (for a value, that of choosing its argument).
    """

    step: Step
    logprob: float = 0.0
    num_tokens: int = 0
    count: int = 1
    truncated: bool = False
    min_prob: float = 1.0
    prob: float | None = None

    @property
    def mean_logprob(self) -> float:
        """``logprob`` per generated token (length-normalised); ``logprob`` for fixed text."""
        return self.logprob / self.num_tokens if self.num_tokens else self.logprob


@dataclass
class Proposal:
    """The candidates of one decision; ``branched`` when there is more than one to choose from."""

    candidates: list[Candidate]
    branched: bool = False


@dataclass(frozen=True)
class SharedContext:
    """What a policy session lets a scorer reuse.

    ``weights``: the identity of the weights the cache was computed with (a model object,
    a vLLM engine, ``(server URL, served model name)``); ``prompt``: the prompt the cache
    starts with (its text or token ids, as the backend keys it); ``cache``: the cache
    object itself (a :class:`~toolprm_agents.context.ContextStore` for transformers, a
    :class:`~toolprm_agents.backends.base.TokenContexts` for served models); ``lock``:
    held while the weights are used (``None``: the backend serialises by itself).
    """

    weights: Any
    prompt: Any
    cache: Any
    lock: Any = None

    def same_weights(self, weights: Any) -> bool:
        """The same object, or an equal ``(URL, served name)`` tuple."""
        return self.weights is weights or (type(self.weights) is tuple and self.weights == weights)

    def reuse(self, weights: Any, prompt: Any) -> Any:
        """The cache if it was computed with ``weights`` over ``prompt``, else ``None``."""
        return self.cache if self.same_weights(weights) and self.prompt == prompt else None


class PolicySession(abc.ABC):
    """A policy bound to one conversation and tool set (one search)."""

    plan: StepPlan
    compute: Compute

    @abc.abstractmethod
    def propose(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        """Up to ``n`` distinct candidates for the open decision after ``answer``.

        ``temperature == 0`` is greedy (one candidate). A forced decision gives its one
        step without calling the model. Candidates are de-duplicated by text.
        """

    def decide(self, answer: PartialAnswer, *, m: int, temperature: float, gate: float, samples: int) -> Proposal:
        """Candidates for the open decision, spending samples only where the policy is unsure.

        A backend that can score a decision's listable alternatives exactly (function
        names, the end of the answer, argument names, the end of the arguments, enum and
        boolean values) proposes the most probable ones; open values get the greedy value
        and, where the policy is unsure (below ``gate``), ``samples`` sampled values. This
        default, for backends without exact scoring, samples ``m`` candidates (one, greedy,
        when ``m == 1``).
        """
        cands = self.propose(answer, 1 if m == 1 else m, 0.0 if m == 1 else temperature)
        return Proposal(cands, branched=len(cands) > 1)

    def shared_context(self) -> SharedContext | None:
        """The weights, prompt and cache a scorer may reuse (``None``: nothing to share)."""
        return None

    def reply(self, messages: Sequence[dict[str, str]], *, max_tokens: int = 128) -> str:
        """A short greedy text answer to ``messages`` (plain chat: ``role``/``content``)."""
        raise NotImplementedError(
            f"{type(self).__name__} gives no text answers: pass the node an answer_model, "
            f"or use a policy backend that implements PolicySession.reply"
        )


class Policy(abc.ABC):
    """A candidate generator.

    ``backend``: where it runs (``"transformers"``, ``"vllm"``, ``"openai"``; ``"custom"``
    for any other), so a judge can be put on the same backend.
    """

    backend: str = "custom"

    @abc.abstractmethod
    def session(self, messages: Sequence[dict[str, str]], plan: StepPlan, compute: Compute, *, seed: int = 0) -> PolicySession:
        """Open a session: the conversation is read (and cached) once."""


def merge_candidates(cands: list[Candidate]) -> list[Candidate]:
    """De-duplicate by step text, keeping the first occurrence and counting repeats."""
    by_text: dict[str, Candidate] = {}
    for c in cands:
        hit = by_text.get(c.step.text)
        if hit is None:
            by_text[c.step.text] = c
        else:
            hit.count += c.count
            hit.logprob = max(hit.logprob, c.logprob)
    return list(by_text.values())


# ------------------------------------------------------------------------------------------
# scorer


def is_judge_point(answer: PartialAnswer, granularity: Granularity) -> bool:
    """Whether a scorer of ``granularity`` judges ``answer`` (after its last model step)."""
    if answer.done:
        return True
    decided = [s for s in answer.steps if not s.forced]
    if granularity == "step":
        return bool(decided)
    if granularity == "call":
        return bool(answer.steps) and answer.steps[-1].kind is StepKind.FUNC_FINISH
    return False


class ScorerSession(abc.ABC):
    @abc.abstractmethod
    def score(self, pairs: Sequence[tuple[PartialAnswer, PartialAnswer]]) -> list[float]:
        """Scores in [0, 1] for each ``(context, candidate)`` pair.

        ``candidate`` extends ``context`` (a beam and one of its expansions); the score
        judges the candidate at its end. Pairs sharing a context are batched together.
        """


class Scorer(abc.ABC):
    granularity: Granularity = "step"
    name: str = "scorer"

    @abc.abstractmethod
    def session(self, messages, plan: StepPlan, compute: Compute, *, policy_session: PolicySession | None = None) -> ScorerSession:
        """Open a scoring session for one conversation and tool set.

        ``policy_session``: the search's policy session; a scorer on the same weights and
        prompt may reuse its cache (:meth:`PolicySession.shared_context`).
        """
