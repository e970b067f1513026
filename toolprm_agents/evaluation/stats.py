"""Statistics for evaluation runs: intervals for accuracies, paired tests between methods.

* :func:`wilson` -- the 95 % Wilson score interval of ``k`` correct out of ``n``;
* :func:`mcnemar` -- the exact McNemar test of two methods on the same items (a binomial
  test on the discordant pairs);
* :func:`paired_bootstrap` -- the difference of two methods' accuracies on the same items
  with a seeded percentile-bootstrap interval (items resampled as pairs);
* :func:`paired` -- two runs' item records matched by item id (the intersection);
* :func:`oracle_at_k` -- headroom: items where the chosen answer or any of the first K
  ranked alternatives is correct.

Pure Python (``scipy.stats.binomtest`` is used for McNemar when scipy is installed, else
the same exact two-sided p-value from :func:`math.comb`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable, Sequence

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (default 95 %) of a proportion ``k / n``, as fractions.

    Unlike ``p +- z*sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not empty at 0 or n
    correct. ``n == 0`` gives the uninformative (0, 1).

    >>> lo, hi = wilson(44, 100)
    >>> round(lo, 3), round(hi, 3)
    (0.347, 0.538)
    >>> wilson(0, 10)[0]
    0.0
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def binom_two_sided_half(b: int, c: int) -> float:
    """Exact two-sided p-value of ``b`` successes in ``b + c`` fair coin flips (1.0 when b+c=0).

    >>> round(binom_two_sided_half(10, 2), 5)
    0.03857
    """
    n = b + c
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:
        lo = min(b, c)
        tail = sum(math.comb(n, i) for i in range(lo + 1)) / 2**n
        return min(1.0, 2 * tail)
    return float(min(1.0, binomtest(b, n, 0.5, alternative="two-sided").pvalue))


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test of ``a`` against ``b``: ``b_only`` items only ``b`` got right,
    ``a_only`` items only ``a`` got right, ``n`` paired items, two-sided ``p``."""

    n: int
    a_only: int
    b_only: int
    p: float


def _bools(xs: Iterable) -> list[bool]:
    return [bool(x) for x in xs]


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """Exact McNemar test of two methods' correctness on the same items (``a[i]``, ``b[i]``).

    Only discordant pairs count: under "no difference" each is equally likely to favour
    either method, so the p-value is a two-sided binomial test with p = 1/2.

    >>> r = mcnemar([True] * 10 + [False] * 2 + [True] * 5, [False] * 10 + [True] * 2 + [True] * 5)
    >>> r.n, r.a_only, r.b_only, round(r.p, 4)
    (17, 10, 2, 0.0386)
    """
    a, b = _bools(a), _bools(b)
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} vs {len(b)}")
    a_only = sum(1 for x, y in zip(a, b) if x and not y)
    b_only = sum(1 for x, y in zip(a, b) if y and not x)
    return McNemar(len(a), a_only, b_only, binom_two_sided_half(a_only, b_only))


@dataclass(frozen=True)
class PairedDiff:
    """``diff`` = mean(b) - mean(a) over ``n`` paired items, with its bootstrap interval."""

    n: int
    diff: float
    lo: float
    hi: float


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted list."""
    pos = q * (len(sorted_xs) - 1)
    i = int(math.floor(pos))
    j = min(i + 1, len(sorted_xs) - 1)
    return sorted_xs[i] + (sorted_xs[j] - sorted_xs[i]) * (pos - i)


def paired_bootstrap(a: Sequence[bool], b: Sequence[bool], seed: int = 0, resamples: int = 2000,
                     level: float = 0.95) -> PairedDiff:
    """Accuracy of ``b`` minus accuracy of ``a`` on the same items, with a percentile-bootstrap
    interval (``resamples`` resamples of the items, as pairs, from ``random.Random(seed)``).

    >>> paired_bootstrap([True, False, True], [True, False, True], seed=1)
    PairedDiff(n=3, diff=0.0, lo=0.0, hi=0.0)
    >>> d = paired_bootstrap([False] * 50, [True] * 10 + [False] * 40, seed=0)
    >>> round(d.diff, 2), d.lo > 0, d.hi < 0.4
    (0.2, True, True)
    """
    a, b = _bools(a), _bools(b)
    if len(a) != len(b):
        raise ValueError(f"paired lists differ in length: {len(a)} vs {len(b)}")
    n = len(a)
    if n == 0:
        return PairedDiff(0, 0.0, 0.0, 0.0)
    d = [int(y) - int(x) for x, y in zip(a, b)]
    diff = sum(d) / n
    if all(v == 0 for v in d):
        return PairedDiff(n, 0.0, 0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    alpha = (1 - level) / 2
    return PairedDiff(n, diff, _quantile(means, alpha), _quantile(means, 1 - alpha))


def paired(items_a: Sequence[dict], items_b: Sequence[dict]) -> tuple[list[str], list[bool], list[bool]]:
    """Two runs' item records matched by ``id``: the shared ids (in ``items_a``'s order) and
    each run's ``correct`` on them. Items only one run has are left out.

    >>> paired([{"id": "x", "correct": True}, {"id": "y", "correct": False}], [{"id": "y", "correct": True}])
    (['y'], [False], [True])
    """
    b_by_id = {it["id"]: bool(it["correct"]) for it in items_b}
    ids = [it["id"] for it in items_a if it["id"] in b_by_id]
    a_by_id = {it["id"]: bool(it["correct"]) for it in items_a}
    return ids, [a_by_id[i] for i in ids], [b_by_id[i] for i in ids]


def oracle_at_k(items: Sequence[dict], k: int = 8) -> tuple[int, int] | None:
    """Headroom: ``(items where the chosen answer or any of the first k ranked alternatives is
    correct, items that record alternatives)``; ``None`` when no item records
    ``alternatives_correct`` (runs made before it was recorded).

    >>> oracle_at_k([{"correct": False, "alternatives_correct": [False, True]},
    ...              {"correct": False, "alternatives_correct": [False]}], k=2)
    (1, 2)
    >>> oracle_at_k([{"correct": True}]) is None
    True
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rec = [it for it in items if "alternatives_correct" in it]
    if not rec:
        return None
    hits = sum(1 for it in rec if it.get("correct") or any(it["alternatives_correct"][:k]))
    return hits, len(rec)


def fmt_ci(k: int, n: int, digits: int = 1) -> str:
    """``"44.0 [34.7, 53.8]"``: the percentage with its 95 % Wilson interval.

    >>> fmt_ci(44, 100)
    '44.0 [34.7, 53.8]'
    """
    lo, hi = wilson(k, n)
    acc = k / n if n else 0.0
    return f"{100 * acc:.{digits}f} [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"


def fmt_p(p: float) -> str:
    """A p-value for a table: three significant digits, ``<0.001`` below that.

    >>> fmt_p(0.0385742), fmt_p(1.0), fmt_p(1e-7)
    ('0.0386', '1', '<0.001')
    """
    if p < 0.001:
        return "<0.001"
    return f"{p:.3g}"


__all__ = ["McNemar", "PairedDiff", "binom_two_sided_half", "fmt_ci", "fmt_p", "mcnemar", "oracle_at_k",
           "paired", "paired_bootstrap", "wilson"]
