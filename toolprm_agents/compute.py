"""Compute accounting: what a search spent, so accuracy can be plotted against it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass
class Compute:
    """Counters one search fills in (policy and scorer alike).

    ``tokens_generated``: tokens sampled by the policy; ``prefill_tokens``: tokens read
    without sampling (prompt, forced text, extensions); ``forward_passes``: policy model
    calls; ``scorer_calls``: judgements made (one per scored candidate);
    ``scorer_forward_passes`` and ``scorer_tokens``: the scorer's model calls and tokens
    read; ``decisions``: open decisions the policy made, ``decisions_branched``: those where
    it was unsure enough to propose more than one candidate; ``decisions_doubted``: those
    where the policy was sure but the step judge doubted its choice (``SearchConfig.verify``),
    so the search branched there too; ``seconds``: wall time.
    """

    tokens_generated: int = 0
    prefill_tokens: int = 0
    forward_passes: int = 0
    scorer_calls: int = 0
    scorer_forward_passes: int = 0
    scorer_tokens: int = 0
    candidates_dropped: int = 0
    decisions: int = 0
    decisions_branched: int = 0
    decisions_doubted: int = 0
    seconds: float = 0.0
    _t0: float = field(default_factory=time.perf_counter, repr=False, compare=False)

    def stop_clock(self) -> "Compute":
        self.seconds = time.perf_counter() - self._t0
        return self

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("_t0")
        return out

    def __iadd__(self, other: "Compute") -> "Compute":
        for k, v in other.to_dict().items():
            setattr(self, k, getattr(self, k) + v)
        return self
