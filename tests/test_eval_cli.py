"""``toolprm-agents eval`` end to end (tiny model; one small SmolLM2 run, marked ``smollm2``)."""

from __future__ import annotations

import json

import pytest

from toolprm_agents import cli


@pytest.fixture
def items_file(tmp_path):
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]}}}
    rows = [
        {"id": "paris", "question": "Weather in Paris?", "tools": [tool], "expected": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"id": "hi", "question": "Hi!", "tools": [], "expected": []},
    ]
    p = tmp_path / "items.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_eval_command_writes_results_and_resumes(items_file, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    argv = ["eval", "--benchmark", f"jsonl:{items_file}", "--strategy", "greedy", "--policy", str(tiny_model_dir),
            "--max-calls", "1", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "accuracy" in stdout and "results.json" in stdout
    res = json.loads((out / "results.json").read_text())
    assert res["n"] == 2 and res["config"]["scorer"] is None and res["config"]["policy"] == str(tiny_model_dir)
    assert res["config"]["command"].startswith("toolprm-agents eval --benchmark jsonl:")
    assert res["items"][0]["compute"]["forward_passes"] > 0
    assert (out / "results.md").is_file()
    # the same command again: nothing left to search
    assert cli.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["run"]["items_resumed"] == 2
    # another configuration in the same folder is refused
    assert cli.main([*argv[:4], "beam", *argv[5:]]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_eval_command_records_the_scorer(items_file, tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    argv = ["eval", "--benchmark", f"jsonl:{items_file}", "--strategy", "beam", "--beams", "1", "--expand", "2",
            "--scorer", "likelihood", "--policy", str(tiny_model_dir), "--max-calls", "1", "--limit", "1",
            "--seed", "5", "--rank", "prm", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["scorer"] == {"name": "likelihood", "checkpoint": None, "trained": None}
    assert res["config"]["search"]["beams"] == 1 and res["config"]["search"]["expand"] == 2 and res["config"]["search"]["seed"] == 5
    assert res["n"] == 1 and res["items"][0]["compute"]["scorer_calls"] > 0


def test_unknown_benchmark_is_a_usage_error(capsys):
    assert cli.main(["eval", "--benchmark", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_default_scorer_record_reads_the_packaged_checkpoint():
    from toolprm_agents.evaluation.cli import _eval_parser, scorer_record
    import argparse

    p = argparse.ArgumentParser()
    _eval_parser(p)
    from toolprm_agents.scorers import DEFAULT_CHECKPOINT, JudgeConfig

    rec = scorer_record(p.parse_args(["--benchmark", "bfcl:simple", "--strategy", "beam"]))
    trained = JudgeConfig.load(DEFAULT_CHECKPOINT).trained  # whatever the packaged checkpoint says
    assert rec == {"name": "toolprm", "checkpoint": "packaged:toolprm-probe-smollm2", "trained": trained}
    assert scorer_record(p.parse_args(["--benchmark", "bfcl:simple", "--strategy", "greedy"])) is None


def test_the_run_records_the_weights_and_verify_setting_its_judge_checkpoint_fills_in(tmp_path):
    from toolprm_agents.evaluation.cli import _eval_parser, resolved_record
    from toolprm_agents.scorers import JudgeConfig
    import argparse

    p = argparse.ArgumentParser()
    _eval_parser(p)
    JudgeConfig(trained=True, search_weights={"policy": 0.1, "judge": 0.7, "vote": 0.6, "verify": 0.5,
                                              "verify_types": ["end"]}).save(tmp_path)
    args = ["--benchmark", "bfcl:simple", "--prm", str(tmp_path)]
    assert resolved_record(p.parse_args(args)) == {"weights": [0.1, 0.7, 0.6], "verify": 0.5, "verify_types": ["end"]}
    assert resolved_record(p.parse_args(args + ["--verify", "0", "--judge-weight", "0"])) == {
        "weights": [0.1, 0.0, 0.6], "verify": 0.0, "verify_types": ["end"]}, "an option overrides the checkpoint"
    assert resolved_record(p.parse_args(args + ["--rank", "prm"])) is None, "the paper's beam reads no stored setting"
    assert resolved_record(p.parse_args(args + ["--strategy", "greedy"])) is None


@pytest.mark.smollm2
def test_smollm2_greedy_on_two_bfcl_items(smollm2_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["eval", "--benchmark", "bfcl:simple_python", "--limit", "2", "--strategy", "greedy", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n"] == 2 and res["valid_rate"] == 1.0
    assert all(it["calls"] and it["calls"][0]["name"] == name
               for it, name in zip(res["items"], ["calculate_triangle_area", "math.factorial"]))
