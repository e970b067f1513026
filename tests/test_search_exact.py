"""The search that cannot lose to greedy: exact alternatives, folded step endings, the
combined score, gating, the weighted vote, budgets and the repeated-call rule (tiny model)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from toolprm_agents.compute import Compute
from toolprm_agents.models import load_causal_lm
from toolprm_agents.policy import TransformersPolicy
from toolprm_agents.prompt import normalize_messages
from toolprm_agents.schema import to_tool_specs
from toolprm_agents.scorers import Scorer, ScorerSession
from toolprm_agents.search import SearchError, Beam, SearchConfig, ToolPRMSearch, canonical, weighted_vote
from toolprm_agents.steps import Call, PartialAnswer, StepKind, StepPlan

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "live": {"type": "boolean"},
        },
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "description": "Time in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


class Biased(torch.nn.Module):
    """The tiny model with fixed logit offsets on some tokens: a policy whose preferences a test chooses."""

    def __init__(self, model, bias: dict[int, float]):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.bias = bias

    def forward(self, **kw):
        out = self.inner(**kw)
        for tok, b in self.bias.items():
            out.logits[..., tok] += b
        return out


def token_id(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, ids)
    return ids[0]


def session(policy, tools=(WEATHER, TIME), question="Weather in Paris?"):
    plan = StepPlan(to_tool_specs(list(tools)))
    compute = Compute()
    return plan, policy.session(normalize_messages(question), plan, compute), compute


def brute_force_logprob(policy, sess, answer: PartialAnswer, text: str, tail: str) -> float:
    """log p(text) after the prompt and ``answer``, from one uncached forward over everything."""
    tok = policy.tokenizer
    heal = sess._last_token_text(answer.text)  # the answer's last token is read again with the alternative
    ctx_ids = tok(sess.store.prompt_text, add_special_tokens=False)["input_ids"] + tok(answer.text[: len(answer.text) - len(heal)], add_special_tokens=False)["input_ids"]
    text = heal + text
    enc = tok(text + tail, add_special_tokens=False, return_offsets_mapping=True)
    n = max(1, sum(1 for a, _ in enc["offset_mapping"] if a < len(text)))
    ids = enc["input_ids"][:n]
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([ctx_ids + ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    start = len(ctx_ids) - 1
    total = sum(float(logp[start + k, t]) for k, t in enumerate(ids[:-1]))
    last = logp[start + len(ids) - 1]
    ext = policy.extensions(ids[-1]) if text != "]" else []
    return total + float(torch.logsumexp(last[[ids[-1]] + ext], 0))


def test_exact_alternatives_match_brute_force_scoring(tiny):
    policy = TransformersPolicy(tiny)
    plan, sess, compute = session(policy)
    answer = plan.settle(plan.start())
    # the first decision: two function names or no call
    choices = sess._choices(answer, plan.decision(answer))
    assert {c[1].kind for c in choices} == {StepKind.FUNC_NAME, StepKind.TOTAL_FINISH}
    assert sum(c[3] for c in choices) == pytest.approx(1.0)
    for text, alt, lp, _ in choices:
        want = brute_force_logprob(policy, sess, answer, text, alt.tail)
        assert lp == pytest.approx(want, abs=2e-3), text
    # an argument decision: open "city", listed enum and boolean values
    answer = plan.settle(answer.extend(plan.parse(answer, '{"name": "get_weather"')))
    choices = sess._choices(answer, plan.decision(answer))
    texts = {c[0] for c in choices}
    assert '"unit": "celsius"' in texts and '"unit": "fahrenheit"' in texts and '"live": true' in texts and '"live": false' in texts
    assert None in texts  # "city" is open: only the choice of the argument is scored
    for text, alt, lp, _ in choices:
        scored = text if text is not None else alt.lead.rstrip(" ")
        assert lp == pytest.approx(brute_force_logprob(policy, sess, answer, scored, ""), abs=2e-3), scored
    assert compute.forward_passes >= 2 and compute.decisions == 0  # _choices alone counts no decision


def test_alternative_probabilities_renormalise_where_alternatives_branch(tiny):
    """prob = the policy restricted to the alternatives: at the first token where two names
    differ it is the softmax over those two tokens only, and it sums to 1."""
    policy = TransformersPolicy(tiny)
    plan, sess, _ = session(policy)
    answer = plan.settle(plan.start())
    choices = sess._choices(answer, plan.decision(answer))
    assert sum(c[3] for c in choices) == pytest.approx(1.0)
    assert [c[3] for c in choices] == sorted((c[3] for c in choices), reverse=True)
    tok = policy.tokenizer
    heal = sess._last_token_text(answer.text)
    assert heal == "["
    rows = {c[0]: tok(heal + c[0] + c[1].tail, add_special_tokens=False)["input_ids"] for c in choices}
    # brute force: walk the token trie with one uncached forward per branching point
    ctx_ids = tok(sess.store.prompt_text, add_special_tokens=False)["input_ids"]
    all_rows = list(rows.values())

    def brute(r, fold_last):
        lp = 0.0
        for k, t in enumerate(r):
            kids = {}
            for other, o in zip(rows, all_rows):
                if o[:k] == r[:k] and len(o) > k:
                    kids[o[k]] = kids.get(o[k], False) or (k == len(o) - 1 and other != "]")
            if len(kids) < 2:
                continue
            with torch.no_grad():
                dist = torch.log_softmax(policy.model(input_ids=torch.tensor([ctx_ids + r[:k]])).logits[0, -1].float(), -1)
            vals = {x: torch.logsumexp(dist[[x] + (policy.extensions(x) if f else [])], 0) for x, f in kids.items()}
            lp += float(vals[t] - torch.logsumexp(torch.stack(list(vals.values())), 0))
        return math.exp(lp)

    got = {c[0]: c[3] for c in choices}
    for text, r in rows.items():
        assert got[text] == pytest.approx(brute(r, text != "]"), rel=1e-3, abs=1e-6), text


def test_a_string_ends_where_the_model_writes_a_merged_closing_token(tiny):
    """With the bare quote made unlikely and `",` likely, the value ends at once; masking the
    merged token away (the old grammar) would have run the string to its bound."""
    tok = tiny[1]
    merged, bare = token_id(tok, '",'), token_id(tok, '"')
    policy = TransformersPolicy((Biased(tiny[0], {merged: 25.0, bare: -25.0}), tok), max_step_tokens=24)
    plan, sess, compute = session(policy, tools=(TIME,), question="Time in Paris?")
    answer = plan.settle(plan.start())
    answer = plan.settle(answer.extend(plan.parse(answer, '{"name": "get_time"')))
    cands = sess._sample(answer, 1, 0.0)
    assert len(cands) == 1 and cands[0].step.value == "" and not cands[0].truncated
    # its log-probability holds the merged token's mass: close to log 1
    assert cands[0].logprob > -1.0


def quote_tokens(tok) -> list[int]:
    """Every token that holds a double quote: a string value cannot end without one."""
    return [i for i in range(len(tok)) if '"' in tok.decode([i])]


def test_a_value_cut_at_the_token_bound_is_flagged_and_never_returned_as_complete(tiny):
    tok = tiny[1]
    policy = TransformersPolicy((Biased(tiny[0], {t: -40.0 for t in quote_tokens(tok)}), tok), max_step_tokens=6)
    tools = [{"name": "echo", "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}]
    r = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy", allow_no_call=False)).search("say something long", tools)
    # cut and closed at the bound, or not closable at all: either way no call comes back as complete
    assert not r.complete and r.calls == [] and "bound" in r.error


def test_greedy_takes_the_most_probable_alternative_exactly(tiny):
    policy = TransformersPolicy(tiny)
    plan, sess, _ = session(policy)
    answer = plan.settle(plan.start())
    best = sess._choices(answer, plan.decision(answer))[0]
    r = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy")).search("Weather in Paris?", [WEATHER, TIME])
    assert r.complete
    first = r.answer.steps[0]
    assert first.text.startswith(best[0])  # the exact argmax, not a token-level greedy path


class Adversary(Scorer):
    """A judge that prefers whatever the policy likes least (scores by inverse text length)."""

    granularity = "step"

    def session(self, messages, plan, compute, *, policy_session=None):
        class S(ScorerSession):
            def score(self, pairs):
                compute.scorer_calls += len(pairs)
                return [0.999 if len(c.text) % 2 else 0.001 for _, c in pairs]

        return S()


def test_judge_weight_zero_is_the_policy_ranking(tiny):
    """With the judge's weight at 0 the combined search returns greedy's answer whatever the judge says."""
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    tools = [WEATHER, TIME]
    greedy = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy")).search("Weather in Paris?", tools)
    cfg = SearchConfig(beams=1, expand=4, gate=1.0, judge_weight=0.0, vote_weight=0.0)
    combined = ToolPRMSearch(policy, Adversary(), cfg).search("Weather in Paris?", tools)
    assert combined.complete and combined.calls == greedy.calls
    assert combined.compute.scorer_calls == 0  # a weight of 0 does not even ask the judge


def test_gate_zero_never_branches_and_never_asks_the_judge(tiny):
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    r = ToolPRMSearch(policy, Adversary(), SearchConfig(gate=0.0)).search("Weather in Paris?", [WEATHER, TIME])
    assert r.complete and r.compute.decisions > 0
    assert r.compute.decisions_branched == 0 and r.compute.scorer_calls == 0


def test_gate_one_branches_where_the_policy_is_unsure(tiny):
    tok = tiny[1]
    # the random model is sure of "no call" (one token against eight): make the names the choice
    policy = TransformersPolicy((Biased(tiny[0], {token_id(tok, "]"): -60.0}), tok), max_step_tokens=24)
    r = ToolPRMSearch(policy, Adversary(), SearchConfig(gate=1.0, beams=2, expand=3)).search("Weather in Paris?", [WEATHER, TIME])
    assert r.complete
    branched = [rnd for rnd in r.trace if len(rnd["candidates"]) > 1]
    assert branched and r.compute.decisions_branched >= 1
    assert r.compute.scorer_calls > 0
    assert all(c.get("combined") is not None for rnd in r.trace for c in rnd["candidates"])


def test_weighted_vote_groups_answers_whatever_the_argument_order():
    plan = StepPlan(to_tool_specs([WEATHER]))
    a = plan.answer_from_calls([Call("get_weather", {"city": "Paris", "unit": "celsius"})])
    b = plan.answer_from_calls([Call("get_weather", {"unit": "celsius", "city": "Paris"})])
    c = plan.answer_from_calls([Call("get_weather", {"city": "Rome"})])
    assert canonical(a.calls) == canonical(b.calls) != canonical(c.calls)
    # c alone scores best per decision, but a and b together outweigh it
    beams = [Beam(a, total=-1.2, decisions=4), Beam(b, total=-1.2, decisions=4), Beam(c, total=-0.4, decisions=2)]
    ranked = weighted_vote(beams)
    assert canonical(ranked[0][0].answer.calls) == canonical(a.calls)
    assert sum(share for _, share in ranked) == pytest.approx(1.0) and len(ranked) == 2
    # a truncated answer never wins over a complete one
    beams[0].truncated = beams[1].truncated = True
    assert canonical(weighted_vote(beams)[0][0].answer.calls) == canonical(c.calls)


def test_a_token_budget_stops_the_search_with_the_best_so_far(tiny):
    tok = tiny[1]
    # a value that never wants to end, fifty tools, a greeting
    bias = {t: -40.0 for t in quote_tokens(tok)} | {token_id(tok, "]"): -60.0}
    model = Biased(tiny[0], bias)
    model.config = copy.deepcopy(model.config)
    model.config.max_position_embeddings = 8192  # fifty tools do not fit the tiny model's 2048
    policy = TransformersPolicy((model, tok), max_step_tokens=64)
    tools = [{"name": f"t{i}", "parameters": {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}}
             for i in range(50)]
    cfg = SearchConfig(beams=2, expand=4, gate=1.0, budget_tokens=600, budget_seconds=0, allow_no_call=False)
    r = ToolPRMSearch(policy, Adversary(), cfg).search("Hi! Thanks for the help so far.", tools)
    assert r.budget_exhausted
    prompt = len(tok(policy.prompt_text(normalize_messages("Hi! Thanks for the help so far."), StepPlan(to_tool_specs(tools))),
                     add_special_tokens=False)["input_ids"])
    used = r.compute.tokens_generated + r.compute.prefill_tokens + r.compute.scorer_tokens - prompt
    assert used <= 600 * 1.25 + 64 * 8 * 2  # the budget, its grace for a greedy finish, one decision in flight
    assert r.complete or r.error  # the best-so-far answer, or a clear reason
    for call in r.calls:
        assert call.name.startswith("t")


def test_self_consistency_votes_without_a_judge(tiny):
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    r = ToolPRMSearch(policy, None, SearchConfig(strategy="self_consistency", beams=6, temperature=1.0)).search("Weather in Paris?", [WEATHER, TIME])
    assert r.complete and r.compute.scorer_calls == 0
    shares = [a["score"] for a in r.alternatives]
    assert shares == sorted(shares, reverse=True) and sum(shares) == pytest.approx(1.0)
    assert r.score == shares[0]


def test_no_answer_holds_the_same_call_twice(tiny):
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    for cfg in (SearchConfig(strategy="greedy"), SearchConfig(gate=1.0), SearchConfig(strategy="self_consistency", beams=4)):
        r = ToolPRMSearch(policy, Adversary(), cfg).search("Weather in Paris and Paris and Paris?", [WEATHER])
        keys = [canonical([c]) for c in r.calls]
        assert len(keys) == len(set(keys)), cfg


def test_settle_ends_the_answer_at_a_repeated_call():
    plan = StepPlan(to_tool_specs([WEATHER]))
    one = plan.answer_from_calls([Call("get_weather", {"city": "Paris"})])
    prefix = PartialAnswer(one.steps[:-1])  # before "]"
    again = prefix
    for step in plan.answer_from_calls([Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Rome"})], ).steps[len(prefix.steps):]:
        if step.kind is StepKind.FUNC_FINISH:
            break
    # write the same call again by hand: settle() drops it and ends the answer
    again = again.extend(plan.parse(again, ', {"name": "get_weather"'))
    again = plan.complete_forced(again)
    again = again.extend(plan.parse(again, '"city": "Paris"'))
    again = again.extend(plan.parse(again, "}"))
    settled = plan.settle(again)
    assert settled.done and settled.text == one.text and list(settled.calls) == [Call("get_weather", {"city": "Paris"})]
    with_repeats = StepPlan(plan.tools, plan.limits.__class__(repeat_calls=True))
    assert not with_repeats.settle(again).done


def test_a_transformers_session_replies_in_text(tiny):
    policy = TransformersPolicy(tiny)
    plan, sess, compute = session(policy)
    before = compute.tokens_generated
    text = sess.reply([{"role": "user", "content": "Hello there"}], max_tokens=5)
    assert isinstance(text, str) and "<|im_end|>" not in text
    assert 0 < compute.tokens_generated - before <= 5
    assert sess.shared_context().cache is sess.store


class Prefers(Scorer):
    """Judges by the answer's first call: get_weather right, "no call" ``no_call`` (so-so), anything else wrong."""

    granularity = "step"

    def __init__(self, no_call: float = 0.6):
        self.no_call = no_call

    def session(self, messages, plan, compute, *, policy_session=None):
        judge = self

        class S(ScorerSession):
            def score(self, pairs):
                compute.scorer_calls += len(pairs)
                out = []
                for _, child in pairs:
                    names = [s.function for s in child.steps if s.kind is StepKind.FUNC_NAME]
                    out.append(judge.no_call if not names and child.done else 0.99 if names[:1] == ["get_weather"] else 0.01)
                return out

        return S()


@pytest.mark.parametrize("rank", ["combined", "prm"])
def test_a_spent_budget_completes_a_live_beam_that_ranks_above_an_early_no_call(tiny, monkeypatch, rank):
    """Round 1 keeps get_weather (judged 0.99) and the finished "no call" (0.6); the budget is
    spent before round 2: the live beam is completed greedily and wins, not the early "no call"."""
    from toolprm_agents.search import SearchRun

    rounds = {"n": 0}

    def exhausted(self, grace: float = 0.0) -> bool:
        if grace:
            return False  # the greedy completion's grace is left
        rounds["n"] += 1
        return rounds["n"] > 1

    monkeypatch.setattr(SearchRun, "exhausted", exhausted)
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    cfg = SearchConfig(beams=2, expand=4, gate=1.0, rank=rank, policy_weight=0.0, vote_weight=0.0, judge_weight=1.0)
    r = ToolPRMSearch(policy, Prefers(), cfg).search("Weather in Paris?", [WEATHER, TIME])
    assert r.budget_exhausted
    assert [c.name for c in r.calls][:1] == ["get_weather"], r.calls


def test_judge_answer_scores_every_decided_step_even_where_the_gate_committed(tiny):
    policy = TransformersPolicy(tiny, max_step_tokens=24)
    search = ToolPRMSearch(policy, Prefers(), SearchConfig(beams=2, expand=4, gate=0.0))  # gate 0: never branch
    r = search.search("Weather in Paris?", [WEATHER, TIME], keep_session=True)
    assert r.compute.scorer_calls == 0
    verdicts = search.judge_answer("Weather in Paris?", [WEATHER, TIME], r)
    assert len(verdicts) == len(r.argument_scores()) > 0
    first = [c.name for c in r.calls][:1]
    expected = 0.99 if first == ["get_weather"] else 0.6 if not first else 0.01
    assert verdicts[0] == expected
    assert ToolPRMSearch(policy, None, SearchConfig(strategy="greedy")).judge_answer("Weather in Paris?", [WEATHER, TIME], r) == []


def test_verify_branches_where_the_policy_is_sure_but_the_judge_doubts_its_choice(tiny):
    """The tiny model made sure of "no call" (a logit bonus on "]"), so the gate
    commits it without asking the judge; with ``verify`` the judge is asked, doubts it, and the
    search branches there after all -- and only where the judge doubts."""
    tok = tiny[1]
    policy = TransformersPolicy((Biased(tiny[0], {token_id(tok, "]"): 8.0}), tok), max_step_tokens=24)
    tools = [WEATHER, TIME]
    base = dict(beams=2, expand=4, gate=0.5, judge_weight=3.0, policy_weight=1.0, vote_weight=1.0)
    plain = ToolPRMSearch(policy, Prefers(no_call=0.1), SearchConfig(**base)).search("Weather in Paris?", tools)
    assert plain.complete and plain.calls == [], "premise: the gate commits the policy's sure 'no call'"
    assert plain.compute.scorer_calls == 0 and plain.compute.decisions_doubted == 0
    doubted = ToolPRMSearch(policy, Prefers(no_call=0.1), SearchConfig(**base, verify=0.5)).search("Weather in Paris?", tools)
    assert doubted.complete and [c.name for c in doubted.calls][:1] == ["get_weather"]
    assert doubted.compute.decisions_doubted >= 1 and doubted.compute.decisions_branched >= 1
    agreed = ToolPRMSearch(policy, Prefers(no_call=0.9), SearchConfig(**base, verify=0.5)).search("Weather in Paris?", tools)
    assert agreed.calls == [] and agreed.compute.decisions_doubted == 0
    assert agreed.compute.scorer_calls >= 1, "the judge was asked about the sure choice"
    assert agreed.step_scores[0] == 0.9, "and its verdict is the step's reported score"
    with pytest.raises(SearchError, match="verify must be a probability"):
        SearchConfig(verify=1.5)


def test_verify_asks_the_judge_only_at_the_decision_types_it_is_given(tiny):
    """The sure "no call" is an ``end`` decision (another call or the end of the answer):
    ``verify_types=("end",)`` doubts it as before; ``("value",)`` never asks the judge there."""
    tok = tiny[1]
    policy = TransformersPolicy((Biased(tiny[0], {token_id(tok, "]"): 8.0}), tok), max_step_tokens=24)
    tools = [WEATHER, TIME]
    base = dict(beams=2, expand=4, gate=0.5, judge_weight=3.0, policy_weight=1.0, vote_weight=1.0, verify=0.5)
    at_end = ToolPRMSearch(policy, Prefers(no_call=0.1), SearchConfig(**base, verify_types=("end",))).search("Weather in Paris?", tools)
    assert [c.name for c in at_end.calls][:1] == ["get_weather"] and at_end.compute.decisions_doubted >= 1
    elsewhere = ToolPRMSearch(policy, Prefers(no_call=0.1), SearchConfig(**base, verify_types=("value",))).search("Weather in Paris?", tools)
    assert elsewhere.calls == [] and elsewhere.compute.scorer_calls == 0 and elsewhere.compute.decisions_doubted == 0
    plan = StepPlan(to_tool_specs(tools))
    assert plan.decision(plan.start()).type == "end"
    assert plan.decision(plan.start().extend(plan.parse(plan.start(), plan.decision(plan.start()).alternatives[0].lead))).type in ("arg_end", "value")
