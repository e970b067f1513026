"""The shipped default judges on the real SmolLM2 (marker smollm2): small, loadable, and scored
by the core exactly as the trainer read them."""

from __future__ import annotations

import json

import pytest

from toolprm_agents.compute import Compute
from toolprm_agents.prompt import normalize_messages
from toolprm_agents.scorers import DEFAULT_CHECKPOINT, load_scorer
from toolprm_agents.training.dataset import build_rows, judge_units
from toolprm_agents.training.rm_eval import judge_weights, score_judgements
from toolprm_agents.search import judge_pairs
from toolprm_agents.training.rollouts import RolloutConfig, answer_from_record, plan_for
from toolprm_agents.training.sources import Example

pytestmark = pytest.mark.smollm2
CHECKPOINTS = DEFAULT_CHECKPOINT.parent


def _rows() -> list[dict]:
    tools = [
        {"name": "getWaterQuality", "description": "Get the water quality of a location", "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "parameter": {"type": "string"}}, "required": ["location"]}},
        {"name": "getCustomsInfo", "description": "Customs information of a shipment", "parameters": {"type": "object", "properties": {"shipment_id": {"type": "string"}}, "required": ["shipment_id"]}},
    ]
    ex = Example("s/0", "test", [{"role": "user", "content": "Tell me the water quality (pH) of the lake."}], tools, [{"name": "getWaterQuality", "arguments": {"location": "lake", "parameter": "pH"}}])
    plan = plan_for(ex, RolloutConfig().limits(1))
    answers = [ex.calls, [{"name": "getWaterQuality", "arguments": {"location": "the sea", "parameter": "pH"}}], [{"name": "getCustomsInfo", "arguments": {"shipment_id": "lake"}}]]
    rec = {"example": ex.to_dict(), "answers": [{"steps": [s.to_dict() for s in plan.answer_from_calls(a).steps], "origin": "sample", "count": 1} for a in answers]}
    return build_rows([rec], test_fraction=0.0)


@pytest.mark.parametrize("kind", ["toolprm", "orm", "cprm"])
def test_default_checkpoint_is_a_small_adapter(kind):
    d = CHECKPOINTS / f"{kind}-smollm2"
    conf = json.loads((d / "toolprm_config.json").read_text())
    assert conf["trained"] and conf["adapter"] and conf["base_model"] == "smollm2"
    assert (d / "adapter_model.safetensors").stat().st_size < 10 * 2**20
    assert not list(d.glob("*.bin"))
    card = (d / "README.md").read_text()
    assert "smollm2" in card and "toolprm-agents train run" in card


@pytest.mark.parametrize("kind", ["toolprm", "cprm", "orm"])
def test_core_scorer_reads_judgements_as_the_trainer_did(kind):
    """Scored along each answer the way a beam search does (each context cached from the
    previous one), the core's scores equal the packed scores the trainer and rm_eval read."""
    from toolprm_agents.judges import packaged_checkpoint

    scorer = load_scorer(kind, checkpoint=packaged_checkpoint(kind, generative=True))  # the generative judges the trainer makes
    rows = _rows()
    with judge_weights(scorer):
        packed, _ = score_judgements(scorer.model, scorer.tokenizer, scorer.config, rows, kind)
    unit = {"toolprm": "step", "cprm": "call", "orm": "answer"}[kind]
    (g,) = judge_units(rows, kind)
    plan = plan_for({"tools": g.tools})
    for r in rows:  # one session per answer, its units in order, as a beam search meets them
        session = scorer.session(normalize_messages(g.messages), plan, Compute())
        for ctx, judged in judge_pairs(answer_from_record(json.loads(r["steps"])), unit):
            s = session.score([(ctx, judged)])[0]
            assert s == pytest.approx(packed[(g.id, judged.text)][0], abs=2e-4), (judged.text, s)
