"""The judge trainer: packed judgements equal the core scorer's, the loss learns, checkpoints load."""

from __future__ import annotations

import json

import pytest
import torch

from toolprm_agents.compute import Compute
from toolprm_agents.models import load_causal_lm
from toolprm_agents.prompt import normalize_messages
from toolprm_agents.scorers import JudgeConfig, load_scorer
from toolprm_agents.training.dataset import build_rows, judge_units
from toolprm_agents.training.rm_eval import auroc, evaluate_judge, judge_weights, score_judgements
from toolprm_agents.training.rollouts import RolloutConfig, plan_for
from toolprm_agents.training.sources import Example
from toolprm_agents.training.trainer import JudgeFormat, build_trainer, collate, config_for, pack_group, save_judge

TOOLS = [
    {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}},
    {"name": "get_time", "description": "Time in a zone", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}},
]


def _rows(n: int = 4) -> list[dict]:
    """Rows with a gold answer and three wrong ones per example (built, not sampled)."""
    cities = ["Paris", "Rome", "Oslo", "Lima", "Bern", "Kyiv"]
    recs = []
    for i in range(n):
        city = cities[i % len(cities)]
        ex = Example(f"e/{i}", "test", [{"role": "user", "content": f"Weather in {city} for 2 days?"}], TOOLS, [{"name": "get_weather", "arguments": {"city": city, "days": 2}}])
        plan = plan_for(ex, RolloutConfig().limits(1))
        answers = [
            (ex.calls, "gold"),
            ([{"name": "get_weather", "arguments": {"city": city, "days": 3}}], "sample"),
            ([{"name": "get_time", "arguments": {"zone": city}}], "sample"),
            ([{"name": "get_weather", "arguments": {"city": "Tokyo"}}, {"name": "get_time", "arguments": {"zone": "UTC"}}], "sample"),
        ]
        recs.append({"example": ex.to_dict(), "answers": [
            {"steps": [s.to_dict() for s in plan.answer_from_calls(calls).steps], "origin": o, "count": 1} for calls, o in answers
        ]})
    return [dict(r, split="train") for r in build_rows(recs, test_fraction=0.0)]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(tiny_model_dir, shared=False)


@pytest.mark.parametrize("kind", ["toolprm", "cprm", "orm"])
def test_packed_judgements_equal_the_core_scorer(tiny_model_dir, tiny, tmp_path, kind):
    """One packed forward gives the scores GenerativeJudge gives each judgement alone."""
    ck = tmp_path / kind
    ck.mkdir()
    JudgeConfig(kind=kind, base_model=str(tiny_model_dir)).save(ck)
    scorer = load_scorer(kind, checkpoint=ck)
    rows = _rows(2)
    with judge_weights(scorer):
        packed, dropped = score_judgements(scorer.model, scorer.tokenizer, scorer.config, rows, kind, max_length=4096)
    assert dropped == 0
    n = 0
    for g in judge_units(rows, kind):
        session = scorer.session(normalize_messages(g.messages), plan_for({"tools": g.tools}), Compute())
        for ctx, judged, ok in g.units:
            alone = session.score([(ctx, judged)])[0]
            assert packed[(g.id, judged.text)][0] == pytest.approx(alone, abs=1e-5)
            assert packed[(g.id, judged.text)][1] == int(ok)
            n += 1
    assert n == len(packed) > 0


def test_long_groups_are_split_and_keep_their_scores(tiny):
    model, tok = tiny
    fmt = JudgeFormat(JudgeConfig(kind="toolprm"), tok)
    group = judge_units(_rows(1), "toolprm")[0]
    whole, _ = pack_group(group, fmt, max_length=100_000)
    assert len(whole) == 1
    prompt_len = len(fmt.encode(fmt.prompt(group.messages, group.tools)))
    parts, dropped = pack_group(group, fmt, max_length=prompt_len + 120)
    assert len(parts) > 1 and dropped == 0
    assert all(len(p) <= prompt_len + 120 for p in parts)
    assert sorted(k for p in parts for k in p.keys) == sorted(whole[0].keys)

    def scores(items):
        out = {}
        with torch.no_grad():
            for p in items:
                batch = collate([{"packed": p, "label_ids": fmt.label_ids, "pad_id": 0}])
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]).logits[0]
                for key, pos in zip(p.keys, p.label_positions):
                    out[key] = logits[pos, fmt.label_ids].softmax(-1)[0].item()
        return out

    a, b = scores(whole), scores(parts)
    assert a.keys() == b.keys()
    assert all(abs(a[k] - b[k]) < 1e-5 for k in a)
    # a judgement that cannot fit even alone is dropped, not truncated
    none, dropped = pack_group(group, fmt, max_length=prompt_len + 5)
    assert none == [] and dropped == len(group.units)


def test_batches_of_several_sequences_are_padded_safely(tiny):
    model, tok = tiny
    fmt = JudgeFormat(JudgeConfig(kind="toolprm"), tok)
    items = [pack_group(g, fmt)[0][0] for g in judge_units(_rows(3), "toolprm")]
    batch = collate([{"packed": p, "label_ids": fmt.label_ids, "pad_id": 2} for p in items])
    single = [collate([{"packed": p, "label_ids": fmt.label_ids, "pad_id": 2}]) for p in items]
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]).logits
        for b, s in enumerate(single):
            alone = model(input_ids=s["input_ids"], attention_mask=s["attention_mask"], position_ids=s["position_ids"]).logits[0]
            n = alone.shape[0]
            assert torch.isfinite(together[b]).all()
            assert torch.allclose(together[b, :n], alone, atol=1e-4)


def test_training_lowers_the_loss_and_saves_a_loadable_adapter(tiny_model_dir, tmp_path):
    # the tiny random model's logits are too small for confident +/- over its whole vocabulary:
    # train on the two label logits (loss_type="pair"), the part the scorer reads
    # (lr 5e-3: at 1e-2 the constant-rate run oscillated and missed the bar in some thread counts)
    rows = _rows(4)
    cfg = config_for(
        "toolprm", output_dir=str(tmp_path / "toolprm"), base_model=str(tiny_model_dir), lora_r=8, lora_alpha=16, lora_dropout=0.0,
        loss_type="pair", learning_rate=5e-3, num_train_epochs=10, gradient_accumulation_steps=1, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=1, use_cpu=True, dataloader_pin_memory=False, max_length=4096, seed=0, disable_tqdm=True,
    )
    trainer = build_trainer(cfg, rows)
    before = evaluate_judge(trainer.model, trainer.judge_format.tokenizer, cfg.judge_config(), rows, max_length=4096)
    trainer.train()
    after = evaluate_judge(trainer.model, trainer.judge_format.tokenizer, cfg.judge_config(), rows, max_length=4096)
    assert after["pair_loss"] < before["pair_loss"] - 0.1, (before, after)
    assert after["unit_acc"] > before["unit_acc"] and after["unit_acc"] >= 0.75, (before, after)
    out = save_judge(trainer, cfg, metrics=after, rebuild_command="toolprm-agents train run x")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "toolprm_config.json"]
    conf = json.loads((out / "toolprm_config.json").read_text())
    assert conf["kind"] == "toolprm" and conf["adapter"] is True and conf["trained"] is True
    assert conf["base_model"] == str(tiny_model_dir)
    assert "toolprm-agents train run x" in (out / "README.md").read_text()
    # the core loads it as its ToolPRM scorer and scores what the trainer's model scores
    scorer = load_scorer("toolprm", checkpoint=out)
    with judge_weights(scorer):
        loaded = evaluate_judge(scorer.model, scorer.tokenizer, scorer.config, rows, max_length=4096)
    assert loaded["loss"] == pytest.approx(after["loss"], abs=1e-4)


def test_full_fine_tuning_saves_a_whole_model(tiny_model_dir, tmp_path):
    cfg = config_for(
        "orm", output_dir=str(tmp_path / "orm"), base_model=str(tiny_model_dir), use_lora=False, learning_rate=1e-3,
        num_train_epochs=1, use_cpu=True, dataloader_pin_memory=False, max_length=4096, disable_tqdm=True,
    )
    trainer = build_trainer(cfg, _rows(2))
    trainer.train()
    out = save_judge(trainer, cfg)
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not list(out.glob("*.bin"))
    conf = json.loads((out / "toolprm_config.json").read_text())
    assert conf["adapter"] is False and conf["base_model"] is None
    scorer = load_scorer("orm", checkpoint=out)
    with judge_weights(scorer):
        m = evaluate_judge(scorer.model, scorer.tokenizer, scorer.config, _rows(2), max_length=4096)
    assert m["judgements"] == 8


def test_orm_and_cprm_configs_build(tiny_model_dir, tmp_path):
    rows = _rows(2)
    for kind, unit in (("orm", "answer"), ("cprm", "call")):
        cfg = config_for(kind, output_dir=str(tmp_path / kind), base_model=str(tiny_model_dir), use_cpu=True, max_length=4096)
        assert cfg.unit == unit
        trainer = build_trainer(cfg, rows)
        n_units = sum(len(g.units) for g in judge_units(rows, kind))
        assert trainer.train_dataset.num_judgements == n_units
    with pytest.raises(ValueError):
        config_for("toolprm", output_dir=str(tmp_path), loss_type="nope")


def test_auroc():
    assert auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9], [1, 1, 0]) == 0.0
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    import math

    assert math.isnan(auroc([0.3], [1]))


def test_pairwise_loss_ranks_the_right_sibling_above_the_wrong_one(tiny_model_dir, tmp_path):
    from toolprm_agents.training.trainer import _groups_of, pairwise_loss

    rows = _rows(4)
    cfg = config_for(
        "toolprm", output_dir=str(tmp_path / "pw"), base_model=str(tiny_model_dir), lora_r=8, lora_alpha=16, lora_dropout=0.0,
        loss_type="pairwise", pairwise_weight=1.0, learning_rate=1e-2, num_train_epochs=8, gradient_accumulation_steps=1,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, use_cpu=True, dataloader_pin_memory=False, max_length=4096,
        seed=0, disable_tqdm=True,
    )
    trainer = build_trainer(cfg, rows)
    fmt = trainer.judge_format
    batch = collate([trainer.train_dataset[0]])
    groups = _groups_of(batch)
    labels = batch["labels_binary"][batch["label_positions"] >= 0]
    # siblings are found: the first decision's gold name and the wrong names share the context "["
    sibling_pairs = [(i, j) for i in range(len(groups)) for j in range(len(groups)) if groups[i] == groups[j] and labels[i] == 1 and labels[j] == 0]
    assert sibling_pairs

    def ranking_loss(model):
        model.eval()
        with torch.no_grad():
            logits, _, binary = judgement_logits(model, batch)
        plus, minus = fmt.label_ids
        return float(pairwise_loss(logits[:, plus] - logits[:, minus], binary, groups))

    from toolprm_agents.training.trainer import judgement_logits

    before = ranking_loss(trainer.model)
    trainer.model.train()
    trainer.train()
    after = ranking_loss(trainer.model)
    assert after < before - 0.1, (before, after)
    assert save_judge(trainer, cfg).is_dir() and JudgeConfig.load(tmp_path / "pw").metadata["loss_type"] == "pairwise"
