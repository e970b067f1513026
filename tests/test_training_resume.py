"""The large recipe's machinery on the tiny model: a time-budget stop resumes from its checkpoint,
calibration is fitted and stored, the model-free stages are sharded and resumable."""

from __future__ import annotations

import json
import random

import pytest

from toolprm_agents.scorers import JudgeConfig
from toolprm_agents.training.calibration import calibrate, expected_calibration_error, fit_platt, reliability_table
from toolprm_agents.training.dataset import build_rows, save_dataset, split_of
from toolprm_agents.training.pipeline import load_recipe, run_pipeline, stage_train

try:
    from test_training_trainer import _rows
except ImportError:  # pragma: no cover
    from tests.test_training_trainer import _rows


def _recipe(tmp_path, tiny, **common):
    return {
        "_name": "resume-test", "seed": 0, "threads": 1,
        "train": {"kinds": ["toolprm"], "common": {
            "base_model": str(tiny), "lora_r": 4, "lora_alpha": 8, "loss_type": "pair", "learning_rate": 1e-2,
            "num_train_epochs": 3, "gradient_accumulation_steps": 1, "lr_scheduler_type": "constant", "warmup_steps": 0,
            "max_length": 4096, "logging_steps": 1, "disable_tqdm": True,
            "save_strategy": "steps", "save_steps": 1000, "save_total_limit": 1, **common}},
    }


def test_a_budget_stopped_training_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    save_dataset(_rows(4), out / "dataset")
    # run 1: the budget stops it after the first optimizer step, with a checkpoint there
    stage_train(_recipe(tmp_path, tiny_model_dir, max_train_seconds=1e-6), out)
    ck = out / "checkpoints" / "toolprm"
    marker = json.loads((ck / "INCOMPLETE.json").read_text())
    assert marker["global_step"] == 1 and marker["max_steps"] > 1
    assert (ck / "checkpoint-1").is_dir()
    first = JudgeConfig.load(ck).metadata
    assert first["stopped_by_time_budget"] and first["optimizer_steps"] == 1
    # run 2 (the same command again): continues from step 1 to the end, not from scratch
    stage_train(_recipe(tmp_path, tiny_model_dir), out)
    meta = JudgeConfig.load(ck).metadata
    assert meta["data"]["resumed_from"].endswith("checkpoint-1")
    assert meta["optimizer_steps"] == marker["max_steps"] and not meta["stopped_by_time_budget"]
    assert not (ck / "INCOMPLETE.json").exists()
    # run 3: finished, so skipped (its files untouched)
    before = (ck / "toolprm_config.json").stat().st_mtime_ns
    stage_train(_recipe(tmp_path, tiny_model_dir), out)
    assert (ck / "toolprm_config.json").stat().st_mtime_ns == before


def test_platt_calibration_makes_scores_probabilities():
    rng = random.Random(0)
    labels = [int(rng.random() < 0.4) for _ in range(3000)]
    # over-confident, shifted scores: right ~0.9, wrong ~0.6
    raw = [min(0.999, max(0.001, (0.9 if y else 0.6) + rng.gauss(0, 0.08))) for y in labels]
    fit = fit_platt(raw, labels)
    assert fit["nll_after"] < fit["nll_before"] and fit["ece_after"] < 0.05 < fit["ece_before"]
    cal = [calibrate(p, fit) for p in raw]
    right = sum(p for p, y in zip(cal, labels) if y) / sum(labels)
    wrong = sum(p for p, y in zip(cal, labels) if not y) / (len(labels) - sum(labels))
    assert right > 0.7 and wrong < 0.3
    assert expected_calibration_error(cal, labels) == pytest.approx(fit["ece_after"], abs=1e-6)
    table = reliability_table(cal, labels)
    assert len(table) == 10 and table[0]["share_right"] < table[-1]["share_right"]
    assert calibrate(0.3, None) == 0.3


def test_calib_split_is_carved_from_train_only():
    ids = [f"q/{i}" for i in range(2000)]
    old = {i: split_of(i, 0.15) for i in ids}
    new = {i: split_of(i, 0.15, 0, 0.05) for i in ids}
    assert all(new[i] == "test" for i in ids if old[i] == "test")  # the test split does not move
    assert all(old[i] == "train" for i in ids if new[i] == "calib")
    share = sum(v == "calib" for v in new.values()) / len(ids)
    assert 0.03 < share < 0.07


def test_model_free_stages_and_calibration_in_the_pipeline(tiny_model_dir, tmp_path):
    recipe = {
        "name": "large-tiny", "output_dir": str(tmp_path / "run"), "seed": 0, "threads": 1,
        "data": {"require_bfcl": False, "sources": {"seal-tools": {"splits": ["dev"], "limit": 30}, "glaive": {"limit": 10}},
                 "test_fraction": 0.2, "calib_fraction": 0.3},
        "augment": {"irrelevance": 0.3, "parallel": 0.3},
        "masking": {"probability": 0.3, "keep_original": True},
        "perturb": {"per_example": 6, "shard_size": 7},
        "rollouts": {"enabled": False},
        "train": {"kinds": ["toolprm"], "common": {"base_model": str(tiny_model_dir), "lora_r": 4, "lora_alpha": 8, "num_train_epochs": 1,
                  "max_length": 6000, "disable_tqdm": True, "max_train_seconds": 20}},
        "calibrate": {"max_queries": 20, "max_length": 6000},
        "eval": {"max_length": 6000, "base_reference": False, "max_queries": 6},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    res = run_pipeline(load_recipe(path), stages=["data", "rollouts", "synth", "dataset", "train", "calibrate", "eval"])
    out = tmp_path / "run"
    assert set(res["timings"]) == {"data", "rollouts", "synth", "dataset", "train", "calibrate", "eval"}
    shards = sorted((out / "synth").glob("shard-*.jsonl"))
    assert len(shards) > 2
    report = json.loads((out / "data_report.json").read_text())
    assert report["augmented"]["irrelevance"] > 0 and report["augmented"]["parallel"] > 0
    stats = json.loads((out / "dataset" / "stats.json").read_text())
    assert "calib" in stats and stats["train"]["steps_neg"] > 0
    assert any(k.startswith("perturb:") for k in stats["train"]["steps_by_origin"])
    assert set(stats["train"]["steps_by_kind"]) >= {"FUNC_NAME", "ARG", "PARAM_FINISH", "TOTAL_FINISH"}
    assert "Step units by step kind" in (out / "dataset" / "stats.md").read_text()
    cal = JudgeConfig.load(out / "checkpoints" / "toolprm").metadata["calibration"]
    assert cal["method"] == "platt" and cal["judgements"] > 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())["ToolPRM"]
    assert set(metrics["step_by_kind"]) >= {"FUNC_NAME", "ARG", "TOTAL_FINISH"}
    assert "calibrated" in metrics and len(metrics["reliability"]) == 10
    assert "by step kind" in (out / "eval" / "metrics.md").read_text()
    # a removed shard is rewritten by a rerun, the others are kept
    mtimes = {p.name: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    run_pipeline(load_recipe(path), stages=["synth"])
    assert shards[1].is_file() and shards[0].stat().st_mtime_ns == mtimes[shards[0].name]


def test_later_stages_wait_for_budget_stopped_branches_and_the_dataset_follows_them(tiny_model_dir, tmp_path):
    recipe = {
        "name": "hold-tiny", "output_dir": str(tmp_path / "run"), "seed": 0, "threads": 1,
        "data": {"require_bfcl": False, "sources": {"seal-tools": {"splits": ["dev"], "limit": 4, "max_calls": 1}}, "test_fraction": 0.0},
        "perturb": {"per_example": 3},
        "branches": {"policy": str(tiny_model_dir), "m": 2, "max_string_length": 6, "max_step_tokens": 4, "offgold_share": 0.0,
                     "budget_minutes": 1e-9, "hold_until_done": True},
        "rollouts": {"enabled": False},
        "train": {"kinds": ["toolprm"], "common": {"base_model": str(tiny_model_dir)}},
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    stages = ["data", "rollouts", "branches", "synth", "dataset"]
    first = run_pipeline(load_recipe(path), stages=stages)
    assert list(first["timings"]) == ["data", "rollouts", "branches"]  # one query branched, the rest wait
    assert not (tmp_path / "run" / "dataset").exists()
    recipe["branches"]["budget_minutes"] = 30
    path.write_text(json.dumps(recipe))
    second = run_pipeline(load_recipe(path), stages=stages)
    assert list(second["timings"]) == stages
    inputs = json.loads((tmp_path / "run" / "dataset" / "inputs.json").read_text())
    assert inputs["branches"] == 4 and inputs["synth"] == 4
    stats = json.loads((tmp_path / "run" / "dataset" / "stats.json").read_text())
    assert "branch" in stats["train"]["steps_by_origin"]
    # more records later (here: a record removed, then collected again) rebuild the dataset without --force
    lines = (tmp_path / "run" / "branches.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "run" / "branches.jsonl").write_text("".join(lines[:-1]))
    run_pipeline(load_recipe(path), stages=["data", "dataset"])
    assert json.loads((tmp_path / "run" / "dataset" / "inputs.json").read_text())["branches"] == 3


def test_a_stopped_training_starts_again_when_the_dataset_changed(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    save_dataset(_rows(4), out / "dataset")
    (out / "dataset" / "stats.json").write_text('{"v": 1}')
    stage_train(_recipe(tmp_path, tiny_model_dir, max_train_seconds=1e-6), out)
    ck = out / "checkpoints" / "toolprm"
    assert (ck / "INCOMPLETE.json").is_file()
    (out / "dataset" / "stats.json").write_text('{"v": 2}')  # rebuilt with more data
    stage_train(_recipe(tmp_path, tiny_model_dir), out)
    meta = JudgeConfig.load(ck).metadata
    assert meta["data"]["resumed_from"] is None and not (ck / "INCOMPLETE.json").exists()
