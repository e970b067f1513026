"""Fitting the combined search's weights: labels against the gold answer, the conditional
logit fit, pick accuracy, and the weights reaching the search through the judge's config."""

from __future__ import annotations

import json

import pytest

from toolprm_agents.judges import JudgeConfig
from toolprm_agents.interfaces import ScorerError
from toolprm_agents.schema import to_tool_specs
from toolprm_agents.search import SearchConfig, ToolPRMSearch
from toolprm_agents.steps import Call, PartialAnswer, StepPlan
from toolprm_agents.training.search_weights import fit_weights, label, pick_accuracy

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def test_labels_accept_any_argument_order_and_reject_wrong_steps():
    plan = StepPlan(to_tool_specs([WEATHER, TIME]))
    gold = plan.answer_from_calls([Call("get_weather", {"city": "Paris", "unit": "c"})])
    start = plan.settle(plan.start())
    assert label(start, plan.parse(start, '{"name": "get_weather"'), gold)
    assert not label(start, plan.parse(start, '{"name": "get_time"'), gold)
    assert not label(start, plan.parse(start, "]"), gold)
    in_call = plan.settle(start.extend(plan.parse(start, '{"name": "get_weather"')))
    assert label(in_call, plan.parse(in_call, '"unit": "c"'), gold)  # the other order is right too
    assert label(in_call, plan.parse(in_call, '"city": "paris"'), gold)  # the checker's string rules
    assert not label(in_call, plan.parse(in_call, '"city": "Rome"'), gold)
    one = in_call.extend(plan.parse(in_call, '"city": "Paris"'))
    assert not label(one, plan.parse(one, "}"), gold)  # "unit" is still missing
    both = one.extend(plan.parse(one, ', "unit": "c"'))
    assert label(both, plan.parse(both, "}"), gold)
    done = plan.settle(both.extend(plan.parse(both, "}")))
    assert label(done, plan.parse(done, "]"), gold) and not label(done, plan.parse(done, ', {"name": "get_time"'), gold)


def test_the_fit_puts_weight_on_the_feature_that_separates_right_from_wrong():
    # the judge separates, the policy does not: the judge gets the weight
    decisions = [[((0.0, 2.0, 0.0), True), ((0.0, -2.0, 0.0), False)], [((-1.0, 1.5, 0.0), True), ((-0.5, -1.5, 0.0), False)]] * 5
    w = fit_weights(decisions, steps=300)
    assert w["judge"] > w["policy"] and w["judge"] > 0.5
    assert pick_accuracy(decisions, w) == (1.0, 10)
    assert pick_accuracy(decisions, {"policy": 1.0})[0] == pytest.approx(0.5)
    # a useless judge (scores unrelated to the label) gets little weight; the policy keeps it
    noisy = [[((0.0, 1.0, 0.0), True), ((-2.0, 1.0, 0.0), False)], [((0.0, -1.0, 0.0), True), ((-2.0, -1.0, 0.0), False)]] * 5
    w = fit_weights(noisy, steps=300)
    assert w["policy"] > w["judge"]
    # decisions without a right (or without a wrong) candidate carry no information
    assert fit_weights([[((0.0, 1.0, 0.0), False)]]) == {"policy": 1.0, "judge": 0.0, "vote": 0.0}


def _stub_scorer(cfg: JudgeConfig):
    """A step judge with ``cfg`` as its checkpoint config; never asked to score."""
    from toolprm_agents.interfaces import Scorer

    class StubScorer(Scorer):
        granularity = "step"

        def session(self, *a, **k):  # pragma: no cover - not searched here
            raise AssertionError

    stub = StubScorer()
    stub.config = cfg
    return stub


def test_fitted_weights_in_the_judge_config_reach_the_search(tmp_path):
    cfg = JudgeConfig(search_weights={"policy": 1.0, "judge": 0.25, "vote": 0.5, "fitted_on": "test"})
    assert cfg.search_weights["judge"] == 0.25
    with pytest.raises(ScorerError, match="search_weights"):
        JudgeConfig(search_weights={"judge": -1})

    search = ToolPRMSearch(policy=object(), scorer=_stub_scorer(cfg), config=SearchConfig())
    assert search.weights(SearchConfig()) == (1.0, 0.25, 0.5)
    assert search.weights(SearchConfig(judge_weight=0.0)) == (1.0, 0.0, 0.5)  # the config overrides
    assert search.weights(SearchConfig(rank="prm")) == (1.0, 1.0, 1.0)  # the paper's ranking ignores them


def test_verify_table_counts_only_committed_decisions_the_judge_doubts():
    from toolprm_agents.training.search_weights import verify_table

    w = {"policy": 0.1, "judge": 1.0}
    sure_doubted = [((0.0, -2.0, 0.0, 0.2), False), ((-4.0, 2.0, 0.0, 0.9), True)]   # policy share ~0.98, judge 0.2
    sure_agreed = [((0.0, 1.0, 0.0, 0.8), True), ((-4.0, -1.0, 0.0, 0.3), False)]
    unsure = [((0.0, -2.0, 0.0, 0.1), False), ((-0.1, 2.0, 0.0, 0.9), True), ((-0.1, 0.0, 0.0, 0.5), False)]  # share 0.36: branched anyway
    old_cache = [((0.0, -2.0, 0.0), False), ((-4.0, 2.0, 0.0), True)]               # no raw score: left out
    rows = verify_table([sure_doubted, sure_agreed, unsure, old_cache], w, gate=0.5, verifies=(0.5, 0.1))
    assert rows[0] == {"gate": 0.5, "verify": 0.5, "decisions": 3, "committed": 2, "doubted": 1,
                       "policy_right_doubted": 0, "weighted_right_doubted": 1}
    assert rows[1]["doubted"] == 0, "a threshold below every score doubts nothing"


def test_weights_are_never_written_from_a_benchmark_and_pick_accuracy_splits_by_kind():
    from toolprm_agents.training.search_weights import main, pick_by_kind

    with pytest.raises(SystemExit):
        main(["--bfcl", "multiple", "--write"])  # evaluation only: refused before any model loads
    d = [[((0.0, 1.0, 0.0), True), ((-1.0, 0.0, 0.0), False)],   # judge right, policy right
         [((0.0, 0.0, 0.0), False), ((-1.0, 2.0, 0.0), True)]]    # judge right, policy wrong
    rows = pick_by_kind(d, ["ARG", "FUNC_NAME"], {"policy": {"policy": 1.0}, "judge": {"judge": 1.0}})
    assert rows["ARG"] == {"policy": 1.0, "judge": 1.0, "decisions": 1}
    assert rows["FUNC_NAME"] == {"policy": 0.0, "judge": 1.0, "decisions": 1}


def test_verify_is_chosen_per_decision_type_only_where_the_judge_beats_the_policy_significantly():
    from toolprm_agents.training.search_weights import verify_by_type, verify_rule

    w = {"policy": 0.1, "judge": 1.0}
    doubted_fixed = [((0.0, -2.0, 0.0, 0.2), False), ((-4.0, 2.0, 0.0, 0.9), True)]   # sure, doubted, the judge right
    doubted_broken = [((0.0, -2.0, 0.0, 0.2), True), ((-4.0, 2.0, 0.0, 0.9), False)]  # sure, doubted, the policy right
    agreed = [((0.0, 1.0, 0.0, 0.8), True), ((-4.0, -1.0, 0.0, 0.3), False)]
    decisions = [doubted_fixed] * 8 + [agreed] * 3 + [doubted_fixed, doubted_broken] * 3
    types = ["end"] * 8 + ["end"] * 3 + ["value"] * 6
    rows = verify_by_type(decisions, types, w)
    assert rows["end"] == {"decisions": 11, "committed": 11, "doubted": 8, "policy_right_doubted": 0,
                           "weighted_right_doubted": 8, "weighted_only": 8, "policy_only": 0, "p": pytest.approx(2 / 2 ** 8)}
    assert (rows["value"]["weighted_only"], rows["value"]["policy_only"], rows["value"]["p"]) == (3, 3, 1.0)
    assert verify_rule(rows) == {"verify": 0.5, "verify_types": ["end"]}
    assert verify_rule({"value": rows["value"]}) == {"verify": 0.0, "verify_types": []}, "no type earns it: verify stays off"
    with pytest.raises(ValueError, match="decision types for"):
        verify_by_type(decisions, types[:3], w)


def test_a_stored_verify_setting_reaches_the_search_and_a_bad_one_is_refused():
    cfg = JudgeConfig(search_weights={"policy": 1.0, "judge": 0.5, "vote": 0.5, "verify": 0.5, "verify_types": ["end"]})
    stub = _stub_scorer(cfg)
    search = ToolPRMSearch(policy=object(), scorer=stub, config=SearchConfig())
    assert search.verify(SearchConfig()) == (0.5, ("end",))
    assert search.verify(SearchConfig(verify=0.0)) == (0.0, ("end",)), "the config overrides the threshold"
    assert search.verify(SearchConfig(verify_types="end,value")) == (0.5, ("end", "value"))
    assert search.verify(SearchConfig(rank="prm")) == (0.0, ("end", "arg_end", "name", "value")), "the paper's beam never verifies"
    stub.config = JudgeConfig(search_weights={"policy": 1.0, "judge": 0.5, "vote": 0.5})
    assert search.verify(SearchConfig()) == (0.0, ("end", "arg_end", "name", "value")), "no stored verify: off"
    with pytest.raises(ScorerError, match="search_weights.verify'.*probability"):
        JudgeConfig(search_weights={"judge": 1.0, "verify": 2})
    with pytest.raises(ScorerError, match="unknown decision type 'ends'"):
        JudgeConfig(search_weights={"judge": 1.0, "verify": 0.5, "verify_types": ["ends"]})
    with pytest.raises(ValueError, match="unknown decision type 'calls'"):
        SearchConfig(verify_types=("end", "calls"))
