"""Pieces shared by the serving backends (vLLM in-process and OpenAI-compatible servers)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..compute import Compute
from ..models import ModelLoadError
from ..policy import Candidate, merge_candidates
from ..scorers import (
    CONFIG_NAME,
    DEFAULT_CHECKPOINT,
    CoarsePRM,
    GenerativeJudge,
    JudgeConfig,
    OutcomeRM,
    ScorerError,
    ToolPRM,
)
from ..steps import PartialAnswer, StepParseError, StepPlan
from .steps import StepRequest

__all__ = [
    "BackendError",
    "GenOutput",
    "JudgeWeights",
    "TokenContexts",
    "build_candidates",
    "default_checkpoint",
    "judge_rows",
    "judge_spec",
    "judge_weights",
    "label_probability",
]


class BackendError(ModelLoadError):
    """A serving backend failed: not installed, unreachable, rejected or ignored a request.

    (A :class:`~toolprm_agents.models.ModelLoadError` so that the CLI reports it as a
    one-line error.)
    """


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
    req: StepRequest,
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


_JUDGE_CLASSES = {"toolprm": ToolPRM, "prm": ToolPRM, "orm": OutcomeRM, "cprm": CoarsePRM}


def default_checkpoint(kind: str) -> Path:
    """The packaged judge checkpoint for ``kind`` (``toolprm``, ``orm``, ``cprm``)."""
    kind = _kind(kind)
    return DEFAULT_CHECKPOINT.parent / f"{'toolprm' if kind == 'prm' else kind}-smollm2"


def _kind(kind: str) -> str:
    k = (kind or "toolprm").lower().replace("-", "")
    if k not in _JUDGE_CLASSES:
        raise ScorerError(f"unknown judge kind {kind!r}: choose toolprm, orm or cprm (likelihood needs the transformers policy)")
    return k


class ServedWeights:
    """Stands for a judge's weights when they live in a serving engine, not in this process."""


def judge_spec(checkpoint: str | os.PathLike | None, kind: str, tokenizer) -> GenerativeJudge:
    """The judge's prompt format, judgement suffix and label ids, without loading its weights."""
    cls = _JUDGE_CLASSES[_kind(kind)]
    ckpt = Path(checkpoint) if checkpoint is not None else default_checkpoint(kind)
    return cls(ckpt, model=(ServedWeights(), tokenizer))


@dataclass
class JudgeWeights:
    """Where a judge's weights are: ``model`` (a reference for ``resolve_model_path``) and a PEFT ``adapter`` directory, if any."""

    model: str
    adapter: str | None = None


def judge_weights(checkpoint: str | os.PathLike | None, kind: str) -> tuple[JudgeWeights, JudgeConfig]:
    ckpt = Path(checkpoint) if checkpoint is not None else default_checkpoint(kind)
    config = JudgeConfig.load(ckpt)
    if (ckpt / "config.json").is_file():
        return JudgeWeights(str(ckpt)), config
    base = config.base_model
    if base is None:
        raise ScorerError(f"{ckpt}: no weights and no base_model in {CONFIG_NAME}")
    if base != "smollm2" and not os.path.isabs(base) and (ckpt / base).exists():
        base = str((ckpt / base).resolve())
    return JudgeWeights(base, str(ckpt) if config.adapter else None), config


class TokenContexts:
    """Token ids of prompt + answer text, split the way :class:`~toolprm_agents.context.ContextStore` reads them.

    The transformers backend reads an answer from the longest answer prefix it holds (the
    last ``capacity`` used) and tokenises only the rest, so token boundaries fall where
    earlier steps ended. Sending the served model the same ids keeps both backends on the
    same token sequence (the same greedy answer), and the shared prefix is what a prefix
    cache reuses.
    """

    def __init__(self, prompt_ids: list[int], encode, capacity: int = 8):
        self.prompt_ids, self.encode, self.capacity = list(prompt_ids), encode, capacity
        self._entries: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> list[int]:
        with self._lock:
            if text in self._entries:
                self._entries.move_to_end(text)
                return self._entries[text]
            base_text, base = "", self.prompt_ids
            for key, ids in self._entries.items():
                if len(key) > len(base_text) and text.startswith(key):
                    base_text, base = key, ids
        rest = self.encode(text[len(base_text):])
        if not rest:
            return base
        ids = base + rest
        with self._lock:
            self._entries[text] = ids
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return ids


def judge_rows(spec: GenerativeJudge, contexts: TokenContexts, pairs) -> list[list[int]]:
    """Token rows to judge: prompt and context answer, then the candidate's new text and the judge turn.

    The split of the transformers judge: the context answer read as a context, the
    candidate's new text and the judge turn tokenised together.
    """
    rows = []
    for ctx, cand in pairs:
        if not cand.text.startswith(ctx.text):
            raise ValueError("a candidate must extend its context answer")
        rows.append(contexts.get(ctx.text) + contexts.encode(cand.text[len(ctx.text):] + spec.suffix(cand)))
    return rows


def label_probability(lp_plus: float, lp_minus: float) -> float:
    """softmax over the two label log-probabilities: P("+") / (P("+") + P("-"))."""
    import math

    m = max(lp_plus, lp_minus)
    a, b = math.exp(lp_plus - m), math.exp(lp_minus - m)
    return a / (a + b)

