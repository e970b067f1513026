"""toolprm_agents.evaluation.stats: Wilson intervals, exact McNemar, paired bootstrap, oracle@K."""

from __future__ import annotations

import doctest
import math
import sys

import pytest

from toolprm_agents.evaluation import stats
from toolprm_agents.evaluation.stats import mcnemar, oracle_at_k, paired, paired_bootstrap, wilson


def test_doctests_pass():
    res = doctest.testmod(stats)
    assert res.attempted >= 8 and res.failed == 0


def test_wilson_known_values():
    lo, hi = wilson(44, 100)
    assert (round(lo, 3), round(hi, 3)) == (0.347, 0.538)
    lo, hi = wilson(10, 100)  # 8 vs 10 % on 100 items: the intervals overlap almost entirely
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    assert wilson(8, 100)[1] > wilson(10, 100)[0]
    # the edges: never outside [0, 1], never empty
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and 0.83 < lo < 0.85
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(5, 3)


def test_wilson_contains_the_estimate_and_narrows_with_n():
    for k, n in [(1, 7), (3, 10), (50, 100), (99, 100)]:
        lo, hi = wilson(k, n)
        assert lo < k / n < hi
    assert wilson(440, 1000)[1] - wilson(440, 1000)[0] < wilson(44, 100)[1] - wilson(44, 100)[0]


def _pairs(b, c, both=0, neither=0):
    """Lists where a alone is right b times, the second alone c times."""
    a = [True] * b + [False] * c + [True] * both + [False] * neither
    s = [False] * b + [True] * c + [True] * both + [False] * neither
    return a, s


def test_mcnemar_exact_p_values():
    r = mcnemar(*_pairs(10, 2, both=30, neither=58))
    assert (r.n, r.a_only, r.b_only) == (100, 10, 2)
    assert r.p == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.03857...
    assert mcnemar(*_pairs(2, 10)).p == pytest.approx(r.p)  # two-sided: symmetric
    assert mcnemar(*_pairs(5, 5)).p == 1.0
    assert mcnemar(*_pairs(0, 0, both=3)).p == 1.0  # no discordant pairs
    assert mcnemar(*_pairs(0, 8)).p == pytest.approx(2 / 256)
    with pytest.raises(ValueError):
        mcnemar([True], [True, False])


def test_mcnemar_without_scipy_matches_scipy(monkeypatch):
    with_scipy = [stats.binom_two_sided_half(b, c) for b, c in [(10, 2), (3, 9), (0, 1), (7, 7), (40, 25)]]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # import fails: the math.comb path
    without = [stats.binom_two_sided_half(b, c) for b, c in [(10, 2), (3, 9), (0, 1), (7, 7), (40, 25)]]
    assert without == pytest.approx(with_scipy)
    assert without[0] == pytest.approx(0.0385742, abs=1e-6)


def test_paired_bootstrap_identical_lists_is_zero():
    a = [True, False] * 30
    d = paired_bootstrap(a, list(a), seed=0)
    assert (d.n, d.diff, d.lo, d.hi) == (60, 0.0, 0.0, 0.0)


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    a, b = _pairs(4, 14, both=20, neither=62)  # b is 10 points better on 100 items
    d1 = paired_bootstrap(a, b, seed=7)
    assert d1 == paired_bootstrap(a, b, seed=7)
    assert d1.diff == pytest.approx(0.10)
    assert d1.lo < 0.10 < d1.hi
    # the bootstrap SE of a paired difference is sqrt((b + c)/n^2 - diff^2/n) ~ 0.04
    se = math.sqrt((4 + 14) / 100**2 - 0.1**2 / 100)
    assert d1.hi - d1.lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert d1.lo > 0  # 10 points on 18 discordant pairs is more than noise
    rev = paired_bootstrap(b, a, seed=7)
    assert rev.diff == pytest.approx(-0.10) and rev.hi < 0
    assert paired_bootstrap(a, b, seed=8) != d1  # another seed, another resampling


def test_paired_matches_by_id_on_the_intersection():
    greedy = [{"id": f"q{i}", "correct": i % 2 == 0} for i in range(6)]
    search = [{"id": f"q{i}", "correct": True} for i in (5, 3, 1, 0, 9)]
    ids, a, b = paired(greedy, search)
    assert ids == ["q0", "q1", "q3", "q5"]
    assert a == [True, False, False, False] and b == [True, True, True, True]


def test_oracle_at_k():
    items = [
        {"correct": True, "alternatives_correct": [True]},
        {"correct": False, "alternatives_correct": [False, False, True]},
        {"correct": False, "alternatives_correct": [False] * 8 + [True]},  # beyond 8: not counted
        {"correct": False, "alternatives_correct": []},
        {"correct": True},  # an old record: not counted at all
    ]
    assert oracle_at_k(items, 1) == (1, 4)
    assert oracle_at_k(items, 2) == (1, 4)
    assert oracle_at_k(items, 3) == (2, 4)
    assert oracle_at_k(items, 8) == (2, 4)
    assert oracle_at_k([{"correct": True}], 8) is None
