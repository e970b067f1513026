"""The probe judge: a ToolPRM (or ORM, C-PRM) that reads the policy's own hidden states.

A checkpoint whose ``toolprm_config.json`` names a ``probe`` file holds no language-model
weights of its own: it is a logistic model (trained by :mod:`toolprm_agents.training.probe`)
over the frozen base model's hidden states where each judged unit ends -- a step for the
ToolPRM, a call for the C-PRM, the whole answer for the ORM
(:func:`~toolprm_agents.probe_features.step_features`). It reads the policy's prompt, so
with a transformers policy on the same base it reuses the policy's KV cache and pays only
for the candidates' own tokens; the score is already calibrated (Platt on a held-out split).

Example:
    >>> judge = ProbeJudge("toolprm_agents/checkpoints/toolprm-smollm2")   # doctest: +SKIP
    >>> judge.session(messages, plan, Compute(), policy_session=ps).score([(parent, child)])  # doctest: +SKIP
    [0.83]
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from ..compute import Compute
from ..context import ContextStore
from ..interfaces import Scorer, ScorerError, ScorerSession
from ..judges import JudgeConfig, packaged_checkpoint
from ..models import model_lock
from ..probe_features import step_features
from .transformers_judges import by_context
from ..prompt import PromptFormat


class ProbeJudge(Scorer):
    """A judge of its config's kind: a probe over the base model's hidden states (see the module docstring)."""

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, model=None, config: JudgeConfig | None = None):
        from ..training.probe import load_probe_checkpoint

        self.checkpoint = Path(checkpoint) if checkpoint is not None else packaged_checkpoint("toolprm")
        self.config, self.probe, self.layers = load_probe_checkpoint(self.checkpoint, config)
        self.kind = self.name = self.config.kind
        self.granularity = self.config.granularity
        if model is None:
            from ..models import load_causal_lm

            model = load_causal_lm(self.config.base_model or "smollm2")
        self.model, self.tokenizer = model
        self.lock = model_lock(self.model)
        self.prompt_format = PromptFormat()

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None = None, **kw) -> "ProbeJudge":
        return cls(checkpoint, **kw)

    @contextlib.contextmanager
    def active(self):
        with self.lock:
            yield

    def session(self, messages, plan, compute, *, policy_session=None) -> "ProbeSession":
        prompt = self.prompt_format.render(self.tokenizer, messages, plan.tools)
        store = None
        shared = policy_session.shared_context() if policy_session is not None else None
        if shared is not None:
            store = shared.reuse(self.model, prompt)  # the policy's prompt and weights: its KV cache serves both
            if not isinstance(store, ContextStore):
                store = None
        with self.lock:
            if store is None:
                store = ContextStore(self.model, self.tokenizer, prompt, compute, counter="scorer")
        return ProbeSession(self, store, compute)

    def score_features(self, feats: torch.Tensor, kinds) -> list[float]:
        with torch.no_grad():
            return self.probe(feats, kinds).tolist()


def decided_kind(ctx, cand) -> str:
    """The kind of the step a candidate decides: the first it adds to its context (the rest are forced)."""
    added = cand.steps[len(ctx.steps):]
    return (added[0] if added else cand.steps[-1]).kind.value


class ProbeSession(ScorerSession):
    def __init__(self, judge: ProbeJudge, store: ContextStore, compute: Compute):
        self.judge, self.store, self.compute = judge, store, compute

    def score(self, pairs):
        groups = by_context(pairs)
        scores = [0.0] * len(pairs)
        with self.judge.lock:
            for ctx_text, idx in groups.items():
                rows = [[self.store.encode(pairs[i][1].text[len(ctx_text):])] for i in idx]
                feats = step_features(self.judge.model, self.store, ctx_text, rows, layers=self.judge.layers, compute=self.compute)
                kinds = [decided_kind(*pairs[i]) for i in idx]
                for i, p in zip(idx, self.judge.score_features(torch.cat(feats), kinds)):
                    scores[i] = p
        self.compute.scorer_calls += len(pairs)
        return scores
