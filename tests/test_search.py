"""Search strategies: mechanics with a scripted policy and an oracle scorer, then the real
tiny model with every tool-spec source and every strategy."""

import json
import random
from typing import Literal, Optional

import pytest
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, Field

from toolprm_agents.compute import Compute
from toolprm_agents.models import load_causal_lm
from toolprm_agents.policy import Candidate, PolicySession, TransformersPolicy, merge_candidates
from toolprm_agents.schema import example_value, to_tool_specs, validate_call
from toolprm_agents.scorers import CoarsePRM, JudgeConfig, LikelihoodScorer, OutcomeRM, Scorer, ScorerSession, ToolPRM
from toolprm_agents.search import SearchConfig, SearchError, ToolPRMSearch, aggregate
from toolprm_agents.steps import Call

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
TIME = {"name": "get_time", "description": "Time in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
VALUES = {"city": ["Berlin", "Paris", "Rome"], "unit": ["f", "c"]}


class ScriptedPolicy:
    """Proposes every alternative of a decision, in declaration order (first = greedy)."""

    def session(self, messages, plan, compute, *, seed=0):
        return ScriptedSession(plan, compute, seed)


class ScriptedSession(PolicySession):
    def __init__(self, plan, compute, seed):
        self.plan, self.compute, self.rng = plan, compute, random.Random(seed)

    def texts(self, answer):
        out = []
        for alt in self.plan.decision(answer).alternatives:
            if alt.value_schema is None:
                out.append(alt.lead)
            else:
                for v in VALUES.get(alt.arg, [example_value(alt.value_schema)]):
                    out.append(alt.lead + json.dumps(v))
        return out

    def propose(self, answer, n, temperature):
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        texts = self.texts(answer)
        picks = texts[:1] if temperature == 0 else [self.rng.choice(texts) for _ in range(n)]
        self.compute.tokens_generated += len(picks)
        return merge_candidates([Candidate(self.plan.parse(answer, t)) for t in picks])


class OracleScorer(Scorer):
    """Scores 1 for a (partial) answer on the way to the gold one, 0.05 otherwise."""

    def __init__(self, gold, granularity="step"):
        self.gold, self.granularity = gold, granularity

    def session(self, messages, plan, compute, *, policy_session=None):
        gold = plan.answer_from_calls(self.gold).text
        oracle = self

        class S(ScorerSession):
            def score(self, pairs):
                compute.scorer_calls += len(pairs)
                oracle.seen = getattr(oracle, "seen", 0) + len(pairs)
                return [1.0 if gold.startswith(c.text) else 0.05 for _, c in pairs]

        return S()


def run(strategy, gold, tools=(WEATHER, TIME), granularity="step", **kw):
    cfg = SearchConfig(strategy=strategy, **kw)
    return ToolPRMSearch(ScriptedPolicy(), OracleScorer(gold, granularity), cfg).search("q", list(tools))


GOLD = [Call("get_time", {"city": "Rome"})]


def test_greedy_takes_the_first_alternative_everywhere():
    # first alternative: always another call, always another argument; a repeated call ends the answer
    r = run("greedy", GOLD)
    assert r.complete and r.tool_calls() == [{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "f"}}]
    assert r.answer.text.endswith("}}]")
    allowed = run("greedy", GOLD, repeat_calls=True)  # the plan constraint can be switched off
    assert allowed.tool_calls() == [{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "f"}}] * 8
    assert r.score is None and r.compute.scorer_calls == 0
    # the repeated call's decisions are not reported as steps of the answer: one score per decided step
    rows = r.argument_scores()
    assert [row["kind"] for row in rows] == ["FUNC_NAME", "ARG", "ARG", "TOTAL_FINISH"]
    assert all(row["score"] is not None for row in rows)
    assert len(r.step_scores) == len(rows) and r.weakest_argument() is not None


class GreedyOnlySession(ScriptedSession):
    def propose(self, answer, n, temperature):
        return super().propose(answer, n, 0)


class GreedyOnlyPolicy(ScriptedPolicy):
    def session(self, messages, plan, compute, *, seed=0):
        return GreedyOnlySession(plan, compute, seed)


class DislikesRepeats(Scorer):
    """1.0 everywhere except inside a second call of the same function (0.05)."""

    granularity = "step"

    def session(self, messages, plan, compute, *, policy_session=None):
        class S(ScorerSession):
            def score(self, pairs):
                return [0.05 if c.text.count("get_weather") > 1 else 1.0 for _, c in pairs]

        return S()


def test_judge_beam_drops_the_repeated_calls_scores_with_its_steps():
    # the policy writes get_weather(Berlin, f) twice; the repeat rule drops the second call and
    # ends the answer: its low step scores must not stay in the aggregate or the step scores
    cfg = SearchConfig(strategy="beam", rank="prm", beams=1, expand=2, temperature=1.0, aggregation="min")
    r = ToolPRMSearch(GreedyOnlyPolicy(), DislikesRepeats(), cfg).search("q", [WEATHER, TIME])
    assert r.tool_calls() == [{"name": "get_weather", "arguments": {"city": "Berlin", "unit": "f"}}]
    assert any(c["score"] == 0.05 for rnd in r.trace for c in rnd["candidates"]), "the repeated call was judged"
    decided = [s for s in r.answer.steps if not s.forced]
    assert len(r.step_scores) == len(decided) and min(r.step_scores) == 1.0
    assert r.score == 1.0


def test_beam_search_follows_the_scorer_to_the_gold_answer():
    r = run("beam", GOLD, beams=1, expand=32, temperature=1.0)
    assert r.calls == GOLD
    assert r.step_scores and min(r.step_scores) == 1.0
    for rnd in r.trace:
        assert sum(c["kept"] for c in rnd["candidates"]) <= 1
        assert all(c["score"] is not None for c in rnd["candidates"])


def test_beam_search_finds_parallel_calls_and_the_no_call_answer():
    two = [Call("get_weather", {"city": "Paris", "unit": "c"}), Call("get_time", {"city": "Paris"})]
    assert run("beam", two, beams=2, expand=32, temperature=1.0).calls == two
    none = run("beam", [], beams=2, expand=32, temperature=1.0)
    assert none.complete and none.calls == [] and none.answer.text == "[]"


def test_coarse_scorer_expands_whole_calls():
    r = run("beam", GOLD, granularity="call", beams=2, expand=32, temperature=1.0)
    assert r.calls == GOLD
    kinds = {c["kind"] for rnd in r.trace for c in rnd["candidates"]}
    assert kinds <= {"FUNC_FINISH", "TOTAL_FINISH"}, "a call-level scorer only sees completed calls"


def test_best_of_n_ranks_complete_answers():
    r = run("best_of_n", GOLD, granularity="answer", beams=64, temperature=1.0)
    assert r.calls == GOLD and r.score == 1.0
    (rnd,) = r.trace
    assert all(c["done"] for c in rnd["candidates"]) and sum(c["kept"] for c in rnd["candidates"]) == 1


def test_best_of_n_with_a_step_scorer_aggregates_every_step():
    r = run("best_of_n", GOLD, beams=64, temperature=1.0, aggregation="min")
    assert r.calls == GOLD and len(r.step_scores) == 3  # FUNC_NAME, ARG (+forced ends), TOTAL_FINISH


def test_aggregations():
    assert aggregate([0.5, 0.9], "last") == 0.9
    assert aggregate([0.5, 0.9], "min") == 0.5
    assert aggregate([0.5, 0.8], "prod") == pytest.approx(0.4)
    assert aggregate([0.5, 0.9], "mean") == pytest.approx(0.7)


def test_incomplete_search_returns_no_call_and_says_why():
    class Dropping(ScriptedPolicy):
        def session(self, messages, plan, compute, *, seed=0):
            s = ScriptedSession(plan, compute, seed)
            s.propose = lambda answer, n, t: []
            return s

    r = ToolPRMSearch(Dropping(), OracleScorer(GOLD), SearchConfig(strategy="beam")).search("q", [WEATHER, TIME])
    assert not r.complete and r.calls == [] and "no candidate answer" in r.error


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"strategy": "sideways"}, "unknown strategy"),
        ({"beams": 0}, "beams must be at least 1"),
        ({"aggregation": "max"}, "unknown aggregation"),
        ({"temperature": -1}, "temperature"),
        ({"strategy": "beam", "temperature": 0}, "temperature > 0"),
    ],
)
def test_config_errors(kw, msg):
    with pytest.raises(SearchError, match=msg):
        SearchConfig(**kw)


def test_config_accepts_dashed_strategy_names():
    assert SearchConfig(strategy="best-of-n").strategy == "best_of_n"


# -- the real (tiny) model with every tool source ---------------------------------------------


class Unit(BaseModel):
    """Convert a temperature."""

    value: float = Field(description="the value")
    scale: Literal["c", "f"] = "c"
    note: Optional[str] = None


@tool
def lookup(query: str, limit: int = 3) -> str:
    """Search a knowledge base."""
    return query


def plain_function(items: list[int], flag: bool = False) -> int:
    """Sum items."""
    return sum(items)


structured = StructuredTool.from_function(plain_function, name="sum_items")
BFCL_DOC = {
    "name": "geo.distance",
    "description": "Distance between two points",
    "parameters": {
        "type": "dict",
        "properties": {
            "a": {"type": "tuple", "items": {"type": "float"}},
            "b": {"type": "tuple", "items": {"type": "float"}},
            "units": {"type": "string", "enum": ["km", "mi"], "default": "km"},
            "extra": {"type": "dict", "properties": {"x": {"type": "integer"}}},
            "anything": {"type": "any"},
        },
        "required": ["a", "b"],
    },
}
SOURCES = {
    "pydantic": [Unit],
    "langchain_tool": [lookup],
    "structured_tool": [structured],
    "function": [plain_function],
    "openai": [{"type": "function", "function": WEATHER}],
    "bfcl": [BFCL_DOC],
}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir))


@pytest.fixture(scope="module")
def policy(tiny):
    # values of up to 3 items of 8 characters fit in 48 tokens: none is cut at the bound
    return TransformersPolicy(tiny, max_step_tokens=48)


SCORERS = {
    "toolprm": lambda m: ToolPRM(model=m, config=JudgeConfig()),
    "orm": lambda m: OutcomeRM(model=m, config=JudgeConfig(kind="orm")),
    "cprm": lambda m: CoarsePRM(model=m, config=JudgeConfig(kind="cprm")),
    "likelihood": lambda m: LikelihoodScorer(),
}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize(
    "strategy, scorer",
    [("greedy", None), ("best_of_n", "orm"), ("best_of_n", "toolprm"), ("beam", "toolprm"), ("beam", "cprm"), ("beam", "likelihood")],
)
def test_every_source_and_strategy_gives_valid_calls(policy, tiny, source, strategy, scorer):
    tools = SOURCES[source]
    specs = {s.name: s for s in to_tool_specs(tools)}
    cfg = SearchConfig(strategy=strategy, beams=2, expand=3, max_string_length=8, max_array_items=3, max_calls=2, allow_no_call=False)
    search = ToolPRMSearch(policy, SCORERS[scorer](tiny) if scorer else None, cfg)
    r = search.search([{"role": "user", "content": "do it"}], tools)
    assert r.complete, r.error
    assert 1 <= len(r.calls) <= 2
    for call in r.calls:
        assert validate_call(specs[call.name], call.arguments) == [], (call, source)
    assert json.loads(r.answer.text) == r.tool_calls()
    c = r.compute
    assert c.tokens_generated > 0 and c.forward_passes > 0 and c.seconds > 0
    if scorer not in (None, "likelihood"):
        assert c.scorer_calls > 0 and c.scorer_forward_passes > 0


def test_same_seed_same_search(policy, tiny):
    prm = ToolPRM(model=tiny, config=JudgeConfig())

    def once(seed):
        cfg = SearchConfig(beams=2, expand=4, seed=seed, max_string_length=8, temperature=1.2, rank="prm")
        d = ToolPRMSearch(policy, prm, cfg).search("weather in Rome", [WEATHER, TIME]).to_dict()
        d["compute"].pop("seconds")
        return d

    assert once(1) == once(1)
    assert any(once(1)["trace"] != once(s)["trace"] for s in (2, 3, 4)), "the seed changes the samples"


def test_events_report_each_round(policy, tiny):
    events = []
    cfg = SearchConfig(beams=2, expand=3, max_string_length=8)
    r = ToolPRMSearch(policy, ToolPRM(model=tiny, config=JudgeConfig()), cfg).search("q", [WEATHER], on_event=events.append)
    assert [e["round"] for e in events] == list(range(len(r.trace)))
    assert all(e["type"] == "round" and e["candidates"] for e in events)
