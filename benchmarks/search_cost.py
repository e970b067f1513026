"""What the searches cost next to greedy, on SmolLM2 on this CPU.

For the same BFCL simple_python prompts (used here for cost only, never for accuracy), runs
constrained greedy, the default search (combined beam, gated on the policy's uncertainty)
and the paper's judge-ranked beam search (``rank="prm"``, N=2, M=8), and prints wall time,
tokens, forward passes, judge calls per item, the fraction of decisions branched and the
ratios to greedy (measured in the same process, item by item in turn), the peak RSS, and the
speed-up of reusing the prompt's KV cache over re-encoding the prompt for every candidate
(what ``generate(num_return_sequences=M)`` does) on the first ``--kv-prompts`` prompts
(0: not measured).

    python benchmarks/search_cost.py --prompts 20 --kv-prompts 5 --threads 1

Targets: default search <= 2x greedy wall time (issue 12); paper beam <= 4x greedy,
KV reuse >= 2x, peak RSS <= 2 GB (issue 2).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bfcl_validity import load_items  # noqa: E402

from toolprm_agents.compute import Compute  # noqa: E402
from toolprm_agents.context import Context, ContextStore  # noqa: E402
from toolprm_agents.policy import TransformersPolicy  # noqa: E402
from toolprm_agents.search import SearchConfig, ToolPRMSearch  # noqa: E402


class ReencodingStore(ContextStore):
    """The baseline: no KV reuse. Every context is read from the start of the prompt, and
    every batch of ``n`` candidates re-reads it ``n`` times."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._prompt_ids = self.encode(self.prompt_text)

    def get(self, text: str) -> Context:
        ids = self._prompt_ids + self.encode(text)
        cache, logits = self._forward(ids, None)
        return _with_ids(cache, logits, ids)

    @torch.inference_mode()
    def fork(self, ctx: Context, n: int):
        from transformers import DynamicCache

        ids = getattr(ctx, "_ids")
        out = self.model(input_ids=torch.tensor([ids] * n), past_key_values=DynamicCache(config=self.model.config), use_cache=True, logits_to_keep=1)
        self._count(len(ids) * n)
        return out.past_key_values


def _with_ids(cache, logits, ids) -> Context:
    ctx = Context(cache, logits, len(ids))
    ctx._ids = ids  # type: ignore[attr-defined]
    return ctx


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(search: ToolPRMSearch, items, store_cls=None) -> list[dict]:
    rows = []
    for item in items:
        if store_cls is not None:
            _patch_store(search.policy, store_cls)
        t0 = time.perf_counter()
        result = search.search(item.messages, item.tools)
        rows.append({"seconds": time.perf_counter() - t0, **result.compute.to_dict(), "calls": result.tool_calls(), "complete": result.complete})
        if store_cls is not None:
            _unpatch_store(search.policy)
    return rows


def _patch_store(policy, store_cls):
    original = policy.session

    def session(messages, plan, compute, *, seed=0, store=None):
        store = store_cls(policy.model, policy.tokenizer, policy.prompt_text(messages, plan), compute)
        return original(messages, plan, compute, seed=seed, store=store)

    policy._original_session = original
    policy.session = session


def _unpatch_store(policy):
    policy.session = policy._original_session


def summary(rows: list[dict]) -> dict:
    keys = ["seconds", "tokens_generated", "prefill_tokens", "forward_passes", "scorer_calls", "scorer_forward_passes", "scorer_tokens",
            "decisions", "decisions_branched"]
    out = {k: statistics.mean(r[k] for r in rows) for k in keys}
    out["branched_fraction"] = sum(r["decisions_branched"] for r in rows) / max(1, sum(r["decisions"] for r in rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--kv-prompts", type=int, default=5)
    ap.add_argument("--beams", type=int, default=2)
    ap.add_argument("--expand", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _, items = load_items("simple_python", args.prompts)
    t0 = time.perf_counter()
    policy = TransformersPolicy()
    greedy = ToolPRMSearch(policy, None, SearchConfig(strategy="greedy"))
    default = ToolPRMSearch(policy, "toolprm", SearchConfig())
    beam = ToolPRMSearch(policy, "toolprm", SearchConfig(strategy="beam", rank="prm", beams=args.beams, expand=args.expand))
    _ = beam.scorer, default.scorer  # load the judge before timing
    load_s = time.perf_counter() - t0
    run(greedy, items[:1])  # warm-up (grammar compiler, allocator)
    # interleaved item by item, so a change in the machine's load hits all three alike
    rows: dict[str, list] = {"g": [], "d": [], "b": []}
    for item in items:
        for key, search in (("g", greedy), ("d", default), ("b", beam)):
            rows[key] += run(search, [item])
    g, d, b = summary(rows["g"]), summary(rows["d"]), summary(rows["b"])
    kv_items = items[: args.kv_prompts]
    reuse = summary(run(beam, kv_items)) if kv_items else None
    reencode = summary(run(beam, kv_items, ReencodingStore)) if kv_items else None
    out = {
        "prompts": len(items),
        "threads": args.threads,
        "model_load_s": round(load_s, 2),
        "greedy": {k: round(v, 2) for k, v in g.items()},
        "default_search": {k: round(v, 2) for k, v in d.items()},
        f"prm_beam_N{args.beams}_M{args.expand}": {k: round(v, 2) for k, v in b.items()},
        "default_over_greedy": {
            "wall_time": round(d["seconds"] / g["seconds"], 2),
            "tokens": round((d["tokens_generated"] + d["prefill_tokens"] + d["scorer_tokens"]) / (g["tokens_generated"] + g["prefill_tokens"]), 2),
            "judge_calls_per_item": round(d["scorer_calls"], 2),
            "branched_fraction": round(d["branched_fraction"], 3),
        },
        "beam_over_greedy": {
            "wall_time": round(b["seconds"] / g["seconds"], 2),
            "tokens_generated": round(b["tokens_generated"] / g["tokens_generated"], 2),
            "forward_passes": round(b["forward_passes"] / g["forward_passes"], 2),
        },
        "kv_reuse": {
            "prompts": len(kv_items),
            "reuse_s": round(reuse["seconds"], 2),
            "reencode_s": round(reencode["seconds"], 2),
            "speedup": round(reencode["seconds"] / reuse["seconds"], 2),
            "reuse_prefill_tokens": round(reuse["prefill_tokens"] + reuse["scorer_tokens"]),
            "reencode_prefill_tokens": round(reencode["prefill_tokens"] + reencode["scorer_tokens"]),
        } if kv_items else None,
        "peak_rss_mb": round(peak_rss_mb()),
    }
    print(json.dumps(out, indent=2))
    ok = (out["default_over_greedy"]["wall_time"] <= 2 and out["beam_over_greedy"]["wall_time"] <= 4
          and (not kv_items or out["kv_reuse"]["speedup"] >= 2) and out["peak_rss_mb"] <= 2048)
    print(f"targets (default <= 2x greedy, paper beam <= 4x greedy, KV reuse >= 2x, peak RSS <= 2048 MB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
