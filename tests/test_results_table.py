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


# ------------------------------------------------------------------------------------------
# intervals, search vs greedy, oracle@K, runs read from items.jsonl

import json  # noqa: E402

import pytest  # noqa: E402

from toolprm_agents.evaluation.stats import mcnemar, paired_bootstrap, wilson  # noqa: E402


def _paired_run(bench, strategy, correct: dict[str, bool], alts: dict[str, list[bool]] | None = None, **search):
    items = []
    for i, ok in correct.items():
        it = {"id": i, "correct": ok, "complete": True, "error_type": None if ok else "wrong_value", "compute": {"seconds": 1.0}}
        if alts is not None:
            it["alternatives_correct"] = alts.get(i, [])
        items.append(it)
    n, k = len(items), sum(correct.values())
    return {"benchmark": bench, "n": n, "correct": k, "accuracy": k / n, "valid_rate": 1.0, "items": items, "run": {},
            "config": {"search": {"strategy": strategy, "beams": 2, "expand": 4, **search},
                       "scorer": None if strategy == "greedy" else {"name": "toolprm"}},
            "compute": {"mean": {"tokens_total": 100.0, "seconds": 1.0}}}


@pytest.fixture
def greedy_and_search():
    # greedy: 100 items, right on q0..q43 (44 %); search: q10..q89 only (80 items, a run cut short),
    # right on q20..q59 + q80..q89: vs greedy on the shared 80 -- search-only q44..q59, q80..q89 (26),
    # greedy-only q10..q19 (10)
    greedy = _paired_run("bfcl:multiple", "greedy", {f"q{i}": i < 44 for i in range(100)})
    search_ok = {f"q{i}": (20 <= i < 60 or 80 <= i < 90) for i in range(10, 90)}
    alts = {f"q{i}": [False, i % 2 == 0] for i in range(10, 90)}
    search = _paired_run("bfcl:multiple", "beam", search_ok, alts, rank="combined")
    return greedy, search


def test_accuracy_cells_carry_wilson_intervals(greedy_and_search):
    greedy, search = greedy_and_search
    table = results_table.accuracy_table([greedy, search]).splitlines()
    assert table[0] == "| benchmark (items) | greedy | combined, ToolPRM N2 M4 |"
    assert table[2] == "| bfcl:multiple (80/100) | 44.0 [34.7, 53.8] | **62.5** [51.5, 72.3] |"
    lo, hi = wilson(50, 80)
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" == "[51.5, 72.3]"
    rows = results_table.runs_table([greedy, search]).splitlines()
    assert "| 44.0 [34.7, 53.8] | - |" in rows[2]  # greedy recorded no alternatives: oracle "-"


def test_search_vs_greedy_pairs_items_by_id(greedy_and_search):
    greedy, search = greedy_and_search
    rows = results_table.search_vs_greedy_table([search, greedy], seed=0).splitlines()
    assert len(rows) == 3  # one comparison: greedy is not compared with itself
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    assert cells[:3] == ["bfcl:multiple", "combined, ToolPRM N2 M4", "80"]
    assert cells[3] == "42.5 [32.3, 53.4]"  # greedy on the 80 shared items: q10..q43 = 34
    assert cells[4] == "62.5 [51.5, 72.3]"
    ids = [f"q{i}" for i in range(10, 90)]
    a = [int(i[1:]) < 44 for i in ids]
    b = [20 <= int(i[1:]) < 60 or 80 <= int(i[1:]) < 90 for i in ids]
    d = paired_bootstrap(a, b, seed=0)
    assert cells[5] == f"+20.0 [{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]" and d.lo > 0
    assert cells[6] == "26/10"
    assert cells[7] == f"{mcnemar(a, b).p:.3g}" and mcnemar(a, b).p < 0.05


def test_oracle_table_and_old_runs(greedy_and_search):
    greedy, search = greedy_and_search
    rows = results_table.oracle_table([greedy, search]).splitlines()
    assert rows[0] == "| benchmark | method | items | accuracy % | oracle@1 % | oracle@2 % | oracle@4 % | oracle@8 % |"
    assert rows[2].endswith("| - | - | - | - |")  # old-style records: no alternatives field
    # search: right on 50 of 80; the second alternative is right on every even item, adding
    # the even items among the 30 wrong ones (q10..q19, q60..q79): 5 + 10 = 15
    cells = [c.strip() for c in rows[3].strip("|").split("|")]
    assert cells[4] == "62.5 [51.5, 72.3]"
    assert cells[5] == cells[6] == cells[7] == "81.2 [71.3, 88.3]"  # 65 / 80


def _write_live(folder, bench, strategy, records, torn=False):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"benchmark": bench, "search": {"strategy": strategy, "beams": 2, "expand": 4,
                                                                                    "rank": "combined"},
                                                     "scorer": None if strategy == "greedy" else {"name": "toolprm", "trained": True},
                                                     "command": f"toolprm-agents eval --strategy {strategy}"}))
    text = "".join(json.dumps(r) + "\n" for r in records)
    if torn:
        text += '{"id": "q9", "calls": ['
    (folder / "items.jsonl").write_text(text)


def _rec(i, ok, alts=None):
    r = {"id": f"q{i}", "calls": [], "correct": ok, "complete": True, "error_type": None if ok else "wrong_value",
         "compute": {"tokens_total": 300, "seconds": 2.0}}
    if alts is not None:
        r["alternatives_correct"] = alts
    return r


def test_runs_folder_read_from_items_jsonl(tmp_path, capsys):
    root = tmp_path / "eval2"
    _write_live(root / "bfcl-multiple_greedy", "bfcl:multiple", "greedy", [_rec(i, i < 3) for i in range(6)])
    _write_live(root / "bfcl-multiple_combined_N2_M4_toolprm", "bfcl:multiple", "beam",
                [_rec(i, i < 4, [False, True]) for i in range(5)], torn=True)
    before = (root / "bfcl-multiple_combined_N2_M4_toolprm" / "items.jsonl").read_text()
    runs = results_table.live_runs(str(root))
    assert [(r["benchmark"], results_table._method(r), r["n"], r["correct"]) for r in runs] == [
        ("bfcl:multiple", "combined, ToolPRM N2 M4", 5, 4), ("bfcl:multiple", "greedy", 6, 3)]
    assert runs[0]["compute"]["mean"]["seconds"] == 2.0
    # a run being written is only read: its torn last line stays for the runner to redo
    assert (root / "bfcl-multiple_combined_N2_M4_toolprm" / "items.jsonl").read_text() == before
    assert results_table.main(["--runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| bfcl:multiple (5/6) | 50.0 [18.8, 81.2] | **80.0** [37.6, 96.4] |" in out
    assert "| bfcl:multiple | combined, ToolPRM N2 M4 | 5 | 60.0 [23.1, 88.2] | 80.0 [37.6, 96.4] | +20.0 [" in out
    assert "| 1/0 | 1 |" in out  # q3: search only; exact McNemar on one discordant pair
    assert "| bfcl:multiple | combined, ToolPRM N2 M4 | 5 (running) | 80.0 [37.6, 96.4] | 100.0 [56.6, 100.0] |" in out
    # the positional folder reads unfinished sub-folders the same way, finished ones from results.json
    assert results_table.main([str(root)]) == 0
    assert "| bfcl:multiple (5/6) | 50.0 [18.8, 81.2] | **80.0** [37.6, 96.4] |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        results_table.main([])


def test_benchmark_from_folder_name_when_config_lacks_it():
    assert results_table._bench_from_folder("bfcl-simple_python_greedy") == "bfcl:simple_python"
    assert results_table._bench_from_folder("bfcl-irrelevance_combined_N2_M4_toolprm") == "bfcl:irrelevance"
    assert results_table._bench_from_folder("toolalpaca_greedy") == "toolalpaca"
