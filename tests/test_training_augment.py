"""Irrelevance and parallel augmentation: the right gold answers, the split kept, masking on top."""

from __future__ import annotations

from toolprm_agents.training.augment import AugmentConfig, augment_examples, irrelevant, parallel
from toolprm_agents.training.dataset import build_rows, split_of
from toolprm_agents.training.labels import answer_correct, label_steps
from toolprm_agents.training.masking import MaskingConfig, apply_masking
from toolprm_agents.training.perturb import PerturbConfig, perturb_example
from toolprm_agents.training.rollouts import plan_for
from toolprm_agents.training.sources import Example


def tool(name: str, arg: str = "x") -> dict:
    return {"name": name, "description": f"{name} tool", "parameters": {"type": "object", "properties": {arg: {"type": "string"}}, "required": [arg]}}


def ex(i: int, name: str, extra: str = "other") -> Example:
    return Example(f"s/{i}", "src", [{"role": "user", "content": f"Please run {name} on item{i}."}], [tool(name), tool(extra + str(i))],
                   [{"name": name, "arguments": {"x": f"item{i}"}}])


def test_irrelevance_removes_the_gold_tools_and_no_call_is_right():
    a = ex(0, "f")
    got = irrelevant(a, [a, ex(1, "g")])
    assert got is not None and got.calls == []
    assert "f" not in got.tool_names() and got.tool_names() == ["other0"]
    assert got.meta["original_id"] == "s/0" and got.meta["augment"] == "irrelevance"
    plan = plan_for(got)
    none = plan.answer_from_calls([])
    assert all(l.label for l in label_steps(none, got.calls, plan.tools))
    call = plan.answer_from_calls([{"name": "other0", "arguments": {"x": "item0"}}])
    assert not label_steps(call, got.calls, plan.tools)[0].label  # any call is wrong


def test_irrelevance_borrows_tools_when_none_are_left_and_skips_called_history():
    only = Example("o/1", "src", [{"role": "user", "content": "run f"}], [tool("f")], [{"name": "f", "arguments": {"x": "1"}}])
    got = irrelevant(only, [only, ex(5, "g")])
    assert got is not None and got.tools and "f" not in got.tool_names()
    hist = Example("o/2", "src", [{"role": "user", "content": "run f"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}, {"role": "tool", "content": "ok"}, {"role": "user", "content": "again"}],
                   [tool("f"), tool("g")], [{"name": "f", "arguments": {"x": "1"}}])
    assert irrelevant(hist, [hist]) is None


def test_parallel_needs_both_calls_and_stopping_after_one_is_wrong():
    a, b = ex(0, "f"), ex(1, "g")
    p = parallel(a, b)
    assert p is not None and len(p.messages) == 1
    assert "item0" in p.messages[0]["content"] and "item1" in p.messages[0]["content"]
    assert [c["name"] for c in p.calls] == ["f", "g"]
    plan = plan_for(p)
    both = plan.answer_from_calls(list(reversed(p.calls)))  # any order is right
    assert all(l.label for l in label_steps(both, p.calls, plan.tools))
    assert answer_correct(both.calls, p.calls, plan.tools)
    one = plan.answer_from_calls(p.calls[:1])
    labels = label_steps(one, p.calls, plan.tools)
    assert labels[-1].kind.value == "TOTAL_FINISH" and not labels[-1].label
    # and the perturbations of a parallel example include ending early
    ends = [a for seed in range(5) for a in perturb_example(p, PerturbConfig(per_example=40, seed=seed))["answers"]
            if a["origin"] == "perturb:wrong_call_count:end_early"]
    assert {len([s for s in a["steps"] if s["kind"] == "FUNC_NAME"]) for a in ends} == {0, 1}  # no call, and one of two


def test_parallel_refuses_conflicting_tool_definitions():
    a = ex(0, "f")
    b = Example("s/9", "src", [{"role": "user", "content": "run f differently"}], [{**tool("f"), "description": "another f"}], [{"name": "f", "arguments": {"x": "1"}}])
    assert parallel(a, b) is None


def test_augmented_examples_stay_on_their_query_split_through_masking():
    base = [ex(i, "f" if i % 2 else "g") for i in range(40)]
    aug, report = augment_examples(base, AugmentConfig(irrelevance=0.5, parallel=0.5, seed=0, test_fraction=0.3))
    assert report["irrelevance"] > 5 and report["parallel"] > 5
    for e in aug:
        if e.meta["augment"] == "parallel":
            a, b = e.meta["joined"]
            assert split_of(a, 0.3) == split_of(b, 0.3)
    masked = apply_masking(base + aug, MaskingConfig(probability=1.0, keep_original=True, seed=0))
    recs = []
    for e in masked:
        plan = plan_for(e)
        recs.append({"example": e.to_dict(), "answers": [{"steps": [s.to_dict() for s in plan.answer_from_calls(e.calls).steps], "origin": "gold", "count": 0}]})
    rows = build_rows(recs, test_fraction=0.3)
    for r in rows:
        if r["augment"] == "parallel":
            first = r["base_id"]
            assert r["split"] == split_of(first, 0.3)
    # a masked augmented example keeps its query id
    assert any(e.meta.get("masked") and e.meta.get("augment") for e in masked)
    for e in masked:
        if e.meta.get("masked") and e.meta.get("augment"):
            assert not e.meta["original_id"].endswith(("#masked", "#irrelevant"))


def test_same_function_parallel_calls_one_function_twice_and_the_second_call_is_right():
    shared = [ex(i, "f") for i in range(6)]  # six requests to the same f (one definition)
    lone = ex(9, "h")                         # no partner: restated with another value of x
    silent = Example("s/10", "src", [{"role": "user", "content": "Please run k."}], [tool("k")],
                     [{"name": "k", "arguments": {"x": "item10"}}])  # no partner, its value is not in the text
    cfg = AugmentConfig(irrelevance=0.0, parallel=0.0, same_function=1.0, seed=0, test_fraction=0.0)
    out, report = augment_examples(shared + [lone, silent], cfg)
    assert report["parallel_same_function"] == len(out) >= 4 and report["same_function_not_possible"] >= 1
    assert all(e.meta["same_function"] and len({c["name"] for c in e.calls}) == 1 and len(e.calls) == 2 for e in out)
    assert all(e.calls[0] != e.calls[1] for e in out), "two requests, two different calls"
    assert len({frozenset(e.meta["joined"]) for e in out}) == len(out), "each pair joined once"
    assert not any("s/10" in e.meta["joined"] for e in out)
    again = next(e for e in out if e.calls[0]["name"] == "h")
    first, second = (c["arguments"]["x"] for c in again.calls)
    text = again.messages[0]["content"]
    assert first == "item9" and second != first and text.count(first) == 1 and text.count(second) == 1, "restated in text and call alike"
    assert again.meta["original_id"] == "s/9"
    for p in (again, next(e for e in out if e.calls[0]["name"] == "f")):
        plan = plan_for(p)
        both = plan.answer_from_calls(p.calls)
        assert all(l.label for l in label_steps(both, p.calls, plan.tools)), "the second call of the function is right"
        one = label_steps(plan.answer_from_calls(p.calls[:1]), p.calls, plan.tools)
        assert one[-1].kind.value == "TOTAL_FINISH" and not one[-1].label, "stopping after the first is wrong"
        twice = label_steps(plan.answer_from_calls([p.calls[0], p.calls[0]]), p.calls, plan.tools)
        assert not all(l.label for l in twice), "the first call repeated is still wrong"
    # off by default: the plain augmentation makes none
    assert "parallel_same_function" not in augment_examples(shared, AugmentConfig(seed=0))[1]
