"""Comparing tool calls: when two argument values are equal, and pairing calls one to one.

One place for the rules every scorer of calls uses -- the step labeller of the training
data, the ``jsonl:`` benchmark, the Hammer sets:

:func:`values_equal` ``(expected, actual, rules)`` -- both ways the same (symmetric); by
convention the expected (gold) value comes first. Under every :class:`EqualityRules`:

* a bool equals only a bool (``True != 1``), ``None`` only ``None``;
* a number equals a number (``5 == 5.0``; within ``rel_tol``), never a string (``"5" != 5``);
* strings are compared after the rules' ``normalize``;
* lists (and tuples) item by item in order, objects key by key (the same keys).

Two rule sets are named: :data:`BFCL` (strings without case, spaces or ``,./-_*^``, one
quote kind; numbers within ``1e-9`` relative) for step labels, and :data:`WHITESPACE`
(strings without case, runs of white space as one; numbers exactly) for ``jsonl:``.

:func:`match_one_to_one` pairs two lists through a yes/no test (a maximum bipartite
matching by augmenting paths; call lists are short), so "the same calls in any order" is
one function wherever it is needed.

Example:
    >>> values_equal("New York", "new-york")
    True
    >>> values_equal("New York", "new-york", WHITESPACE)
    False
    >>> match_one_to_one(["a", "b"], ["b", "a"], lambda x, y: x == y)
    [1, 0]
    >>> match_one_to_one(["a", "a"], ["a", "b"], lambda x, y: x == y)
    [0, None]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

__all__ = ["BFCL", "WHITESPACE", "EqualityRules", "bfcl_string", "match_one_to_one", "values_equal", "whitespace_string"]

_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")
_WS = re.compile(r"\s+")


def bfcl_string(s: str) -> str:
    """BFCL's string standardisation: no spaces or ``,./-_*^``, lower case, one quote kind."""
    return _BFCL_STRIP.sub("", s).lower().replace("'", '"')


def whitespace_string(s: str) -> str:
    """Lower case, trimmed, every run of white space one space."""
    return _WS.sub(" ", s.strip()).lower()


@dataclass(frozen=True)
class EqualityRules:
    """How strings are normalised and how close two numbers must be."""

    normalize: Callable[[str], str]
    rel_tol: float = 0.0
    abs_tol: float = 0.0


BFCL = EqualityRules(bfcl_string, rel_tol=1e-9, abs_tol=1e-12)
WHITESPACE = EqualityRules(whitespace_string)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def values_equal(expected: Any, actual: Any, rules: EqualityRules = BFCL) -> bool:
    """Whether two argument values are equal under ``rules`` (see the module docstring)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if _is_num(expected) and _is_num(actual):
        if rules.rel_tol or rules.abs_tol:
            return math.isclose(float(expected), float(actual), rel_tol=rules.rel_tol, abs_tol=rules.abs_tol)
        return expected == actual
    if isinstance(expected, str) and isinstance(actual, str):
        return rules.normalize(expected) == rules.normalize(actual)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(values_equal(e, a, rules) for e, a in zip(expected, actual))
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return set(expected) == set(actual) and all(values_equal(expected[k], actual[k], rules) for k in expected)
    return expected is None and actual is None


L = TypeVar("L")
R = TypeVar("R")


def match_one_to_one(left: Sequence[L], right: Sequence[R], same: Callable[[L, R], bool]) -> list[int | None]:
    """For each item of ``left``, the index of its partner in ``right`` (``None``: unpaired).

    A maximum matching over the pairs ``same`` accepts; items of ``left`` are placed in
    order and a later one never unpairs an earlier one, so the first ``None`` is the first
    item that no pairing can serve. Every item is paired exactly when all entries are ints.
    """
    ok = [[bool(same(a, b)) for b in right] for a in left]
    owner: dict[int, int] = {}  # right index -> left index

    def augment(i: int, seen: set[int]) -> bool:
        for j in range(len(right)):
            if ok[i][j] and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    placed = [augment(i, set()) for i in range(len(left))]
    partner: list[int | None] = [None] * len(left)
    for j, i in owner.items():
        partner[i] = j
    assert [p is not None for p in partner] == placed
    return partner
