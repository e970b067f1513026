"""CI-sized run of the whole pipeline on the tiny model:
sources -> decontamination -> masking -> rollouts -> labels/dataset -> ToolPRM/ORM/C-PRM training
-> held-out evaluation -> install -> the installed ToolPRM steering a beam search."""

from __future__ import annotations

import json

import pytest

from toolprm_agents.training.pipeline import apply_overrides, load_recipe, run_pipeline
from toolprm_agents.training.sources import data_root

pytestmark = pytest.mark.slow  # training end to end

try:
    data_root()
    HAVE_DATA = True
except FileNotFoundError:  # pragma: no cover
    HAVE_DATA = False


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    if not HAVE_DATA:
        pytest.skip("training data not found")
    tmp = tmp_path_factory.mktemp("e2e")
    tiny = str(tiny_model_dir)
    recipe = {
        "name": "ci-tiny",
        "output_dir": str(tmp / "run"),
        "seed": 0,
        "threads": 1,
        "data": {
            "require_bfcl": False,
            "sources": {
                "seal-tools": {"splits": ["dev"], "distractors": 1, "max_calls": 2, "limit": 40},
                "glaive": {"limit": 30},
                "api-bank-lv3": {"limit": 30},
            },
            "per_source": {"seal-tools": 5, "glaive": 2, "api-bank-lv3": 2},
            "max_prompt_tokens": 3000,
            "test_fraction": 0.34,
        },
        "masking": {"probability": 0.5},
        "rollouts": {"policy": tiny, "beams": 1, "expand": 2, "max_rounds": 8, "max_string_length": 8, "max_array_items": 2, "max_step_tokens": 6},
        "train": {
            "common": {"base_model": tiny, "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-3, "num_train_epochs": 1,
                       "gradient_accumulation_steps": 2, "max_length": 6000, "logging_steps": 1, "disable_tqdm": True},
        },
        "eval": {"max_length": 6000, "base_reference": True},
        "install": {"to": str(tmp / "installed"), "suffix": "tiny"},
    }
    path = tmp / "recipe.json"
    path.write_text(json.dumps(recipe))
    result = run_pipeline(load_recipe(path))
    return tmp, recipe, result


def test_every_stage_wrote_its_output(run):
    tmp, recipe, result = run
    out = tmp / "run"
    assert set(result["timings"]) == {"data", "rollouts", "dataset", "train", "eval", "install"}
    examples = [json.loads(l) for l in (out / "examples.jsonl").open()]
    assert len(examples) == 9 and any(e["meta"].get("masked") for e in examples)
    rollouts = [json.loads(l) for l in (out / "rollouts.jsonl").open()]
    assert [r["id"] for r in rollouts] == [e["id"] for e in examples]
    stats = json.loads((out / "dataset" / "stats.json").read_text())
    assert stats["train"]["steps_pos"] > 0 and stats["train"]["steps_neg"] > 0
    assert (out / "dataset" / "train.parquet").is_file() and (out / "dataset" / "test.parquet").is_file()
    assert "| train |" in (out / "dataset" / "stats.md").read_text()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"base (untrained) ToolPRM", "ToolPRM", "ORM", "C-PRM"}
    for name, m in metrics.items():
        assert m["judgements"] > 0 and 0.0 <= m["unit_acc"] <= 1.0 and m["loss"] > 0, name
        assert "step_acc" in m and "traj_acc" in m
    for kind in ("toolprm", "orm", "cprm"):
        ck = tmp / "installed" / f"{kind}-tiny"
        assert sorted(p.name for p in ck.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors", "toolprm_config.json"]
        conf = json.loads((ck / "toolprm_config.json").read_text())
        assert conf["kind"] == kind and conf["trained"] and conf["adapter"]
        assert "unit_acc" in conf["metadata"]["metrics"]
        assert "Held-out metrics" in (ck / "README.md").read_text()


def test_a_second_run_resumes_and_skips_finished_stages(run):
    tmp, recipe, _ = run
    path = tmp / "recipe.json"
    before = (tmp / "run" / "rollouts.jsonl").read_text()
    written = {p: p.stat().st_mtime_ns for p in (tmp / "run").rglob("*") if p.is_file() and p.name not in ("timings.json", "recipe.json")}  # the run's own records
    result = run_pipeline(load_recipe(path), stages=["data", "rollouts", "dataset", "train", "eval"])
    assert (tmp / "run" / "rollouts.jsonl").read_text() == before
    assert set(result["timings"]) == {"data", "rollouts", "dataset", "train", "eval"}
    rewritten = sorted(str(p.relative_to(tmp)) for p, t in written.items() if p.stat().st_mtime_ns != t)
    assert rewritten == [], f"finished stages were redone: {rewritten}"


def test_the_installed_toolprm_steers_a_beam_search(run, tiny_model_dir):
    from toolprm_agents.policy import TransformersPolicy
    from toolprm_agents.scorers import ToolPRM, load_scorer
    from toolprm_agents.search import SearchConfig, ToolPRMSearch

    tmp, _, _ = run
    prm = load_scorer("toolprm", checkpoint=tmp / "installed" / "toolprm-tiny")
    assert isinstance(prm, ToolPRM) and prm.config.trained
    policy = TransformersPolicy(tiny_model_dir, max_step_tokens=6)
    tools = [{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]}}]
    search = ToolPRMSearch(policy, prm, SearchConfig(beams=2, expand=2, max_calls=1, max_string_length=8))
    result = search.search("What is the weather in Paris?", tools)
    assert result.complete
    assert result.step_scores and all(0.0 <= s <= 1.0 for s in result.step_scores)
    assert result.compute.scorer_calls > 0


def test_overrides():
    r = apply_overrides({"rollouts": {"beams": 2}}, ["rollouts.beams=1", "train.common.lora_r=4", "data.per_source.glaive=3"])
    assert r["rollouts"]["beams"] == 1 and r["train"]["common"]["lora_r"] == 4 and r["data"]["per_source"]["glaive"] == 3


def test_cli_overlap_check_on_the_run_examples(run, capsys):
    from toolprm_agents import cli

    tmp, _, _ = run
    rc = cli.main(["train", "overlap", "--examples", str(tmp / "run" / "examples.jsonl")])
    out = capsys.readouterr().out
    assert rc == 0 and '"overlapping": 0' in out
    rc = cli.main(["train", "stats", str(tmp / "recipe.json")])
    assert rc == 0 and "| train |" in capsys.readouterr().out
