"""judges.py (one judge format and config for every backend and the trainer), loads that never
reach a hub, the torch-free interfaces and the prefix cache."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from toolprm_agents.errors import ToolPRMError
from toolprm_agents.interfaces import ScorerError, SharedContext
from toolprm_agents.judges import (
    CONFIG_NAME,
    JudgeConfig,
    JudgeFormat,
    granularity_of,
    judge_kind,
    locate_judge_weights,
    packaged_checkpoint,
)
from toolprm_agents.prefix_cache import PrefixLRU

ROOT = Path(__file__).resolve().parents[1]

# a socket guard: every connection attempt (and name lookup) is recorded and refused
GUARD = textwrap.dedent(
    """
    import json, os, socket, sys
    ATTEMPTS = []
    def _refuse(what):
        def f(*args, **kwargs):
            ATTEMPTS.append(f"{what} {args[1:] if what.startswith('socket.') else args}"[:200])
            raise OSError(f"network disabled in this test: {what}")
        return f
    socket.socket.connect = _refuse("socket.connect")
    socket.socket.connect_ex = _refuse("socket.connect_ex")
    socket.create_connection = _refuse("create_connection")
    socket.getaddrinfo = _refuse("getaddrinfo")
    """
)


def run_guarded(body: str, *, env_extra: dict | None = None, timeout: int = 600) -> dict:
    """Run ``body`` in a fresh interpreter behind the socket guard with HF_HUB_OFFLINE=1;
    returns the JSON it prints last plus the connection attempts."""
    script = GUARD + textwrap.dedent(body) + "\nprint(json.dumps({'result': RESULT, 'attempts': ATTEMPTS}))\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT), **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# the one name map and config


def test_packaged_checkpoints_and_kinds():
    for kind, unit in (("toolprm", "step"), ("orm", "answer"), ("cprm", "call")):
        ckpt = packaged_checkpoint(kind, generative=True)
        assert ckpt.name == f"{kind}-smollm2" and (ckpt / CONFIG_NAME).is_file()
        assert JudgeConfig.load(ckpt).kind == kind and not JudgeConfig.load(ckpt).probe
        assert granularity_of(kind) == unit == JudgeConfig(kind=kind).granularity
    default = packaged_checkpoint("toolprm")  # where the backend can run it, the ToolPRM is the probe judge
    assert default.name == "toolprm-probe-smollm2" and JudgeConfig.load(default).probe == "probe.pt"
    for kind in ("orm", "cprm"):  # the ORM and C-PRM are probes too where the backend can run them
        assert packaged_checkpoint(kind).name == f"{kind}-probe-smollm2"
        assert JudgeConfig.load(packaged_checkpoint(kind)).kind == kind and JudgeConfig.load(packaged_checkpoint(kind)).probe
    assert judge_kind("PRM") == judge_kind("tool-prm") == "toolprm" and judge_kind("C-PRM") == "cprm"
    with pytest.raises(ScorerError, match="unknown judge kind 'bogus'"):
        packaged_checkpoint("bogus")


def test_the_trainer_and_every_backend_use_the_one_judge_format(tiny_model_dir):
    from toolprm_agents.backends.base import judge_spec
    from toolprm_agents.models import load_causal_lm
    from toolprm_agents.scorers import ToolPRM
    from toolprm_agents.training import trainer

    model, tok = load_causal_lm(str(tiny_model_dir))
    assert trainer.JudgeFormat is JudgeFormat
    assert isinstance(ToolPRM(model=(model, tok), config=JudgeConfig()).format, JudgeFormat)
    served = judge_spec(None, "cprm", tok)  # a served judge: the packaged C-PRM's format
    assert isinstance(served, JudgeFormat) and served.config == JudgeConfig.load(packaged_checkpoint("cprm", generative=True))
    with pytest.raises(ScorerError, match="'orm' judge, not a 'toolprm' one"):
        judge_spec(packaged_checkpoint("orm"), "toolprm", tok)


@pytest.mark.parametrize(
    "content, field",
    [
        ('["toolprm"]', "JSON object"),
        ('{"base_model": 5}', "'base_model'"),
        ('{"question": "Is {this} right?"}', "'question'"),
        ('{"question": "Is the JSON {\\"a\\": 1} right?"}', "'question'"),
        ('{"judge_turn": "no slot {}"}', "'judge_turn'"),
        ('{"label_tokens": ["+", "-", "?"]}', "'label_tokens'"),
        ('{"label_tokens": "+-"}', "'label_tokens'"),
        ('{"adapter": "yes"}', "'adapter'"),
        ('{"kind": "prm2"}', "'kind'"),
        ('{"colour": "red"}', "unknown field"),
    ],
)
def test_a_bad_judge_config_is_a_clear_error_naming_the_field(tmp_path, content, field):
    (tmp_path / CONFIG_NAME).write_text(content)
    with pytest.raises(ScorerError, match=field) as err:
        JudgeConfig.load(tmp_path)
    assert isinstance(err.value, ToolPRMError) and str(tmp_path) in str(err.value)


def test_a_question_with_escaped_braces_and_the_kind_slot_is_fine(tmp_path):
    cfg = JudgeConfig(question="Is step {kind} of {{this}} JSON right?")
    cfg.save(tmp_path)
    assert JudgeConfig.load(tmp_path) == cfg


def test_judge_format_builds_the_suffix_and_single_token_labels(tiny_model_dir):
    from transformers import AutoTokenizer

    from toolprm_agents.schema import to_tool_specs
    from toolprm_agents.steps import StepPlan

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    plan = StepPlan(to_tool_specs([{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}]))
    a = plan.start()
    a = a.extend(plan.parse(a, '{"name": "f"'))
    fmt = JudgeFormat(JudgeConfig(), tok)
    assert fmt.suffix(a) == "<|im_end|>\n<|im_start|>user\nIs the last step of this answer (FUNC_NAME) correct? Answer + or -.<|im_end|>\n<|im_start|>assistant\n"
    assert len(fmt.label_ids) == 2 and fmt.label_ids[0] != fmt.label_ids[1]
    with pytest.raises(ScorerError, match="one token"):
        JudgeFormat(JudgeConfig(label_tokens=("yes indeed", "no")), tok)


# ------------------------------------------------------------------------------------------
# local-only loads


def _broken_adapter(tmp_path, base) -> Path:
    ckpt = tmp_path / "broken"
    ckpt.mkdir()
    JudgeConfig(kind="toolprm", base_model=str(base), adapter=True, trained=True).save(ckpt)
    return ckpt


def test_adapter_checkpoint_without_its_files_fails_at_once(tmp_path, tiny_model_dir):
    ckpt = _broken_adapter(tmp_path, tiny_model_dir)
    with pytest.raises(ScorerError, match="adapter_config.json is missing"):
        locate_judge_weights(ckpt)
    (ckpt / "adapter_config.json").write_text("{}")
    with pytest.raises(ScorerError, match="adapter weights"):
        locate_judge_weights(ckpt)
    # the served judge only reads where the base is (its weights live on the server)
    weights, _ = locate_judge_weights(ckpt, check_files=False)
    assert weights.model == str(tiny_model_dir) and weights.adapter == str(ckpt)


def test_broken_judges_make_no_network_attempt(tmp_path, tiny_model_dir):
    """Issue 14 item 2 on the tiny model: a clear error at once, no connection tried -- even
    with the hub's offline switches off, so it is the loader that stays local."""
    ckpt = _broken_adapter(tmp_path, tiny_model_dir)
    hub = tmp_path / "hub-base"
    hub.mkdir()
    JudgeConfig(kind="toolprm", base_model="HuggingFaceTB/SmolLM2-135M-Instruct").save(hub)
    out = run_guarded(
        f"""
        from toolprm_agents.errors import ToolPRMError
        from toolprm_agents.scorers import load_scorer
        RESULT = []
        for where in ({str(ckpt)!r}, {str(hub)!r}):
            try:
                load_scorer("toolprm", checkpoint=where)
                RESULT.append("loaded")
            except ToolPRMError as exc:
                RESULT.append(type(exc).__name__ + ": " + str(exc))
        """,
        env_extra={"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"},
        timeout=300,
    )
    assert out["attempts"] == []
    adapter, hub_base = out["result"]
    assert adapter.startswith("ScorerError") and "adapter_config.json is missing" in adapter
    assert hub_base.startswith("ModelLoadError") and "does not exist" in hub_base


@pytest.mark.slow
@pytest.mark.smollm2
def test_no_network_proven_for_every_packaged_checkpoint(tmp_path, smollm2_dir):
    """Every packaged judge loads (and scores) with networking disabled; a broken one fails at once."""
    ckpt = _broken_adapter(tmp_path, "smollm2")
    (ckpt / "adapter_config.json").write_text((packaged_checkpoint("toolprm", generative=True) / "adapter_config.json").read_text())
    out = run_guarded(
        f"""
        from pathlib import Path
        from toolprm_agents.compute import Compute
        from toolprm_agents.judges import packaged_checkpoint
        from toolprm_agents.schema import to_tool_specs
        from toolprm_agents.scorers import ScorerError, load_scorer
        from toolprm_agents.steps import StepPlan
        plan = StepPlan(to_tool_specs([{{"name": "ping", "parameters": {{"type": "object", "properties": {{}}}}}}]))
        a = plan.start()
        b = a.extend(plan.parse(a, '{{"name": "ping"'))
        RESULT = {{}}
        for name in sorted(p.name for p in packaged_checkpoint("toolprm").parent.iterdir() if p.is_dir() and not p.name.startswith("_")):
            kind = name.split("-")[0]
            scorer = load_scorer(kind, checkpoint=str(packaged_checkpoint(kind).parent / name))
            RESULT[name] = scorer.session([{{"role": "user", "content": "ping"}}], plan, Compute()).score([(a, b)])[0]
        try:
            load_scorer("toolprm", checkpoint={str(ckpt)!r})
            RESULT["broken"] = "loaded"
        except ScorerError as exc:
            RESULT["broken"] = str(exc)
        """,
    )
    assert out["attempts"] == [], out["attempts"]
    packaged = ("toolprm-smollm2", "toolprm-probe-smollm2", "orm-smollm2", "orm-probe-smollm2", "cprm-smollm2", "cprm-probe-smollm2")
    assert set(out["result"]) == {*packaged, "broken"}
    assert all(0.0 <= out["result"][k] <= 1.0 for k in packaged)
    assert "adapter weights" in out["result"]["broken"]


# ------------------------------------------------------------------------------------------
# torch-free interfaces and served backends


def test_served_backends_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import toolprm_agents.backends.openai_server, toolprm_agents.backends, toolprm_agents.interfaces, toolprm_agents.judges\n"
        "from toolprm_agents.backends import load_judge, load_policy\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'xgrammar') and sys.modules[m] is not None))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_no_probing_of_policy_sessions_or_class_names():
    pkg = ROOT / "toolprm_agents"
    for path in [pkg / "scorers.py", pkg / "interfaces.py", pkg / "judges.py", *(pkg / "backends").glob("*.py")]:
        text = path.read_text()
        assert "getattr(policy_session" not in text and "__name__ ==" not in text, path


def test_shared_context_is_reused_only_for_the_same_weights_and_prompt():
    engine = object()
    shared = SharedContext(weights=engine, prompt=[1, 2], cache="kv")
    assert shared.reuse(engine, [1, 2]) == "kv"
    assert shared.reuse(object(), [1, 2]) is None and shared.reuse(engine, [1, 3]) is None
    served = SharedContext(weights=("http://h/v1", "m"), prompt="p", cache="ids")
    assert served.reuse(("http://h/v1", "m"), "p") == "ids" and served.reuse(("http://h/v1", "judge"), "p") is None


def test_policy_session_reply_is_an_explicit_contract():
    from toolprm_agents.interfaces import PolicySession

    class Bare(PolicySession):
        def propose(self, answer, n, temperature):
            return []

    assert Bare().shared_context() is None
    with pytest.raises(NotImplementedError, match="Bare gives no text answers"):
        Bare().reply([{"role": "user", "content": "hi"}])


# ------------------------------------------------------------------------------------------
# the prefix cache


def test_prefix_lru_extends_the_longest_prefix_and_evicts_the_oldest():
    reads = []

    def extend(ids, rest):
        reads.append(rest)
        return ids + [ord(c) for c in rest] if rest else None

    cache = PrefixLRU([0], capacity=2)
    assert cache.get("", extend) == [0] and reads == []
    assert cache.get("ab", extend) == [0, 97, 98]
    assert cache.get("abcd", extend) == [0, 97, 98, 99, 100]
    assert reads == ["ab", "cd"], "only the text after the longest held prefix is read"
    assert cache.get("ab", extend) == [0, 97, 98] and reads == ["ab", "cd"]
    cache.get("x", extend)  # evicts "abcd", the least recently used
    assert cache.longest("abcde") == ("ab", [0, 97, 98])
    assert len(cache) == 2


def test_the_examples_in_the_new_modules_run():
    import doctest

    import toolprm_agents.apibank as apibank
    import toolprm_agents.interfaces as interfaces
    import toolprm_agents.judges as judges
    import toolprm_agents.matching as matching
    import toolprm_agents.prefix_cache as prefix_cache

    for module in (interfaces, judges, prefix_cache, matching, apibank):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
