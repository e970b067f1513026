"""BFCL scoring through the official AST checker, tested against BFCL's own ground truth."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("bfcl_eval") is None:  # pragma: no cover - bfcl-eval is a dev dependency here
    pytest.skip("bfcl-eval is not installed (pip install --no-deps bfcl-eval)", allow_module_level=True)

from toolprm_agents.evaluation.base import EvalItem
from toolprm_agents.evaluation.bfcl import (
    CATEGORIES,
    DEFECTIVE_GROUND_TRUTH,
    MODEL_NAME,
    BFCLBenchmark,
    check,
    flatten_question,
    ground_truth_calls,
    load_checker,
)

SCORED = [c for c in CATEGORIES if "irrelevance" not in c]


@pytest.fixture(scope="module")
def bench():
    cache: dict[str, BFCLBenchmark] = {}

    def get(category: str) -> BFCLBenchmark:
        if category not in cache:
            cache[category] = BFCLBenchmark(category)
        return cache[category]

    return get


def test_checker_imports_without_heavy_dependencies():
    ast_checker, Language = load_checker()
    stand_in = sys.modules["bfcl_eval.constants.model_config"]
    assert stand_in.MODEL_CONFIG_MAPPING[MODEL_NAME].underscore_to_dot is False
    assert callable(ast_checker) and Language.PYTHON
    import bfcl_eval

    site = Path(bfcl_eval.__file__).resolve().parents[1]
    assert not Path(os.environ["BFCL_PROJECT_ROOT"]).resolve().is_relative_to(site)


def test_category_sizes_and_ids(bench):
    sizes = {c: len(bench(c).items()) for c in CATEGORIES}
    assert sizes == {
        "simple_python": 400, "multiple": 200, "parallel": 200, "parallel_multiple": 200, "irrelevance": 240,
        "live_simple": 258, "live_multiple": 1053, "live_parallel": 16, "live_parallel_multiple": 24,
        "live_irrelevance": 884,
    }
    assert all(it.expected for c in SCORED for it in bench(c).items())
    assert sum(1 for it in bench("live_irrelevance").items() if not it.tools) == 4


@pytest.mark.parametrize("category", SCORED)
def test_ground_truth_answers_pass_the_official_checker(bench, category):
    failures = {}
    for item in bench(category).items():
        s = check(item, ground_truth_calls(item.expected, item.tools))
        if not s.correct:
            failures[item.id] = s.error_type
    assert set(failures) == {i for i in DEFECTIVE_GROUND_TRUTH if i.startswith(category + "_")}


def test_defective_entries_are_exactly_the_known_five(bench):
    ids = {it.id for c in ("live_simple", "live_multiple") for it in bench(c).items()}
    assert DEFECTIVE_GROUND_TRUTH <= ids and len(DEFECTIVE_GROUND_TRUTH) == 5


def test_dotted_function_names_pass_unchanged(bench):
    item = next(it for it in bench("simple_python").items() if it.id == "simple_python_1")
    calls = ground_truth_calls(item.expected, item.tools)
    assert calls == [{"name": "math.factorial", "arguments": {"number": 5}}]
    assert check(item, calls).correct
    assert check(item, [{"name": "math_factorial", "arguments": {"number": 5}}]).error_type == "simple_function_checker:wrong_func_name"


# ------------------------------------------------------------------------------------------
# perturbed ground truth fails with the checker's error type


def _gt(item):
    return ground_truth_calls(item.expected, item.tools)


def _doc(item, name):
    return next(f for f in item.tools if f["name"] == name)


def test_perturbed_simple_answers_fail_with_the_checkers_error_type(bench):
    seen = set()
    for item in bench("simple_python").items():
        gt = _gt(item)
        name, args = gt[0]["name"], gt[0]["arguments"]
        assert check(item, []).error_type == "simple_function_checker:wrong_count"
        assert check(item, gt + gt).error_type == "simple_function_checker:wrong_count"
        assert check(item, [{"name": name + "_x", "arguments": args}]).error_type == "simple_function_checker:wrong_func_name"
        assert check(item, [{"name": name, "arguments": {**args, "zz_unexpected": 1}}]).error_type == "simple_function_checker:unexpected_param"
        doc = _doc(item, name)
        required = [p for p in doc["parameters"].get("required", []) if p in args]
        if required:
            dropped = {k: v for k, v in args.items() if k != required[0]}
            assert check(item, [{"name": name, "arguments": dropped}]).error_type == "simple_function_checker:missing_required"
            seen.add("missing_required")
        for k, v in args.items():
            typ = doc["parameters"]["properties"][k]["type"]
            options = item.expected[0][name][k]
            if typ == "string" and isinstance(v, str) and all(isinstance(o, str) for o in options):
                s = check(item, [{"name": name, "arguments": {**args, k: "zz not an answer"}}])
                assert s.error_type == "value_error:string", (item.id, s)
                seen.add("value_error:string")
            elif typ == "integer" and type(v) is int and all(type(o) is int or o == "" for o in options):
                wrong = max(o for o in options if o != "") + 1
                assert check(item, [{"name": name, "arguments": {**args, k: wrong}}]).error_type == "value_error:others"
                assert check(item, [{"name": name, "arguments": {**args, k: str(v)}}]).error_type == "type_error:simple"
                assert check(item, [{"name": name, "arguments": {**args, k: float(v)}}]).error_type == "type_error:simple"
                seen.add("integer")
    assert seen == {"missing_required", "value_error:string", "integer"}


def test_perturbed_multiple_answers_fail(bench):
    for item in bench("multiple").items():
        gt = _gt(item)
        assert check(item, gt).correct
        assert check(item, []).error_type == "multiple_function_checker:wrong_count"
        other = next(f["name"] for f in item.tools if f["name"] != gt[0]["name"])
        assert check(item, [{"name": other, "arguments": gt[0]["arguments"]}]).error_type == "simple_function_checker:wrong_func_name"


@pytest.mark.parametrize("category", ["parallel", "parallel_multiple", "live_parallel", "live_parallel_multiple"])
def test_perturbed_parallel_answers_fail_and_order_does_not_matter(bench, category):
    for item in bench(category).items():
        gt = _gt(item)
        # The official no-order matching is greedy: parallel_178's first possible answer
        # accepts "Microsoft" or "Apple", so Apple's call listed first takes it and
        # Microsoft's is left without a match. Order matters there, and only there.
        assert check(item, list(reversed(gt))).correct is (item.id != "parallel_178"), item.id
        assert check(item, gt[:-1]).error_type == "parallel_function_checker_no_order:wrong_count"
        broken = copy.deepcopy(gt)
        broken[0]["name"] = broken[0]["name"] + "_x"
        assert check(item, broken).error_type == "parallel_function_checker_no_order:cannot_find_match"


def test_incomplete_search_is_a_decoder_failure(bench):
    item = bench("simple_python").items()[0]
    s = check(item, [], complete=False)
    assert not s.correct and s.error_type == "ast_decoder:decoder_failed"


def test_checker_exceptions_are_wrong_answers_not_crashes():
    item = EvalItem("x", [{"role": "user", "content": "?"}], [{"name": "f"}], [{"f": {"a": [1]}}], {"category": "simple_python"})
    s = check(item, [{"name": "f", "arguments": {"a": 1}}])
    assert not s.correct and s.error_type == "checker_exception"


# ------------------------------------------------------------------------------------------
# irrelevance


@pytest.mark.parametrize("category", ["irrelevance", "live_irrelevance"])
def test_irrelevance_is_correct_only_without_a_call(bench, category):
    for item in bench(category).items()[:50]:
        assert check(item, []).correct
        assert check(item, [], complete=False).correct  # BFCL: an answer that is not a call is no call
        if item.tools:
            s = check(item, [{"name": item.tools[0]["name"], "arguments": {}}])
            assert not s.correct and s.error_type == "irrelevance_error:decoder_success"


def test_flatten_question_joins_turns():
    q = [[{"role": "system", "content": "s"}, {"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
    assert [m["content"] for m in flatten_question(q)] == ["s", "a", "b"]
    assert flatten_question("hi") == [{"role": "user", "content": "hi"}]
