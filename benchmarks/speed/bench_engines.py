"""Time the exact engines (`naive`, `prefix`, `packed`) step by step on real GSM8K chains with the bundled model.

Chains are GSM8K train worked solutions (`benchmarks.common`: calculator annotations <<...>> stripped), a seeded
sample of --examples, or the chains of --chains; each is pruned for the first `--steps` greedy steps by every
engine at its full length (the most expensive steps of a prune). Prints a table and writes JSON with
token-forwards and wall time per step and example, and checks that the engines deleted the same tokens.

    .venv/bin/python -m benchmarks.speed.bench_engines --examples 5 --steps 2 --out runs/bench/engines-cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from benchmarks.common import RUNS, command, gsm8k_records, solution_chain, write_result
from chainprune.chains import tokenize_chain
from chainprune.choices import ENGINES
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import ChainScorer
from chainprune.pruning.greedy import greedy_prune
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.types import Chain


def gsm8k_chains(n: int, seed: int, path: Path | None = None) -> list[Chain]:
    records = gsm8k_records(path)
    picked = random.Random(seed).sample(range(len(records)), n)
    return [parse_chain(solution_chain(records[i], i)) for i in picked]


def read_chains(path: Path) -> list[Chain]:
    return [parse_chain(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    pruner = load_model(args.model, dtype=args.dtype, device=args.device)
    rows = []
    chains = read_chains(args.chains) if args.chains else gsm8k_chains(args.examples, args.seed, args.gsm8k)
    for chain in chains:
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


def main(argv: list[str] | None = None) -> dict:
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
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--chains", type=Path, default=None,
                        help="time these chains (JSONL) instead of GSM8K worked solutions; --examples is ignored")
    # Not a committed result's path: a run writes its own file unless told to replace one.
    parser.add_argument("--out", type=Path, default=RUNS / "engines-cpu.json")
    args = parser.parse_args(argv)
    result = run(args)
    print("\nper step, mean over examples:")
    for engine, s in result["summary"].items():
        extra = ""
        if "speedup_vs_naive" in s:
            extra = f"  {s['speedup_vs_naive']:.2f}x faster, {s['token_forward_reduction_vs_naive']:.2f}x fewer token-forwards than naive"
        print(f"  {engine:>7}: {s['seconds_per_step']:7.1f} s  {s['token_forwards_per_step']:10,.0f} token-forwards{extra}")
    write_result(args.out, result, command=command(__file__, argv), device=args.device)
    return result


if __name__ == "__main__":
    main()
