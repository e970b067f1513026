"""A supplementary judge dataset: same-function parallel examples, decontaminated, perturbed and split like the main one."""

from __future__ import annotations

import pytest

from toolprm_agents.training.dataset import load_dataset_split
from toolprm_agents.training.sources import EvalIndex, Example
from toolprm_agents.training.supplement import build_supplement

TOOL = {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CITIES = ["Oslo", "Lima", "Bern", "Quito", "Perth", "Accra", "Cairo", "Dakar"]


def examples() -> list[Example]:
    out = [Example(f"w/{i}", "test", [{"role": "user", "content": f"What is the weather in {c}?"}], [TOOL],
                   [{"name": "get_weather", "arguments": {"city": c}}]) for i, c in enumerate(CITIES)]
    out.append(Example("w/aug", "test", [{"role": "user", "content": "x"}], [TOOL], [], {"augment": "irrelevance", "original_id": "w/0"}))
    return out


def test_a_supplement_holds_same_function_parallel_examples_split_by_their_query_and_without_eval_overlap(tmp_path):
    recipe = {"seed": 0, "data": {"test_fraction": 0.3}, "perturb": {"per_example": 4, "shard_size": 9, "budget_minutes": 1}}
    first = build_supplement(recipe, examples(), same_function=1.0, out_dir=tmp_path / "all", index=EvalIndex())
    made = sorted({r["id"] for split in ("train", "test", "calib") for r in load_dataset_split(tmp_path / "all", split)})
    import json

    leaked = next(r for r in load_dataset_split(tmp_path / "all", "train") + load_dataset_split(tmp_path / "all", "test") if r["id"] == made[0])
    index = EvalIndex()
    index._add("bfcl", [json.loads(leaked["messages"])[0]["content"]], [])  # as if an evaluation set asked it
    stats = build_supplement(recipe, examples(), same_function=1.0, out_dir=tmp_path, index=index)
    assert first["augmented"]["dropped_overlapping_eval"] == {}
    rows = [r for split in ("train", "test", "calib") for r in load_dataset_split(tmp_path, split)]
    ids = {r["id"] for r in rows}
    assert ids and all("+" in i for i in ids) and not any("w/aug" in i for i in ids), "joins of source examples only"
    golds = {r["id"]: r for r in rows if r["origin"] == "gold"}

    for r in golds.values():
        calls = json.loads(r["gold"])
        assert len(calls) == 2 and {c["name"] for c in calls} == {"get_weather"} and calls[0] != calls[1]
    from toolprm_agents.training.dataset import split_of

    for r in rows:
        base = r["id"].split("+")[0]
        assert r["split"] == split_of(base, 0.3, 0), "a joined example stays on its first query's split"
    assert sum(stats["augmented"]["dropped_overlapping_eval"].values()) == 1 and made[0] not in ids, "an evaluation query is dropped"
    assert stats["augmented"]["parallel_same_function"] >= len(golds)
    with pytest.raises(ValueError, match="supplement is empty"):
        build_supplement(recipe, examples()[:1], same_function=1.0, out_dir=tmp_path / "none", index=EvalIndex())
