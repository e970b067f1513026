"""Backends without vLLM: spec parsing, step requests (jump, grammar, follow), and the
OpenAI-server backends against a fake /v1/completions server on 127.0.0.1 (stdlib http.server).

The fake server's "model" follows the request's grammar with a character vocabulary
(xgrammar), so whole searches run through it; scripted answers test errors and retries.
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import xgrammar as xgr

from toolprm_agents.backends import BackendError, backend_of, load_judge, load_policy
from toolprm_agents.backends.openai_server import (
    CompletionsClient,
    OpenAIServerJudge,
    OpenAIServerPolicy,
    ServerTimeoutError,
    ServerUnavailableError,
    StructuredOutputsError,
)
from toolprm_agents.backends.steps import StepRequestBuilder, may_be_number, value_derivative
from toolprm_agents.compute import Compute
from toolprm_agents.grammar import decision_grammar
from toolprm_agents.schema import to_tool_specs
from toolprm_agents.scorers import ScorerError
from toolprm_agents.search import SearchConfig, ToolPRMSearch
from toolprm_agents.steps import StepPlan

CHARS = ["<stop>"] + [chr(i) for i in range(32, 127)]
_INFO = xgr.TokenizerInfo(CHARS, stop_token_ids=[0])
_COMPILER = xgr.GrammarCompiler(_INFO, max_threads=1)

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
    {
        "name": "scale",
        "description": "Scale a number.",
        "parameters": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
    },
    {
        "name": "tag",
        "description": "Tag items.",
        "parameters": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
                "mode": {"type": "string", "enum": ["fast"]},
                "opts": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 4}}, "required": ["a", "b"]},
            },
            "required": ["items", "mode", "opts"],
        },
    },
]


def _accepts(grammar_text: str, text: str) -> bool:
    m = xgr.GrammarMatcher(_COMPILER.compile_grammar(xgr.Grammar.from_ebnf(grammar_text)))
    return m.accept_string(text) and m.accept_token(0)


def _gen_text(plan, calls):
    """(answer before, generated text, step) for every model-made step writing ``calls``."""
    full = plan.answer_from_calls(calls)
    answer, out = plan.start(), []
    for step in full.steps:
        if not step.forced:
            decision = plan.decision(answer)
            alt = next(a for a in decision.alternatives if step.text.startswith(a.lead) and (a.value_schema is not None or step.text == a.lead + a.tail))
            out.append((answer, step.text[: len(step.text) - len(alt.tail)] if alt.tail else step.text, step))
        answer = answer.extend(step)
    return out


CALLS = [
    [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "unit": "celsius"}}, {"name": "scale", "arguments": {"x": -2.5}}],
    [{"name": "tag", "arguments": {"items": ["a", "bc"], "mode": "fast", "opts": {"a": 1, "b": "x"}}}],
    [{"name": "get_weather", "arguments": {"days": 10, "city": "Oslo"}}],
    [],
]


# ------------------------------------------------------------------------------------------
# specs and factories


def test_backend_of_specs(tmp_path):
    assert backend_of(None) == ("transformers", None)
    assert backend_of("smollm2") == ("transformers", "smollm2")
    assert backend_of(tmp_path) == ("transformers", tmp_path)
    assert backend_of("vllm") == ("vllm", None)
    assert backend_of("vllm:") == ("vllm", None)
    assert backend_of("vllm:/models/x") == ("vllm", "/models/x")
    assert backend_of("http://127.0.0.1:8000/v1") == ("openai", "http://127.0.0.1:8000/v1")
    assert backend_of("https://lb.example/v1") == ("openai", "https://lb.example/v1")
    with pytest.raises(ValueError, match="URL"):
        backend_of("openai:foo")


def test_load_policy_and_judge_transformers(tiny_model_dir):
    from toolprm_agents.policy import TransformersPolicy
    from toolprm_agents.scorers import LikelihoodScorer

    policy = load_policy(str(tiny_model_dir))
    assert isinstance(policy, TransformersPolicy)
    assert load_policy(policy) is policy
    assert isinstance(load_judge(None, "likelihood", policy=policy), LikelihoodScorer)


def test_load_policy_vllm_without_vllm(tiny_model_dir, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_vllm(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and (name == "vllm" or name.startswith("vllm.")):
            raise ImportError("No module named 'vllm'")
        return real(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(BackendError, match="setup-vllm.sh"):
        load_policy(f"vllm:{tiny_model_dir}")


def test_load_server_backends_lazily():
    # nothing is contacted until a search starts
    policy = load_policy("http://127.0.0.1:9/v1", retries=0)
    assert isinstance(policy, OpenAIServerPolicy)
    judge = load_judge("http://127.0.0.1:9/v1", "cprm", policy=policy, retries=0)
    assert isinstance(judge, OpenAIServerJudge) and judge.granularity == "call"
    with pytest.raises(ScorerError, match="likelihood"):
        load_judge(None, "likelihood", policy=policy)


def test_served_model_name_in_the_url(server, tiny_model_dir):
    judge = load_judge(server.url + "#toolprm-lora", "toolprm", tokenizer=str(tiny_model_dir))
    policy = load_policy(server.url + "#base", tokenizer=str(tiny_model_dir))
    assert judge.base_url == policy.base_url == server.url
    plan = StepPlan(to_tool_specs(TOOLS))
    a0 = plan.start()
    judge.session([{"role": "user", "content": "q"}], plan, Compute()).score([(a0, a0.extend(plan.parse(a0, "]")))])
    policy.session([{"role": "user", "content": "q"}], plan, Compute()).propose(a0, 2, 1.0)
    assert [r["model"] for r in server.requests] == ["toolprm-lora", "base"]


def test_cli_build_search_picks_backends():
    import argparse

    from toolprm_agents.cli import add_search_options, build_search

    p = argparse.ArgumentParser()
    add_search_options(p)
    args = p.parse_args(["--policy", "http://127.0.0.1:9/v1", "--prm", "http://127.0.0.1:9/v1", "--scorer", "orm"])
    search = build_search(args)
    assert isinstance(search.policy, OpenAIServerPolicy)
    assert isinstance(search.scorer, OpenAIServerJudge) and search.scorer.name == "orm"


# ------------------------------------------------------------------------------------------
# step requests


@pytest.mark.parametrize("calls", CALLS)
def test_step_requests_match_the_decision_grammar(calls):
    """jump = xgrammar's jump-forward text; jump + generated (+ a follow char for numbers) is the step."""
    plan = StepPlan(to_tool_specs(TOOLS))
    builder = StepRequestBuilder()
    for answer, text, step in _gen_text(plan, calls):
        decision = plan.decision(answer)
        req = builder.request(plan, answer)
        full = xgr.GrammarMatcher(_COMPILER.compile_grammar(decision_grammar(decision)))
        assert req.jump == full.find_jump_forward_string()
        assert text.startswith(req.jump)
        rest = text[len(req.jump):]
        if req.complete is not None:
            assert req.complete == text
            continue
        # every value (and a function name) must be followed by the next step's first character,
        # so the model's merged closing tokens (", "}) are allowed; finish() strips it
        follows = ",}" if step.arg is not None else ("," if step.kind.value == "FUNC_NAME" else "")
        if follows:
            assert set(follows) <= set(req.follow)
            assert not _accepts(req.grammar, rest)  # the end must be followed
            for c in follows:
                assert _accepts(req.grammar, rest + c)
                assert req.finish(plan, answer, rest + c) == step
        else:
            assert _accepts(req.grammar, rest)
            assert not _accepts(req.grammar, rest + ",")
            assert req.finish(plan, answer, rest) == step


def test_single_enum_value_needs_no_request():
    plan = StepPlan(to_tool_specs([{"name": "f", "parameters": {"type": "object", "properties": {"m": {"type": "string", "enum": ["only"]}}, "required": ["m"]}}]))
    answer = plan.start()
    answer = answer.extend(plan.parse(answer, '{"name": "f"'))
    req = StepRequestBuilder().request(plan, answer)
    assert req.grammar is None and req.complete == '"m": "only"'


def test_value_derivative():
    ebnf = 'root ::= (("\\"" root_characters{0, 5} "\\""))\nroot_characters ::= (([a-z]))'
    out = value_derivative(ebnf, '"')
    assert out.splitlines()[0] == 'root ::= ((root_characters{0, 5} "\\""))'
    assert value_derivative('root ::= (("\\"cel\\"") | ("\\"cab\\""))', '"c').startswith('root ::= (("el\\"") | ("ab\\""))')
    assert value_derivative("root ::= ((basic_integer))\nbasic_integer ::= (([0-9]))", "1") is None  # not a literal: no jump
    assert value_derivative('root ::= (("ab"))', "") == 'root ::= (("ab"))'


def test_may_be_number():
    assert may_be_number({"type": "integer"}) and may_be_number({"type": ["string", "number"]})
    assert may_be_number({}) and may_be_number({"anyOf": [{"type": "string"}, {"type": "number"}]})
    assert may_be_number({"enum": [1, 2]}) and not may_be_number({"enum": ["a"]})
    assert not may_be_number({"type": "string"}) and not may_be_number({"type": "boolean"})
    assert not may_be_number({"type": "array"}) and not may_be_number(None)


# ------------------------------------------------------------------------------------------
# a fake OpenAI-compatible server


class FakeServer:
    """/v1/models and /v1/completions on 127.0.0.1; ``handler(payload) -> (status, body)`` answers completions.

    The default handler is a grammar-following random "model" over a character vocabulary:
    it samples each choice under the request's grammar, ending as soon as it may with
    probability 0.5, and answers judge requests with fixed label log-probabilities.
    """

    def __init__(self, handler=None, *, model_id="fake-model"):
        self.requests: list[dict] = []
        self.handler = handler or self.grammar_model
        self.model_id = model_id
        self.rng = random.Random(0)
        server = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model_id, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(payload)
                status, body = server.handler(payload)
                self._send(status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def grammar_model(self, payload):
        if "logprob_token_ids" in payload or payload.get("max_tokens") == 1:
            return 200, judge_answer(payload, [-0.5, -1.5])
        choices = []
        for i in range(payload["n"]):
            m = xgr.GrammarMatcher(_COMPILER.compile_grammar(xgr.Grammar.from_ebnf(payload["structured_outputs"]["grammar"])))
            mask = xgr.allocate_token_bitmask(1, len(CHARS))
            text, reason = "", "length"
            for _ in range(payload["max_tokens"]):
                m.fill_next_token_bitmask(mask)
                allowed = [t for t in range(len(CHARS)) if (int(mask[0, t // 32]) >> (t % 32)) & 1]
                if 0 in allowed and (allowed == [0] or self.rng.random() < 0.5):
                    reason = "stop"
                    break
                tok = self.rng.choice([t for t in allowed if t != 0])
                assert m.accept_token(tok)
                text += CHARS[tok]
            choices.append({"index": i, "text": text, "finish_reason": reason, "logprobs": {"token_logprobs": [-0.1] * (len(text) + 1)}})
        return 200, {"choices": choices, "usage": {"prompt_tokens": len(payload["prompt"]), "completion_tokens": 5 * payload["n"]}}


def judge_answer(payload, lps):
    plus, minus = payload.get("logprob_token_ids") or (None, None)
    choices = []
    for i, _ in enumerate(payload["prompt"]):
        top = {f"token_id:{plus}": lps[0], f"token_id:{minus}": lps[1]} if plus is not None else {"+": lps[0], "-": lps[1], "x": -0.1}
        choices.append({"index": i, "text": "+", "finish_reason": "length", "logprobs": {"top_logprobs": [top], "token_logprobs": [lps[0]]}})
    return {"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": len(choices)}}


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(url, tiny_model_dir, tools=TOOLS, **kw):
    policy = OpenAIServerPolicy(url, tokenizer=str(tiny_model_dir), **kw)
    plan = StepPlan(to_tool_specs(tools))
    compute = Compute()
    return policy, plan, policy.session([{"role": "user", "content": "Weather in Paris?"}], plan, compute, seed=3), compute


def test_policy_request_payload(server, tiny_model_dir):
    policy, plan, session, compute = _session(server.url, tiny_model_dir)
    answer = plan.start()
    cands = session.propose(answer, n=6, temperature=0.7)
    req = server.requests[-1]
    assert req["model"] == "fake-model" and req["n"] == 6 and req["temperature"] == 0.7
    assert req["max_tokens"] == policy.max_step_tokens + policy.closing_tokens
    assert isinstance(req["seed"], int) and req["add_special_tokens"] is False
    assert "root ::=" in req["structured_outputs"]["grammar"]
    tok = policy.tokenizer
    prompt_ids = tok(policy.prompt_format.render(tok, [{"role": "user", "content": "Weather in Paris?"}], plan.tools), add_special_tokens=False)["input_ids"]
    assert req["prompt"] == prompt_ids + tok("[", add_special_tokens=False)["input_ids"]
    assert 1 <= len(cands) <= 6 and sum(c.count for c in cands) == 6
    assert len({c.step.text for c in cands}) == len(cands)
    assert compute.tokens_generated == 30 and compute.prefill_tokens == len(req["prompt"])
    # greedy: one candidate at temperature 0, no seed
    session.propose(answer, n=8, temperature=0)
    assert server.requests[-1]["n"] == 1 and server.requests[-1]["temperature"] == 0 and "seed" not in server.requests[-1]


def test_policy_jump_is_in_the_prompt_and_number_follow_is_stripped(tiny_model_dir):
    def handler(payload):
        return 200, {"choices": [{"index": 0, "text": "12,", "finish_reason": "stop"}, {"index": 1, "text": "12}", "finish_reason": "stop"},
                                 {"index": 2, "text": "7}", "finish_reason": "stop"}]}

    s = FakeServer(handler)
    try:
        policy, plan, session, _ = _session(s.url, tiny_model_dir)
        answer = plan.start()
        answer = answer.extend(plan.parse(answer, '{"name": "scale"'))
        cands = session.propose(plan.complete_forced(answer), n=3, temperature=1.0)
        tok = policy.tokenizer
        assert tok.decode(s.requests[-1]["prompt"]).endswith('[{"name": "scale", "arguments": {"x": ')
        assert [(c.step.value, c.count) for c in cands] == [(12, 2), (7, 1)]
        assert cands[0].step.text == '"x": 12'
    finally:
        s.close()


def test_policy_drops_length_cut_values(tiny_model_dir):
    def handler(payload):
        return 200, {"choices": [{"index": 0, "text": 'city": "Par', "finish_reason": "length"}, {"index": 1, "text": 'city": "Rome"', "finish_reason": "stop"}]}

    s = FakeServer(handler)
    try:
        _, plan, session, compute = _session(s.url, tiny_model_dir)
        answer = plan.start()
        answer = plan.complete_forced(answer.extend(plan.parse(answer, '{"name": "get_weather"')))
        cands = session.propose(answer, n=2, temperature=1.0)
        assert [c.step.value for c in cands] == ["Rome"] and compute.candidates_dropped == 1
    finally:
        s.close()


def test_search_through_the_fake_server(server, tiny_model_dir):
    policy = OpenAIServerPolicy(server.url, tokenizer=str(tiny_model_dir))
    judge = OpenAIServerJudge(server.url, kind="toolprm", tokenizer=str(tiny_model_dir))
    configs = (SearchConfig(strategy="greedy"), SearchConfig(beams=2, expand=4, seed=1, rank="prm"),
               SearchConfig(strategy="best_of_n", beams=3), SearchConfig(beams=2, expand=4, seed=1, gate=1.0))
    for cfg in configs:
        result = ToolPRMSearch(policy, judge, cfg).search("Weather in Paris?", TOOLS)
        assert result.complete, result.error
        for call in result.tool_calls():  # valid calls whatever the random "model" chose
            assert call["name"] in {t["name"] for t in TOOLS}
        if cfg.strategy == "greedy":
            continue
        if cfg.rank == "prm" or cfg.strategy == "best_of_n":  # the judge's score ranks
            assert result.compute.scorer_calls > 0
            assert result.score == pytest.approx(1 / (1 + math.exp(-1.0)))
        else:  # combined: the chosen answer's share of the weighted vote
            assert 0 < result.score <= 1 and result.alternatives[0]["score"] == result.score


def test_text_prompts_without_a_tokenizer(server):
    policy = OpenAIServerPolicy(server.url)  # "fake-model" is not a local path: ChatML text prompts
    result = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy")).search("hi", TOOLS)
    assert result.complete
    prompt = server.requests[0]["prompt"]
    assert isinstance(prompt, str) and prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n[")


def test_judge_request_and_scores(server, tiny_model_dir):
    judge = OpenAIServerJudge(server.url, kind="toolprm", tokenizer=str(tiny_model_dir))
    plan = StepPlan(to_tool_specs(TOOLS))
    compute = Compute()
    session = judge.session([{"role": "user", "content": "q"}], plan, compute)
    a0 = plan.start()
    kids = [a0.extend(plan.parse(a0, t)) for t in ('{"name": "scale"', "]")]
    scores = session.score([(a0, k) for k in kids])
    req = server.requests[-1]
    plus, minus = judge.spec.label_ids
    assert req["logprob_token_ids"] == [plus, minus] and req["logprobs"] == 2 and req["max_tokens"] == 1
    assert len(req["prompt"]) == 2 and all(isinstance(r, list) for r in req["prompt"])
    assert judge.served.encode(judge.spec.suffix(kids[1])) == req["prompt"][1][-len(judge.served.encode(judge.spec.suffix(kids[1]))):]
    assert scores == pytest.approx([0.7310585786] * 2)
    assert compute.scorer_calls == 2 and compute.scorer_forward_passes == 1


def test_judge_reuses_the_policy_contexts_only_for_the_same_served_model(server, tiny_model_dir):
    policy, plan, ps, _ = _session(server.url, tiny_model_dir)
    shared = ps.shared_context()
    assert shared.weights == (server.url, "fake-model") and shared.cache is ps.contexts
    same = OpenAIServerJudge(server.url, kind="toolprm", tokenizer=str(tiny_model_dir))
    assert same.session([{"role": "user", "content": "Weather in Paris?"}], plan, Compute(), policy_session=ps).contexts is ps.contexts
    adapter = OpenAIServerJudge(server.url, kind="toolprm", model="judge-lora", tokenizer=str(tiny_model_dir))
    assert adapter.session([{"role": "user", "content": "Weather in Paris?"}], plan, Compute(), policy_session=ps).contexts is not ps.contexts
    other_prompt = same.session([{"role": "user", "content": "Weather in Oslo?"}], plan, Compute(), policy_session=ps)
    assert other_prompt.contexts is not ps.contexts


def test_policy_session_reply_is_a_greedy_completion(tiny_model_dir):
    def handler(payload):
        return 200, {"choices": [{"index": 0, "text": " It is sunny. ", "finish_reason": "stop"}], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}

    s = FakeServer(handler)
    try:
        _, _, session, compute = _session(s.url, tiny_model_dir)
        assert session.reply([{"role": "user", "content": "Weather?"}], max_tokens=16) == "It is sunny."
        req = s.requests[-1]
        assert req["temperature"] == 0.0 and req["max_tokens"] == 16 and "structured_outputs" not in req
        assert isinstance(req["prompt"], list) and compute.tokens_generated == 4
    finally:
        s.close()


def test_judge_falls_back_to_top_logprobs(tiny_model_dir):
    def handler(payload):
        if "logprob_token_ids" in payload:
            return 400, {"error": {"message": "Extra inputs are not permitted: logprob_token_ids"}}
        return 200, judge_answer(payload, [-2.0, -0.5])

    s = FakeServer(handler)
    try:
        judge = OpenAIServerJudge(s.url, kind="orm", tokenizer=str(tiny_model_dir))
        plan = StepPlan(to_tool_specs(TOOLS))
        session = judge.session([{"role": "user", "content": "q"}], plan, Compute())
        a0 = plan.start()
        done = a0.extend(plan.parse(a0, "]"))
        assert session.score([(a0, done)]) == pytest.approx([1 / (1 + 2.718281828 ** 1.5)])
        assert s.requests[-1]["logprobs"] == 20 and "logprob_token_ids" not in s.requests[-1]
    finally:
        s.close()


# ------------------------------------------------------------------------------------------
# failures: retries, down, time-out, no structured outputs


def test_retries_with_exponential_backoff(tiny_model_dir):
    calls = {"n": 0}

    def flaky(payload):
        calls["n"] += 1
        if calls["n"] <= 2:
            return 503, {"error": {"message": "overloaded"}}
        return 200, {"choices": [{"index": 0, "text": "]", "finish_reason": "stop"}]}

    s = FakeServer(flaky)
    try:
        slept: list[float] = []
        client = CompletionsClient(s.url, retries=3, backoff=0.5, sleep=slept.append)
        _, plan, session, _ = _session(s.url, tiny_model_dir, client=client)
        cands = session.propose(plan.start(), 1, 0.0)
        assert [c.step.text for c in cands] == ["]"] and calls["n"] == 3
        assert len(slept) == 2 and 0.5 <= slept[0] <= 0.56 and 1.0 <= slept[1] <= 1.11
    finally:
        s.close()


def test_server_down_is_a_clear_error(tiny_model_dir):
    url = f"http://127.0.0.1:{_free_port()}/v1"
    policy = OpenAIServerPolicy(url, model="m", tokenizer=str(tiny_model_dir), retries=2, backoff=0.01)
    plan = StepPlan(to_tool_specs(TOOLS))
    session = policy.session([{"role": "user", "content": "q"}], plan, Compute())
    with pytest.raises(ServerUnavailableError, match=r"failed after 3 tries.*is the server running"):
        session.propose(plan.start(), 2, 1.0)
    with pytest.raises(ServerUnavailableError, match="/models"):
        OpenAIServerPolicy(url, retries=0).session([{"role": "user", "content": "q"}], plan, Compute())


def test_timeout_is_a_clear_error(tiny_model_dir):
    def slow(payload):
        time.sleep(1.0)
        return 200, {"choices": []}

    s = FakeServer(slow)
    try:
        _, plan, session, _ = _session(s.url, tiny_model_dir, timeout=0.2, retries=1, backoff=0.01)
        with pytest.raises(ServerTimeoutError, match=r"no answer within 0.2 s"):
            session.propose(plan.start(), 2, 1.0)
    finally:
        s.close()


def test_server_rejecting_structured_outputs(tiny_model_dir):
    s = FakeServer(lambda p: (400, {"error": {"message": "Unrecognized request argument supplied: structured_outputs"}}))
    try:
        _, plan, session, _ = _session(s.url, tiny_model_dir)
        with pytest.raises(StructuredOutputsError, match="rejected the step grammar.*xgrammar"):
            session.propose(plan.start(), 2, 1.0)
        assert len(s.requests) == 1  # a 400 is not retried
    finally:
        s.close()


def test_server_ignoring_structured_outputs(tiny_model_dir):
    s = FakeServer(lambda p: (200, {"choices": [{"index": 0, "text": "Sure! The weather in Paris is", "finish_reason": "stop"}]}))
    try:
        _, plan, session, _ = _session(s.url, tiny_model_dir)
        with pytest.raises(BackendError, match="ignores structured outputs"):
            session.propose(plan.start(), 1, 0.0)
    finally:
        s.close()


def test_guided_grammar_field_for_old_vllm(server, tiny_model_dir):
    _, plan, session, _ = _session(server.url, tiny_model_dir, grammar_field="guided_grammar")
    server.handler = lambda p: (200, {"choices": [{"index": 0, "text": "]", "finish_reason": "stop"}]})
    session.propose(plan.start(), 1, 0.0)
    req = server.requests[-1]
    assert "root ::=" in req["guided_grammar"] and "structured_outputs" not in req


# ------------------------------------------------------------------------------------------
# starting a local vLLM server (toolprm_agents.backends.serve)


def test_serve_command_matches_what_the_server_backend_needs(tmp_path):
    from toolprm_agents.backends.serve import serve_command

    cmd = serve_command(tmp_path / "model", port=8123, lora={"judge": tmp_path / "ckpt"}, max_lora_rank=8)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == str(tmp_path / "model")
    assert cmd[cmd.index("--port") + 1] == "8123"
    assert json.loads(cmd[cmd.index("--structured-outputs-config") + 1]) == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert cmd[cmd.index("--lora-modules") + 1] == f"judge={tmp_path / 'ckpt'}"
    assert cmd[cmd.index("--max-lora-rank") + 1] == "8" and "--enable-lora" in cmd
    assert "--enable-lora" not in serve_command("m", port=8123)
    with pytest.raises(ValueError, match="port"):
        serve_command("m", port=0)
    with pytest.raises(ValueError, match="LoRA served names"):
        serve_command("m", port=8123, lora={"a#b": "x"})


def test_server_that_exits_is_a_clear_error_with_its_log(tmp_path):
    """A server that cannot start (here: no vllm in this interpreter) fails fast, log tail included."""
    import sys

    from toolprm_agents.backends import BackendError
    from toolprm_agents.backends.serve import ApiServer, ServerStartError

    log = tmp_path / "server.log"
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('cannot serve', sys.argv[1:4])\nsys.exit(3)\n")
    fake.chmod(0o755)
    with pytest.raises(ServerStartError, match=r"exited with 3(.|\n)*cannot serve") as e:  # noticed, not timed out
        ApiServer.start("some-model", log, timeout=60, python=str(fake))
    assert isinstance(e.value, BackendError)
    assert "vllm.entrypoints.openai.api_server" in log.read_text()
