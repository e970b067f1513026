"""Calibrating a judge's scores: Platt scaling on a held-out calibration split.

A judge's score is the softmax over its two label logits, ``p = sigmoid(z)`` with
``z = logit(+) - logit(-)``. Trained on a skewed label mix, or stopped early, ``p`` is
not a probability: the paper's search reads it as one. Platt scaling fits
``p' = sigmoid(a * z + b)`` (``a`` a temperature's inverse, ``b`` a bias) by maximum
likelihood on judgements the judge never trained on -- the ``calib`` split of the
training data (``data.calib_fraction``; queries of the training sources, never an
evaluation benchmark). The fit is stored in the checkpoint's ``toolprm_config.json`` as
``metadata["calibration"]``::

    {"method": "platt", "a": 0.71, "b": -0.42, "judgements": 1800, "queries": 90,
     "nll_before": 0.61, "nll_after": 0.48, "ece_before": 0.17, "ece_after": 0.03}

and :func:`calibrate` applies it to a raw score (a reader without it keeps ``p``).

Example:
    >>> import random
    >>> rng = random.Random(0)
    >>> labels = [rng.random() < 0.3 for _ in range(2000)]
    >>> raw = [0.9 if y else 0.7 for y in labels]      # over-confident: says 0.7 to wrong steps
    >>> fit = fit_platt(raw, labels)
    >>> round(calibrate(0.7, fit), 1), round(calibrate(0.9, fit), 1)
    (0.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["fit_platt", "calibrate", "expected_calibration_error", "reliability_table"]


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def calibrate(score: float, fit: dict | None) -> float:
    """``score`` mapped through a stored fit (``None`` or an unknown method: unchanged)."""
    if not fit or fit.get("method") != "platt":
        return score
    z = fit["a"] * _logit(score) + fit["b"]
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def _nll(scores: Sequence[float], labels: Sequence[int]) -> float:
    return -sum(math.log(max(p if y else 1 - p, 1e-12)) for p, y in zip(scores, labels)) / max(1, len(scores))


def expected_calibration_error(scores: Sequence[float], labels: Sequence[int], bins: int = 10) -> float:
    """Mean |share of right - mean score| over equal-width score bins, weighted by their size."""
    tot, err = len(scores), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(scores) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            err += len(idx) / tot * abs(sum(labels[i] for i in idx) / len(idx) - sum(scores[i] for i in idx) / len(idx))
    return err


def reliability_table(scores: Sequence[float], labels: Sequence[int], bins: int = 10) -> list[dict]:
    """Per score decile (equal-count bins): its score range, mean score, share right, and the
    mean score of the right and of the wrong judgements in it."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    out = []
    for b in range(bins):
        idx = order[b * len(order) // bins : (b + 1) * len(order) // bins]
        if not idx:
            continue
        right = [scores[i] for i in idx if labels[i]]
        wrong = [scores[i] for i in idx if not labels[i]]
        out.append({
            "bin": b + 1, "n": len(idx), "lo": scores[idx[0]], "hi": scores[idx[-1]],
            "mean_score": sum(scores[i] for i in idx) / len(idx), "share_right": len(right) / len(idx),
            "mean_score_right": sum(right) / len(right) if right else None,
            "mean_score_wrong": sum(wrong) / len(wrong) if wrong else None,
        })
    return out


def fit_platt(scores: Sequence[float], labels: Sequence[int], *, steps: int = 500, l2: float = 1e-4) -> dict:
    """``{"method": "platt", "a", "b", ...}`` maximising the likelihood of ``labels`` under
    ``sigmoid(a * logit(score) + b)`` (with the before/after log-loss and ECE)."""
    import torch

    ys = [1 if y else 0 for y in labels]
    if len(set(ys)) < 2:
        raise ValueError("calibration needs both right and wrong judgements")
    z = torch.tensor([_logit(p) for p in scores], dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * z + b, y) + l2 * (a - 1) ** 2
        loss.backward()
        return loss

    opt.step(closure)
    fit = {"method": "platt", "a": round(float(a.detach()), 6), "b": round(float(b.detach()), 6)}
    after = [calibrate(p, fit) for p in scores]
    fit.update({
        "judgements": len(ys),
        "nll_before": round(_nll(scores, ys), 6), "nll_after": round(_nll(after, ys), 6),
        "ece_before": round(expected_calibration_error(scores, ys), 6), "ece_after": round(expected_calibration_error(after, ys), 6),
    })
    return fit
