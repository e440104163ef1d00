"""A/B of the `packed` engine's attention: computed by the pack's structure (`PackLayout`) or as the model's own
attention over the dense 4D mask.

On one chain of a bench_modes chains file, times an exact scoring pass and a lookahead-estimate pass (all
candidates) with each, alternating, and checks that both give the same scores.

    .venv/bin/python benchmarks/bench_attention.py runs/bench-median4/chains.jsonl --line 0 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import chainprune.scoring.packed as packed
from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import ChainScorer
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--line", type=int, default=0, help="which chain of the file")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lookahead", type=int, default=4)
    args = parser.parse_args()
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    chain = parse_chain(json.loads(args.chains.read_text().splitlines()[args.line]))
    ids = tokenize_chain(pruner.tokenizer, chain)
    remaining = list(range(len(ids.reasoning_ids)))
    print(f"{chain.id}: prompt {len(ids.prompt_ids)}, reasoning {len(remaining)}, answer {len(ids.answer_ids)} tokens")
    scorer = ChainScorer(pruner.model, ids, "joint", "packed", DEFAULT_MAX_BATCH_TOKENS)
    scorer.candidates(remaining)  # warm-up
    results: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.repeats):
        for label, structured in (("structured", True), ("dense mask", False)):
            packed.PackAttention.structured = structured
            for kind in ("exact", "estimates"):
                scorer._partials = None  # each estimate pass computes its windows afresh
                start, before = time.perf_counter(), scorer.stats.token_forwards
                scores = scorer.candidates(remaining)[1] if kind == "exact" else scorer.estimates(remaining, args.lookahead)
                seconds, tokens = time.perf_counter() - start, scorer.stats.token_forwards - before
                results.setdefault(kind, []).append(scores)
                print(f"{label:>10} {kind:>9}: {seconds:6.2f} s, {tokens:,} token-forwards, {tokens / seconds:5.0f}/s", flush=True)
    packed.PackAttention.structured = True
    for kind, runs in results.items():
        gap = max(float((r - runs[0]).abs().max()) for r in runs)
        print(f"{kind}: largest difference between runs {gap:.2e} nats")


if __name__ == "__main__":
    main()
