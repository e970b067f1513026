"""matching.py: the one value-equality rule (two named rule sets) and the one call matcher."""

import pytest

from toolprm_agents.evaluation import hammer, jsonl
from toolprm_agents.matching import BFCL, WHITESPACE, match_one_to_one, values_equal
from toolprm_agents.training import labels


@pytest.mark.parametrize(
    "a, b, bfcl, whitespace",
    [
        ("New York", "new-york", True, False),
        ("New  York ", "new york", True, True),
        (5, 5.0, True, True),
        (0.1 + 0.2, 0.3, True, False),  # BFCL: numbers within 1e-9 relative; jsonl: exactly
        ("5", 5, False, False),
        (True, 1, False, False),
        (None, None, True, True),
        (None, "", False, False),
        ([1, "A b"], [1, "a b"], True, True),
        ({"k": "X"}, {"k": "x", "j": 1}, False, False),
    ],
)
def test_rules_are_symmetric_and_each_caller_keeps_its_own(a, b, bfcl, whitespace):
    for x, y in ((a, b), (b, a)):
        assert values_equal(x, y, BFCL) is bfcl and labels.values_equal(x, y) is bfcl
        assert values_equal(x, y, WHITESPACE) is whitespace and jsonl.values_equal(x, y) is whitespace


def test_match_one_to_one_finds_a_pairing_a_greedy_pass_misses():
    # "x" fits both; taking the first ("xy") would leave "xy" without a partner
    left, right = ["x", "xy"], ["xy", "x"]
    assert match_one_to_one(left, right, lambda a, b: a in b) == [1, 0]
    assert match_one_to_one(["a", "a"], ["a", "b"], lambda x, y: x == y) == [0, None]
    assert match_one_to_one([], ["a"], lambda x, y: True) == []


def test_the_three_call_matchers_are_order_free():
    calls = [{"name": "f", "arguments": {"x": 1}}, {"name": "f", "arguments": {"x": 2}}]
    swapped = calls[::-1]
    assert jsonl.match_calls(calls, swapped)[0]
    assert hammer.exact_match(calls, swapped)
    assert labels.answer_correct(swapped, calls)
    wrong = [calls[0], calls[0]]
    assert not jsonl.match_calls(calls, wrong)[0] and not hammer.exact_match(calls, wrong) and not labels.answer_correct(wrong, calls)
