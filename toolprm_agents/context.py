"""Key-value cache reuse: the prompt is read once per search, answers extend it.

:class:`ContextStore` holds the KV cache of the prompt and of recent answer prefixes
(beams). Asking for the context of an answer text finds the longest stored prefix of it
and reads only the remaining tokens. :meth:`ContextStore.fork` copies a context into a
batch of ``n`` rows for sampling or scoring its candidates in one forward pass each.
"""

from __future__ import annotations


import copy
import threading
from dataclasses import dataclass

import torch

from .compute import Compute
from .prefix_cache import PrefixLRU
from .prompt import encode_prompt, encode_text


from .errors import PromptTooLongError  # noqa: E402  (defined without torch, for the search)


@dataclass
class Context:
    """A KV cache over prompt + answer text, and the next-token logits after it."""

    cache: object
    logits: torch.Tensor  # [vocab]
    length: int


def model_context_window(model) -> int:
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048)


class ContextStore:
    """KV caches of one prompt and its answer prefixes, for one model.

    Example:
        >>> store = ContextStore(model, tokenizer, prompt_text, compute)   # doctest: +SKIP
        >>> ctx = store.get('[{"name": "get_weather"')                     # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt_text: str,
        compute: Compute,
        *,
        capacity: int = 8,
        reserve_tokens: int = 256,
        counter: str = "policy",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.compute = compute
        self.capacity = capacity
        self.counter = counter
        self.prompt_text = prompt_text
        self._lock = threading.Lock()
        ids = encode_prompt(tokenizer, prompt_text)
        window = model_context_window(model)
        if len(ids) + reserve_tokens > window:
            raise PromptTooLongError(
                f"the prompt is {len(ids)} tokens; with {reserve_tokens} tokens kept for the answer it exceeds "
                f"the model's context window of {window} tokens: shorten the conversation or the tool list"
            )
        self.window = window
        cache, logits = self._forward(ids, None)
        self.root = Context(cache, logits, len(ids))
        self._contexts: PrefixLRU[Context] = PrefixLRU(self.root, capacity)

    # -- reading tokens ----------------------------------------------------------------------
    def _count(self, n_tokens: int, n_passes: int = 1) -> None:
        if self.counter == "policy":
            self.compute.prefill_tokens += n_tokens
            self.compute.forward_passes += n_passes
        else:
            self.compute.scorer_tokens += n_tokens
            self.compute.scorer_forward_passes += n_passes

    @torch.inference_mode()
    def _forward(self, ids: list[int], cache):
        from transformers import DynamicCache

        if cache is None:
            cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=1
        )
        self._count(len(ids))
        return out.past_key_values, out.logits[0, -1].float()

    def encode(self, text: str, suffix: str = "") -> list[int]:
        """Answer text tokenised as text (a special-token string in it is not a control token),
        then ``suffix`` (template text, e.g. a judge turn) as written."""
        return encode_text(self.tokenizer, text, suffix)

    # -- contexts ---------------------------------------------------------------------------
    def get(self, text: str) -> Context:
        """The context after ``text`` (answer text following the prompt)."""
        return self._contexts.get(text, self._extend)

    def _extend(self, base: Context, rest_text: str) -> Context | None:
        rest = self.encode(rest_text)
        if not rest:
            return None
        if base.length + len(rest) > self.window:
            raise PromptTooLongError(
                f"prompt and answer reached {base.length + len(rest)} tokens, past the model's context window of {self.window}"
            )
        cache, logits = self._forward(rest, copy.deepcopy(base.cache))
        return Context(cache, logits, base.length + len(rest))

    def batch_inputs(self, context_text: str, rows: list[list[int]]) -> dict:
        """Model inputs for token ``rows`` that each continue the context of ``context_text``:
        right-padded ids, the attention mask over context + row, positions, and the context's
        cache forked once per row (``model(**inputs, use_cache=True)``)."""
        ctx = self.get(context_text)
        n, width = len(rows), max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, ctx.length + width), dtype=torch.long)
        mask[:, : ctx.length] = 1
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, ctx.length : ctx.length + len(r)] = 1
        positions = torch.arange(ctx.length, ctx.length + width).unsqueeze(0).expand(n, -1)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "past_key_values": self.fork(ctx, n)}

    def fork(self, ctx: Context, n: int):
        """A copy of ``ctx``'s cache with every row repeated ``n`` times."""
        cache = copy.deepcopy(ctx.cache)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache
