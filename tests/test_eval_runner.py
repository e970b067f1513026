"""The evaluation loop: results.json schema, resume after an interruption, determinism."""

from __future__ import annotations

import json
import random

import pytest

from toolprm_agents.compute import Compute
from toolprm_agents.evaluation.runner import (
    ITEMS_FILE,
    NO_TOOLS_NOTE,
    EvalConfigError,
    comparable,
    run_eval,
)
from toolprm_agents.search import SearchConfig, SearchResult
from toolprm_agents.steps import Call

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITIES = ["Paris", "London", "Tokyo", "Berlin", "Rome", "Oslo"]


@pytest.fixture
def items_file(tmp_path):
    rows = [
        {"id": f"q{i}", "question": f"What's the weather in {city}?", "tools": [WEATHER],
         "expected": [{"name": "get_weather", "arguments": {"city": city}}]}
        for i, city in enumerate(CITIES)
    ]
    rows.append({"id": "hello", "question": "Hello!", "tools": [], "expected": []})
    rows.append({"id": "bad-tool", "question": "x", "tools": [{"name": "no spaces allowed"}], "expected": []})
    p = tmp_path / "items.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


class FakeSearch:
    """Seeded 'sampling': answers the right city or a wrong one, with made-up compute."""

    def __init__(self, seed=0, interrupt_after=None):
        self.config = SearchConfig(strategy="greedy", seed=seed)
        self.seed = seed
        self.calls = 0
        self.interrupt_after = interrupt_after

    def search(self, messages, tools):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        question = messages[-1]["content"]
        rng = random.Random(f"{self.seed}:{question}")
        city = question.split(" in ")[-1].rstrip("?") if rng.random() < 0.6 else "Nowhere"
        compute = Compute(tokens_generated=len(question), prefill_tokens=100 + len(question), forward_passes=7)
        compute.stop_clock()
        if "Oslo" in question:  # a search that completes no answer
            return SearchResult([], None, None, False, [], compute, self.config, error="bounds reached")
        return SearchResult([Call("get_weather", {"city": city})], None, None, True, [], compute, self.config)


CONFIG = {"search": {"strategy": "fake"}, "scorer": None, "policy": "fake"}


def test_results_schema_and_report(items_file, tmp_path):
    out = tmp_path / "run"
    res = run_eval(f"jsonl:{items_file}", FakeSearch(), out, config=CONFIG, progress=False)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("benchmark", "config", "accuracy", "valid_rate", "n", "correct", "metrics", "error_types", "compute", "run", "items"):
        assert key in res
    assert res["n"] == 8 and len(res["items"]) == 8
    assert res["config"]["search"] == {"strategy": "fake"} and res["config"]["data"].startswith("sha256:")
    for item in res["items"]:
        assert {"id", "calls", "correct", "error", "compute"} <= set(item)
        assert {"tokens_generated", "prefill_tokens", "forward_passes", "scorer_calls", "seconds", "tokens_total"} <= set(item["compute"])
    by_id = {it["id"]: it for it in res["items"]}
    # no tools: "no call" without running the model, and it is correct here
    assert by_id["hello"]["correct"] and by_id["hello"]["note"] == NO_TOOLS_NOTE and by_id["hello"]["compute"]["tokens_total"] == 0
    # a tool that cannot be normalised is the item's failure, not the run's
    assert not by_id["bad-tool"]["complete"] and "ToolSpecError" in by_id["bad-tool"]["search_error"]
    assert not by_id["q5"]["complete"] and by_id["q5"]["error_type"] == "no_answer"
    assert res["valid_rate"] == pytest.approx(6 / 8)
    assert res["accuracy"] == pytest.approx(sum(it["correct"] for it in res["items"]) / 8)
    assert res["compute"]["total"]["forward_passes"] == 7 * 6
    assert res["compute"]["mean"]["tokens_total"] == pytest.approx(res["compute"]["total"]["tokens_total"] / 8)
    md = (out / "results.md").read_text()
    assert "accuracy" in md and "valid answers" in md and "wrong_value" in md


def test_interrupted_run_resumes_to_the_same_results(items_file, tmp_path):
    full = run_eval(f"jsonl:{items_file}", FakeSearch(), tmp_path / "full", config=CONFIG, progress=False)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(f"jsonl:{items_file}", FakeSearch(interrupt_after=3), out, config=CONFIG, progress=False)
    kept = (out / ITEMS_FILE).read_text().splitlines()
    assert [json.loads(l)["id"] for l in kept] == ["q0", "q1", "q2"]
    second = FakeSearch()
    resumed = run_eval(f"jsonl:{items_file}", second, out, config=CONFIG, progress=False)
    assert second.calls == 3  # q3, q4, q5 (hello and bad-tool never reach the search)
    assert resumed["run"]["items_resumed"] == 3
    assert comparable(resumed) == comparable(full)
    # a finished run reruns without building a search at all
    def no_search():
        raise AssertionError("the search should not be built")

    again = run_eval(f"jsonl:{items_file}", no_search, out, config=CONFIG, progress=False)
    assert comparable(again) == comparable(full)


def test_a_torn_last_line_is_dropped_and_redone(items_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(f"jsonl:{items_file}", FakeSearch(interrupt_after=2), out, config=CONFIG, progress=False)
    with open(out / ITEMS_FILE, "a") as f:
        f.write('{"id": "q2", "calls": [')  # a write cut short
    search = FakeSearch()
    res = run_eval(f"jsonl:{items_file}", search, out, config=CONFIG, progress=False)
    assert search.calls == 4 and res["n"] == 8


def test_a_different_config_in_the_same_folder_is_an_error(items_file, tmp_path):
    out = tmp_path / "run"
    run_eval(f"jsonl:{items_file}", FakeSearch(), out, config=CONFIG, progress=False, limit=2)
    with pytest.raises(EvalConfigError, match=r"search\.strategy: 'fake' there, 'beam' here"):
        run_eval(f"jsonl:{items_file}", FakeSearch(), out, config={**CONFIG, "search": {"strategy": "beam"}}, progress=False)
    # the limit is not part of a run's identity: a larger one continues the run
    search = FakeSearch()
    res = run_eval(f"jsonl:{items_file}", search, out, config={**CONFIG, "threads": 4}, progress=False, limit=4)
    assert res["n"] == 4 and search.calls == 2 and res["config"]["limit"] == 4


def test_two_evaluations_never_write_the_same_folder(items_file, tmp_path):
    """A second evaluation of a folder being written fails at once and writes nothing."""
    import fcntl

    from toolprm_agents.evaluation.runner import LOCK_FILE, EvalBusyError

    out = tmp_path / "run"
    run_eval(f"jsonl:{items_file}", FakeSearch(), out, config=CONFIG, progress=False, limit=2)
    before = (out / ITEMS_FILE).read_text()
    with open(out / LOCK_FILE, "a+") as held:  # what a running evaluation holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        search = FakeSearch()
        with pytest.raises(EvalBusyError, match="another evaluation is writing"):
            run_eval(f"jsonl:{items_file}", search, out, config=CONFIG, progress=False)
        assert search.calls == 0 and (out / ITEMS_FILE).read_text() == before
    res = run_eval(f"jsonl:{items_file}", FakeSearch(), out, config=CONFIG, progress=False)  # released: continues
    assert res["n"] == 8 and res["run"]["items_resumed"] == 2


def test_fixed_seed_gives_the_same_results(items_file, tmp_path):
    a = run_eval(f"jsonl:{items_file}", FakeSearch(seed=1), tmp_path / "a", config=CONFIG, progress=False)
    b = run_eval(f"jsonl:{items_file}", FakeSearch(seed=1), tmp_path / "b", config=CONFIG, progress=False)
    assert comparable(a) == comparable(b)


def test_progress_bar_goes_to_the_given_stream(items_file, tmp_path):
    import io

    buf = io.StringIO()
    run_eval(f"jsonl:{items_file}", FakeSearch(), tmp_path / "run", config=CONFIG, progress=True, stream=buf, limit=3)
    assert "3/3" in buf.getvalue() and "acc=" in buf.getvalue()


class RankedSearch(FakeSearch):
    """Like FakeSearch, with ranked alternatives: a wrong city, the right one, the right one
    cut short (truncated), then nine more wrong ones (only the first 8 are kept)."""

    def search(self, messages, tools):
        res = super().search(messages, tools)
        city = messages[-1]["content"].split(" in ")[-1].rstrip("?")
        call = lambda c: [{"name": "get_weather", "arguments": {"city": c}}]  # noqa: E731
        res.alternatives = ([{"calls": call("Nowhere"), "score": 0.6, "truncated": False},
                             {"calls": call(city), "score": 0.3, "truncated": False},
                             {"calls": call(city), "score": 0.1, "truncated": True}]
                            + [{"calls": call(f"X{i}"), "score": 0.0, "truncated": False} for i in range(9)])
        return res


def test_ranked_alternatives_are_scored_with_the_benchmark_checker(items_file, tmp_path):
    from toolprm_agents.evaluation.stats import oracle_at_k

    out = tmp_path / "run"
    res = run_eval(f"jsonl:{items_file}", RankedSearch(), out, config=CONFIG, progress=False)
    by_id = {it["id"]: it for it in res["items"]}
    for i in range(6):
        it = by_id[f"q{i}"]
        assert it["alternatives_correct"] == [False, True, False, False, False, False, False, False]
        assert len(it["alternatives"]) == 8 and it["alternatives"][1]["score"] == 0.3
    # no tools / unusable tools: the search never ran, so there are no alternatives
    assert by_id["hello"]["alternatives_correct"] == [] and by_id["bad-tool"]["alternatives_correct"] == []
    # the same fields are in items.jsonl, written as each item finished
    lines = [json.loads(l) for l in (out / ITEMS_FILE).read_text().splitlines()]
    assert all("alternatives_correct" in rec for rec in lines)
    # headroom: every searched item (even q5, whose search completed nothing) has the right
    # city second; the two unsearched items count as the checker scored their "no call"
    assert oracle_at_k(res["items"], 1) == (sum(it["correct"] for it in res["items"]), 8)
    assert sum(it["correct"] for it in res["items"]) < 6 + by_id["hello"]["correct"] + by_id["bad-tool"]["correct"]
    assert oracle_at_k(res["items"], 2) == (6 + by_id["hello"]["correct"] + by_id["bad-tool"]["correct"], 8)


def test_old_item_records_without_alternatives_still_load(items_file, tmp_path):
    from toolprm_agents.evaluation.stats import oracle_at_k

    out = tmp_path / "run"
    run_eval(f"jsonl:{items_file}", FakeSearch(), out, config=CONFIG, progress=False, limit=3)
    old = [json.loads(l) for l in (out / ITEMS_FILE).read_text().splitlines()]
    for rec in old:  # as written before the field existed
        del rec["alternatives"], rec["alternatives_correct"]
    (out / ITEMS_FILE).write_text("".join(json.dumps(r) + "\n" for r in old))
    res = run_eval(f"jsonl:{items_file}", RankedSearch(), out, config=CONFIG, progress=False)
    by_id = {it["id"]: it for it in res["items"]}
    assert all("alternatives_correct" not in by_id[f"q{i}"] for i in range(3))
    assert by_id["q3"]["alternatives_correct"][:2] == [False, True]
    assert oracle_at_k(res["items"], 8)[1] == 5  # only the records that have the field
    assert oracle_at_k(res["items"][:3], 8) is None


# ------------------------------------------------------------------------------------------
# the real search on the tiny model


def _tiny_search(tiny_model_dir, **config):
    from toolprm_agents.models import load_causal_lm
    from toolprm_agents.policy import TransformersPolicy
    from toolprm_agents.scorers import JudgeConfig, ToolPRM
    from toolprm_agents.search import ToolPRMSearch

    policy = TransformersPolicy(str(tiny_model_dir), max_step_tokens=12)
    scorer = ToolPRM(model=load_causal_lm(str(tiny_model_dir)), config=JudgeConfig())
    return ToolPRMSearch(policy, scorer, SearchConfig(max_calls=1, max_string_length=8, **config))


def test_seeded_sampling_search_is_deterministic_on_the_tiny_model(items_file, tmp_path, tiny_model_dir):
    search = _tiny_search(tiny_model_dir, strategy="best_of_n", beams=2, seed=3)
    a = run_eval(f"jsonl:{items_file}", search, tmp_path / "a", progress=False, limit=1)
    b = run_eval(f"jsonl:{items_file}", search, tmp_path / "b", progress=False, limit=1)
    assert comparable(a) == comparable(b)
    assert a["config"]["scorer"]["name"] == "toolprm" and a["config"]["scorer"]["trained"] is False
    assert a["config"]["search"]["seed"] == 3 and a["config"]["search"]["strategy"] == "best_of_n"
    assert all(it["compute"]["scorer_calls"] > 0 for it in a["items"])
    # the real search's ranked alternatives, each scored by the same checker as the chosen calls
    from toolprm_agents.evaluation.benchmarks import load_benchmark

    bench = load_benchmark(f"jsonl:{items_file}")
    item = bench.items()[0]
    for it in a["items"]:
        assert 1 <= len(it["alternatives"]) <= 8 and len(it["alternatives_correct"]) == len(it["alternatives"])
        assert it["alternatives_correct"] == [
            not alt["truncated"] and bench.score(item, alt["calls"]).correct for alt in it["alternatives"]]


# ------------------------------------------------------------------------------------------
# the whole path with answers taken from the ground truth


def oracle_key(messages, tool_names):
    return json.dumps([messages, sorted(tool_names)])  # some questions repeat with other tools


class OracleSearch:
    """Answers each item with a given answer (here: its ground truth)."""

    def __init__(self, answers: dict[str, list[dict]]):
        self.config = SearchConfig(strategy="greedy")
        self.answers = answers

    def search(self, messages, tools):
        calls = self.answers[oracle_key(messages, [t.name for t in tools])]
        compute = Compute(tokens_generated=1)
        compute.stop_clock()
        return SearchResult([Call(c["name"], c["arguments"]) for c in calls], None, None, True, [], compute, self.config)


def test_ground_truth_through_the_runner_bfcl(tmp_path):
    pytest.importorskip("bfcl_eval")
    from toolprm_agents.evaluation.bfcl import DEFECTIVE_GROUND_TRUTH, BFCLBenchmark, ground_truth_calls

    bench = BFCLBenchmark("live_simple")
    answers = {oracle_key(it.messages, [f["name"] for f in it.tools]): ground_truth_calls(it.expected, it.tools) for it in bench.items()}
    res = run_eval(bench, OracleSearch(answers), tmp_path / "run", config=CONFIG, progress=False)
    wrong = {it["id"] for it in res["items"] if not it["correct"]}
    assert wrong == {i for i in DEFECTIVE_GROUND_TRUTH if i.startswith("live_simple_")}
    assert res["n"] == 258 and res["valid_rate"] == 1.0


def test_ground_truth_through_the_runner_hammer(tmp_path):
    from toolprm_agents.evaluation.hammer import HammerBenchmark

    bench = HammerBenchmark("toolalpaca")
    answers = {oracle_key(it.messages, [t["name"] for t in it.tools]): it.expected for it in bench.items()}
    res = run_eval(bench, OracleSearch(answers), tmp_path / "run", config=CONFIG, progress=False)
    assert res["accuracy"] == 1.0 and res["n"] == 114
    assert res["metrics"]["name"]["f1"] == 1.0 and res["metrics"]["arguments"]["f1"] == 1.0
    assert "Hammer's metrics" in (tmp_path / "run" / "results.md").read_text()
