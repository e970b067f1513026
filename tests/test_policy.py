"""The transformers policy and the KV-cache store, on a tiny random Llama."""

import copy
import json

import pytest
import torch

from toolprm_agents.compute import Compute
from toolprm_agents.context import ContextStore, PromptTooLongError
from toolprm_agents.models import load_causal_lm
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.schema import to_tool_specs, validate_call
from toolprm_agents.steps import PlanLimits, StepKind, StepPlan

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city", "days"],
        },
    },
    {
        "name": "add",
        "description": "Add numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]},
    },
]
MESSAGES = [{"role": "user", "content": "What is the weather in Paris for 3 days?"}]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return TransformersPolicy(str(tiny_model_dir), max_step_tokens=24)


@pytest.fixture
def plan():
    return StepPlan(to_tool_specs(TOOLS), PlanLimits(max_string_length=10, max_array_items=3, max_calls=3))


def run_to_end(session, plan, temperature):
    answer = plan.complete_forced(plan.start())
    while not answer.done:
        cands = session.propose(answer, 1, temperature)
        assert cands, "a step was dropped"
        answer = plan.complete_forced(answer.extend(cands[0].step))
    return answer


def test_sampled_answers_are_always_valid(policy, plan):
    """Whatever the (random) model samples, every answer parses and validates."""
    for seed in range(6):
        session = policy.session(MESSAGES, plan, Compute(), seed=seed)
        answer = run_to_end(session, plan, temperature=1.5)
        parsed = json.loads(answer.text)
        assert parsed == [c.to_dict() for c in answer.calls]
        for call in answer.calls:
            assert validate_call(plan.by_name[call.name], call.arguments) == []


def test_candidates_are_distinct_and_counted(policy, plan):
    session = policy.session(MESSAGES, plan, Compute(), seed=0)
    cands = session.propose(plan.start(), 16, temperature=2.0)
    texts = [c.step.text for c in cands]
    assert len(texts) == len(set(texts))
    assert sum(c.count for c in cands) == 16
    assert all(c.num_tokens > 0 and c.logprob <= 0 for c in cands)


def test_same_seed_same_candidates(policy, plan):
    a = policy.session(MESSAGES, plan, Compute(), seed=7)
    b = policy.session(MESSAGES, plan, Compute(), seed=7)
    assert run_to_end(a, plan, 1.0).text == run_to_end(b, plan, 1.0).text


def test_greedy_gives_one_candidate_and_forced_steps_cost_nothing(policy, plan):
    compute = Compute()
    session = policy.session(MESSAGES, plan, compute, seed=0)
    assert len(session.propose(plan.start(), 8, temperature=0)) == 1
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "add"'))
    a = a.extend(plan.parse(a, '"a": 1')).extend(plan.parse(a.extend(plan.parse(a, '"a": 1')), ', "b": 2'))
    passes = compute.forward_passes
    (only,) = session.propose(a, 8, temperature=1.0)  # all arguments given: PARAM_FINISH is forced
    assert only.step.kind is StepKind.PARAM_FINISH and only.step.forced
    assert compute.forward_passes == passes


def test_jump_forward_text_is_not_sampled(policy, plan):
    """With one alternative left, its lead is read, not generated."""
    compute = Compute()
    session = policy.session(MESSAGES, plan, compute, seed=0)
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "add"'))
    a = a.extend(plan.parse(a, '"a": 1'))
    (cand,) = session.propose(a, 1, temperature=0)
    assert cand.step.text.startswith(', "b": ')
    # only the number (and its end) was generated, not the ', "b": ' lead
    assert cand.num_tokens <= len(policy.tokenizer(cand.step.text[len(', "b": '):])["input_ids"]) + 1


def test_numbers_end_where_the_next_step_begins(policy, plan):
    session = policy.session(MESSAGES, plan, Compute(), seed=3)
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "add"'))
    for cand in session.propose(a, 12, temperature=1.0):
        assert cand.step.kind is StepKind.ARG
        assert isinstance(cand.step.value, (int, float))
        assert not cand.step.text.rstrip().endswith((",", "}"))


def test_step_bound_ends_numbers_and_closes_strings(tiny_model_dir, plan):
    policy = TransformersPolicy(str(tiny_model_dir), max_step_tokens=3, closing_tokens=4)
    compute = Compute()
    session = policy.session(MESSAGES, plan, compute, seed=0)
    a = plan.start().extend(plan.parse(plan.start(), '{"name": "add"'))
    cands = session.propose(a, 8, temperature=1.0)
    for c in cands:  # a number past the bound ends as soon as it may
        assert c.step.kind is StepKind.ARG and c.num_tokens <= 3 + 4
    assert compute.candidates_dropped + sum(c.count for c in cands) == 8
    tag = {"name": "tag", "parameters": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}, "required": ["tags"]}}
    plan2 = StepPlan(to_tool_specs([tag]), PlanLimits(max_string_length=10, max_array_items=3))
    session = policy.session(MESSAGES, plan2, compute, seed=0)
    a = plan2.start().extend(plan2.parse(plan2.start(), '{"name": "tag"'))
    tags = session.propose(a, 16, temperature=1.5)
    assert tags, "arrays of strings past the bound are closed, not all dropped"
    for c in tags:  # closed with '"' and ']' after the bound
        assert c.num_tokens <= 3 + 4 and isinstance(c.step.value, list)


def test_kv_reuse_matches_a_fresh_forward(tiny_model_dir):
    model, tok = load_causal_lm(str(tiny_model_dir))
    prompt = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    store = ContextStore(model, tok, prompt, Compute())
    first = store.get('[{"name": ')
    ctx = store.get('[{"name": "add", "arguments": {')  # extends the stored prefix
    ids = tok(prompt, add_special_tokens=False)["input_ids"] + tok('[{"name": ', add_special_tokens=False)["input_ids"]
    ids += tok('"add", "arguments": {', add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        full = model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert ctx.length == len(ids)
    torch.testing.assert_close(ctx.logits, full, atol=1e-4, rtol=1e-4)
    assert store.get('[{"name": ') is first, "a stored context is reused, not recomputed"


def test_fork_does_not_change_the_stored_context(tiny_model_dir):
    model, tok = load_causal_lm(str(tiny_model_dir))
    store = ContextStore(model, tok, "hello", Compute())
    before = copy.deepcopy(store.root.cache)
    forked = store.fork(store.root, 4)
    forked.batch_select_indices(torch.tensor([0]))
    torch.testing.assert_close(store.root.cache.layers[0].keys, before.layers[0].keys)
    assert store.root.cache.layers[0].keys.shape[0] == 1


def test_prompt_longer_than_the_context_window(tiny_model_dir):
    model, tok = load_causal_lm(str(tiny_model_dir))
    with pytest.raises(PromptTooLongError, match="context window of 2048"):
        ContextStore(model, tok, "word " * 3000, Compute())


def test_policy_prompt_renders_tools_and_conversation(policy, plan):
    text = policy.prompt_text(MESSAGES, plan)
    assert '"name": "get_weather"' in text and "Paris for 3 days" in text
    assert text.endswith("<|im_start|>assistant\n")
