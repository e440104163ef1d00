"""A/B of the `packed` engine's attention: computed by the pack's structure (`PackLayout`) or as the model's own
attention over the dense 4D mask.

On one chain of a bench_modes chains file, times an exact scoring pass and a lookahead-estimate pass (all
candidates) with each, alternating, and checks that both give the same scores. Prints and writes JSON.

    .venv/bin/python -m benchmarks.speed.bench_attention runs/bench-median4/chains.jsonl --line 0 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import RUNS, command, write_result
from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import ChainScorer
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, ScoringOptions


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--line", type=int, default=0, help="which chain of the file")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lookahead", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m", help="the pruner (float32, CPU)")
    parser.add_argument("--out", type=Path, default=RUNS / "attention-cpu.json")
    args = parser.parse_args(argv)
    pruner = load_model(args.model, dtype="float32", device="cpu")
    chain = parse_chain(json.loads(args.chains.read_text().splitlines()[args.line]))
    ids = tokenize_chain(pruner.tokenizer, chain)
    remaining = list(range(len(ids.reasoning_ids)))
    print(f"{chain.id}: prompt {len(ids.prompt_ids)}, reasoning {len(remaining)}, answer {len(ids.answer_ids)} tokens")
    scorers = {
        label: ChainScorer(pruner.model, ids, "joint", "packed", DEFAULT_MAX_BATCH_TOKENS,
                           options=ScoringOptions(structured_attention=structured))
        for label, structured in (("structured", True), ("dense mask", False))
    }
    for scorer in scorers.values():
        scorer.candidates(remaining)  # warm-up (the chain's forward is then the cache's)
    results: dict[str, list[torch.Tensor]] = {}
    rows = []
    for repeat in range(args.repeats):
        for label, scorer in scorers.items():
            for kind in ("exact", "estimates"):
                scorer.cache.partials = None  # each pass computes its suffixes and windows afresh
                start, before = time.perf_counter(), scorer.stats.token_forwards
                scores = scorer.candidates(remaining)[1] if kind == "exact" else scorer.estimates(remaining, args.lookahead)
                seconds, tokens = time.perf_counter() - start, scorer.stats.token_forwards - before
                results.setdefault(kind, []).append(scores)
                rows.append({"repeat": repeat, "attention": label, "pass": kind, "seconds": round(seconds, 3),
                             "token_forwards": tokens})
                print(f"{label:>10} {kind:>9}: {seconds:6.2f} s, {tokens:,} token-forwards, {tokens / seconds:5.0f}/s", flush=True)
    gaps = {}
    for kind, runs in results.items():
        gaps[kind] = max(float((torch.as_tensor(r) - torch.as_tensor(runs[0])).abs().max()) for r in runs)
        print(f"{kind}: largest difference between runs {gaps[kind]:.2e} nats")
    result = {"benchmark": "attention", "model": args.model, "chain": chain.id, "prompt": len(ids.prompt_ids),
              "reasoning": len(remaining), "answer": len(ids.answer_ids), "lookahead": args.lookahead,
              "rows": rows, "largest_difference_nats": gaps}
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
