"""Recipes and the whole pipeline: data -> masking -> rollouts -> labels/dataset -> training -> evaluation.

A recipe (``training/recipes/*.yaml`` or ``.json``) says everything a run needs; every
stage writes its output under the recipe's ``output_dir`` and is skipped when that
output is already there (``force`` redoes it), so an interrupted run is continued by
running the same command again -- rollouts resume per example.

Stages and outputs (under ``output_dir``):

* ``data``     -> ``examples.jsonl`` (sources loaded, decontaminated against the evaluation
  sets, sampled per source, masked) and ``data_report.json`` (counts, what was dropped and why);
* ``rollouts`` -> ``rollouts.jsonl`` (resumable);
* ``dataset``  -> ``dataset/{train,test}.parquet``, ``dataset/stats.json``, ``dataset/stats.md``;
* ``train``    -> ``checkpoints/{toolprm,orm,cprm}/`` (each a loadable judge checkpoint);
* ``eval``     -> ``eval/metrics.json``, ``eval/metrics.md`` (the held-out table, with the
  untrained base judge as a reference row);
* ``install``  -> copies the checkpoints over the packaged defaults
  (``toolprm_agents/checkpoints/{kind}-smollm2``) when the recipe says so.

Example:
    >>> recipe = load_recipe("training/recipes/cpu-smollm2.yaml")   # doctest: +SKIP
    >>> run_pipeline(recipe)                                        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .sources import EvalIndex, Example, decontaminate, load_sources, stable_seed

log = logging.getLogger(__name__)

__all__ = ["STAGES", "load_recipe", "apply_overrides", "run_pipeline", "run_stage", "dry_run", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("data", "rollouts", "branches", "synth", "dataset", "train", "calibrate", "eval", "install")
#: stages a recipe runs only when it has their section (older recipes run as before)
OPTIONAL_STAGES = {"branches": "branches", "synth": "perturb", "calibrate": "calibrate"}
KINDS = ("toolprm", "orm", "cprm")


# ------------------------------------------------------------------------------------------
# recipes


def load_recipe(path: str | os.PathLike) -> dict:
    """A recipe from YAML or JSON (``_path`` and ``_name`` are added)."""
    p = Path(path)
    if not p.is_file():
        cand = REPO_ROOT / "training" / "recipes" / f"{path}.yaml"
        if cand.is_file():
            p = cand
        else:
            raise FileNotFoundError(f"recipe {path!s} not found (nor {cand})")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("YAML recipes need PyYAML (pip install pyyaml), or use a .json recipe") from None
        recipe = yaml.safe_load(text)
    else:
        recipe = json.loads(text)
    if not isinstance(recipe, dict):
        raise ValueError(f"{p}: a recipe is a mapping")
    recipe["_path"] = str(p)
    recipe.setdefault("name", p.stem)
    recipe["_name"] = recipe["name"]
    for key in ("data", "masking", "rollouts", "train", "eval"):
        recipe.setdefault(key, {})
    unknown = set(recipe) - {"name", "description", "output_dir", "seed", "threads", "data", "masking", "augment", "rollouts", "branches", "perturb", "train", "calibrate", "eval", "install", "accelerate", "_path", "_name"}
    if unknown:
        raise ValueError(f"{p}: unknown recipe keys {sorted(unknown)}")
    return recipe


def _parse_value(text: str) -> Any:
    try:
        import yaml

        return yaml.safe_load(text)
    except ImportError:  # pragma: no cover
        try:
            return json.loads(text)
        except ValueError:
            return text


def apply_overrides(recipe: dict, overrides: Sequence[str]) -> dict:
    """``["train.common.lora_r=4", "rollouts.beams=1"]`` applied to a copy of ``recipe``."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not KEY=VALUE (e.g. rollouts.beams=1)")
        key, value = item.split("=", 1)
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return out


def _out(recipe: dict) -> Path:
    d = Path(recipe.get("output_dir") or f"runs/{recipe['_name']}")
    return d if d.is_absolute() else Path.cwd() / d


def _threads(recipe: dict) -> None:
    n = recipe.get("threads")
    if n:
        import torch

        torch.set_num_threads(int(n))


# ------------------------------------------------------------------------------------------
# stages


def stage_data(recipe: dict, out: Path, force: bool = False) -> list[Example]:
    path = out / "examples.jsonl"
    if path.is_file() and not force:
        return [Example.from_dict(json.loads(l)) for l in path.open() if l.strip()]
    from .masking import MaskingConfig, apply_masking

    cfg = recipe["data"]
    seed = int(recipe.get("seed", 0))
    root = cfg.get("root")
    index = EvalIndex.build(root, require_bfcl=bool(cfg.get("require_bfcl", True)))
    examples, skipped = load_sources(cfg.get("sources") or {"seal-tools": {}, "glaive": {}, "api-bank-lv3": {}}, root, seed=seed, index=index)
    kept, dropped = decontaminate(examples, index)
    report: dict[str, Any] = {
        "loaded": len(examples),
        "skipped_at_load": skipped,
        "dropped_overlapping_eval": dropped,
        "eval_index": {"queries": {k: len(v) for k, v in index.queries.items()}, "tool_names": {k: len(v) for k, v in index.tool_names.items()}, "missing": index.missing},
    }
    max_prompt = cfg.get("max_prompt_tokens")
    fits = _prompt_filter(recipe) if max_prompt else None
    if fits:
        fit = [ex for ex in kept if fits(ex)]
        report["dropped_prompt_too_long"] = len(kept) - len(fit)
        kept = fit
    per_source = cfg.get("per_source") or {}
    rng = random.Random(stable_seed("sample", seed))
    chosen: list[Example] = []
    by_source: dict[str, list[Example]] = {}
    for ex in kept:
        by_source.setdefault(ex.source, []).append(ex)
    for src, items in sorted(by_source.items()):
        items = sorted(items, key=lambda e: stable_seed("order", seed, e.id))
        n = per_source.get(src)
        chosen += items if n is None else items[: int(n)]
    rng.shuffle(chosen)
    report["selected"] = {src: sum(1 for e in chosen if e.source == src) for src in sorted(by_source)}
    if recipe.get("augment"):
        from .augment import AugmentConfig, augment_examples

        acfg = AugmentConfig(**{"seed": seed, "test_fraction": float(cfg.get("test_fraction", 0.15)), **recipe["augment"]})
        extra, areport = augment_examples(chosen, acfg)
        extra, adropped = decontaminate(extra, index)  # a joined turn is a new text: check it again
        if fits:
            n = len(extra)
            extra = [ex for ex in extra if fits(ex)]
            areport["dropped_prompt_too_long"] = n - len(extra)
        areport["dropped_overlapping_eval"] = adropped
        report["augmented"] = areport
        chosen += extra
    masking = MaskingConfig(**{"seed": seed, **(recipe.get("masking") or {})})
    final = apply_masking(chosen, masking)
    report["after_masking"] = len(final)
    report["masked"] = sum(1 for e in final if e.meta.get("masked"))
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for ex in final:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    (out / "data_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("data: %d examples (%s)", len(final), report["selected"])
    return final


def _prompt_filter(recipe: dict):
    """``fits(example)``: whether the policy's prompt for it has at most ``data.max_prompt_tokens`` tokens."""
    from ..models import resolve_model_path
    from ..prompt import PromptFormat, encode_prompt, normalize_messages
    from ..schema import to_tool_specs
    from transformers import AutoTokenizer

    from ..backends import backend_of

    cfg = recipe["data"]
    max_prompt = int(cfg["max_prompt_tokens"])
    backend, ref = backend_of(recipe["rollouts"].get("policy", "smollm2"))
    tok_ref = cfg.get("tokenizer") or (ref if backend != "openai" else None) or "smollm2"
    tok = AutoTokenizer.from_pretrained(resolve_model_path(tok_ref), local_files_only=True)
    fmt = PromptFormat()

    def fits(ex: Example) -> bool:
        return len(encode_prompt(tok, fmt.render(tok, normalize_messages(ex.messages), to_tool_specs(ex.tools)))) <= max_prompt

    return fits


def _selected(examples: list[Example], cfg: dict, salt: str) -> list[Example]:
    """The first ``max_queries`` examples in a fixed order (all without it)."""
    n = cfg.get("max_queries")
    if n is None:
        return list(examples)
    return sorted(examples, key=lambda e: stable_seed(salt, e.id))[: int(n)]


def stage_branches(recipe: dict, out: Path, examples: list[Example], force: bool = False) -> list[dict]:
    """Gold-prefix branching with the policy (:mod:`.branching`): ``branches.jsonl``, resumable per query."""
    from .branching import BranchConfig, collect_branches
    from .rollouts import read_rollouts

    path = out / "branches.jsonl"
    if force and path.exists():
        path.unlink()
    cfg = dict(recipe.get("branches") or {})
    if cfg.pop("enabled", True) is False:
        return read_rollouts(path)
    cfg.pop("hold_until_done", None)
    policy_ref = cfg.pop("policy", recipe["rollouts"].get("policy", "smollm2"))
    max_step_tokens = int(cfg.pop("max_step_tokens", 16))
    budget = cfg.pop("budget_minutes", None)
    todo_all = _selected(examples, {"max_queries": cfg.pop("max_queries", None)}, "branch-order")
    config = BranchConfig(**{"seed": int(recipe.get("seed", 0)), **cfg})
    done = {r["id"] for r in read_rollouts(path)}
    if not [e for e in todo_all if e.id not in done]:
        return read_rollouts(path)
    from ..backends import load_policy

    _threads(recipe)
    policy = load_policy(policy_ref, max_step_tokens=max_step_tokens)
    return collect_branches(todo_all, policy, path, config, budget_seconds=float(budget) * 60 if budget else None)


def stage_synth(recipe: dict, out: Path, examples: list[Example], force: bool = False) -> list[dict]:
    """Model-free hard negatives (:mod:`.perturb`), written in shards of ``perturb.shard_size``
    examples (``synth/shard-NNNNN.jsonl``, each written whole then renamed): a stopped run
    keeps its finished shards, and ``perturb.budget_minutes`` stops starting new ones."""
    from .perturb import PerturbConfig, perturb_examples

    d = out / "synth"
    if force and d.is_dir():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    cfg = dict(recipe.get("perturb") or {})
    size = int(cfg.pop("shard_size", 250))
    budget = cfg.pop("budget_minutes", None)
    config = PerturbConfig(**{"seed": int(recipe.get("seed", 0)), **cfg})
    t0 = time.monotonic()
    for k in range(0, len(examples), size):
        path = d / f"shard-{k // size:05d}.jsonl"
        if path.is_file():
            continue
        if budget and time.monotonic() - t0 > float(budget) * 60:
            log.warning("synth: time budget spent; run again to write the remaining shards")
            break
        recs = perturb_examples(examples[k : k + size], config)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(path)
    return read_synth(out)


def read_synth(out: Path) -> list[dict]:
    out_recs = []
    for path in sorted((out / "synth").glob("shard-*.jsonl")):
        out_recs += [json.loads(l) for l in path.open() if l.strip()]
    return out_recs


def stage_rollouts(recipe: dict, out: Path, examples: list[Example], force: bool = False) -> list[dict]:
    from .rollouts import RolloutConfig, collect_rollouts, read_rollouts

    path = out / "rollouts.jsonl"
    if force and path.exists():
        path.unlink()
    cfg = dict(recipe["rollouts"])
    if cfg.pop("enabled", True) is False:
        return read_rollouts(path)
    examples = _selected(examples, {"max_queries": cfg.pop("max_queries", None)}, "rollout-order")
    cfg.pop("hold_until_done", None)
    policy_ref = cfg.pop("policy", "smollm2")
    max_step_tokens = int(cfg.pop("max_step_tokens", 32))
    budget = cfg.pop("budget_minutes", None)
    config = RolloutConfig(**{"seed": int(recipe.get("seed", 0)), **cfg})
    done = {r["id"] for r in read_rollouts(path)}
    todo = [e for e in examples if e.id not in done]
    if not todo:
        return read_rollouts(path)
    from ..backends import load_policy

    _threads(recipe)
    # "smollm2" or a path: transformers here; "vllm:PATH" or a server URL on a GPU machine
    policy = load_policy(policy_ref, max_step_tokens=max_step_tokens)
    return collect_rollouts(examples, policy, path, config, budget_seconds=float(budget) * 60 if budget else None)


def stage_dataset(recipe: dict, out: Path, records: list[dict], force: bool = False, inputs: dict | None = None) -> dict:
    """``inputs``: how many records each collection gave; a dataset built from other counts
    (more branches or rollouts since) is rebuilt without ``force``."""
    from .dataset import build_rows, format_statistics, save_dataset, statistics

    d = out / "dataset"
    if (d / "stats.json").is_file() and not force:
        built = d / "inputs.json"
        if inputs is None or not built.is_file() or json.loads(built.read_text()) == inputs:
            return json.loads((d / "stats.json").read_text())
        log.info("dataset: its inputs changed (%s -> %s); rebuilding", built.read_text().strip(), inputs)
    cfg = recipe["data"]
    rows = build_rows(records, test_fraction=float(cfg.get("test_fraction", 0.15)), seed=int(recipe.get("seed", 0)),
                      calib_fraction=float(cfg.get("calib_fraction", 0.0)))
    save_dataset(rows, d)
    stats = statistics(rows)
    stats["summary"] = _summary(out, rows, stats)
    (d / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (d / "stats.md").write_text(format_statistics(stats) + "\n")
    if inputs is not None:
        (d / "inputs.json").write_text(json.dumps(inputs) + "\n")
    log.info("dataset:\n%s", format_statistics(stats))
    return stats


def _summary(out: Path, rows: list[dict], stats: dict) -> dict:
    """Totals over the splits: examples by kind, distinct user texts, labelled step units,
    the realised perturbation mix (answers) and the negative step units by error type."""
    from collections import Counter

    from .dataset import origin_group
    from .sources import normalize_text

    examples = {}
    for r in rows:
        examples.setdefault(r["id"], r)
    users, src_users, kinds = set(), set(), Counter()
    for r in examples.values():
        t = " || ".join(normalize_text(m.get("content") or "") for m in json.loads(r["messages"]) if m.get("role") == "user")
        users.add(t)
        if not r.get("augment"):
            src_users.add(t)
        kinds[r.get("augment") or "source"] += 1
    mix = Counter(origin_group(r["origin"]) for r in rows if r["origin"].startswith("perturb:"))
    neg: Counter = Counter()
    for split, s in stats.items():
        for k, v in (s.get("steps_by_origin") or {}).items():
            if k != "gold":
                neg[k] += v["neg"]
    tot, ntot = sum(mix.values()), sum(neg.values())
    return {
        "examples": len(examples), "examples_by_kind": dict(kinds),
        "distinct_user_texts": len(users), "distinct_user_texts_from_sources": len(src_users),
        "labelled_step_units": sum(s["steps_pos"] + s["steps_neg"] for s in stats.values()),
        "perturbed_answers": tot,
        "perturbation_mix": {k: round(v / tot, 3) for k, v in sorted(mix.items())} if tot else {},
        "negative_step_units_by_origin": {k: [v, round(v / ntot, 3)] for k, v in sorted(neg.items())} if ntot else {},
    }


def trainer_config(recipe: dict, kind: str, out: Path, **extra):
    from .trainer import config_for

    tcfg = recipe["train"]
    kw = {**(tcfg.get("common") or {}), **(tcfg.get(kind) or {}), **extra}
    kw.setdefault("output_dir", str(out / "checkpoints" / kind))
    kw.setdefault("seed", int(recipe.get("seed", 0)))
    kw.setdefault("num_threads", recipe.get("threads"))
    import torch

    if not torch.cuda.is_available():
        kw.setdefault("use_cpu", True)
        kw.setdefault("dataloader_pin_memory", False)
    return config_for(kind, **kw)


def _rebuild_command(recipe: dict) -> str:
    rel = os.path.relpath(recipe["_path"], REPO_ROOT) if recipe.get("_path") else recipe["_name"]
    return f"nice -n 10 toolprm-agents train run {rel}"


def stage_train(recipe: dict, out: Path, kinds: Sequence[str] = KINDS, force: bool = False) -> dict[str, Path]:
    from .dataset import load_dataset_split
    from .trainer import build_trainer, save_judge

    train_rows = load_dataset_split(out / "dataset", "train")
    stats_path = out / "dataset" / "stats.json"
    data_info = {"recipe": recipe["_name"], "stats": json.loads(stats_path.read_text()) if stats_path.is_file() else {}}
    report = out / "data_report.json"
    if report.is_file():
        rep = json.loads(report.read_text())
        data_info["sources"] = rep.get("selected")
        data_info["dropped_overlapping_eval"] = sum(rep.get("dropped_overlapping_eval", {}).values())
    import hashlib

    data_hash = hashlib.sha256(stats_path.read_bytes()).hexdigest()[:16] if stats_path.is_file() else None
    paths = {}
    for kind in kinds:
        if kind not in (recipe["train"].get("kinds") or KINDS):
            continue
        config = trainer_config(recipe, kind, out)
        dest = Path(config.output_dir)
        marker = dest / "INCOMPLETE.json"  # a run stopped by its time budget, to be resumed
        if (dest / "toolprm_config.json").is_file() and not marker.is_file() and not force:
            paths[kind] = dest
            continue
        if marker.is_file() and json.loads(marker.read_text()).get("dataset") != data_hash:
            log.warning("train %s: the dataset changed since the stopped run; starting again", kind)
            force = True
        if force and dest.is_dir():
            shutil.rmtree(dest)
        _threads(recipe)
        t0 = time.monotonic()
        trainer = build_trainer(config, train_rows)
        resume = _last_checkpoint(dest) if _saves(config) else None
        if resume:
            log.info("train %s: resuming from %s", kind, resume)
        trainer.train(resume_from_checkpoint=resume)
        before = json.loads(marker.read_text()).get("train_seconds", 0.0) if marker.is_file() else 0.0
        seconds = round(before + time.monotonic() - t0, 1)
        info = {**data_info, "train_seconds": seconds, "resumed_from": resume}
        save_judge(trainer, config, metrics=None, data=info, rebuild_command=_rebuild_command(recipe))
        stopped = trainer.time_budget.stopped_at is not None  # type: ignore[attr-defined]
        if stopped and _saves(config):
            marker.write_text(json.dumps({"train_seconds": seconds, "global_step": trainer.state.global_step,
                                          "max_steps": trainer.state.max_steps, "dataset": data_hash}) + "\n")
            log.warning("train %s: time budget reached at step %d of %d; run again to continue from the checkpoint",
                        kind, trainer.state.global_step, trainer.state.max_steps)
        elif marker.is_file():
            marker.unlink()
        paths[kind] = dest
        del trainer
    return paths


def _saves(config) -> bool:
    return getattr(config.save_strategy, "value", config.save_strategy) != "no"


def _last_checkpoint(dest: Path) -> str | None:
    if not dest.is_dir():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(dest))


def stage_calibrate(recipe: dict, out: Path, kinds: Sequence[str] = KINDS, force: bool = False) -> dict:
    """Platt scaling of each trained judge on the ``calib`` split (:mod:`.calibration`),
    stored in its ``toolprm_config.json`` (``metadata.calibration``)."""
    from ..backends.transformers_judges import JudgeConfig, load_scorer
    from .calibration import fit_platt
    from .dataset import load_dataset_split
    from .rm_eval import judge_weights, score_judgements

    ccfg = recipe.get("calibrate") or {}
    rows = load_dataset_split(out / "dataset", "calib")
    if not rows:
        log.warning("calibrate: no calib split (set data.calib_fraction); nothing fitted")
        return {}
    if ccfg.get("max_queries"):
        ids = set(sorted({r["id"] for r in rows}, key=lambda i: stable_seed("calib", i))[: int(ccfg["max_queries"])])
        rows = [r for r in rows if r["id"] in ids]
    _threads(recipe)
    fits = {}
    for kind in kinds:
        ck = out / "checkpoints" / kind
        if not (ck / "toolprm_config.json").is_file():
            continue
        judge = JudgeConfig.load(ck)
        if "calibration" in judge.metadata and not force:
            fits[kind] = judge.metadata["calibration"]
            continue
        scorer = load_scorer(kind, checkpoint=ck)
        with judge_weights(scorer):
            scored, _ = score_judgements(scorer.model, scorer.tokenizer, scorer.config, rows, kind, max_length=int(ccfg.get("max_length", 4096)))
        vals = list(scored.values())
        fit = fit_platt([v[0] for v in vals], [v[1] for v in vals])
        fit["queries"] = len({k[0] for k in scored})
        fit["fitted_on"] = "the calib split of the training data (queries never trained on, no evaluation benchmark)"
        judge.metadata["calibration"] = fit
        judge.save(ck)
        fits[kind] = fit
        log.info("calibrate %s: %s", kind, fit)
    (out / "calibration.json").write_text(json.dumps(fits, indent=2) + "\n")
    return fits


def stage_eval(recipe: dict, out: Path, force: bool = False) -> dict:
    from ..judges import JudgeConfig
    from .dataset import load_dataset_split
    from .rm_eval import evaluate_checkpoint, evaluate_judge, format_metrics

    d = out / "eval"
    if (d / "metrics.json").is_file() and not force:
        return json.loads((d / "metrics.json").read_text())
    test_rows = load_dataset_split(out / "dataset", "test")
    ecfg = recipe.get("eval") or {}
    max_length = int(ecfg.get("max_length", 4096))
    if ecfg.get("max_queries"):
        ids = sorted({r["id"] for r in test_rows}, key=lambda i: stable_seed("eval", i))[: int(ecfg["max_queries"])]
        test_rows = [r for r in test_rows if r["id"] in set(ids)]
    _threads(recipe)
    results: dict[str, dict] = {}
    kinds = [k for k in KINDS if (out / "checkpoints" / k / "toolprm_config.json").is_file()]
    if ecfg.get("base_reference", True) and kinds:
        # the untrained judge (the base model asked the question zero-shot) as a reference row
        from ..models import load_causal_lm

        base = (recipe["train"].get("common") or {}).get("base_model", "smollm2")
        model, tok = load_causal_lm(base)
        results["base (untrained) ToolPRM"] = evaluate_judge(model, tok, JudgeConfig(kind="toolprm", base_model=base), test_rows, max_length=max_length, progress=True)
    for kind in kinds:
        ck = out / "checkpoints" / kind
        m = evaluate_checkpoint(ck, test_rows, kind=kind, max_length=max_length, progress=True)
        results[{"toolprm": "ToolPRM", "orm": "ORM", "cprm": "C-PRM"}[kind]] = m
        _write_metrics_into_card(ck, m)
    d.mkdir(parents=True, exist_ok=True)
    (d / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    (d / "metrics.md").write_text(format_metrics(results) + "\n")
    log.info("held-out metrics:\n%s", format_metrics(results))
    return results


def _write_metrics_into_card(ck: Path, metrics: dict) -> None:
    from ..judges import JudgeConfig
    from .trainer import model_card

    judge = JudgeConfig.load(ck)
    judge.metadata["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    judge.save(ck)

    class _C:  # what model_card reads of a training config
        output_dir = str(ck)

    (ck / "README.md").write_text(model_card(judge, _C()))  # type: ignore[arg-type]


def stage_install(recipe: dict, out: Path) -> list[Path]:
    inst = recipe.get("install") or {}
    target = inst.get("to")
    if not target:
        return []
    target = Path(target) if Path(target).is_absolute() else REPO_ROOT / target
    suffix = inst.get("suffix", "smollm2")
    done = []
    for kind in KINDS:
        src = out / "checkpoints" / kind
        if not (src / "toolprm_config.json").is_file():
            continue
        dst = target / f"{kind}-{suffix}"
        dst.mkdir(parents=True, exist_ok=True)
        for old in dst.iterdir():
            if old.is_file():
                old.unlink()
        for f in ("adapter_model.safetensors", "adapter_config.json", "toolprm_config.json", "README.md"):
            if (src / f).is_file():
                shutil.copyfile(src / f, dst / f)
                os.chmod(dst / f, 0o644)
        done.append(dst)
    return done


def run_stage(recipe: dict, stage: str, *, force: bool = False, kinds: Sequence[str] = KINDS):
    out = _out(recipe)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str) + "\n")
    if stage == "data":
        return stage_data(recipe, out, force)
    if stage == "rollouts":
        return stage_rollouts(recipe, out, stage_data(recipe, out), force)
    if stage == "branches":
        return stage_branches(recipe, out, stage_data(recipe, out), force)
    if stage == "synth":
        return stage_synth(recipe, out, stage_data(recipe, out), force)
    if stage == "dataset":
        from .dataset import merge_records
        from .rollouts import read_rollouts

        # perturbations first (each record starts with the gold answer), then branches, then rollouts
        parts = {"synth": read_synth(out), "branches": read_rollouts(out / "branches.jsonl"), "rollouts": read_rollouts(out / "rollouts.jsonl")}
        records = merge_records(*parts.values())
        inputs = {k: len(v) for k, v in parts.items() if v} if len(parts["synth"]) or len(parts["branches"]) else None
        return stage_dataset(recipe, out, records, force, inputs)
    if stage == "calibrate":
        return stage_calibrate(recipe, out, kinds, force)
    if stage == "train":
        return stage_train(recipe, out, kinds, force)
    if stage == "eval":
        return stage_eval(recipe, out, force)
    if stage == "install":
        return stage_install(recipe, out)
    raise ValueError(f"unknown stage {stage!r}: choose from {', '.join(STAGES)}")


def _left_to_collect(recipe: dict, stage: str, records) -> int:
    """Queries a budget-stopped ``rollouts``/``branches`` stage has left, when its section asks
    the later stages to wait (``hold_until_done: true``); else 0."""
    cfg = recipe.get(stage) if stage in ("rollouts", "branches") else None
    if not cfg or not cfg.get("hold_until_done") or cfg.get("enabled", True) is False:
        return 0
    examples = stage_data(recipe, _out(recipe))
    salt = "branch-order" if stage == "branches" else "rollout-order"
    want = {e.id for e in _selected(examples, {"max_queries": cfg.get("max_queries")}, salt)}
    return len(want - {r["id"] for r in records or []})


def run_pipeline(recipe: dict, *, stages: Sequence[str] = STAGES, force: Sequence[str] = ()) -> dict:
    """Run ``stages`` in order; returns each stage's seconds and the final tables."""
    timings = {}
    result: dict[str, Any] = {}
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage in OPTIONAL_STAGES and OPTIONAL_STAGES[stage] not in recipe:
            continue
        t0 = time.monotonic()
        print(f"== {stage} ==", file=sys.stderr, flush=True)
        result[stage] = run_stage(recipe, stage, force=stage in force)
        timings[stage] = round(time.monotonic() - t0, 1)
        print(f"== {stage} done in {timings[stage]:.0f} s ==", file=sys.stderr, flush=True)
        left = _left_to_collect(recipe, stage, result[stage])
        if left:
            print(f"== {stage}: {left} queries left (its time budget); the later stages wait for it "
                  f"(hold_until_done): run the same command again ==", file=sys.stderr, flush=True)
            break
    out = _out(recipe)
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return {"timings": timings, "output_dir": str(out)}


def dry_run(recipe: dict, *, base_model: str | None = None, rows: Sequence[dict] | None = None, kinds: Sequence[str] | None = None) -> dict:
    """Build each judge's trainer without training (checks a recipe on a machine that
    cannot run it: ``base_model`` replaces the recipe's, e.g. a tiny local model)."""
    from .trainer import build_trainer

    out = _out(recipe)
    built = {}
    for kind in kinds or recipe["train"].get("kinds") or KINDS:
        extra = {"base_model": base_model} if base_model else {}
        extra.update({"bf16": False, "dtype": "float32"} if base_model else {})
        config = trainer_config(recipe, kind, out, **extra)
        trainer = build_trainer(config, rows or _dry_rows())
        built[kind] = {"trainer": type(trainer).__name__, "sequences": len(trainer.train_dataset), "judgements": trainer.train_dataset.num_judgements, "args": {k: getattr(config, k) for k in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "lora_r", "use_lora", "max_length")}}
    return built


def _dry_rows() -> list[dict]:
    """A two-answer dataset made from the gold answer of a built-in example (for dry runs)."""
    from .dataset import build_rows
    from .rollouts import RolloutConfig, plan_for

    ex = Example(
        "dry/0", "dry",
        [{"role": "user", "content": "What is the weather in Paris?"}],
        [{"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    )
    plan = plan_for(ex, RolloutConfig().limits(1))
    gold = plan.answer_from_calls(ex.calls)
    wrong = plan.answer_from_calls([{"name": "get_weather", "arguments": {"city": "Rome"}}])
    rec = {"example": ex.to_dict(), "answers": [
        {"steps": [s.to_dict() for s in gold.steps], "origin": "gold", "count": 0},
        {"steps": [s.to_dict() for s in wrong.steps], "origin": "sample", "count": 1},
    ]}
    return [dict(r, split="train") for r in build_rows([rec], test_fraction=0.0)]
