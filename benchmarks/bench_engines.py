"""Time the exact engines (`naive` vs `prefix`) on real GSM8K chains with the bundled default model.

Chains come from the GSM8K train split shipped in ../shared/data (calculator annotations <<...>> stripped),
each pruned for the first `--steps` greedy steps by both engines at its full length (the most expensive
steps of a prune). Prints a table and writes JSON with token-forwards and wall time per step and example,
and checks that both engines deleted the same tokens.

    .venv/bin/python benchmarks/bench_engines.py --examples 5 --steps 2 --out benchmarks/results/engines-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from datetime import date
from pathlib import Path

import torch

from chainprune.chains import tokenize_chain
from chainprune.choices import ENGINES
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import ChainScorer
from chainprune.pruning.greedy import greedy_prune
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.types import Chain
from gsm8k_solutions import gsm8k_records, solution_chain


def gsm8k_chains(n: int, seed: int) -> list[Chain]:
    records = gsm8k_records()
    picked = random.Random(seed).sample(range(len(records)), n)
    return [parse_chain(solution_chain(records[i], i)) for i in picked]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    pruner = load_model(args.model, dtype=args.dtype, device=args.device)
    rows = []
    for chain in gsm8k_chains(args.examples, args.seed):
        ids = tokenize_chain(pruner.tokenizer, chain)
        row = {"id": chain.id, "prompt": len(ids.prompt_ids), "reasoning": len(ids.reasoning_ids), "answer": len(ids.answer_ids)}
        orders = {}
        for engine in args.engines:
            scorer = ChainScorer(pruner.model, ids, args.objective, engine, args.max_batch_tokens)
            started = time.perf_counter()
            result = greedy_prune(len(ids.reasoning_ids), scorer, args.steps)
            seconds = time.perf_counter() - started
            orders[engine] = result.deletion_order
            row[engine] = {
                "seconds_per_step": seconds / args.steps,
                "token_forwards_per_step": scorer.stats.token_forwards / args.steps,
                "forwards_per_step": scorer.stats.forwards / args.steps,
                "tokens_per_second": scorer.stats.token_forwards / seconds,
                "objective_values": result.objective_values,
            }
        row["same_deletions"] = len({tuple(o) for o in orders.values()}) == 1
        rows.append(row)
        print_row(row, args.engines)
    summary = {}
    for engine in args.engines:
        summary[engine] = {
            "seconds_per_step": sum(r[engine]["seconds_per_step"] for r in rows) / len(rows),
            "token_forwards_per_step": sum(r[engine]["token_forwards_per_step"] for r in rows) / len(rows),
        }
    if "naive" in args.engines:
        for engine in args.engines:
            summary[engine]["speedup_vs_naive"] = summary["naive"]["seconds_per_step"] / summary[engine]["seconds_per_step"]
            summary[engine]["token_forward_reduction_vs_naive"] = (
                summary["naive"]["token_forwards_per_step"] / summary[engine]["token_forwards_per_step"]
            )
    return {
        "benchmark": "engines",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "device": str(pruner.device),
        "dtype": str(pruner.dtype),
        "model": args.model,
        "objective": args.objective,
        "steps_per_example": args.steps,
        "max_batch_tokens": args.max_batch_tokens,
        "examples": rows,
        "summary": summary,
    }


def print_row(row: dict, engines: list[str]) -> None:
    parts = [f"{row['id']:>18}  P={row['prompt']:3d} m={row['reasoning']:3d} A={row['answer']:2d}"]
    for engine in engines:
        r = row[engine]
        parts.append(f"{engine}: {r['seconds_per_step']:7.1f} s/step {r['token_forwards_per_step']:9,.0f} tok-fwd/step")
    parts.append("same deletions" if row["same_deletions"] else "DIFFERENT deletions")
    print("  ".join(parts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--objective", default="joint", choices=["joint", "answer"])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="greedy steps measured per example (at full length)")
    parser.add_argument("--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    # Not a committed result's path: a run writes its own file unless told to replace one.
    parser.add_argument("--out", type=Path, default=Path("runs/bench/engines-cpu.json"))
    args = parser.parse_args()
    result = run(args)
    print("\nper step, mean over examples:")
    for engine, s in result["summary"].items():
        extra = ""
        if "speedup_vs_naive" in s:
            extra = f"  {s['speedup_vs_naive']:.2f}x faster, {s['token_forward_reduction_vs_naive']:.2f}x fewer token-forwards than naive"
        print(f"  {engine:>7}: {s['seconds_per_step']:7.1f} s  {s['token_forwards_per_step']:10,.0f} token-forwards{extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
