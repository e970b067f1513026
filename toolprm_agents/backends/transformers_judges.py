"""Scorers: reward models that rank candidate (partial) answers.

* :class:`ToolPRM` -- the process reward model of the paper: a generative judge that
  reads the conversation, the tools and the answer so far, and scores the *last step*
  by the softmax over its "+" and "-" label-token logits. ``granularity = "step"``.
* :class:`OutcomeRM` -- the same kind of judge on complete answers only (``"answer"``).
* :class:`CoarsePRM` -- the same kind of judge on each completed call (``"call"``).
* :class:`LikelihoodScorer` -- the policy's own (geometric-mean) token probability of
  the new text, re-tokenised the normal way (``"step"``).

Judges load from a checkpoint directory holding ``toolprm_config.json`` (see
:class:`JudgeConfig`), with either full model weights, a PEFT adapter over a base model,
or (untrained) just a pointer to the base model; the config and the judge's text are
:mod:`toolprm_agents.judges`' (shared with the served backends and the trainer). Loads are
local-only: a missing file is a :class:`ScorerError` at once, never a hub look-up. All
candidates of a step are scored in batched forward passes over a shared KV cache of the prompt.

Example:
    >>> prm = ToolPRM.from_pretrained()            # the default ToolPRM checkpoint  # doctest: +SKIP
    >>> session = prm.session(messages, plan, Compute())                             # doctest: +SKIP
    >>> session.score([(parent, child_a), (parent, child_b)])                       # doctest: +SKIP
    [0.81, 0.12]
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import weakref
from collections import defaultdict
from pathlib import Path

import torch

from ..compute import Compute
from ..context import ContextStore
from ..interfaces import Granularity, Scorer, ScorerError, ScorerSession, is_judge_point
from ..judges import (
    CONFIG_NAME,
    DEFAULT_CHECKPOINT,
    DEFAULT_QUESTIONS,
    JUDGE_TURN,
    JudgeConfig,
    JudgeFormat,
    judge_kind,
    locate_judge_weights,
    packaged_checkpoint,
)
from ..models import model_lock
from ..steps import PartialAnswer

_peft_wrappers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # base model -> its PeftModel


# ------------------------------------------------------------------------------------------
# batched forward over candidate rows sharing a cached context


@torch.inference_mode()
def forward_rows(store: ContextStore, context_text: str, rows: list[list[int]], compute: Compute, *, all_positions: bool):
    """Logits for token rows that each continue the context of ``context_text``.

    Rows are right-padded; returns ``(logits, lengths)`` where ``logits`` is
    ``[rows, max_len, vocab]`` if ``all_positions`` else ``[rows, vocab]`` at each row's
    last token.
    """
    out = store.model(**store.batch_inputs(context_text, rows), use_cache=True)
    n = len(rows)
    lengths = [len(r) for r in rows]
    compute.scorer_tokens += sum(lengths)
    compute.scorer_forward_passes += 1
    logits = out.logits.float()
    if all_positions:
        return logits, lengths
    last = torch.tensor([l - 1 for l in lengths])
    return logits[torch.arange(n), last], lengths


# ------------------------------------------------------------------------------------------
# generative judges: ToolPRM, ORM, C-PRM


class GenerativeJudge(Scorer):
    """A causal LM judging (partial) answers with a "+"/"-" label token.

    Args:
        checkpoint: a judge checkpoint directory (``None``: the packaged one of this kind).
        model: a ``(model, tokenizer)`` pair to use instead of loading one.

    A judge without weights of its own is its base model asked the judge question; one
    with a PEFT adapter puts the adapter on the shared base, switched on only while it
    scores. Either way a policy on the same base shares one copy of the weights in memory.
    """

    kind: str = "toolprm"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, model=None, config: JudgeConfig | None = None):
        self.checkpoint = Path(checkpoint) if checkpoint is not None else packaged_checkpoint(self.kind, generative=True)
        self.config = config or JudgeConfig.load(self.checkpoint)
        if self.config.kind != self.kind:
            raise ScorerError(f"{self.checkpoint} holds a {self.config.kind!r} judge, not a {self.kind!r} one")
        self.granularity = self.config.granularity
        self.name = self.kind
        self._peft, self._adapter_name = None, None
        self.model, self.tokenizer = model if model is not None else self._load()
        self.lock = model_lock(self.model)
        self.format = JudgeFormat(self.config, self.tokenizer)
        self.label_ids = self.format.label_ids
        self.prompt_format = self.format.prompt_format

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None = None, **kw) -> "GenerativeJudge":
        return cls(checkpoint, **kw)

    def _load(self):
        from ..models import load_causal_lm

        weights, _ = locate_judge_weights(self.checkpoint, config=self.config)  # checks every file is here
        model, tokenizer = load_causal_lm(weights.model)  # cached: a policy on the same base shares these weights
        if weights.adapter is not None:
            self._attach_adapter(model)
        return model, tokenizer

    def _attach_adapter(self, base) -> None:
        """Put this checkpoint's PEFT adapter on the shared ``base``, switched off.

        The adapter is switched on only while this judge scores (:meth:`active`), under the
        base model's lock, so a policy on the same base keeps seeing the plain base model.
        Loaded from local files only (:func:`~toolprm_agents.judges.locate_judge_weights`
        checked they are there): PEFT never looks the folder up on a hub.
        """
        try:
            from peft import PeftModel
        except ImportError:
            raise ScorerError("this judge is a PEFT adapter: pip install peft") from None
        name = f"{self.kind}-{hashlib.sha1(str(self.checkpoint.resolve()).encode()).hexdigest()[:8]}"
        where = str(self.checkpoint.resolve())
        with model_lock(base):
            wrapper = _peft_wrappers.get(base)
            try:
                if wrapper is None:
                    wrapper = PeftModel.from_pretrained(base, where, adapter_name=name, local_files_only=True)
                    _peft_wrappers[base] = wrapper
                elif name not in wrapper.peft_config:
                    wrapper.load_adapter(where, adapter_name=name, local_files_only=True)
            except Exception as exc:
                raise ScorerError(f"{self.checkpoint}: cannot load the PEFT adapter: {exc}") from None
            wrapper.eval()
            wrapper.base_model.disable_adapter_layers()
        self._peft, self._adapter_name = wrapper, name

    @contextlib.contextmanager
    def active(self):
        """The judge's weights in force (its adapter on, if it has one), under the model lock."""
        with self.lock:
            if self._peft is None:
                yield
                return
            self._peft.set_adapter(self._adapter_name)
            self._peft.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                self._peft.base_model.disable_adapter_layers()

    def suffix(self, answer: PartialAnswer) -> str:
        """The judge turn after ``answer`` (:meth:`JudgeFormat.suffix`)."""
        return self.format.suffix(answer)

    def session(self, messages, plan, compute, *, policy_session=None) -> "JudgeSession":
        prompt = self.format.render(messages, plan.tools)
        store = None
        shared = policy_session.shared_context() if policy_session is not None else None
        if shared is not None and self._peft is None:
            store = shared.reuse(self.model, prompt)  # same weights, same prompt: one KV cache serves both
            if not isinstance(store, ContextStore):
                store = None
        with self.active():
            if store is None:
                store = ContextStore(self.model, self.tokenizer, prompt, compute, counter="scorer")
        return JudgeSession(self, store, compute)


def by_context(pairs) -> dict[str, list[int]]:
    """Indices of ``(context, candidate)`` pairs grouped by the context's text (one batched
    forward pass per group); a candidate that does not extend its context is a ValueError."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (ctx, cand) in enumerate(pairs):
        if not cand.text.startswith(ctx.text):
            raise ValueError("a candidate must extend its context answer")
        groups[ctx.text].append(i)
    return groups


class JudgeSession(ScorerSession):
    def __init__(self, judge: GenerativeJudge, store: ContextStore, compute: Compute):
        self.judge, self.store, self.compute = judge, store, compute

    def score(self, pairs):
        groups = by_context(pairs)
        scores = [0.0] * len(pairs)
        plus, minus = self.judge.label_ids
        with self.judge.active():
            for ctx_text, idx in groups.items():
                rows = [
                    self.store.encode(pairs[i][1].text[len(ctx_text):], self.judge.suffix(pairs[i][1])) for i in idx
                ]
                logits, _ = forward_rows(self.store, ctx_text, rows, self.compute, all_positions=False)
                p = torch.softmax(logits[:, [plus, minus]], dim=-1)[:, 0]
                for i, v in zip(idx, p.tolist()):
                    scores[i] = v
        self.compute.scorer_calls += len(pairs)
        return scores


class ToolPRM(GenerativeJudge):
    """The fine-grained process reward model: judges every step of a call."""

    kind = "toolprm"


class OutcomeRM(GenerativeJudge):
    """Outcome reward model: judges complete answers only."""

    kind = "orm"


class CoarsePRM(GenerativeJudge):
    """Coarse-grained (call-level) process reward model: judges each completed call."""

    kind = "cprm"


# ------------------------------------------------------------------------------------------
# policy likelihood


class LikelihoodScorer(Scorer):
    """Scores new text by the policy's own geometric-mean token probability.

    Uses the policy's model and its KV cache (no second model). The text is re-tokenised
    the normal way, so an odd token split made under a grammar is not penalised.
    """

    granularity = "step"
    name = "likelihood"

    def session(self, messages, plan, compute, *, policy_session=None):
        shared = policy_session.shared_context() if policy_session is not None else None
        if shared is None or not isinstance(shared.cache, ContextStore):
            raise ScorerError("the likelihood scorer needs a transformers policy session to read its model")
        return _LikelihoodSession(shared.cache, shared.lock if shared.lock is not None else contextlib.nullcontext(), compute)


class _LikelihoodSession(ScorerSession):
    def __init__(self, store: ContextStore, lock, compute: Compute):
        self.store, self.lock, self.compute = store, lock, compute

    def score(self, pairs):
        scores = [0.0] * len(pairs)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (ctx, _) in enumerate(pairs):
            groups[ctx.text].append(i)
        with self.lock:
            for ctx_text, idx in groups.items():
                rows = [self.store.encode(pairs[i][1].text[len(ctx_text):]) for i in idx]
                prev = self.store.get(ctx_text).logits
                logits, lengths = forward_rows(self.store, ctx_text, rows, self.compute, all_positions=True)
                for k, (i, row) in enumerate(zip(idx, rows)):
                    lp = torch.log_softmax(torch.cat([prev.unsqueeze(0), logits[k, : len(row) - 1]]), -1)
                    tok = torch.tensor(row)
                    mean = lp[torch.arange(len(row)), tok].mean()
                    scores[i] = float(mean.exp())
        self.compute.scorer_calls += len(pairs)
        return scores


def load_scorer(name: str, *, checkpoint=None, policy=None) -> Scorer:
    """A scorer by name: ``toolprm``, ``orm``, ``cprm`` or ``likelihood``.

    A judge without weights of its own loads its base model through the in-process model
    cache, so it shares the weights (and the prompt's KV cache) with a policy on the same
    base. ``policy`` is accepted for symmetry with other backends.
    """
    if name.lower().replace("-", "") == "likelihood":
        return LikelihoodScorer()
    try:
        kind = judge_kind(name)
    except ScorerError:
        raise ScorerError(f"unknown scorer {name!r}: choose toolprm, orm, cprm or likelihood") from None
    ckpt = Path(checkpoint) if checkpoint else packaged_checkpoint(kind)
    config = JudgeConfig.load(ckpt)
    if config.probe:
        from .probe_judge import ProbeJudge

        if config.kind != kind:
            raise ScorerError(f"{ckpt} holds a probe {config.kind} judge, not a {kind!r} one")
        return ProbeJudge(ckpt, config=config)
    cls = {"toolprm": ToolPRM, "orm": OutcomeRM, "cprm": CoarsePRM}[kind]
    return cls(ckpt, config=config)


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_QUESTIONS",
    "JUDGE_TURN",
    "CoarsePRM",
    "GenerativeJudge",
    "Granularity",
    "JudgeConfig",
    "JudgeFormat",
    "JudgeSession",
    "LikelihoodScorer",
    "OutcomeRM",
    "Scorer",
    "ScorerError",
    "ScorerSession",
    "ToolPRM",
    "forward_rows",
    "is_judge_point",
    "load_scorer",
]
