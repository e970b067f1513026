"""The probe judge: features where a step ends, the fit, the checkpoint, and the judge in a search (tiny model)."""

from __future__ import annotations

import json

import pytest
import torch

from toolprm_agents.compute import Compute
from toolprm_agents.context import ContextStore
from toolprm_agents.interfaces import ScorerError
from toolprm_agents.judges import CONFIG_NAME, JudgeConfig
from toolprm_agents.models import load_causal_lm
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.probe_features import step_features
from toolprm_agents.schema import to_tool_specs
from toolprm_agents.scorers import load_scorer
from toolprm_agents.search import SearchConfig, ToolPRMSearch
from toolprm_agents.steps import StepPlan
from toolprm_agents.training.dataset import build_rows, judge_units
from toolprm_agents.training.perturb import PerturbConfig, perturb_examples
from toolprm_agents.training.probe import (ProbeWeights, extract, fit, load_features, merge_features, policy_made_ids, preference_pairs,
                                           save_probe_judge, score_units, unit_rows, without_origins)
from toolprm_agents.training.sources import Example

TOOLS = [
    {"name": "get_weather", "description": "Weather in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}},
    {"name": "get_time", "description": "Local time in a city",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
]
LAYERS = (1, 2)


def examples() -> list[Example]:
    cities = ["Oslo", "Lima", "Bern", "Quito", "Perth", "Accra"]
    return [Example(f"w/{i}", "test", [{"role": "user", "content": f"Weather in {c} for {i + 1} days?"}], TOOLS,
                    [{"name": "get_weather", "arguments": {"city": c, "days": i + 1}}]) for i, c in enumerate(cities)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


@pytest.fixture(scope="module")
def rows():
    return build_rows(perturb_examples(examples(), PerturbConfig(per_example=6, seed=0)), test_fraction=0.0)


def test_unit_rows_cover_every_unit_once_along_chains_that_rebuild_the_answer(rows):
    for g in judge_units(rows, "toolprm"):
        segs, keys = unit_rows(g.units)
        judged = {j.text for _, j, _ in g.units}
        assert set(k for row in keys for k in row) == judged
        for row, ks in zip(segs, keys):
            text = "["
            for seg, key in zip(row, ks):
                text += seg
                assert text == key, "a segment ends exactly where its unit's judged text ends"


def test_features_of_a_segment_in_a_row_equal_the_features_of_that_step_scored_alone(tiny):
    """What training reads (one pass over an answer) is what the search reads (one step over a cached context)."""
    model, tok = tiny
    plan = StepPlan(to_tool_specs(TOOLS))
    store = ContextStore(model, tok, "user: weather in Oslo?\nassistant: ", Compute(), reserve_tokens=0)
    a, b = '{"name": "get_weather"', ', "arguments": {"city": "Oslo"'
    row = step_features(model, store, "[", [[store.encode(a), store.encode(b)]], layers=LAYERS)[0]
    alone = step_features(model, store, "[" + a, [[store.encode(b)]], layers=LAYERS)[0]
    assert row.shape == (2, 2 * len(LAYERS) * model.config.hidden_size)
    assert torch.allclose(row[1], alone[0], atol=1e-4)
    assert not torch.allclose(row[0], row[1], atol=1e-3)
    del plan


def test_the_fit_separates_separable_features_and_is_calibrated_on_the_calibration_split():
    g = torch.Generator().manual_seed(0)
    def split(n):
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 16, generator=g)
        x[:, 3] += 2.0 * y  # one informative feature
        return {"features": x.half(), "labels": y.tolist(), "keys": [("e", str(i)) for i in range(n)]}
    model, report = fit(split(600), split(300), l2_grid=(1e-3, 1e-2))
    test = split(400)
    scores = score_units(model, test)
    right = [p for p, y in scores.values() if y]
    wrong = [p for p, y in scores.values() if not y]
    assert sum(right) / len(right) > 0.7 and sum(wrong) / len(wrong) < 0.3
    assert max(report["all"]["calib_auroc"].values()) > 0.9
    assert report["all"]["platt"]["nll_after"] <= report["all"]["platt"]["nll_before"] + 1e-6


def test_extract_then_fit_then_load_scores_the_same_in_the_search(tiny_model_dir, tiny, rows, tmp_path):
    feats = tmp_path / "features"
    assert extract(rows, feats, split="train", model_ref=str(tiny_model_dir), layers=LAYERS, shard_size=3) == 2
    assert extract(rows, feats, split="train", model_ref=str(tiny_model_dir), layers=LAYERS, shard_size=3) == 0, "resumes: nothing left"
    train = load_features(feats, "train")
    n_units = sum(len(g.units) for g in judge_units(rows, "toolprm"))
    assert len(train["labels"]) == n_units and train["features"].shape[0] == n_units
    assert 0 < sum(train["labels"]) < n_units
    model, report = fit(train, train, l2_grid=(1e-2,), min_units=5)
    assert len(model.probes) > 1, "a probe per step kind where the kinds have enough units"
    assert set(report["pooled_calib_auroc"]) == {"one probe", "a probe per step kind"}
    ckpt = save_probe_judge(model, LAYERS, tmp_path / "probe-judge", base_model=str(tiny_model_dir))
    assert json.loads((ckpt / CONFIG_NAME).read_text())["probe"] == "probe.pt"
    judge = load_scorer("toolprm", checkpoint=ckpt)
    assert type(judge).__name__ == "ProbeJudge" and judge.granularity == "step"
    # the judge's score of one unit equals the probe on the extracted features of that unit
    g = judge_units(rows, "toolprm")[0]
    ctx, judged, _ = g.units[1]
    plan = StepPlan(to_tool_specs(g.tools))
    score = judge.session(g.messages, plan, Compute()).score([(ctx, judged)])[0]
    i = train["keys"].index((g.id, judged.text))
    assert score == pytest.approx(model(train["features"][i : i + 1].float(), [train["kinds"][i]]).item(), abs=2e-3)
    # and it drives the combined beam search to a valid answer
    result = ToolPRMSearch(policy=TransformersPolicy(str(tiny_model_dir)), scorer=judge).search(
        g.messages, g.tools, config=SearchConfig(strategy="beam", gate=1.0, budget_seconds=60))
    assert result.compute.scorer_calls > 0
    for call in result.calls:
        assert call.name in {"get_weather", "get_time"}


def test_a_probe_config_names_a_file_in_its_folder(tmp_path):
    with pytest.raises(ScorerError, match="'probe'"):
        JudgeConfig(probe="../elsewhere.pt")
    JudgeConfig(probe="probe.pt", trained=True).save(tmp_path)
    with pytest.raises(ScorerError, match="missing"):
        load_scorer("toolprm", checkpoint=tmp_path)
    (tmp_path / "probe.pt").write_bytes(b"not torch")
    with pytest.raises(ScorerError, match="not a probe judge"):
        load_scorer("toolprm", checkpoint=tmp_path)


def test_a_served_backend_refuses_a_probe_judge_by_name(tmp_path):
    """vLLM and servers answer with tokens: a probe judge there is a clear error naming the generative alternative."""
    from toolprm_agents.backends.base import judge_spec
    from toolprm_agents.judges import locate_judge_weights

    JudgeConfig(probe="probe.pt", trained=True).save(tmp_path)
    with pytest.raises(ScorerError, match="probe judge.*toolprm-smollm2"):
        locate_judge_weights(tmp_path)
    with pytest.raises(ScorerError, match="only the transformers backend"):
        judge_spec(tmp_path, "toolprm", tokenizer=None)


def test_bfcl_rows_hold_the_gold_answer_right_and_perturbations_wrong_for_evaluation_only():
    from toolprm_agents.training.rm_eval import bfcl_rows

    rows = bfcl_rows("simple_python", 5, per_example=4)
    assert {r["split"] for r in rows} == {"test"}
    assert len({r["id"] for r in rows}) == 5
    gold = [r for r in rows if r["origin"] == "gold"]
    assert len(gold) == 5 and all(r["answer_label"] == 1 and all(r["step_labels"]) for r in gold)
    assert any(r["answer_label"] == 0 for r in rows if r["origin"].startswith("perturb:"))


def test_the_model_card_states_the_fit_and_every_table(rows, tmp_path):
    from toolprm_agents.training.probe import model_card

    m = {"judgements": 10, "examples": 2, "step_auroc": 0.91, "step_acc": 0.8, "step_mean_right": 0.8, "step_mean_wrong": 0.2,
         "decision_pick_acc": 0.9, "decisions": 4,
         "step_by_kind": {"ARG": {"n": 10, "pos": 6, "neg": 4, "acc": 0.8, "auroc": 0.91, "mean_right": 0.8, "mean_wrong": 0.2}},
         "step_by_origin": {"gold": {"n": 6, "pos": 6, "neg": 0, "acc": 1.0, "auroc": float("nan"), "mean_right": 0.8, "mean_wrong": float("nan")}},
         "reliability": [{"bin": 1, "n": 10, "lo": 0.1, "hi": 0.9, "mean_score": 0.5, "share_right": 0.6}]}
    report = {"train_units": 100, "train_examples": 7, "calib_units": 30, "fit_seconds": 1.5, "layers": [6, 12],
              "fit": {"chosen": ["ARG", "all"], "pooled_calib_auroc": {"one probe": 0.9, "a probe per step kind": 0.92}},
              "test": m, "bfcl-simple_python": m}
    card = model_card(report, "python -m toolprm_agents.training.probe --stage fit")
    assert "100 step units of 7 examples" in card and "step AUROC 0.910" in card and "pick accuracy 90.0 %" in card
    assert "simple_python (BFCL: evaluation only" in card and "| gold | 6 | 6 | 0 | 1.000 | n/a |" in card
    assert card.rstrip().endswith("```")
    assert "No policy rollouts or gold-prefix branches are in it" in card
    report.update(policy_made=True, train_by_origin={"branch": 40, "gold": 50, "offgold": 10}, train_policy_examples=3)
    card = model_card(report, "python -m toolprm_agents.training.probe --policy-made --stage fit")
    assert "40 step units of the policy's own alternatives at gold prefixes" in card and "10 step units of steps after a wrong step" in card
    assert "3 train examples" in card and "No policy rollouts" not in card


@pytest.mark.parametrize("kind, granularity", [("orm", "answer"), ("cprm", "call")])
def test_an_orm_and_a_cprm_probe_judge_their_own_units_and_score_in_the_search_as_extracted(
        kind, granularity, tiny_model_dir, tiny, rows, tmp_path):
    """The same pipeline for the outcome RM (whole answers) and the coarse PRM (calls): the
    extracted units are that judge's, the loaded judge has its granularity, and its score of a
    unit in the search equals the probe on that unit's extracted features."""
    feats = tmp_path / "features"
    assert extract(rows, feats, split="train", model_ref=str(tiny_model_dir), layers=LAYERS, shard_size=10, kind=kind) == 1
    train = load_features(feats, "train")
    groups = judge_units(rows, kind)
    units = {(g.id, j.text): ok for g in groups for _, j, ok in g.units}
    assert len(train["labels"]) == len(units) and set(train["keys"]) == set(units)
    assert [units[k] for k in train["keys"]] == [bool(y) for y in train["labels"]]
    step_units = sum(len(g.units) for g in judge_units(rows, "toolprm"))
    assert len(units) < step_units, "fewer, coarser units than the step judge's"
    if kind == "orm":
        assert all(ctx.text == "[" and j.done for g in groups for ctx, j, _ in g.units), "one unit per complete answer"
    model, _ = fit(train, train, l2_grid=(1e-2,), by_kind=False)
    assert sorted(model.probes) == ["all"]
    ckpt = save_probe_judge(model, LAYERS, tmp_path / f"{kind}-probe", base_model=str(tiny_model_dir), kind=kind)
    judge = load_scorer(kind, checkpoint=ckpt)
    assert type(judge).__name__ == "ProbeJudge" and judge.granularity == granularity and judge.name == kind
    with pytest.raises(ScorerError, match=f"probe {kind} judge, not a 'toolprm' one"):
        load_scorer("toolprm", checkpoint=ckpt)
    g = groups[0]
    ctx, judged, _ = g.units[-1]
    plan = StepPlan(to_tool_specs(g.tools))
    score = judge.session(g.messages, plan, Compute()).score([(ctx, judged)])[0]
    i = train["keys"].index((g.id, judged.text))
    assert score == pytest.approx(model(train["features"][i : i + 1].float(), ["all"]).item(), abs=2e-3)
    strategy = "best-of-n" if kind == "orm" else "beam"
    result = ToolPRMSearch(policy=TransformersPolicy(str(tiny_model_dir)), scorer=judge).search(
        g.messages, g.tools, config=SearchConfig(strategy=strategy, beams=2, gate=1.0, budget_seconds=60))
    assert result.compute.scorer_calls > 0
    for call in result.calls:
        assert call.name in {"get_weather", "get_time"}


def _decisions(n_decisions: int, seed: int) -> dict:
    """Synthetic units: each decision (an example and a context) has alternatives; a right one
    has feature 3 raised above its siblings, but every decision has its own offset on feature 5,
    which a pointwise model must also learn and a pairwise one can ignore."""
    g = torch.Generator().manual_seed(seed)
    xs, ys, keys, ctxs = [], [], [], []
    for d in range(n_decisions):
        shift = float(torch.randn(1, generator=g)) * 3
        for a in range(3):
            x = torch.randn(8, generator=g)
            y = int(a == 0)
            x[3] += 1.5 * y
            x[5] += shift
            xs.append(x); ys.append(y); keys.append((f"e{d}", f"t{d}-{a}")); ctxs.append(f"c{d}")
    return {"features": torch.stack(xs).half(), "labels": ys, "keys": keys, "contexts": ctxs}


def test_preference_pairs_are_right_against_wrong_alternatives_of_one_decision():
    feats = _decisions(5, 0)
    pairs = preference_pairs(feats)
    assert pairs.shape == (10, 2), "5 decisions x (1 right x 2 wrong)"
    for i, j in pairs.tolist():
        assert feats["labels"][i] == 1 and feats["labels"][j] == 0
        assert feats["keys"][i][0] == feats["keys"][j][0] and feats["contexts"][i] == feats["contexts"][j]
    assert preference_pairs(feats, max_per_group=1).shape == (5, 2)


def test_a_pairwise_probe_ranks_the_right_alternative_first_and_is_calibrated_after_platt():
    from toolprm_agents.training.rm_eval import auroc

    train, calib, test = _decisions(300, 1), _decisions(150, 2), _decisions(150, 3)
    model, report = fit(train, calib, l2_grid=(1e-2,), by_kind=False, loss="pairwise")
    p = model(test["features"].float(), ["all"] * len(test["labels"])).tolist()
    picks = [max(range(3), key=lambda a: p[3 * d + a]) == 0 for d in range(150)]
    assert sum(picks) / len(picks) > 0.7
    assert auroc(p, test["labels"]) > 0.6
    assert report["all"]["platt"]["nll_after"] <= report["all"]["platt"]["nll_before"] + 1e-6
    with pytest.raises(ValueError, match="pairwise loss has nothing to compare"):
        fit({**train, "labels": [1] * len(train["labels"])}, calib, l2_grid=(1e-2,), by_kind=False, loss="pairwise")
    with pytest.raises(ValueError, match="choose pointwise or pairwise"):
        fit(train, calib, loss="listwise")


def test_policy_made_examples_extract_apart_merge_once_and_drop_for_the_ablation(tiny_model_dir, rows, tmp_path):
    # one example's answers marked as the policy's gold-prefix branches
    first = rows[0]["id"]
    marked = [dict(r, origin="branch") if r["id"] == first and r.get("origin") != "gold" else r for r in rows]
    assert policy_made_ids(marked) == {first}
    feats = tmp_path / "features"
    extract(marked, feats, split="train-policy", model_ref=str(tiny_model_dir), layers=LAYERS, only_ids={first})
    extract(marked, feats, split="train", model_ref=str(tiny_model_dir), layers=LAYERS, shard_size=3)
    policy, everything = load_features(feats, "train-policy"), load_features(feats, "train")
    assert {k[0] for k in policy["keys"]} == {first}
    assert len(everything["labels"]) == sum(len(g.units) for g in judge_units(marked, "toolprm")), "train-policy shards are not train's"
    merged = merge_features(policy, everything)
    assert len(merged["keys"]) == len(set(map(tuple, merged["keys"]))) == len(everything["keys"]), "each unit once"
    assert merged["features"].shape[0] == len(merged["labels"])
    assert "branch" in merged["origins"]
    ablated = without_origins(merged, ["branch"])
    assert "branch" not in ablated["origins"] and ablated["features"].shape[0] == len(ablated["labels"]) < len(merged["labels"])


def test_evaluate_scores_a_saved_probe_on_the_test_features_and_refuses_what_is_not_one(tiny_model_dir, rows, tmp_path, capsys):
    """``--stage evaluate`` reports a packaged probe on the same held-out units a new fit is
    reported on: its figures equal :func:`evaluate` of the saved model; a folder that is not a
    probe judge, or features of other layers, get a clear refusal."""
    from toolprm_agents.training.dataset import save_dataset
    from toolprm_agents.training.probe import evaluate, load_probe, main

    test_rows = [dict(r, split="test") for r in rows]
    data = tmp_path / "data"
    save_dataset(test_rows, data)
    work = tmp_path / "work"
    extract(test_rows, work / "features", split="test", model_ref=str(tiny_model_dir), layers=LAYERS)
    feats = load_features(work / "features", "test")
    model, _ = fit(feats, feats, l2_grid=(1e-2,), min_units=5)
    ckpt = save_probe_judge(model, LAYERS, tmp_path / "judge", base_model=str(tiny_model_dir))
    assert main(["--stage", "evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--work", str(work)]) == 0
    got = json.loads((work / "report-eval-judge.json").read_text())
    want = evaluate(load_probe(ckpt / "probe.pt")[0], feats, test_rows)
    assert got["step_auroc"] == pytest.approx(want["step_auroc"]) and got["decisions"] == want["decisions"] > 0
    assert "test AUROC" in capsys.readouterr().out
    (tmp_path / "lora").mkdir()
    JudgeConfig(trained=True).save(tmp_path / "lora")
    assert main(["--stage", "evaluate", "--checkpoint", str(tmp_path / "lora"), "--data", str(data), "--work", str(work)]) == 2
    assert "not a probe judge" in capsys.readouterr().out
    other = save_probe_judge(model, (3, 4), tmp_path / "other-layers", base_model=str(tiny_model_dir))
    assert main(["--stage", "evaluate", "--checkpoint", str(other), "--data", str(data), "--work", str(work)]) == 2
    assert "features are of layers" in capsys.readouterr().out


def test_a_supplements_shards_merge_into_train_and_calib_and_its_test_is_reported_apart(tiny_model_dir, rows, tmp_path, capsys):
    from toolprm_agents.training.augment import AugmentConfig, same_function_pairs
    from toolprm_agents.training.dataset import save_dataset
    from toolprm_agents.training.probe import main, split_features

    main_rows = [dict(r, split=("train", "calib", "test")[i % 3]) for i, r in enumerate(rows)]
    twice, _ = same_function_pairs(examples(), AugmentConfig(same_function=1.0), lambda base: "train")
    assert twice and all(len(e.calls) == 2 and e.calls[0]["name"] == e.calls[1]["name"] for e in twice)
    extra = build_rows(perturb_examples(twice[:3], PerturbConfig(per_example=4, seed=0)), test_fraction=0.0)
    extra = [dict(r, split=("train", "calib", "test")[i % 3]) for i, r in enumerate(extra)]
    data, supp, work = tmp_path / "data", tmp_path / "samefn", tmp_path / "work"
    save_dataset(main_rows, data)
    save_dataset(extra, supp)
    for split in ("train", "calib", "test"):
        extract([r for r in main_rows if r["split"] == split], work / "features", split=split, model_ref=str(tiny_model_dir), layers=LAYERS)
        extract([r for r in extra if r["split"] == split], work / "features", split=f"{split}-samefn", model_ref=str(tiny_model_dir), layers=LAYERS)
    plain, merged = load_features(work / "features", "train"), split_features(work / "features", "train", tags=("samefn",))
    assert len(merged["labels"]) == len(plain["labels"]) + len(load_features(work / "features", "train-samefn")["labels"])
    assert main(["--stage", "fit", "--data", str(data), "--work", str(work), "--with", f"samefn={supp}", "--out", str(tmp_path / "judge")]) == 0
    card = (tmp_path / "judge" / "README.md").read_text()
    assert "supplementary dataset `samefn`" in card and "## The samefn supplement's test split" in card
    assert f"--tag samefn" in card and f"--with samefn={supp} --stage fit" in card, "the rebuild command makes and merges the supplement"
    assert main(["--stage", "evaluate", "--checkpoint", str(tmp_path / "judge"), "--data", str(data), "--work", str(work),
                 "--with", f"samefn={supp}"]) == 0
    evaluated = json.loads((work / "report-eval-judge.json").read_text())
    assert evaluated["test-samefn"]["judgements"] == len(load_features(work / "features", "test-samefn")["labels"]) > 0, \
        "evaluate reports the supplement's test too"
    report = json.loads((work / "report-with-samefn.json").read_text())
    assert report["train_units"] == len(merged["labels"]) and report["supplements"] == {"samefn": str(supp)}
    assert report["test-samefn"]["judgements"] == len(load_features(work / "features", "test-samefn")["labels"]) > 0
    assert report["test"]["judgements"] == len(load_features(work / "features", "test")["labels"]), "the main test table stays the main split's"
    with pytest.raises(SystemExit):
        main(["--stage", "fit", "--data", str(data), "--work", str(work), "--with", "samefn"])
    assert "expected TAG=DIR" in capsys.readouterr().err
