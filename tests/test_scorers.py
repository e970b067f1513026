"""Judges (ToolPRM, ORM, C-PRM) and the likelihood scorer, on a tiny random Llama."""

import json

import pytest
import torch

from toolprm_agents.compute import Compute
from toolprm_agents.models import load_causal_lm
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.schema import to_tool_specs
from toolprm_agents.scorers import (
    CONFIG_NAME,
    CoarsePRM,
    JudgeConfig,
    LikelihoodScorer,
    OutcomeRM,
    ScorerError,
    ToolPRM,
    is_judge_point,
    load_scorer,
)
from toolprm_agents.search import judge_pairs
from toolprm_agents.steps import Call, PartialAnswer, StepPlan

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]},
    }
]
MESSAGES = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


@pytest.fixture
def plan():
    return StepPlan(to_tool_specs(TOOLS))


def children(plan):
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "get_weather"'))
    texts = ['"city": "Oslo"', '"city": "Paris, France"', '"days": 3', '"city": "O"']
    return a, [a.extend(plan.parse(a, t)) for t in texts]


def test_batched_scores_equal_one_at_a_time(tiny, plan):
    """Right-padded rows over a shared cache give each row's own score."""
    prm = ToolPRM(model=tiny, config=JudgeConfig())
    parent, kids = children(plan)
    batch = prm.session(MESSAGES, plan, Compute()).score([(parent, k) for k in kids])
    single = [prm.session(MESSAGES, plan, Compute()).score([(parent, k)])[0] for k in kids]
    assert batch == pytest.approx(single, abs=1e-5)
    assert all(0.0 < s < 1.0 for s in batch)
    assert len(set(round(s, 6) for s in batch)) > 1, "different steps get different scores"


def test_judge_score_is_the_plus_minus_softmax(tiny, plan):
    model, tok = tiny
    prm = ToolPRM(model=tiny, config=JudgeConfig())
    parent, kids = children(plan)
    (score,) = prm.session(MESSAGES, plan, Compute()).score([(parent, kids[0])])
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    # the same pieces the store reads: prompt, then the beam's text, then the candidate row
    ids = enc(prm.prompt_format.render(tok, MESSAGES, plan.tools)) + enc(parent.text)
    ids += enc(kids[0].text[len(parent.text):] + prm.suffix(kids[0]))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    plus, minus = tok("+", add_special_tokens=False)["input_ids"][0], tok("-", add_special_tokens=False)["input_ids"][0]
    expected = torch.softmax(logits[[plus, minus]], -1)[0].item()
    assert score == pytest.approx(expected, abs=1e-4)


def test_judge_shares_the_policy_kv_cache(tiny, plan):
    policy = TransformersPolicy(tiny)
    prm = ToolPRM(model=tiny, config=JudgeConfig())
    compute = Compute()
    ps = policy.session(MESSAGES, plan, compute)
    js = prm.session(MESSAGES, plan, compute, policy_session=ps)
    assert js.store is ps.store
    parent, kids = children(plan)
    js.score([(parent, k) for k in kids])
    assert compute.scorer_calls == 4 and compute.scorer_forward_passes == 1


def test_likelihood_prefers_what_the_policy_generates(tiny, plan):
    policy = TransformersPolicy(tiny)
    compute = Compute()
    ps = policy.session(MESSAGES, plan, compute, seed=0)
    parent = plan.start()
    greedy = ps.propose(parent, 1, temperature=0)[0]
    mine = plan.complete_forced(parent.extend(greedy.step))
    scores = LikelihoodScorer().session(MESSAGES, plan, compute, policy_session=ps).score(
        [(parent, mine), (parent, parent.extend(plan.parse(parent, "]")))]
    )
    assert all(0 < s <= 1 for s in scores)
    with pytest.raises(ScorerError, match="policy session"):
        LikelihoodScorer().session(MESSAGES, plan, compute)


def test_judge_points_by_granularity(plan):
    answer = plan.answer_from_calls([Call("get_weather", {"city": "Oslo", "days": 2}), Call("get_weather", {"city": "Rome"})])
    steps = judge_pairs(answer, "step")
    # the second ARG of the first call makes PARAM_FINISH and FUNC_FINISH forced: judged after them
    assert [p[1].steps[-1].kind.value for p in steps] == [
        "FUNC_NAME", "ARG", "FUNC_FINISH", "FUNC_NAME", "ARG", "FUNC_FINISH", "TOTAL_FINISH",
    ]
    assert all(b.text.startswith(a.text) for a, b in steps)
    calls = judge_pairs(answer, "call")
    assert [p[1].steps[-1].kind.value for p in calls] == ["FUNC_FINISH", "FUNC_FINISH", "TOTAL_FINISH"]
    (outcome,) = judge_pairs(answer, "answer")
    assert outcome == (PartialAnswer(), answer)
    assert not is_judge_point(PartialAnswer(), "step")


def test_checkpoint_loading_and_errors(tmp_path, tiny):
    with pytest.raises(ScorerError, match=CONFIG_NAME):
        ToolPRM(tmp_path)
    JudgeConfig(kind="orm").save(tmp_path)
    with pytest.raises(ScorerError, match="'orm' judge, not a 'toolprm'"):
        ToolPRM(tmp_path, model=tiny)
    orm = OutcomeRM(tmp_path, model=tiny)
    assert orm.granularity == "answer"
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ScorerError, match="not a valid judge config"):
        JudgeConfig.load(tmp_path)
    with pytest.raises(ScorerError, match="one token"):
        CoarsePRM(model=tiny, config=JudgeConfig(kind="cprm", label_tokens=("yes indeed", "no")))
    with pytest.raises(ScorerError, match="unknown scorer"):
        load_scorer("bogus")


def test_packaged_checkpoints_parse():
    for name in ("toolprm", "orm", "cprm"):
        from toolprm_agents.scorers import DEFAULT_CHECKPOINT

        cfg = JudgeConfig.load(DEFAULT_CHECKPOINT.parent / f"{name}-smollm2")
        assert cfg.kind == name and cfg.label_tokens == ("+", "-")
        json.dumps(cfg.metadata)


def test_adapter_judge_shares_the_base_and_switches_on_only_to_score(tmp_path, tiny_model_dir, tiny, plan):
    """Design lead 2: the PRM as a LoRA adapter over the policy's own base weights."""
    from peft import LoraConfig, get_peft_model

    private, tok = load_causal_lm(str(tiny_model_dir), shared=False)
    lora = get_peft_model(private, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path)
    JudgeConfig(kind="toolprm", base_model=str(tiny_model_dir), adapter=True).save(tmp_path)

    policy = TransformersPolicy(str(tiny_model_dir))
    prompt = torch.tensor([tok("hello there", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        before = policy.model(input_ids=prompt).logits
    prm = ToolPRM(tmp_path)
    assert prm.model is policy.model and prm.lock is policy.lock, "one copy of the base weights, one lock"
    with torch.inference_mode():
        after = policy.model(input_ids=prompt).logits
        with prm.active():
            judged = policy.model(input_ids=prompt).logits
    torch.testing.assert_close(after, before)  # the adapter is off outside scoring
    assert not torch.allclose(judged, before), "the adapter changes the judge's forward pass"

    base_prm = ToolPRM(model=(policy.model, policy.tokenizer), config=JudgeConfig())
    compute = Compute()
    ps = policy.session(MESSAGES, plan, compute)
    parent, kids = children(plan)
    with_adapter = prm.session(MESSAGES, plan, compute, policy_session=ps)
    assert with_adapter.store is not ps.store, "adapter-on KV differs: the judge keeps its own cache"
    s_adapter = with_adapter.score([(parent, k) for k in kids])
    s_base = base_prm.session(MESSAGES, plan, Compute(), policy_session=ps).score([(parent, k) for k in kids])
    assert s_adapter != pytest.approx(s_base, abs=1e-4)
    # still switched off afterwards: the policy's next-token logits are the base model's
    with torch.inference_mode():
        torch.testing.assert_close(policy.model(input_ids=prompt).logits, before)
