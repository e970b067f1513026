"""Pieces shared by the serving backends (vLLM in-process and OpenAI-compatible servers)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..compute import Compute
from ..errors import ToolPRMError
from ..interfaces import Candidate, ScorerError, merge_candidates
from ..judges import JudgeConfig, JudgeFormat, judge_kind, packaged_checkpoint, require_generative
from ..prefix_cache import PrefixLRU
from ..steps import PartialAnswer, StepParseError, StepPlan

if TYPE_CHECKING:  # backends/steps.py needs xgrammar (and with it torch): imported where requests are built
    from .steps import StepRequest

__all__ = [
    "BackendError",
    "GenOutput",
    "TokenContexts",
    "build_candidates",
    "judge_rows",
    "judge_spec",
    "label_probability",
]


class BackendError(ToolPRMError, RuntimeError):
    """A serving backend failed: not installed, unreachable, rejected or ignored a request."""


@dataclass
class GenOutput:
    """One sampled continuation: text after the jump, tokens generated, log-probability, why it ended."""

    text: str
    num_tokens: int
    logprob: float
    finish_reason: str | None


def build_candidates(
    plan: StepPlan,
    answer: PartialAnswer,
    req: "StepRequest",
    outputs: Sequence[GenOutput],
    compute: Compute,
    *,
    where: str,
) -> list[Candidate]:
    """Candidates from sampled texts: follow characters stripped, duplicates merged.

    A text cut by the token bound that is no complete value is dropped (counted in
    ``compute.candidates_dropped``), like the transformers backend does with a value it
    cannot close. A text that ended by itself but is none of the decision's alternatives
    means the grammar was not applied: :class:`BackendError`.
    """
    cands = []
    for out in outputs:
        try:
            step = req.finish(plan, answer, out.text)
        except StepParseError as exc:
            if out.finish_reason == "length":
                compute.candidates_dropped += 1
                continue
            raise BackendError(
                f"{where} returned text that does not follow the step grammar ({exc}); the server "
                f"ignores structured outputs (serve with vLLM >= 0.11 and its xgrammar backend)"
            ) from None
        cands.append(Candidate(step, logprob=out.logprob, num_tokens=out.num_tokens))
    return merge_candidates(cands)


# ------------------------------------------------------------------------------------------
# judges


def judge_spec(checkpoint: str | os.PathLike | None, kind: str, tokenizer) -> JudgeFormat:
    """The judge's prompt format, judgement suffix and label ids (its weights are served elsewhere)."""
    kind = judge_kind(kind)
    ckpt = Path(checkpoint) if checkpoint is not None else packaged_checkpoint(kind, generative=True)
    config = JudgeConfig.load(ckpt)
    if config.kind != kind:
        raise ScorerError(f"{ckpt} holds a {config.kind!r} judge, not a {kind!r} one")
    require_generative(config, ckpt)
    return JudgeFormat(config, tokenizer)


class TokenContexts:
    """Token ids of prompt + answer text, split the way :class:`~toolprm_agents.context.ContextStore` reads them.

    The transformers backend reads an answer from the longest answer prefix it holds (the
    last ``capacity`` used, a :class:`~toolprm_agents.prefix_cache.PrefixLRU`) and
    tokenises only the rest, so token boundaries fall where earlier steps ended. Sending
    the served model the same ids keeps both backends on the same token sequence (the same
    greedy answer), and the shared prefix is what a prefix cache reuses.
    """

    def __init__(self, prompt_ids: list[int], encode, capacity: int = 8):
        # encode(answer_text, suffix=""): answer text as text, then template text (a judge turn)
        self.prompt_ids, self.encode, self.capacity = list(prompt_ids), encode, capacity
        self._ids: PrefixLRU[list[int]] = PrefixLRU(self.prompt_ids, capacity)

    def get(self, text: str) -> list[int]:
        return self._ids.get(text, self._extend)

    def _extend(self, base: list[int], rest_text: str) -> list[int] | None:
        rest = self.encode(rest_text)
        return base + rest if rest else None


def judge_rows(spec: JudgeFormat, contexts: TokenContexts, pairs) -> list[list[int]]:
    """Token rows to judge: prompt and context answer, then the candidate's new text and the judge turn.

    The split of the transformers judge: the context answer read as a context, the
    candidate's new text and the judge turn tokenised together.
    """
    rows = []
    for ctx, cand in pairs:
        if not cand.text.startswith(ctx.text):
            raise ValueError("a candidate must extend its context answer")
        rows.append(contexts.get(ctx.text) + contexts.encode(cand.text[len(ctx.text):], spec.suffix(cand)))
    return rows


def label_probability(lp_plus: float, lp_minus: float) -> float:
    """softmax over the two label log-probabilities: P("+") / (P("+") + P("-"))."""
    m = max(lp_plus, lp_minus)
    a, b = math.exp(lp_plus - m), math.exp(lp_minus - m)
    return a / (a + b)
