"""Probe features: the policy's own hidden states where a step ends.

A probe judge (:mod:`toolprm_agents.backends.probe_judge`) scores a step with a logistic
model over the frozen base model's hidden states at the step's last token (a few layers),
and their mean over the step's tokens, read with the *policy's* prompt: at search time
the policy has already cached that prompt, so the judge costs only the new step's tokens,
and training needs forward passes only (no backward pass), one per answer for all its
steps. The answer is read the way the search reads it: its opening and then each judged
unit tokenised on its own (the search extends a cached context by one step at a time).

Example:
    >>> feats = step_features(model, store, '[', [['{"name": "get_weather"']])   # doctest: +SKIP
    >>> feats.shape                   # one row per step: 2 x layers x hidden
    torch.Size([1, 5760])
"""

from __future__ import annotations

from typing import Sequence

import torch

#: hidden-state layers read (0 is the embeddings; 30 is SmolLM2-135M's last, after the final norm)
DEFAULT_LAYERS = (6, 12, 18, 24, 30)


def feature_size(hidden: int, layers: Sequence[int] = DEFAULT_LAYERS) -> int:
    return 2 * len(layers) * hidden


@torch.inference_mode()
def step_features(model, store, ctx_text: str, rows: Sequence[Sequence[Sequence[int]]], *, layers: Sequence[int] = DEFAULT_LAYERS, compute=None) -> list[torch.Tensor]:
    """Features of every segment of every row, each row continuing the context ``ctx_text``.

    ``rows[i]`` is a list of token segments (one per judged unit, in order); returns, per
    row, a ``[segments, 2 * len(layers) * hidden]`` tensor: for each layer the hidden state
    at the segment's last token, then for each layer the mean over the segment's tokens.
    """
    flat = [[t for seg in r for t in seg] for r in rows]
    out = model(**store.batch_inputs(ctx_text, flat), use_cache=True, output_hidden_states=True, logits_to_keep=1)
    if compute is not None:
        compute.scorer_tokens += sum(len(r) for r in flat)
        compute.scorer_forward_passes += 1
    hs = torch.stack([out.hidden_states[l] for l in layers], dim=2).float()  # [n, width, L, H]
    result = []
    for i, r in enumerate(rows):
        feats, start = [], 0
        for seg in r:
            end = start + len(seg)
            last = hs[i, end - 1].reshape(-1)
            mean = hs[i, start:end].mean(dim=0).reshape(-1)
            feats.append(torch.cat([last, mean]))
            start = end
        result.append(torch.stack(feats) if feats else torch.zeros(0, hs.shape[2] * hs.shape[3] * 2))
    return result
