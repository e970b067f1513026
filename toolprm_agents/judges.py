"""Judge checkpoints and the judge's text format, in one place for every backend and the trainer.

A generative judge (ToolPRM, ORM, C-PRM) reads the prompt the policy reads, the answer up
to the judged unit and a judge turn, and answers with a label token, ``+`` or ``-``. This
module holds what every scorer backend (transformers, vLLM, an OpenAI-compatible server)
and the trainer must agree on, and nothing that needs torch:

* :class:`JudgeConfig` -- ``toolprm_config.json`` of a checkpoint folder, checked field
  by field (a bad field is a :class:`~toolprm_agents.interfaces.ScorerError` naming it);
* :class:`JudgeFormat` -- the judge's prompt, the judgement suffix after an answer and the
  label token ids, for one tokenizer;
* :func:`judge_kind`, :func:`packaged_checkpoint`, :func:`granularity_of` -- the one map
  from a judge name to its packaged checkpoint and the units it judges;
* :func:`locate_judge_weights` -- where a checkpoint's weights are (its own folder, or a
  base model plus an optional PEFT adapter), with the base-model path resolved once, and
  every file the loaders will read checked to be on disk (loads are local-only).

Example:
    >>> from toolprm_agents.judges import JudgeConfig, packaged_checkpoint
    >>> packaged_checkpoint("prm").name
    'toolprm-probe-smollm2'
    >>> packaged_checkpoint("prm", generative=True).name
    'toolprm-smollm2'
    >>> JudgeConfig(kind="orm").granularity
    'answer'
    >>> JudgeConfig(question="Is {this} right?")
    Traceback (most recent call last):
    ...
    toolprm_agents.interfaces.ScorerError: judge config field 'question': ...
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from .interfaces import Granularity, ScorerError
from .steps import PartialAnswer

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CHECKPOINT",
    "DEFAULT_QUESTIONS",
    "JUDGE_KINDS",
    "JUDGE_TURN",
    "JudgeConfig",
    "JudgeFormat",
    "JudgeWeights",
    "granularity_of",
    "judge_kind",
    "locate_judge_weights",
    "packaged_checkpoint",
]

CONFIG_NAME = "toolprm_config.json"
CHECKPOINTS = Path(__file__).parent / "checkpoints"
#: judge kind -> (the units it judges, its packaged checkpoint folder)
JUDGE_KINDS: dict[str, tuple[Granularity, str]] = {
    "toolprm": ("step", "toolprm-smollm2"),
    "orm": ("answer", "orm-smollm2"),
    "cprm": ("call", "cprm-smollm2"),
}
_ALIASES = {"prm": "toolprm"}
DEFAULT_CHECKPOINT = CHECKPOINTS / "toolprm-probe-smollm2"  # the default ToolPRM (a probe judge; see packaged_checkpoint)
#: the generative (LoRA) ToolPRM, for backends that cannot run a probe judge
LORA_CHECKPOINT = CHECKPOINTS / "toolprm-smollm2"

DEFAULT_QUESTIONS = {
    "step": "Is the last step of this answer ({kind}) correct? Answer + or -.",
    "call": "Is the last function call of this answer correct? Answer + or -.",
    "answer": "Is this answer correct? Answer + or -.",
}
JUDGE_TURN = "<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def judge_kind(name: str | None) -> str:
    """The canonical judge kind of a name (``toolprm``, ``prm``, ``ToolPRM``, ``c-prm`` ...)."""
    k = (name or "toolprm").lower().replace("-", "")
    k = _ALIASES.get(k, k)
    if k not in JUDGE_KINDS:
        raise ScorerError(f"unknown judge kind {name!r}: choose toolprm, orm or cprm")
    return k


#: judge kind -> its packaged probe judge (the default where the backend can run one and it is installed)
PROBE_JUDGES: dict[str, str] = {"toolprm": "toolprm-probe-smollm2", "orm": "orm-probe-smollm2", "cprm": "cprm-probe-smollm2"}


def packaged_checkpoint(kind: str | None, *, generative: bool = False) -> Path:
    """The checkpoint folder packaged for judge ``kind``.

    Where a probe judge of that kind is packaged (:mod:`toolprm_agents.backends.probe_judge`,
    better on every held-out figure) it is that one; ``generative=True`` asks for the judge that answers
    with a label token (the LoRA one), which served backends and :class:`GenerativeJudge` need.
    """
    k = judge_kind(kind)
    if not generative and k in PROBE_JUDGES and (CHECKPOINTS / PROBE_JUDGES[k] / CONFIG_NAME).is_file():
        return CHECKPOINTS / PROBE_JUDGES[k]
    return CHECKPOINTS / JUDGE_KINDS[k][1]


def granularity_of(kind: str | None) -> Granularity:
    """What judge ``kind`` judges: ``step`` (ToolPRM), ``call`` (C-PRM), ``answer`` (ORM)."""
    return JUDGE_KINDS[judge_kind(kind)][0]


def _check_template(name: str, value, **slots) -> None:
    if not isinstance(value, str):
        raise ScorerError(f"judge config field {name!r}: expected text, got {type(value).__name__} {value!r}")
    try:
        value.format(**slots)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        allowed = ", ".join("{" + s + "}" for s in slots) or "none"
        raise ScorerError(
            f"judge config field {name!r}: {value!r} is not a valid template ({type(exc).__name__}: {exc}); "
            f"placeholders allowed: {allowed}; write a literal brace as {{{{ or }}}}"
        ) from None


@dataclass
class JudgeConfig:
    """What ``toolprm_config.json`` in a judge checkpoint says.

    ``base_model``: where the weights come from when the directory holds none (``"smollm2"``
    or a path, relative paths are to the checkpoint); ``adapter``: the directory holds a
    PEFT adapter over ``base_model``; ``label_tokens``: the "+" and "-" label texts (each
    one token); ``judge_turn``/``question``: the text after the answer whose next token is
    the label (``question`` may hold ``{kind}``, the judged step's kind); ``system``: the
    judge's system prompt (with a ``{tools}`` slot); ``trained``: whether any training went
    into it (the untrained base judge is only a format placeholder); ``search_weights``: the
    combined search's weights (``policy``, ``judge``, ``vote``) fitted for this judge on a
    held-out split of its training sources (``toolprm-agents train fit-weights``), and where
    chosen there ``verify`` / ``verify_types`` (:attr:`~toolprm_agents.search.SearchConfig.verify`); ``probe``:
    the file of a probe judge's weights (a logistic model over the base model's hidden states,
    :mod:`toolprm_agents.backends.probe_judge`) -- such a judge reads the policy's prompt and
    has no judge turn or label tokens.
    """

    kind: Literal["toolprm", "orm", "cprm"] = "toolprm"
    base_model: str | None = "smollm2"
    adapter: bool = False
    label_tokens: tuple[str, str] = ("+", "-")
    judge_turn: str = JUDGE_TURN
    question: str | None = None
    system: str | None = None
    trained: bool = False
    format_version: int = 1
    metadata: dict = field(default_factory=dict)
    search_weights: dict | None = None
    probe: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ScorerError(f"judge config field 'kind': {self.kind!r} is not one of {', '.join(JUDGE_KINDS)}")
        if self.base_model is not None and not isinstance(self.base_model, (str, os.PathLike)):
            raise ScorerError(f"judge config field 'base_model': expected a model name or path, got {self.base_model!r}")
        if self.base_model is not None:
            self.base_model = os.fspath(self.base_model)
        for name in ("adapter", "trained"):
            if not isinstance(getattr(self, name), bool):
                raise ScorerError(f"judge config field {name!r}: expected true or false, got {getattr(self, name)!r}")
        labels = self.label_tokens
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or len(labels) != 2 or not all(
            isinstance(t, str) and t for t in labels
        ):
            raise ScorerError(f"judge config field 'label_tokens': expected two label texts (+ and -), got {labels!r}")
        self.label_tokens = (labels[0], labels[1])
        if labels[0] == labels[1]:
            raise ScorerError(f"judge config field 'label_tokens': the two labels are the same ({labels[0]!r})")
        _check_template("judge_turn", self.judge_turn, question="?")
        if self.question is not None:
            _check_template("question", self.question, kind="ARG")
        if self.system is not None:
            _check_template("system", self.system, tools="[]")
        if self.probe is not None and (not isinstance(self.probe, str) or not self.probe or os.sep in self.probe or self.probe.startswith(".")):
            raise ScorerError(f"judge config field 'probe': expected a file name in the checkpoint folder, got {self.probe!r}")
        if not isinstance(self.metadata, dict):
            raise ScorerError(f"judge config field 'metadata': expected an object, got {type(self.metadata).__name__}")
        if self.search_weights is not None:
            w = self.search_weights
            ok = isinstance(w, dict) and all(
                k in ("policy", "judge", "vote") and isinstance(w[k], (int, float)) and not isinstance(w[k], bool) and w[k] >= 0
                for k in w if k in ("policy", "judge", "vote")
            )
            if not ok:
                raise ScorerError(f"judge config field 'search_weights': expected non-negative numbers for policy, judge, vote, got {w!r}")
            v = w.get("verify")
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0):
                raise ScorerError(f"judge config field 'search_weights.verify': expected a probability in [0, 1] (0: off), got {v!r}")
            if w.get("verify_types") is not None:
                from .steps import check_decision_types

                w["verify_types"] = list(check_decision_types(w["verify_types"], "judge config field 'search_weights.verify_types'", ScorerError))

    @property
    def granularity(self) -> Granularity:
        return granularity_of(self.kind)

    def save(self, directory: str | os.PathLike) -> None:
        d = asdict(self)
        d["label_tokens"] = list(self.label_tokens)
        Path(directory, CONFIG_NAME).write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "JudgeConfig":
        path = Path(directory, CONFIG_NAME)
        if not path.is_file():
            raise ScorerError(f"{directory!s} is not a judge checkpoint: {CONFIG_NAME} is missing")
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ScorerError(f"{path}: not a valid judge config: {exc}") from None
        if not isinstance(data, dict):
            raise ScorerError(f"{path}: not a valid judge config: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ScorerError(f"{path}: not a valid judge config: unknown field(s) {', '.join(map(repr, unknown))}")
        try:
            return cls(**data)
        except ScorerError as exc:
            raise ScorerError(f"{path}: {exc}") from None


class JudgeFormat:
    """The judge's text for one tokenizer: prompt, judgement suffix, label token ids.

    Scorers on every backend and the trainer build judge text only through this class, so
    what a checkpoint is trained on and how it is scored cannot drift apart.

    Example:
        >>> fmt = JudgeFormat(JudgeConfig(), tokenizer)            # doctest: +SKIP
        >>> fmt.render(messages, plan.tools) + answer.text + fmt.suffix(answer)  # doctest: +SKIP
    """

    def __init__(self, config: JudgeConfig, tokenizer):
        from .prompt import PromptFormat

        self.config = config
        self.granularity = config.granularity
        self.tokenizer = tokenizer
        self.prompt_format = PromptFormat(system=config.system) if config.system else PromptFormat()
        self.label_ids = [self._one_token(t) for t in config.label_tokens]

    def _one_token(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise ScorerError(f"label {text!r} is {len(ids)} tokens for this tokenizer; a judge label must be one token")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        """Prompt or template text: a rendered prompt's message content is text (not control tokens)."""
        from .prompt import encode_prompt

        return encode_prompt(self.tokenizer, text) if text else []

    def encode_answer(self, text: str, suffix: str = "") -> list[int]:
        """Answer text as text (a special-token string in an argument is no control token), then
        ``suffix`` (the judge turn) as written."""
        from .prompt import encode_text

        return encode_text(self.tokenizer, text, suffix)

    def render(self, messages, tools) -> str:
        """The prompt text for normalised ``messages`` and tool specs (what the scorers read)."""
        return self.prompt_format.render(self.tokenizer, messages, tools)

    def prompt(self, messages, tools) -> str:
        """The prompt text for raw messages and tools (normalised first; the trainer's input)."""
        from .prompt import normalize_messages
        from .schema import to_tool_specs

        return self.render(normalize_messages(messages), to_tool_specs(tools))

    def suffix(self, answer: PartialAnswer) -> str:
        """The judge turn after ``answer``; the next token is the label."""
        question = self.config.question or DEFAULT_QUESTIONS[self.granularity]
        kind = next((s.kind.value for s in reversed(answer.steps) if not s.forced), "TOTAL_FINISH")
        return self.config.judge_turn.format(question=question.format(kind=kind))


# ------------------------------------------------------------------------------------------
# where the weights are


def require_generative(config: JudgeConfig, checkpoint) -> None:
    """A :class:`~toolprm_agents.interfaces.ScorerError` for a probe judge where a generative one is needed.

    A probe judge reads the base model's hidden states, which only the in-process
    transformers backend exposes; a served model (vLLM, an OpenAI-compatible server) answers
    with tokens, so it needs a judge that answers "+" or "-".
    """
    if config.probe:
        raise ScorerError(
            f"{checkpoint} is a probe judge (it reads the base model's hidden states): only the transformers "
            f"backend can run it; with vLLM or a server use a generative judge checkpoint, e.g. {LORA_CHECKPOINT}"
        )


@dataclass
class JudgeWeights:
    """Where a judge's weights are: ``model`` (a reference for ``resolve_model_path``: the
    checkpoint folder itself, ``"smollm2"`` or a base-model path) and the PEFT ``adapter``
    folder, if any."""

    model: str
    adapter: str | None = None


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def locate_judge_weights(
    checkpoint: str | os.PathLike | None, kind: str | None = None, *, config: JudgeConfig | None = None, check_files: bool = True
) -> tuple[JudgeWeights, JudgeConfig]:
    """The weights of a judge checkpoint (``None``: the packaged one for ``kind``) and its config.

    Nothing here reaches a hub: a relative ``base_model`` is resolved against the checkpoint
    folder, and an adapter checkpoint must hold ``adapter_config.json`` and its weights,
    else :class:`~toolprm_agents.interfaces.ScorerError` names the missing file
    (``check_files=False``: the weights are served elsewhere and only their place is read).
    """
    ckpt = Path(checkpoint) if checkpoint is not None else packaged_checkpoint(kind, generative=True)
    config = config or JudgeConfig.load(ckpt)
    require_generative(config, ckpt)
    if (ckpt / "config.json").is_file():
        return JudgeWeights(str(ckpt)), config
    base = config.base_model
    if base is None:
        raise ScorerError(f"{ckpt}: no weights (config.json) and no base_model in {CONFIG_NAME}")
    if base != "smollm2" and not os.path.isabs(base) and (ckpt / base).exists():
        base = str((ckpt / base).resolve())
    if not config.adapter:
        return JudgeWeights(base), config
    if not check_files:
        return JudgeWeights(base, str(ckpt)), config
    if not (ckpt / "adapter_config.json").is_file():
        raise ScorerError(f"{ckpt}: {CONFIG_NAME} says adapter: true but adapter_config.json is missing")
    if not any((ckpt / name).is_file() for name in ADAPTER_WEIGHTS):
        raise ScorerError(f"{ckpt}: {CONFIG_NAME} says adapter: true but the adapter weights ({' or '.join(ADAPTER_WEIGHTS)}) are missing")
    return JudgeWeights(base, str(ckpt)), config
