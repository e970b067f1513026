"""Backends: where the policy and the judges run, picked by name or URL.

=====================================  =========================================================
spec                                   backend
=====================================  =========================================================
``None``, ``"smollm2"``, a path        transformers on this CPU (:class:`~toolprm_agents.backends.transformers_policy.TransformersPolicy`,
                                       the judges of :mod:`toolprm_agents.backends.transformers_judges`)
``"vllm"``, ``"vllm:PATH"``            an in-process vLLM engine (:class:`~toolprm_agents.backends.vllm.VLLMPolicy`,
                                       :class:`~toolprm_agents.backends.vllm.VLLMJudge`); PATH as for
                                       transformers (a model folder, a .gguf file, ``smollm2``; for a
                                       judge, a judge checkpoint folder)
``"http://host:port/v1"`` (https too)  an OpenAI-compatible completions server with grammar structured
                                       outputs, e.g. ``vllm serve`` (:class:`~toolprm_agents.backends.openai_server.OpenAIServerPolicy`,
                                       :class:`~toolprm_agents.backends.openai_server.OpenAIServerJudge`);
                                       ``http://host:port/v1#NAME`` asks for served model ``NAME``
                                       (e.g. a LoRA adapter served with ``--lora-modules NAME=DIR``)
=====================================  =========================================================

Example:
    >>> policy = load_policy("http://127.0.0.1:8000/v1")                         # doctest: +SKIP
    >>> prm = load_judge("http://127.0.0.1:8001/v1", "toolprm", policy=policy)   # doctest: +SKIP
    >>> ToolPRMSearch(policy, prm, SearchConfig(beams=2, expand=8))              # doctest: +SKIP

Nothing heavy is imported here: the transformers backend (torch) and ``vllm`` are imported
when used, so a process whose models are all served needs neither.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..interfaces import Policy, Scorer, ScorerError
from .base import BackendError

__all__ = ["BackendError", "backend_of", "backends_from_env", "load_judge", "load_policy"]


def backend_of(spec: Any) -> tuple[str, Any]:
    """``(backend, reference)``: ``("transformers", spec)``, ``("vllm", path or None)`` or ``("openai", url)``."""
    if isinstance(spec, os.PathLike):
        return "transformers", spec
    if isinstance(spec, str):
        s = spec.strip()
        if s.startswith(("http://", "https://")):
            return "openai", s
        if s == "vllm" or s.startswith("vllm:"):
            ref = s[len("vllm:"):].strip() if ":" in s else ""
            return "vllm", ref or None
        if s.split(":", 1)[0] in ("http", "https", "openai", "vllm-serve", "tgi"):
            raise ConfigError(f"backend spec {spec!r}: a server is given by its URL, e.g. http://127.0.0.1:8000/v1")
    return "transformers", spec


def backends_from_env(environ: Any = None) -> dict[str, Any]:
    """``{"policy": $TOOLPRM_POLICY, "prm": $TOOLPRM_PRM}`` (``None`` where unset or empty).

    The deployable graphs (``graphs/``) are built with these, so ``langgraph dev`` or a
    LangGraph server points at served models without code changes::

        TOOLPRM_POLICY=http://policy-lb:8000/v1 TOOLPRM_PRM=http://prm-lb:8001/v1#toolprm langgraph dev
    """
    env = os.environ if environ is None else environ
    return {"policy": (env.get("TOOLPRM_POLICY") or "").strip() or None, "prm": (env.get("TOOLPRM_PRM") or "").strip() or None}


def _server_kw(url: str, kw: dict) -> tuple[str, dict]:
    """``URL#NAME``: the served model ``NAME`` (unless ``model=`` is given)."""
    url, _, name = url.partition("#")
    if name:
        kw = {"model": name, **kw}
    return url, kw


def load_policy(spec: Any = None, *, num_threads: int | None = None, **kw) -> Policy:
    """A policy from a spec (see the module docstring); a :class:`Policy` is returned as is.

    ``num_threads`` applies to the transformers backend; other keyword arguments go to the
    backend's class (e.g. ``engine_args`` for vLLM; ``model``, ``tokenizer``, ``timeout``,
    ``retries`` for a server; ``max_step_tokens`` and ``prompt_format`` for all).
    """
    if isinstance(spec, Policy):
        return spec
    backend, ref = backend_of(spec)
    if backend == "vllm":
        from .vllm import VLLMPolicy

        return VLLMPolicy(ref, **kw)
    if backend == "openai":
        from .openai_server import OpenAIServerPolicy

        url, kw = _server_kw(ref, kw)
        return OpenAIServerPolicy(url, **kw)
    from .transformers_policy import TransformersPolicy

    return TransformersPolicy(ref, num_threads=num_threads, **kw)


def load_judge(spec: Any = None, kind: str = "toolprm", *, policy: Policy | None = None, **kw) -> Scorer:
    """A scorer of ``kind`` (``toolprm``, ``orm``, ``cprm``, ``likelihood``) from a spec.

    * ``None``: the packaged judge for ``kind``, on the policy's backend when the policy runs
      on vLLM in-process (sharing its engine when the weights are the same), else on
      transformers (sharing the policy's weights when they are the same);
    * a checkpoint folder: that judge on transformers;
    * ``"vllm:CKPT"``: judge checkpoint ``CKPT`` (default: the packaged one) on vLLM;
    * a URL: the judge served there; ``checkpoint=`` names the judge checkpoint whose
      config (judgement text, labels) the served weights were trained with (default:
      the packaged one), ``model=`` the served name (e.g. a LoRA adapter's).
    """
    if isinstance(spec, Scorer):
        return spec
    kind = (kind or "toolprm").lower().replace("-", "")
    backend, ref = backend_of(spec)
    if kind == "likelihood":
        from .transformers_policy import TransformersPolicy

        if spec is not None or (policy is not None and not isinstance(policy, TransformersPolicy)):
            raise ScorerError(
                "the likelihood scorer reads the transformers policy's own model; with a vLLM or server "
                "policy use a judge (toolprm, orm or cprm)"
            )
        from .transformers_judges import load_scorer

        return load_scorer(kind, policy=policy)
    if backend == "transformers" and spec is None and policy is not None and policy.backend == "vllm":
        backend = "vllm"  # the packaged judge on the policy's engine
    if backend == "vllm":
        from .vllm import VLLMJudge

        return VLLMJudge(ref, kind, **kw)
    if backend == "openai":
        from .openai_server import OpenAIServerJudge

        url, kw = _server_kw(ref, kw)
        return OpenAIServerJudge(url, kw.pop("checkpoint", None), kind, **kw)
    from .transformers_judges import load_scorer

    return load_scorer(kind, checkpoint=ref, policy=policy)
