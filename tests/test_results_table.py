"""benchmarks/results_table.py: the error breakdown groups every checker's error types."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("results_table", Path(__file__).resolve().parents[1] / "benchmarks" / "results_table.py")
results_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_table)


def _run(bench: str, outcomes: list[tuple[bool, str | None]]) -> dict:
    items = [{"correct": ok, "error_type": t, "compute": {"seconds": 1.0}} for ok, t in outcomes]
    return {"benchmark": bench, "n": len(items), "items": items,
            "config": {"search": {"strategy": "greedy"}, "scorer": {}}}


def test_error_groups_cover_bfcl_and_hammer_types():
    g = results_table.error_group
    assert g({"correct": True, "error_type": None}) == "correct"
    assert g({"correct": False, "error_type": "simple_function_checker:wrong_func_name"}) == "wrong function"
    assert g({"correct": False, "error_type": "wrong_name"}) == "wrong function"
    assert g({"correct": False, "error_type": "multiple_function_checker:wrong_count"}) == "wrong number of calls"
    assert g({"correct": False, "error_type": "value_error:string"}) == "wrong or missing argument value"
    assert g({"correct": False, "error_type": "simple_function_checker:missing_optional"}) == "wrong or missing argument value"
    assert g({"correct": False, "error_type": "irrelevance_error:decoder_success"}) == "called, should not"
    assert g({"correct": False, "error_type": "ast_decoder:decoder_failed"}) == "no answer"
    assert g({"correct": False, "error_type": None}) == "no answer"
    assert g({"correct": False, "error_type": "something_new"}) == "other"


def test_error_table_counts_items_per_group():
    runs = [_run("bfcl:multiple", [(True, None), (False, "simple_function_checker:wrong_func_name"),
                                   (False, "simple_function_checker:wrong_func_name"), (False, "value_error:others")])]
    table = results_table.error_table(runs).splitlines()
    assert table[0] == "| benchmark | method | items | correct | wrong function | wrong or missing argument value |"
    assert table[2] == "| bfcl:multiple | greedy | 4 | 1 | 2 | 1 |"
