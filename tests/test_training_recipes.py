"""Recipes parse; the GPU ones (which cannot run here) build their trainers in a dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from toolprm_agents.training.pipeline import REPO_ROOT, dry_run, load_recipe, trainer_config

RECIPES = sorted((REPO_ROOT / "training" / "recipes").glob("*.yaml"))


def test_the_expected_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"cpu-smollm2", "gpu-qwen2.5-1.5b", "gpu-hammer2.1-3b"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_into_trainer_configs(path, tmp_path):
    recipe = load_recipe(path)
    recipe["output_dir"] = str(tmp_path)
    for kind in recipe["train"].get("kinds", ["toolprm", "orm", "cprm"]):
        extra = {"bf16": False, "dtype": "float32"}  # this machine has no GPU
        cfg = trainer_config(recipe, kind, Path(tmp_path), **extra)
        assert cfg.kind == kind and cfg.learning_rate > 0
    if "accelerate" in recipe:
        acc = yaml.safe_load((REPO_ROOT / recipe["accelerate"]).read_text())
        assert acc["distributed_type"] == "MULTI_GPU" and acc["num_processes"] >= 2


def test_cpu_recipe_is_the_default_checkpoint_recipe():
    recipe = load_recipe("cpu-smollm2")
    assert recipe["train"]["common"]["base_model"] == "smollm2"
    assert recipe["train"]["common"]["use_lora"] is True
    assert recipe["install"]["to"] == "toolprm_agents/checkpoints"
    assert recipe["rollouts"]["budget_minutes"] * 60 + 3 * recipe["train"]["common"]["max_train_seconds"] <= 35 * 60


@pytest.mark.parametrize("name", ["gpu-qwen2.5-1.5b", "gpu-hammer2.1-3b"])
def test_gpu_recipe_dry_run_builds_the_trainers(name, tiny_model_dir, tmp_path):
    recipe = load_recipe(name)
    recipe["output_dir"] = str(tmp_path)
    built = dry_run(recipe, base_model=str(tiny_model_dir))
    assert set(built) == {"toolprm", "orm", "cprm"}
    for kind, info in built.items():
        assert info["trainer"] == "RewardModelTrainer" and info["judgements"] > 0
        assert info["args"]["use_lora"] == recipe["train"]["common"]["use_lora"]


def test_train_command_is_registered():
    from toolprm_agents import cli

    cli._register_optional_commands()
    assert "train" in cli.COMMANDS
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0


def test_cli_dry_run(tiny_model_dir, capsys, tmp_path):
    from toolprm_agents import cli

    rc = cli.main(["train", "dry-run", "gpu-hammer2.1-3b", "--base-model", str(tiny_model_dir), "--output-dir", str(tmp_path), "--set", "train.kinds=[toolprm]"])
    assert rc == 0
    assert '"toolprm"' in capsys.readouterr().out
