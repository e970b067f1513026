"""Backends on an OpenAI-compatible completions server: :class:`OpenAIServerPolicy`, :class:`OpenAIServerJudge`.

For ``vllm serve`` (or ``python -m vllm.entrypoints.openai.api_server``), one replica or
several behind a load balancer. Every call is one ``POST {base_url}/completions``:

* policy: the prompt (token ids when the tokenizer is available here, else text) plus the
  answer so far and the decision's jump-forward text, ``n=M`` samples, the step grammar as
  ``structured_outputs={"grammar": EBNF}`` (vLLM >= 0.11; ``grammar_field="guided_grammar"``
  for older vLLM), ``max_tokens``; the grammar itself ends the step (the server stops at
  the end-of-sequence token the grammar forces), so no stop strings are needed;
* judge: one request for all candidates of a step (``prompt`` is a list), ``max_tokens=1``,
  ``logprobs=2`` with ``logprob_token_ids=[+, -]`` (vLLM); a server without
  ``logprob_token_ids`` gets ``logprobs=20`` and the labels are looked up among the top
  tokens.

Failures are retried with exponential back-off (connection errors, time-outs, 429 and
5xx), then raise :class:`~toolprm_agents.backends.base.BackendError` subclasses with what
to do: :class:`ServerUnavailableError`, :class:`ServerTimeoutError`,
:class:`StructuredOutputsError` (the server rejects the grammar, or answers without
applying it), :class:`ServerRequestError`.

Example:
    >>> policy = OpenAIServerPolicy("http://127.0.0.1:8000/v1")                  # doctest: +SKIP
    >>> prm = OpenAIServerJudge("http://127.0.0.1:8001/v1", kind="toolprm")       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Sequence

import httpx

from ..compute import Compute
from ..errors import ConfigError
from ..interfaces import Candidate, Policy, PolicySession, Scorer, ScorerSession, SharedContext
from ..judges import locate_judge_weights
from ..prompt import CHATML, PromptFormat, refuse_control_text, render_chat
from ..steps import PartialAnswer, StepPlan
from .base import BackendError, GenOutput, TokenContexts, build_candidates, judge_rows, judge_spec, label_probability

__all__ = [
    "CompletionsClient",
    "OpenAIServerPolicy",
    "OpenAIServerJudge",
    "ServerUnavailableError",
    "ServerTimeoutError",
    "ServerRequestError",
    "StructuredOutputsError",
]

log = logging.getLogger(__name__)


class ServerUnavailableError(BackendError):
    """The server could not be reached (refused, reset, DNS) after every retry."""


class ServerTimeoutError(BackendError):
    """The server did not answer within the time-out after every retry."""


class ServerRequestError(BackendError):
    """The server answered with an error that retrying does not fix."""


class StructuredOutputsError(ServerRequestError):
    """The server rejects the step grammar or answers without applying it."""


_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_GRAMMAR_WORDS = ("structured_output", "guided", "grammar", "xgrammar", "unrecognized request argument", "extra_forbidden", "extra inputs")


class CompletionsClient:
    """A small JSON client for an OpenAI-compatible server, with retries and time-outs.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        api_key: sent as ``Authorization: Bearer`` (``vllm serve --api-key``).
        timeout: seconds for one request to be answered; ``connect_timeout`` to connect.
        retries: further tries after a failed one; the ``k``-th waits
            ``backoff * 2**k`` seconds (at most ``max_backoff``), with jitter.
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, int(retries))
        self.backoff, self.max_backoff = backoff, max_backoff
        self.timeout = timeout
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout), headers=headers, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str) -> dict:
        return self._request("GET", path, None)

    def post(self, path: str, payload: dict) -> dict:
        return self._request("POST", path, payload)

    def _request(self, method: str, path: str, payload: dict | None) -> dict:
        url = f"{self.base_url}/{path.lstrip('/')}"
        last = ""
        kind: type[BackendError] = ServerUnavailableError
        t0 = time.monotonic()
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (1 + 0.1 * random.random())
                self._sleep(delay)
            try:
                resp = self._http.request(method, url, json=payload)
            except httpx.TimeoutException as exc:
                kind, last = ServerTimeoutError, f"no answer within {self.timeout:g} s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                kind, last = ServerUnavailableError, f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code in _RETRY_STATUS:
                kind, last = ServerUnavailableError, f"HTTP {resp.status_code}: {_error_text(resp)}"
                continue
            if resp.status_code >= 400:
                text = _error_text(resp)
                has_grammar = bool(payload) and ("structured_outputs" in payload or "guided_grammar" in payload)
                if has_grammar and any(w in text.lower() for w in _GRAMMAR_WORDS):
                    raise StructuredOutputsError(
                        f"{url} rejected the step grammar (HTTP {resp.status_code}: {text}); the backend needs a server "
                        f"with grammar-structured outputs: vLLM >= 0.11 with --structured-outputs-config.backend xgrammar "
                        f"(for vLLM < 0.11 pass grammar_field='guided_grammar')"
                    )
                raise ServerRequestError(f"{url}: HTTP {resp.status_code}: {text}")
            try:
                return resp.json()
            except ValueError:
                raise ServerRequestError(f"{url} answered with something other than JSON: {resp.text[:200]!r}") from None
        spent = time.monotonic() - t0
        hint = "" if kind is ServerTimeoutError else (
            "; is the server running? (python -m vllm.entrypoints.openai.api_server --model M --host H --port P)"
        )
        raise kind(f"{method} {url} failed after {self.retries + 1} tries in {spent:.1f} s: {last}{hint}")


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:300]
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("detail") or err)[:500]
    return str(err)[:500]


# ------------------------------------------------------------------------------------------


class _TemplateOnly:
    """Renders a chat template without a tokenizer (when the served model's tokenizer is not on this machine)."""

    def __init__(self, chat_template: str | None = None):
        self.chat_template = chat_template

    def apply_chat_template(self, chat, chat_template=None, tokenize=False, add_generation_prompt=True, **_):
        import jinja2

        return jinja2.Template(chat_template or self.chat_template or CHATML).render(
            messages=chat, add_generation_prompt=add_generation_prompt
        )


def _load_tokenizer(tokenizer: Any, served: str | None):
    """A tokenizer object from ``tokenizer`` (object, path, alias) or from the served model's id if it is a local path."""
    if tokenizer is not None and not isinstance(tokenizer, str):
        return tokenizer
    from ..models import ModelLoadError, resolve_model_path

    ref = tokenizer if tokenizer is not None else served
    if ref is None:
        return None
    try:
        path = resolve_model_path(ref)
    except ModelLoadError:
        if tokenizer is not None:
            raise
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        if tokenizer is not None:
            raise
        return None


class _ServerModel:
    """The served model's name and (where found) tokenizer, resolved on first use."""

    def __init__(self, client: CompletionsClient, model: str | None, tokenizer: Any, fallbacks: Sequence[str] = ()):
        self.client, self._model, self._tok_spec, self._fallbacks = client, model, tokenizer, tuple(fallbacks)
        self._tok: Any = None
        self._resolved = False
        self._lock = threading.Lock()

    def resolve(self) -> tuple[str, Any]:
        """(served model name, tokenizer); asks ``/models`` once when either is not given."""
        with self._lock:
            if not self._resolved:
                entries: list[dict] = []
                if self._model is None or self._tok_spec is None:
                    try:
                        entries = self.client.get("models").get("data") or []
                    except ServerRequestError:
                        if self._model is None:
                            raise
                if self._model is None:
                    if not entries:
                        raise ServerRequestError(f"{self.client.base_url}/models lists no model; pass model=")
                    self._model = entries[0]["id"]
                if self._tok_spec is not None:
                    tok = _load_tokenizer(self._tok_spec, None)
                else:
                    # the served name if it is a local path; for a LoRA adapter vLLM lists its base
                    # ("parent") and folder ("root"); then the base model a judge checkpoint names
                    entry = next((e for e in entries if e.get("id") == self._model), {})
                    tok = None
                    for ref in (self._model, entry.get("parent"), entry.get("root"), *self._fallbacks):
                        if ref and tok is None:
                            tok = _load_tokenizer(None, ref)
                if tok is None:
                    log.warning("no tokenizer for %r here: prompts are sent as text, rendered with ChatML", self._model)
                    tok = _TemplateOnly()
                self._tok = tok
                self._resolved = True
        return self._model, self._tok

    @property
    def has_tokenizer(self) -> bool:
        return not isinstance(self.resolve()[1], _TemplateOnly)

    def encode(self, text: str) -> list[int]:
        """Prompt text: a rendered prompt's message content is text, the template's markers special."""
        from ..prompt import encode_prompt

        return encode_prompt(self._tok, text) if text else []

    def encode_answer(self, text: str, suffix: str = "") -> list[int]:
        """Answer text as text, then ``suffix`` (a judge turn) as written."""
        from ..prompt import encode_text

        return encode_text(self._tok, text, suffix)



def _client(base_url: str, client: CompletionsClient | None, kw: dict) -> CompletionsClient:
    if client is not None:
        return client
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"server URL must start with http:// or https://, got {base_url!r}")
    return CompletionsClient(base_url, **kw)


class OpenAIServerPolicy(Policy):
    """The policy on an OpenAI-compatible completions server with grammar structured outputs.

    Args:
        base_url: the server's ``/v1`` URL (a load balancer in front of replicas works:
            every request is independent).
        model: the served model name (``None``: the first one ``/v1/models`` lists).
        tokenizer: a tokenizer, a local model path or ``"smollm2"`` (``None``: the served
            model's id if it is a local path). With a tokenizer, prompts are rendered with
            its chat template and sent as token ids; without, rendered with ChatML and sent
            as text.
        grammar_field: ``"structured_outputs"`` (vLLM >= 0.11) or ``"guided_grammar"``.
        max_step_tokens, closing_tokens, prompt_format: as for the other backends.
        timeout, connect_timeout, retries, backoff, api_key: see :class:`CompletionsClient`.
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        tokenizer: Any = None,
        prompt_format: PromptFormat | None = None,
        max_step_tokens: int = 96,
        closing_tokens: int = 8,
        grammar_field: str = "structured_outputs",
        client: CompletionsClient | None = None,
        **client_kw,
    ):
        if grammar_field not in ("structured_outputs", "guided_grammar"):
            raise ConfigError("grammar_field must be 'structured_outputs' or 'guided_grammar'")
        self.client = _client(base_url, client, client_kw)
        self.base_url = self.client.base_url
        self.served = _ServerModel(self.client, model, tokenizer)
        self.prompt_format = prompt_format or PromptFormat()
        self.max_step_tokens, self.closing_tokens = max_step_tokens, closing_tokens
        self.grammar_field = grammar_field
        from .steps import StepRequestBuilder  # xgrammar: imported when a policy is made, not with this module

        self.requests = StepRequestBuilder()

    @property
    def tokenizer(self):
        return self.served.resolve()[1]

    def session(self, messages, plan, compute, *, seed=0) -> "OpenAIServerSession":
        _, tok = self.served.resolve()
        prompt = self.prompt_format.render(tok, messages, plan.tools)
        if not self.served.has_tokenizer:  # sent as text: the server would read a control token in it
            refuse_control_text(prompt, self.base_url)
        return OpenAIServerSession(self, plan, prompt, compute, seed)

    def completion_payload(self, prompt, grammar: str, n: int, temperature: float, seed: int | None) -> dict:
        model, _ = self.served.resolve()
        payload: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "n": n,
            "temperature": temperature,
            "max_tokens": self.max_step_tokens + self.closing_tokens,
            "logprobs": 1,
            "add_special_tokens": False,
            "skip_special_tokens": True,
        }
        if seed is not None:
            payload["seed"] = seed
        if self.grammar_field == "structured_outputs":
            payload["structured_outputs"] = {"grammar": grammar}
        else:
            payload["guided_grammar"] = grammar
            payload["guided_decoding_backend"] = "xgrammar"
        return payload


class OpenAIServerSession(PolicySession):
    def __init__(self, policy: OpenAIServerPolicy, plan: StepPlan, prompt_text: str, compute: Compute, seed: int):
        self.policy, self.plan, self.prompt_text, self.compute, self.seed = policy, plan, prompt_text, compute, seed
        self._calls = 0
        served = policy.served
        # token ids split like the in-process backends' (same ids, same greedy answer); text without a tokenizer
        self.contexts = TokenContexts(served.encode(prompt_text), served.encode_answer) if served.has_tokenizer else None

    def propose(self, answer: PartialAnswer, n: int, temperature: float) -> list[Candidate]:
        forced = self.plan.forced_step(answer)
        if forced is not None:
            return [Candidate(forced)]
        pol = self.policy
        req = pol.requests.request(self.plan, answer)
        if req.complete is not None:
            return [Candidate(self.plan.parse(answer, req.complete))]
        if temperature <= 0:
            n, temperature = 1, 0.0
        self._calls += 1
        seed = (self.seed * 1_000_003 + self._calls) % (2**31) if temperature > 0 else None
        text = answer.text + req.jump
        prompt = self.contexts.get(text) if self.contexts is not None else self.prompt_text + text
        data = pol.client.post("completions", pol.completion_payload(prompt, req.grammar, n, temperature, seed))
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise ServerRequestError(f"{pol.base_url}/completions answered without choices: {str(data)[:200]}")
        outputs = []
        for ch in choices:
            lps = ((ch.get("logprobs") or {}).get("token_logprobs")) or []
            ntok = len(lps)
            if ch.get("finish_reason") == "stop" and lps:
                lps = lps[:-1]  # the end-of-sequence token the grammar forced
            outputs.append(GenOutput(ch.get("text") or "", ntok, float(sum(x for x in lps if x is not None)), ch.get("finish_reason")))
        usage = data.get("usage") or {}
        c = self.compute
        c.tokens_generated += int(usage.get("completion_tokens") or sum(o.num_tokens for o in outputs))
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        c.prefill_tokens += max(0, int(usage.get("prompt_tokens") or 0) - cached)
        c.forward_passes += 1 + max((o.num_tokens for o in outputs), default=0)
        return build_candidates(self.plan, answer, req, outputs, c, where=f"{pol.base_url}/completions")

    def shared_context(self) -> SharedContext | None:
        """The served model (``(base URL, served name)``), the prompt's token ids and their contexts."""
        if self.contexts is None:
            return None
        return SharedContext(weights=(self.policy.base_url, self.policy.served.resolve()[0]), prompt=self.contexts.prompt_ids, cache=self.contexts)

    def reply(self, messages, *, max_tokens: int = 128) -> str:
        """A greedy text answer from the served model (its chat template; no grammar)."""
        pol = self.policy
        model, tok = pol.served.resolve()
        template = pol.prompt_format.chat_template or getattr(tok, "chat_template", None) or CHATML
        text = render_chat(tok, list(messages), template)
        if not pol.served.has_tokenizer:
            refuse_control_text(text, pol.base_url)
        prompt = pol.served.encode(text) if pol.served.has_tokenizer else str(text)
        payload = {"model": model, "prompt": prompt, "max_tokens": int(max_tokens), "temperature": 0.0,
                   "stop": ["<|im_end|>"], "add_special_tokens": False, "skip_special_tokens": True}
        data = pol.client.post("completions", payload)
        choices = data.get("choices") or []
        if not choices:
            raise ServerRequestError(f"{pol.base_url}/completions answered without choices: {str(data)[:200]}")
        usage = data.get("usage") or {}
        self.compute.tokens_generated += int(usage.get("completion_tokens") or 0)
        self.compute.prefill_tokens += int(usage.get("prompt_tokens") or 0)
        return (choices[0].get("text") or "").strip()


# ------------------------------------------------------------------------------------------


class OpenAIServerJudge(Scorer):
    """A generative judge (ToolPRM, ORM or C-PRM) served behind an OpenAI-compatible completions endpoint.

    Args:
        base_url: the judge server's ``/v1`` URL (may be the policy's server when the judge
            is the same model, or a LoRA adapter served there: pass its name as ``model``).
        checkpoint: the judge checkpoint directory whose ``toolprm_config.json`` gives the
            judgement text and labels (``None``: the packaged one for ``kind``); its weights
            are what the server serves.
        kind: ``toolprm``, ``orm`` or ``cprm``.
        model, tokenizer, client options: as for :class:`OpenAIServerPolicy`.
    """

    def __init__(
        self,
        base_url: str,
        checkpoint=None,
        kind: str = "toolprm",
        *,
        model: str | None = None,
        tokenizer: Any = None,
        client: CompletionsClient | None = None,
        **client_kw,
    ):
        self.client = _client(base_url, client, client_kw)
        self.base_url = self.client.base_url
        weights, self.config = locate_judge_weights(checkpoint, kind, check_files=False)  # the server holds the weights
        # the tokenizer: given, else the served model's id if it is a local path, else the judge's base model
        self.served = _ServerModel(self.client, model, tokenizer, fallbacks=[weights.model])
        self._checkpoint, self._kind = checkpoint, kind
        self._spec = None
        self._token_ids = True  # logprob_token_ids accepted (vLLM); False: top-logprobs fallback
        self.granularity = self.config.granularity
        self.name = self.config.kind

    @property
    def spec(self):
        if self._spec is None:
            _, tok = self.served.resolve()
            if not self.served.has_tokenizer:
                raise BackendError(
                    f"the judge at {self.base_url} needs the served model's tokenizer on this machine (for its label "
                    f"tokens and token-id prompts): pass tokenizer= (a local model folder or 'smollm2')"
                )
            self._spec = judge_spec(self._checkpoint, self._kind, tok)
        return self._spec

    def session(self, messages, plan, compute, *, policy_session=None) -> "OpenAIServerJudgeSession":
        spec = self.spec
        prompt_ids = self.served.encode(spec.render(messages, plan.tools))
        shared = policy_session.shared_context() if policy_session is not None else None
        # the same served model and prompt: the policy's token contexts
        contexts = shared.reuse((self.base_url, self.served.resolve()[0]), prompt_ids) if shared is not None else None
        if not isinstance(contexts, TokenContexts):
            contexts = TokenContexts(prompt_ids, self.served.encode_answer)
        return OpenAIServerJudgeSession(self, contexts, compute)

    def label_logprobs(self, rows: list[list[int]]) -> tuple[list[tuple[float, float]], dict]:
        """("+", "-") log-probabilities at the end of each row, and the server's usage record."""
        plus, minus = self.spec.label_ids
        model, _ = self.served.resolve()
        base = {"model": model, "prompt": rows, "max_tokens": 1, "temperature": 0.0, "return_tokens_as_token_ids": True}
        if self._token_ids:
            try:
                data = self.client.post("completions", {**base, "logprobs": 2, "logprob_token_ids": [plus, minus]})
            except ServerRequestError as exc:
                if "logprob_token_ids" not in str(exc):
                    raise
                log.warning("%s does not take logprob_token_ids: reading the labels from the top-20 log-probabilities", self.base_url)
                self._token_ids = False
        if not self._token_ids:
            data = self.client.post("completions", {**base, "logprobs": 20})
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(rows):
            raise ServerRequestError(f"{self.base_url}/completions gave {len(choices)} answers for {len(rows)} judgements")
        out = []
        for ch in choices:
            top = (((ch.get("logprobs") or {}).get("top_logprobs")) or [{}])[0] or {}
            out.append((_label_lp(top, plus, self.spec), _label_lp(top, minus, self.spec)))
        return out, data.get("usage") or {}


def _label_lp(top: dict, token_id: int, spec) -> float:
    for key in (f"token_id:{token_id}", spec.tokenizer.decode([token_id])):
        if key in top:
            return float(top[key])
    return min(top.values(), default=-100.0) - 1.0  # not among the top: below all of them


class OpenAIServerJudgeSession(ScorerSession):
    def __init__(self, judge: OpenAIServerJudge, contexts: TokenContexts, compute: Compute):
        self.judge, self.contexts, self.compute = judge, contexts, compute

    def score(self, pairs):
        if not pairs:
            return []
        j = self.judge
        rows = judge_rows(j.spec, self.contexts, pairs)
        lps, usage = j.label_logprobs(rows)
        c = self.compute
        c.scorer_calls += len(pairs)
        c.scorer_forward_passes += 1
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        c.scorer_tokens += max(0, int(usage.get("prompt_tokens") or sum(map(len, rows))) - cached)
        return [label_probability(p, m) for p, m in lps]
