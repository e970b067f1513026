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
or (untrained) just a pointer to the base model. All candidates of a step are scored in
batched forward passes over a shared KV cache of the prompt.

Example:
    >>> prm = ToolPRM.from_pretrained()            # the default ToolPRM checkpoint  # doctest: +SKIP
    >>> session = prm.session(messages, plan, Compute())                             # doctest: +SKIP
    >>> session.score([(parent, child_a), (parent, child_b)])                       # doctest: +SKIP
    [0.81, 0.12]
"""

from __future__ import annotations

from .errors import ToolPRMError

import abc
import contextlib
import hashlib
import json
import os
import weakref
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from .compute import Compute
from .context import ContextStore
from .models import model_lock
from .prompt import PromptFormat
from .steps import PartialAnswer, StepKind, StepPlan

Granularity = Literal["step", "call", "answer"]
CONFIG_NAME = "toolprm_config.json"
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "toolprm-smollm2"
_peft_wrappers: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # base model -> its PeftModel


class ScorerError(ToolPRMError, RuntimeError):
    """A scorer could not be loaded or used."""


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
    def session(self, messages, plan: StepPlan, compute: Compute, *, policy_session=None) -> ScorerSession:
        """Open a scoring session for one conversation and tool set."""


# ------------------------------------------------------------------------------------------
# batched forward over candidate rows sharing a cached context


@torch.inference_mode()
def forward_rows(store: ContextStore, context_text: str, rows: list[list[int]], compute: Compute, *, all_positions: bool):
    """Logits for token rows that each continue the context of ``context_text``.

    Rows are right-padded; returns ``(logits, lengths)`` where ``logits`` is
    ``[rows, max_len, vocab]`` if ``all_positions`` else ``[rows, vocab]`` at each row's
    last token.
    """
    ctx = store.get(context_text)
    n, width = len(rows), max(len(r) for r in rows)
    pad = store.tokenizer.pad_token_id if store.tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, ctx.length + width), dtype=torch.long)
    mask[:, : ctx.length] = 1
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, ctx.length : ctx.length + len(r)] = 1
    positions = torch.arange(ctx.length, ctx.length + width).unsqueeze(0).expand(n, -1)
    cache = store.fork(ctx, n)
    out = store.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
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


DEFAULT_QUESTIONS = {
    "step": "Is the last step of this answer ({kind}) correct? Answer + or -.",
    "call": "Is the last function call of this answer correct? Answer + or -.",
    "answer": "Is this answer correct? Answer + or -.",
}
JUDGE_TURN = "<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class JudgeConfig:
    """What ``toolprm_config.json`` in a judge checkpoint says.

    ``base_model``: where the weights come from when the directory holds none (``"smollm2"``
    or a path, relative paths are to the checkpoint); ``adapter``: the directory holds a
    PEFT adapter over ``base_model``; ``label_tokens``: the "+" and "-" label texts (each
    one token); ``judge_turn``/``question``: the text after the answer whose next token is
    the label; ``trained``: whether any training went into it (the untrained base judge is
    only a format placeholder).
    """

    kind: Literal["toolprm", "orm", "cprm"] = "toolprm"
    base_model: str | None = "smollm2"
    adapter: bool = False
    label_tokens: tuple[str, str] = ("+", "-")
    judge_turn: str = JUDGE_TURN
    question: str | None = None
    system: str | None = None
    trained: bool = False
    format_version: int = 1
    metadata: dict = field(default_factory=dict)

    @property
    def granularity(self) -> Granularity:
        return {"toolprm": "step", "orm": "answer", "cprm": "call"}[self.kind]

    def save(self, directory: str | os.PathLike) -> None:
        d = asdict(self)
        d["label_tokens"] = list(self.label_tokens)
        Path(directory, CONFIG_NAME).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "JudgeConfig":
        path = Path(directory, CONFIG_NAME)
        if not path.is_file():
            raise ScorerError(f"{directory!s} is not a judge checkpoint: {CONFIG_NAME} is missing")
        try:
            data = json.loads(path.read_text())
            data["label_tokens"] = tuple(data.get("label_tokens", ("+", "-")))
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ScorerError(f"{path}: not a valid judge config: {exc}") from None


class GenerativeJudge(Scorer):
    """A causal LM judging (partial) answers with a "+"/"-" label token.

    Args:
        checkpoint: a judge checkpoint directory (``None``: the default ToolPRM).
        model: a ``(model, tokenizer)`` pair to use instead of loading one.

    A judge without weights of its own is its base model asked the judge question; one
    with a PEFT adapter puts the adapter on the shared base, switched on only while it
    scores. Either way a policy on the same base shares one copy of the weights in memory.
    """

    kind: str = "toolprm"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, model=None, config: JudgeConfig | None = None):
        self.checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
        self.config = config or JudgeConfig.load(self.checkpoint)
        if self.config.kind != self.kind:
            raise ScorerError(f"{self.checkpoint} holds a {self.config.kind!r} judge, not a {self.kind!r} one")
        self.granularity = self.config.granularity
        self.name = self.kind
        self._peft, self._adapter_name = None, None
        self.model, self.tokenizer = model if model is not None else self._load()
        self.lock = model_lock(self.model)
        self.label_ids = [self._single_token(t) for t in self.config.label_tokens]
        self.prompt_format = PromptFormat(system=self.config.system) if self.config.system else PromptFormat()

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None = None, **kw) -> "GenerativeJudge":
        return cls(checkpoint, **kw)

    def _load(self):
        from .models import load_causal_lm

        if (self.checkpoint / "config.json").is_file():
            return load_causal_lm(self.checkpoint)
        base = self.config.base_model
        if base is None:
            raise ScorerError(f"{self.checkpoint}: no weights and no base_model in {CONFIG_NAME}")
        if base != "smollm2" and not os.path.isabs(base):
            base = str((self.checkpoint / base).resolve()) if (self.checkpoint / base).exists() else base
        model, tokenizer = load_causal_lm(base)  # cached: a policy on the same base shares these weights
        if self.config.adapter:
            self._attach_adapter(model)
        return model, tokenizer

    def _attach_adapter(self, base) -> None:
        """Put this checkpoint's PEFT adapter on the shared ``base``, switched off.

        The adapter is switched on only while this judge scores (:meth:`active`), under the
        base model's lock, so a policy on the same base keeps seeing the plain base model.
        """
        try:
            from peft import PeftModel
        except ImportError:
            raise ScorerError("this judge is a PEFT adapter: pip install peft") from None
        name = f"{self.kind}-{hashlib.sha1(str(self.checkpoint.resolve()).encode()).hexdigest()[:8]}"
        with model_lock(base):
            wrapper = _peft_wrappers.get(base)
            try:
                if wrapper is None:
                    wrapper = PeftModel.from_pretrained(base, str(self.checkpoint), adapter_name=name)
                    _peft_wrappers[base] = wrapper
                elif name not in wrapper.peft_config:
                    wrapper.load_adapter(str(self.checkpoint), adapter_name=name)
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

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ScorerError(f"label {text!r} is {len(ids)} tokens for this tokenizer; a judge label must be one token")
        return ids[0]

    def suffix(self, answer: PartialAnswer) -> str:
        question = self.config.question or DEFAULT_QUESTIONS[self.granularity]
        kind = next((s.kind.value for s in reversed(answer.steps) if not s.forced), "TOTAL_FINISH")
        return self.config.judge_turn.format(question=question.format(kind=kind))

    def session(self, messages, plan, compute, *, policy_session=None) -> "JudgeSession":
        prompt = self.prompt_format.render(self.tokenizer, messages, plan.tools)
        store = None
        shared = getattr(policy_session, "store", None)
        if shared is not None and shared.model is self.model and self._peft is None and shared.prompt_text == prompt:
            store = shared  # same weights, same prompt: one KV cache serves both
        with self.active():
            if store is None:
                store = ContextStore(self.model, self.tokenizer, prompt, compute, counter="scorer")
        return JudgeSession(self, store, compute)


class JudgeSession(ScorerSession):
    def __init__(self, judge: GenerativeJudge, store: ContextStore, compute: Compute):
        self.judge, self.store, self.compute = judge, store, compute

    def score(self, pairs):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (ctx, cand) in enumerate(pairs):
            if not cand.text.startswith(ctx.text):
                raise ValueError("a candidate must extend its context answer")
            groups[ctx.text].append(i)
        scores = [0.0] * len(pairs)
        plus, minus = self.judge.label_ids
        with self.judge.active():
            for ctx_text, idx in groups.items():
                rows = [
                    self.store.encode(pairs[i][1].text[len(ctx_text):] + self.judge.suffix(pairs[i][1])) for i in idx
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
        if policy_session is None or getattr(policy_session, "store", None) is None:
            raise ScorerError("the likelihood scorer needs a transformers policy session to read its model")
        return _LikelihoodSession(policy_session.store, policy_session.policy.lock, compute)


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
    name = name.lower().replace("-", "")
    if name == "likelihood":
        return LikelihoodScorer()
    classes = {"toolprm": ToolPRM, "prm": ToolPRM, "orm": OutcomeRM, "cprm": CoarsePRM}
    if name not in classes:
        raise ScorerError(f"unknown scorer {name!r}: choose toolprm, orm, cprm or likelihood")
    cls = classes[name]
    ckpt = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT.parent / {"toolprm": "toolprm-smollm2", "prm": "toolprm-smollm2", "orm": "orm-smollm2", "cprm": "cprm-smollm2"}[name]
    return cls(ckpt)
