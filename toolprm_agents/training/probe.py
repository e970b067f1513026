"""Train a probe judge: a logistic model over the frozen policy's hidden states at each step
(ToolPRM), at the end of each call (C-PRM) or at the end of the answer (ORM).

A LoRA judge on this machine's CPU trains at about 30 optimizer steps an hour (the
``cpu-smollm2-large`` recipe needs ~21 h per judge for one epoch). A probe needs forward
passes only, and one per answer reads every step of it: features for tens of thousands of
step units take minutes to an hour, and the fit takes seconds. Three stages, each resumable:

1. :func:`extract` -- per dataset split, the features of every unit of a judge ``kind``
   (:func:`~toolprm_agents.probe_features.step_features`) in shards of examples
   (``features/SPLIT-NNNNN.pt``), under a time budget; run again to continue.
2. :func:`fit` -- standardised features, an L2-regularised logistic model (the strength
   chosen on the calibration split, never on an evaluation set), then a Platt fit on the
   calibration split so that a score means a probability.
3. :func:`save_probe_judge` -- a judge checkpoint (``toolprm_config.json`` + ``probe.pt``)
   that :class:`~toolprm_agents.backends.probe_judge.ProbeJudge` loads.

Example:
    >>> extract(rows, "runs/probe/features", split="train", budget_seconds=1800)   # doctest: +SKIP
    >>> probe = fit(load_features("runs/probe/features", "train"), load_features("runs/probe/features", "calib"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from ..probe_features import DEFAULT_LAYERS, step_features
from ..steps import ANSWER_OPEN
from .dataset import judge_units, unit_table

log = logging.getLogger(__name__)

__all__ = ["unit_rows", "extract", "load_features", "split_features", "load_probe_checkpoint", "fit", "ProbeWeights", "ProbeSet", "save_probe_judge", "load_probe", "score_units"]


def unit_rows(units) -> tuple[list[list[str]], list[list[str]]]:
    """The answers along which ``units`` (``(context, judged, label)`` of one example) lie,
    as text segments (one per judged unit, in order) and the judged texts they end at.

    A unit's context is the judged text of the unit before it (or the bare opening), so
    the maximal chains of units are the rows one forward pass each reads.
    """
    by_text = {judged.text: (ctx, judged) for ctx, judged, _ in units}
    ctx_texts = {ctx.text for ctx, _, _ in units}
    rows, keys = [], []
    for text in by_text:
        if text in ctx_texts:
            continue  # not a leaf: some longer chain passes through it
        chain = []
        cur = text
        while cur in by_text:
            ctx, judged = by_text[cur]
            chain.append((judged.text[len(ctx.text):], judged.text))
            cur = ctx.text
        if cur != ANSWER_OPEN:
            continue  # a broken chain (should not happen); skip rather than misread it
        chain.reverse()
        rows.append([seg for seg, _ in chain])
        keys.append([k for _, k in chain])
    return rows, keys


def extract(rows: Sequence[dict], out_dir: str | os.PathLike, *, split: str, model_ref: str = "smollm2",
            layers: Sequence[int] = DEFAULT_LAYERS, shard_size: int = 50, max_groups: int | None = None,
            budget_seconds: float | None = None, batch_rows: int = 16, max_prompt_tokens: int = 1536, seed: int = 0,
            reverse: bool = False, kind: str = "toolprm", only_ids: set[str] | None = None) -> int:
    """Write the features of ``split``'s units of judge ``kind`` (toolprm: steps, cprm: calls,
    orm: answers) in shards; returns the shards written now.

    ``reverse``: take the shards last first -- a second process started that way shares the
    work with one going forward (each skips the shards already written) and they meet.
    ``only_ids``: the examples to read (e.g. those with policy branches), before the shuffle."""
    from ..compute import Compute
    from ..context import ContextStore
    from ..models import load_causal_lm
    from ..prompt import PromptFormat, encode_prompt
    from .rollouts import plan_for
    from .sources import Example

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if only_ids is not None:
        rows = [r for r in rows if r["id"] in only_ids]
    groups = judge_units(rows, kind)
    random.Random(f"probe-{seed}-{split}").shuffle(groups)
    if max_groups is not None:
        groups = groups[:max_groups]
    info = unit_table(rows, kind)
    model, tok = load_causal_lm(model_ref)
    fmt = PromptFormat()
    t0, written = time.monotonic(), 0
    starts = list(range(0, len(groups), shard_size))
    for k in reversed(starts) if reverse else starts:
        path = out / f"{split}-{k // shard_size:05d}.pt"
        if path.is_file():
            continue
        if budget_seconds is not None and time.monotonic() - t0 > budget_seconds:
            log.warning("probe features (%s): time budget spent; run again to continue", split)
            break
        feats, labels, kinds, origins, keys, contexts = [], [], [], [], [], []
        for g in groups[k : k + shard_size]:
            ex = Example(g.id, "", g.messages, g.tools, [])
            prompt = fmt.render(tok, g.messages, plan_for(ex).tools)
            if len(encode_prompt(tok, prompt)) > max_prompt_tokens:
                continue
            store = ContextStore(model, tok, prompt, Compute(), reserve_tokens=0)
            seg_rows, seg_keys = unit_rows(g.units)
            label_of = {judged.text: ok for _, judged, ok in g.units}
            seen = set()
            order = sorted(range(len(seg_rows)), key=lambda i: -sum(len(s) for s in seg_rows[i]))
            for b in range(0, len(order), batch_rows):
                idx = order[b : b + batch_rows]
                token_rows = [[store.encode(s) for s in seg_rows[i]] for i in idx]
                out_feats = step_features(model, store, ANSWER_OPEN, token_rows, layers=layers)
                for i, f in zip(idx, out_feats):
                    for key, vec in zip(seg_keys[i], f):
                        if key in seen:
                            continue
                        seen.add(key)
                        u = info[(g.id, key)]
                        feats.append(vec.half())
                        labels.append(int(label_of[key]))
                        kinds.append(u["step_kind"])
                        origins.append(u["origin"])
                        keys.append((g.id, key))
                        contexts.append(u["context"])
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"features": torch.stack(feats) if feats else torch.zeros(0), "labels": labels, "kinds": kinds,
                    "origins": origins, "keys": keys, "contexts": contexts, "layers": list(layers)}, tmp)
        tmp.replace(path)
        written += 1
        log.info("probe features %s: shard %d (%d units, %.0f s)", split, k // shard_size, len(labels), time.monotonic() - t0)
    return written


#: answer origins the policy made (gold-prefix branches and their off-gold continuations, rollouts)
POLICY_ORIGINS = ("branch", "offgold", "sample")


def policy_made_ids(rows: Sequence[dict]) -> set[str]:
    """Ids of the examples with at least one answer the policy made (:data:`POLICY_ORIGINS`)."""
    return {r["id"] for r in rows if r.get("origin") in POLICY_ORIGINS}


def merge_features(*parts: dict) -> dict:
    """Feature sets joined, each unit (example id, judged text) once (the first one kept)."""
    parts = [p for p in parts if p["labels"]]
    if not parts:
        return _no_features()
    seen = set()
    out = {"layers": parts[0]["layers"]}
    feats = []
    lists = {n: [] for n in ("labels", "kinds", "origins", "keys", "contexts")}
    for p in parts:
        keep = []
        for i, key in enumerate(p["keys"]):
            key = tuple(key)
            if key in seen:
                continue
            seen.add(key)
            keep.append(i)
        feats.append(p["features"][keep])
        for n in lists:
            lists[n] += [p[n][i] for i in keep]
    out["features"] = torch.cat(feats)
    out.update(lists)
    return out


def without_origins(feats: dict, origins: Sequence[str]) -> dict:
    """``feats`` less the units whose origin is one of ``origins`` (an ablation of that data)."""
    keep = [i for i, o in enumerate(feats["origins"]) if o not in origins]
    out = {"layers": feats["layers"], "features": feats["features"][keep] if len(feats["labels"]) else feats["features"]}
    for n in ("labels", "kinds", "origins", "keys", "contexts"):
        out[n] = [feats[n][i] for i in keep]
    return out


def _no_features() -> dict:
    return {"features": torch.zeros(0, 0), "labels": [], "kinds": [], "origins": [], "keys": [], "contexts": [], "layers": []}


def load_features(out_dir: str | os.PathLike, split: str) -> dict:
    """All shards of ``split`` joined: ``features`` [N, D] float16 and per-unit lists."""
    parts = [torch.load(p, weights_only=False) for p in sorted(Path(out_dir).glob(f"{split}-[0-9]*.pt"))]
    parts = [p for p in parts if len(p["labels"])]
    if not parts:
        return _no_features()
    joined = {"features": torch.cat([p["features"] for p in parts]), "layers": parts[0]["layers"]}
    for name in ("labels", "kinds", "origins", "keys", "contexts"):
        joined[name] = [x for p in parts for x in p[name]]
    return joined


def split_features(out_dir: str | os.PathLike, split: str, *, policy_made: bool = False, tags: Sequence[str] = ()) -> dict:
    """:func:`load_features` of ``split``; with ``policy_made``, its ``SPLIT-policy`` shards
    merged in first, and the ``SPLIT-TAG`` shards of each of ``tags`` (a supplementary
    dataset's, :mod:`.supplement`) after it (:func:`merge_features`: each unit once)."""
    parts = ([load_features(out_dir, f"{split}-policy")] if policy_made else []) + [load_features(out_dir, split)]
    parts += [load_features(out_dir, f"{split}-{tag}") for tag in tags]
    return parts[0] if len(parts) == 1 else merge_features(*parts)


# ------------------------------------------------------------------------------------------
# the fit


class ProbeWeights(torch.nn.Module):
    """Standardise, then a logistic model (``hidden == 0``) or one hidden layer; Platt on top."""

    def __init__(self, dim: int, hidden: int = 0):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = torch.nn.Linear(dim, 1) if hidden == 0 else torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))  # a * logit + b

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net((x.float() - self.mean) / self.std).squeeze(-1)
        return self.platt[0] * z + self.platt[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def preference_pairs(feats: dict, max_per_group: int = 64, seed: int = 0) -> torch.Tensor:
    """``[P, 2]`` indices ``(right, wrong)`` of units that extend the same context of the same
    example -- one decision's alternatives, the pairs a pairwise loss compares (at most
    ``max_per_group`` per decision, drawn at random)."""
    groups: dict[tuple, tuple[list[int], list[int]]] = {}
    for i, (key, ctx, y) in enumerate(zip(feats["keys"], feats["contexts"], feats["labels"])):
        groups.setdefault((key[0], ctx), ([], []))[0 if y else 1].append(i)
    rng = random.Random(seed)
    pairs = []
    for pos, neg in groups.values():
        both = [(a, b) for a in pos for b in neg]
        if len(both) > max_per_group:
            both = rng.sample(both, max_per_group)
        pairs += both
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def _objective(z: torch.Tensor, y: torch.Tensor, pairs: torch.Tensor | None) -> torch.Tensor:
    """Pointwise: the ``+``/``-`` log-loss of every unit; pairwise (``pairs`` given): the
    Bradley-Terry loss ``-log sigmoid(z_right - z_wrong)`` of every pair of one decision."""
    if pairs is None:
        return torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    return torch.nn.functional.softplus(-(z[pairs[:, 0]] - z[pairs[:, 1]])).mean()


def _train(model: ProbeWeights, x: torch.Tensor, y: torch.Tensor, l2: float, epochs: int, seed: int,
           pairs: torch.Tensor | None = None) -> None:
    torch.manual_seed(seed)
    xs = (x.float() - model.mean) / model.std
    if model.hidden == 0:
        opt = torch.optim.LBFGS(model.net.parameters(), lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            z = model.net(xs).squeeze(-1)
            loss = _objective(z, y, pairs) + l2 * model.net.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-3, weight_decay=l2)
    n = len(y) if pairs is None else len(pairs)
    for _ in range(epochs):
        perm = torch.randperm(n)
        for b in range(0, n, 256):
            i = perm[b : b + 256]
            opt.zero_grad()
            if pairs is None:
                z = model.net(xs[i]).squeeze(-1)
                torch.nn.functional.binary_cross_entropy_with_logits(z, y[i]).backward()
            else:
                pr = pairs[i]
                zp, zn = model.net(xs[pr[:, 0]]).squeeze(-1), model.net(xs[pr[:, 1]]).squeeze(-1)
                torch.nn.functional.softplus(-(zp - zn)).mean().backward()
            opt.step()


class ProbeSet(torch.nn.Module):
    """Probes by the kind of the judged step (``ARG``, ``FUNC_NAME`` ...), ``"all"`` for the rest.

    ``specs``: key -> ``(feature size, hidden size)``.
    """

    def __init__(self, specs: dict[str, tuple[int, int]]):
        super().__init__()
        self.specs = {k: (int(d), int(h)) for k, (d, h) in specs.items()}
        self.probes = torch.nn.ModuleDict({k: ProbeWeights(d, h) for k, (d, h) in self.specs.items()})

    def key(self, kind: str) -> str:
        return kind if kind in self.probes else "all"

    def forward(self, x: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
        out = torch.empty(len(kinds))
        by_key: dict[str, list[int]] = {}
        for i, k in enumerate(kinds):
            by_key.setdefault(self.key(k), []).append(i)
        for k, idx in by_key.items():
            out[idx] = self.probes[k](x[idx])
        return out


def _subset(feats: dict, idx: Sequence[int]) -> dict:
    out = {"features": feats["features"][list(idx)], "layers": feats.get("layers", [])}
    for name in ("labels", "kinds", "origins", "keys", "contexts"):
        if name in feats:
            out[name] = [feats[name][i] for i in idx]
    return out


def _fit_one(train: dict, calib: dict, l2_grid, hidden_grid, epochs: int, seed: int, tag: str,
             loss: str = "pointwise") -> tuple[ProbeWeights, dict]:
    from .calibration import fit_platt
    from .rm_eval import auroc

    x, y = train["features"], torch.tensor(train["labels"], dtype=torch.float32)
    xc, yc = calib["features"], calib["labels"]
    mean, std = x.float().mean(0), x.float().std(0).clamp_min(1e-4)
    pairs = None
    if loss == "pairwise":
        pairs = preference_pairs(train, seed=seed)
        if not len(pairs):
            raise ValueError(f"probe fit {tag}: no decision has both a right and a wrong unit, so a pairwise loss has nothing to compare")
    report, best = {}, None
    for hidden in hidden_grid:
        for l2 in l2_grid:
            m = ProbeWeights(x.shape[1], hidden)
            m.mean.copy_(mean)
            m.std.copy_(std)
            _train(m, x, y, l2, epochs, seed, pairs)
            with torch.no_grad():
                a = auroc(m.logits(xc).tolist(), yc)
            report[f"hidden={hidden} l2={l2:g}"] = a
            log.info("probe fit %s hidden=%d l2=%g: calib AUROC %.4f", tag, hidden, l2, a)
            if best is None or a > best[0]:
                best = (a, m)
    model = best[1]
    with torch.no_grad():
        raw = torch.sigmoid(model.logits(xc)).tolist()
    platt = fit_platt(raw, yc)
    model.platt.copy_(torch.tensor([float(platt["a"]), float(platt["b"])]))
    return model, {"calib_auroc": report, "platt": platt}


def fit(train: dict, calib: dict, *, l2_grid: Sequence[float] = (1e-3, 1e-2, 1e-1), hidden_grid: Sequence[int] = (0,),
        epochs: int = 8, seed: int = 0, by_kind: bool = True, min_units: int = 200,
        loss: str = "pointwise") -> tuple[ProbeSet, dict]:
    """Probes chosen and Platt-scaled on the calibration split (never on an evaluation set).

    One probe over every step, and (``by_kind``) one per step kind with ``min_units`` training
    units; the per-kind set is kept when its pooled calibration AUROC beats the single probe.
    Returns the :class:`ProbeSet` and a report of every candidate's calibration AUROC.
    """
    from .rm_eval import auroc

    dim = train["features"].shape[1]
    if loss not in ("pointwise", "pairwise"):
        raise ValueError(f"probe loss {loss!r}: choose pointwise or pairwise")
    shared, rep = _fit_one(train, calib, l2_grid, hidden_grid, epochs, seed, "all", loss)
    report = {"all": rep}
    one = ProbeSet({"all": (dim, shared.hidden)})
    one.probes["all"].load_state_dict(shared.state_dict())
    kinds_c = calib.get("kinds") or ["all"] * len(calib["labels"])
    with torch.no_grad():
        a_one = auroc(one(calib["features"], kinds_c).tolist(), calib["labels"])
    report["pooled_calib_auroc"] = {"one probe": a_one}
    chosen = one
    if by_kind and train.get("kinds"):
        specs, fitted = {"all": (dim, shared.hidden)}, {"all": shared}
        for kind in sorted(set(train["kinds"])):
            ti = [i for i, k in enumerate(train["kinds"]) if k == kind]
            ci = [i for i, k in enumerate(kinds_c) if k == kind]
            tl = [train["labels"][i] for i in ti]
            cl = [calib["labels"][i] for i in ci]
            if len(ti) < min_units or len(set(tl)) < 2 or len(set(cl)) < 2:
                continue
            try:
                m, r = _fit_one(_subset(train, ti), _subset(calib, ci), l2_grid, hidden_grid, epochs, seed, kind, loss)
            except ValueError as exc:  # pairwise, and this kind's decisions never mix right and wrong
                log.info("%s", exc)
                continue
            specs[kind], fitted[kind] = (dim, m.hidden), m
            report[kind] = r
        per = ProbeSet(specs)
        for k, m in fitted.items():
            per.probes[k].load_state_dict(m.state_dict())
        with torch.no_grad():
            a_per = auroc(per(calib["features"], kinds_c).tolist(), calib["labels"])
        report["pooled_calib_auroc"]["a probe per step kind"] = a_per
        if a_per > a_one:
            chosen = per
    report["chosen"] = sorted(chosen.probes)
    return chosen, report


def save_probe_judge(model: ProbeSet, layers: Sequence[int], directory: str | os.PathLike, *, metadata: dict | None = None,
                     base_model: str = "smollm2", kind: str = "toolprm") -> Path:
    """A judge checkpoint folder: ``toolprm_config.json`` (``probe: probe.pt``) and the weights."""
    from ..judges import JudgeConfig

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {"specs": {k: list(v) for k, v in model.specs.items()}, "layers": list(layers),
             "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    torch.save(state, d / "probe.pt")
    JudgeConfig(kind=kind, base_model=base_model, adapter=False, trained=True, probe="probe.pt",
                metadata=dict(metadata or {})).save(d)
    return d


def load_probe(path: str | os.PathLike) -> tuple[ProbeSet, list[int]]:
    """The :class:`ProbeSet` and hidden-state layers saved by :func:`save_probe_judge`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = ProbeSet({k: tuple(v) for k, v in state["specs"].items()})
    model.load_state_dict(state["state"])
    model.eval()
    return model, [int(x) for x in state["layers"]]


def load_probe_checkpoint(checkpoint: str | os.PathLike, config=None):
    """``(config, probe, layers)`` of a probe judge folder (``toolprm_config.json``, or the
    ``config`` read from it already, naming its ``probe.pt``); a
    :class:`~toolprm_agents.interfaces.ScorerError` that names what is wrong for a folder that
    is not one, a missing weights file or a foreign one."""
    from ..interfaces import ScorerError
    from ..judges import JudgeConfig

    config = config or JudgeConfig.load(checkpoint)
    if not config.probe:
        raise ScorerError(f"{checkpoint}: {config!r} names no probe file")
    path = Path(checkpoint) / config.probe
    if not path.is_file():
        raise ScorerError(f"{checkpoint}: the probe weights {config.probe!r} are missing")
    try:
        model, layers = load_probe(path)
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise ScorerError(f"{path}: not a probe judge's weights: {exc}") from None
    return config, model, layers


def score_units(model: ProbeSet, feats: dict) -> dict:
    """``{(group id, judged text): (p, label)}`` for :func:`~.rm_eval.step_breakdown`."""
    kinds = feats.get("kinds") or ["all"] * len(feats["labels"])
    with torch.no_grad():
        p = model(feats["features"], kinds).tolist() if len(feats["labels"]) else []
    return {k: (pp, y) for k, pp, y in zip(feats["keys"], p, feats["labels"])}


# ------------------------------------------------------------------------------------------
# command line


def evaluate(model: ProbeWeights, feats: dict, rows: Sequence[dict], kind: str = "toolprm") -> dict:
    """:func:`~.rm_eval.step_breakdown` of the probe on held-out ``feats`` (plus overall figures)."""
    from .rm_eval import auroc, step_breakdown

    steps = score_units(model, feats)
    vals = list(steps.values())
    out = {"judgements": len(vals),
           "step_acc": sum((p > 0.5) == bool(y) for p, y in vals) / len(vals),
           "step_auroc": auroc([p for p, _ in vals], [y for _, y in vals])}
    out.update(step_breakdown(steps, rows, kind=kind))
    return out


#: judge kind -> (its name, the unit it judges)
KIND_NAMES = {"toolprm": ("ToolPRM", "step"), "cprm": ("C-PRM", "call"), "orm": ("ORM", "answer")}


def _table(title: str, m: dict, unit: str = "step") -> list[str]:
    lines = [f"**{title}**: {m['judgements']} {unit} units of {m.get('examples', '?')} examples; {unit} AUROC "
             f"{m['step_auroc']:.3f}, {unit} accuracy {100 * m['step_acc']:.1f} %, mean score of right {unit}s "
             f"{m['step_mean_right']:.3f} and of wrong {unit}s {m['step_mean_wrong']:.3f}; pick accuracy "
             f"{100 * m['decision_pick_acc']:.1f} % over {m['decisions']} decisions with a right and a wrong alternative.", "",
             f"| {'step kind' if unit == 'step' else 'first step kind'} / origin | units | + | - | acc | AUROC | mean score right | mean score wrong |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for part in ("step_by_kind", "step_by_origin"):
        for k, v in m[part].items():
            f = lambda x: "n/a" if x != x else f"{x:.3f}"  # noqa: E731 (NaN)
            lines.append(f"| {k} | {v['n']} | {v['pos']} | {v['neg']} | {f(v['acc'])} | {f(v['auroc'])} | {f(v['mean_right'])} | {f(v['mean_wrong'])} |")
    return lines + [""]


def _policy_made_sentence(report: dict, unit: str) -> str:
    """What the model card says about the policy's own answers in the training data."""
    origins = report.get("train_by_origin") or {}
    made = {o: n for o, n in origins.items() if o in POLICY_ORIGINS and n}
    if not report.get("policy_made") or not made:
        return ("No policy rollouts or gold-prefix branches are in it: the policy's own errors reach it only through "
                "the perturbations that imitate them.")
    names = {"branch": "the policy's own alternatives at gold prefixes (gold-prefix branches)",
             "offgold": "steps after a wrong step of the policy (off-gold continuations)", "sample": "steps of policy rollouts"}
    parts = "; ".join(f"{n} {unit} units of {names[o]}" for o, n in sorted(made.items()))
    return (f"Of the train units, {parts} (from the examples the branches stage reached: "
            f"{report.get('train_policy_examples', '?')} train examples); the rest are gold steps and perturbations of them.")


def model_card(report: dict, command: str) -> str:
    """The checkpoint's README from a fit report (what :func:`main` writes to ``report.json``)."""
    fit_ = report["fit"]
    kind = report.get("kind", "toolprm")
    name, unit = KIND_NAMES[kind]
    per_kind = [k for k in fit_["chosen"] if k != "all"]
    what = ("a logistic model per step kind (" + ", ".join(per_kind) + ", and one over all steps for any other kind)"
            if per_kind else "a logistic model")
    role = {"toolprm": "A process reward model", "cprm": "A coarse (call-level) process reward model",
            "orm": "An outcome reward model"}[kind]
    lines = [
        f"# {name} probe over `smollm2`: {'an' if unit[0] in 'aeiou' else 'a'} {unit} judge on the policy's own hidden states", "",
        f"{role} for `toolprm-agents` that needs no judge weights of its own: {what} reads SmolLM2-135M-Instruct's hidden "
        f"states at layers {report['layers']} where a candidate {unit} ends (the state at its last token and the mean over its tokens: "
        f"{2 * len(report['layers'])} x 576 features), Platt-scaled on a held-out calibration split so that a score is a probability. "
        "It reads the policy's prompt, so next to a transformers policy on the same base it reuses the policy's KV cache and "
        f"pays only for the candidates' tokens. Load it with `toolprm_agents.scorers.load_scorer('{kind}', checkpoint=<this folder>)`. "
        "vLLM and OpenAI-compatible servers cannot run it (they return tokens, not hidden states): use the generative LoRA "
        f"judge `{kind}-smollm2` there.", "",
        "## Data", "",
        f"{unit.capitalize()} units of the `cpu-smollm2-large` recipe's dataset (`training/stats/cpu-smollm2-large/stats.md`): every licensed source in "
        f"`training/data` decontaminated against every evaluation set, irrelevance and parallel augmentation, function masking, "
        f"model-free hard negatives (perturbed gold steps). Trained on **{report['train_units']} {unit} units of {report['train_examples']} "
        f"examples** of the train split (a random subset: features were extracted under a time budget); calibrated and chosen on "
        f"{report['calib_units']} units of the calib split. " + _policy_made_sentence(report, unit)
        + _supplement_sentence(report), "",
        "## Fit", "",
        f"Features: forward passes only (about 4 s per example with all its answers on one core); fit: {report['fit_seconds']} s; "
        f"loss: {report.get('loss', 'pointwise')} ({'+/- log-loss of every unit' if report.get('loss', 'pointwise') == 'pointwise' else 'right against wrong alternatives of one decision'}). "
        "Candidates chosen by calibration-split AUROC (L2 strength" + ("; one probe against one per step kind" if kind == "toolprm" else "") + "): "
        + "; ".join(f"{k} {v:.4f}" for k, v in fit_["pooled_calib_auroc"].items()) + ".", "",
        "## Held-out metrics (the test split: queries never trained on)", "",
    ]
    lines += _table("test split", report["test"], unit)
    lines += [f"Reliability on the test split (equal-count score deciles: a calibrated score matches the share of right {unit}s):", "",
              "| decile | units | score range | mean score | share right |", "|---:|---:|---|---:|---:|"]
    for b in report["test"]["reliability"]:
        lines.append(f"| {b['bin']} | {b['n']} | {b['lo']:.3f}-{b['hi']:.3f} | {b['mean_score']:.3f} | {b['share_right']:.3f} |")
    lines.append("")
    for k in sorted(report):
        if k.startswith("test-"):
            lines += ["", f"## The {k[5:]} supplement's test split (held out, its own queries)", ""]
            lines += _table(k, report[k], unit)
    for k in sorted(report):
        if k.startswith("bfcl-"):
            lines += ["", f"## {k[5:]} (BFCL: evaluation only, never trained or fitted on)", "",
                      "The benchmark's first items with their gold answers and model-free perturbations of them, labelled like the training data.", ""]
            lines += _table(k, report[k], unit)
    lines += ["## Rebuild", "", "```bash", command, "```", ""]
    return "\n".join(lines)


def _supplement_sentence(report: dict) -> str:
    """What the fit's supplementary datasets (:mod:`.supplement`) added, for the model card."""
    sup = report.get("supplements") or {}
    if not sup:
        return ""
    return (" Its train and calib splits include the supplementary dataset" + ("s " if len(sup) > 1 else " ")
            + ", ".join(f"`{t}` (`{d}`)" for t, d in sup.items())
            + " (`toolprm_agents.training.supplement`: same-function parallel requests, one function called twice); "
            "its test split is reported apart below.")


def _supplement_reports(model, feats_dir: Path, supplements: dict[str, str], kind: str) -> dict:
    """``{"test-TAG": report}``: the probe on each supplement's held-out test units (its own
    rows), apart from the main test split so that the main table stays comparable."""
    from .dataset import load_dataset_split

    out = {}
    for tag, folder in supplements.items():
        feats = load_features(feats_dir, f"test-{tag}")
        if feats["labels"]:
            out[f"test-{tag}"] = evaluate(model, feats, load_dataset_split(folder, "test"), kind)
            out[f"test-{tag}"]["examples"] = len({k[0] for k in feats["keys"]})
    return out


def _evaluate_checkpoint(args, feats_dir: Path, work: Path, supplements: dict[str, str]) -> int:
    """``--stage evaluate``: the test-split table of an existing probe judge, on the features in
    ``--work`` (with ``--policy-made``, the policy-made units too), so that two judges are
    compared on the same held-out units. Writes ``report-eval-NAME.json``."""
    from ..interfaces import ScorerError
    from .dataset import load_dataset_split

    if not args.checkpoint:
        print("evaluate: --checkpoint DIR (a probe judge) is needed")
        return 2
    ck = Path(args.checkpoint)
    try:
        _, model, layers = load_probe_checkpoint(ck)
    except ScorerError as exc:
        print(f"evaluate: {ck} is not a probe judge: {exc}")
        return 2
    test = split_features(feats_dir, "test", policy_made=args.policy_made)
    if not test["labels"]:
        print(f"evaluate: no test features in {feats_dir} (--stage extract first)")
        return 2
    if list(test["layers"]) != list(layers):
        print(f"evaluate: the features are of layers {test['layers']}, the probe reads {layers}")
        return 2
    report = evaluate(model, test, load_dataset_split(args.data, "test"), args.kind)
    report["examples"] = len({k[0] for k in test["keys"]})
    report["checkpoint"] = str(ck)
    report.update(_supplement_reports(model, feats_dir, supplements, args.kind))
    (work / f"report-eval-{ck.name}.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"{ck.name}: test AUROC {report['step_auroc']:.3f}, pick accuracy {report['decision_pick_acc']:.3f} "
          f"over {report['decisions']} decisions ({report['judgements']} units of {report['examples']} examples)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m toolprm_agents.training.probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="runs/cpu-smollm2-large/dataset", help="the dataset folder (train/test/calib parquet)")
    ap.add_argument("--kind", default="toolprm", choices=sorted(KIND_NAMES), help="the judge: toolprm (steps), cprm (calls), orm (answers)")
    ap.add_argument("--work", default=None, help="features and reports (resumable; default runs/probe, runs/probe-KIND for cprm and orm)")
    ap.add_argument("--stage", choices=["extract", "fit", "all", "evaluate"], default="all",
                    help="evaluate: score the test split's extracted features with the probe judge at --checkpoint")
    ap.add_argument("--checkpoint", default=None, help="evaluate: a probe judge folder (toolprm_config.json + probe.pt)")
    ap.add_argument("--splits", default="test,calib,train", help="splits to extract, in order")
    ap.add_argument("--max-groups", default="train=100000,test=300,calib=200", help="examples per split")
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="extraction time budget per run")
    ap.add_argument("--hidden", default="0", help="hidden sizes to try (0: logistic)")
    ap.add_argument("--out", default=None, help="write the judge checkpoint here")
    ap.add_argument("--bfcl", default="", help="BFCL categories to evaluate the probe on (gold answers and their "
                    "perturbations; evaluation only, never trained or fitted on), e.g. simple_python,multiple,irrelevance")
    ap.add_argument("--bfcl-items", type=int, default=100)
    ap.add_argument("--loss", choices=["pointwise", "pairwise"], default="pointwise",
                    help="pointwise: +/- log-loss of every unit; pairwise: right against wrong alternatives of one decision")
    ap.add_argument("--reverse", action="store_true", help="extract the shards last first (a second process)")
    ap.add_argument("--shard-size", type=int, default=20)
    ap.add_argument("--policy-made", action="store_true", help="extract: also every example with answers the policy made "
                    "(gold-prefix branches, off-gold continuations, rollouts), as split SPLIT-policy, whatever --max-groups says; "
                    "fit: train and calibrate on them too")
    ap.add_argument("--tag", default="", help="extract: write the --data folder's splits as SPLIT-TAG shards (a supplementary "
                    "dataset, python -m toolprm_agents.training.supplement), beside the main dataset's")
    ap.add_argument("--with", dest="with_", default="", help="fit/evaluate: merge these supplements' SPLIT-TAG shards into "
                    "train and calib, and report their test split apart: TAG=DIR[,TAG=DIR] (DIR: the supplement's dataset folder)")
    ap.add_argument("--drop-origins", default="", help="fit without the units of these origins (e.g. branch,offgold: the ablation)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    from .dataset import load_dataset_split
    from .rm_eval import bfcl_rows

    kind = args.kind
    work = Path(args.work or ("runs/probe" if kind == "toolprm" else f"runs/probe-{kind}"))
    feats_dir = work / "features"
    limits = dict(kv.split("=") for kv in args.max_groups.split(",") if kv)
    supplements = {}
    for kv in filter(None, args.with_.split(",")):
        tag, sep, folder = kv.partition("=")
        if not sep or not tag or not folder:
            ap.error(f"--with {kv!r}: expected TAG=DIR (the supplement's tag and its dataset folder)")
        supplements[tag] = folder
    t0 = time.monotonic()
    if args.stage == "extract" and args.tag:
        for split in args.splits.split(","):
            left = args.budget_minutes * 60 - (time.monotonic() - t0)
            if left <= 0:
                break
            extract(load_dataset_split(args.data, split), feats_dir, split=f"{split}-{args.tag}", budget_seconds=left,
                    shard_size=args.shard_size, reverse=args.reverse, kind=kind)
        return 0
    if args.stage in ("extract", "all"):
        for split in args.splits.split(","):
            left = args.budget_minutes * 60 - (time.monotonic() - t0)
            if left <= 0:
                break
            rows = load_dataset_split(args.data, split)
            if args.policy_made:
                extract(rows, feats_dir, split=f"{split}-policy", budget_seconds=left, shard_size=args.shard_size,
                        reverse=args.reverse, kind=kind, only_ids=policy_made_ids(rows))
                left = args.budget_minutes * 60 - (time.monotonic() - t0)
                if left <= 0:
                    break
            extract(rows, feats_dir, split=split, max_groups=int(limits.get(split, 10**9)), budget_seconds=left,
                    shard_size=args.shard_size, reverse=args.reverse, kind=kind)
        for cat in filter(None, args.bfcl.split(",")):
            left = args.budget_minutes * 60 - (time.monotonic() - t0)
            if left > 0:
                extract(bfcl_rows(cat, args.bfcl_items), feats_dir, split=f"bfcl-{cat}", budget_seconds=left,
                        shard_size=args.shard_size, reverse=args.reverse, kind=kind)
    if args.stage == "evaluate":
        return _evaluate_checkpoint(args, feats_dir, work, supplements)
    if args.stage in ("fit", "all"):
        tags = tuple(supplements)
        train, calib = (split_features(feats_dir, s, policy_made=args.policy_made, tags=tags) for s in ("train", "calib"))
        test = split_features(feats_dir, "test", policy_made=args.policy_made)
        dropped = tuple(filter(None, args.drop_origins.split(",")))
        if dropped:
            train, calib = without_origins(train, dropped), without_origins(calib, dropped)
        if not train["labels"] or not calib["labels"]:
            print("fit: features of the train and calib splits are needed first (--stage extract)")
            return 2
        t1 = time.monotonic()
        model, fit_report = fit(train, calib, hidden_grid=[int(h) for h in args.hidden.split(",")], by_kind=kind == "toolprm",
                                loss=args.loss)
        report = {"kind": kind, "loss": args.loss, "hidden": args.hidden, "policy_made": args.policy_made,
                  "dropped_origins": list(dropped), "train_units": len(train["labels"]), "train_examples": len({k[0] for k in train["keys"]}),
                  "calib_units": len(calib["labels"]), "fit_seconds": round(time.monotonic() - t1, 1),
                  "train_by_origin": dict(sorted(Counter(train.get("origins") or []).items())),
                  "train_policy_examples": len({k[0] for k, o in zip(train["keys"], train.get("origins") or []) if o in POLICY_ORIGINS}),
                  "layers": train["layers"], "fit": fit_report}
        if test["labels"]:
            report["test"] = evaluate(model, test, load_dataset_split(args.data, "test"), kind)
            report["test"]["examples"] = len({k[0] for k in test["keys"]})
        report.update(_supplement_reports(model, feats_dir, supplements, kind))
        if supplements:
            report["supplements"] = supplements
        for cat in filter(None, args.bfcl.split(",")):
            feats = load_features(feats_dir, f"bfcl-{cat}")
            if feats["labels"]:
                report[f"bfcl-{cat}"] = evaluate(model, feats, bfcl_rows(cat, args.bfcl_items), kind)
                report[f"bfcl-{cat}"]["examples"] = len({k[0] for k in feats["keys"]})
        name = "report.json" if (args.loss, args.hidden) == ("pointwise", "0") else f"report-{args.loss}-hidden{args.hidden.replace(',', '_')}.json"
        if args.policy_made or dropped or supplements:
            name = name.replace(".json", ("-policy" if args.policy_made else "") + "".join(f"-with-{t}" for t in supplements)
                                + "".join(f"-no-{o}" for o in dropped) + ".json")
        (work / name).write_text(json.dumps(report, indent=2, default=float) + "\n")
        t = report.get("test", {})
        print(f"probe ({kind}): {report['train_units']} train units; test AUROC {t.get('step_auroc', float('nan')):.3f}, "
              f"pick accuracy {t.get('decision_pick_acc', float('nan')):.3f} over {t.get('decisions', 0)} decisions")
        if args.out:
            unit = KIND_NAMES[kind][1]
            meta = {"kind": kind, "unit": unit, "probe": {"layers": train["layers"], "probes": sorted(model.probes),
                    "features": f"hidden state at the {unit}'s last token and mean over its tokens, per layer; "
                                + ("a logistic model per step kind" if len(model.probes) > 1 else "a logistic model")
                                + ", Platt-scaled on the calib split (folded in)"},
                    "loss": args.loss, "train_units": report["train_units"], "train_examples": report["train_examples"],
                    "fit": fit_report, "metrics": report.get("test", {}), "data": str(args.data)}
            save_probe_judge(model, train["layers"], args.out, metadata=meta, kind=kind)
            k = "" if kind == "toolprm" else f" --kind {kind}"
            pm = " --policy-made" if args.policy_made else ""
            fit_flags = pm + (f" --drop-origins {','.join(dropped)}" if dropped else "") + "".join(f" --with {t}={d}" for t, d in supplements.items())
            extra = "".join(f"python -m toolprm_agents.training.supplement --recipe training/recipes/cpu-smollm2-large.yaml "
                            f"--same-function 1.0 --out {d}\n"
                            f"python -m toolprm_agents.training.probe{k} --stage extract --data {d} --tag {t} --splits test,calib,train\n"
                            for t, d in supplements.items())
            command = ("nice -n 10 toolprm-agents train run training/recipes/cpu-smollm2-large.yaml --stages data,synth"
                       + (",branches,dataset   # branches: resumable, run again with --set branches.budget_minutes=N" if args.policy_made else ",dataset") + "\n"
                       f"python -m toolprm_agents.training.probe{k}{pm} --budget-minutes 60   # run again until the shards you want are there "
                       f"(this {unit} judge: {report['train_examples']} train examples)\n" + extra +
                       f"python -m toolprm_agents.training.probe{k}{fit_flags} --stage fit" + (f" --bfcl {args.bfcl}" if args.bfcl else "") + f" --out {args.out}")
            Path(args.out, "README.md").write_text(model_card(report, command))
            print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
