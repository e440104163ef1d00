"""Token vs word vs sentence units: what an exact prune costs, what objective it reaches, and how readable
its kept text stays (BENCHMARKS.md, "Units").

For each chain and unit, an exact greedy prune (`--engine packed` by default) down to the smallest keep
fraction, timed, appended to WORK/<unit>.jsonl with its time in WORK/<unit>.times.jsonl (resumable: chains
already there are skipped). Then, at each keep fraction:
- cost: token-forwards and wall time of the prune;
- the kept share of tokens and the objective reached (the pruner's log p(kept reasoning + answer));
- readability by a model that did not prune (`--reader`): the mean log-probability per token of the kept
  reasoning, in the reader's tokens, after the question in its chat template;
- intact numbers: the share of numbers in the kept text that are numbers of the original reasoning.
Matched lengths in a student tokenizer are measured by `chainprune match` + `chainprune lengths` on the traces.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.speed.bench_units CHAINS.jsonl --work-dir runs/units \
        --out runs/bench/units-cpu.json --units token word sentence --keep 0.9 0.7 0.5
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import RUNS, command, write_result
from chainprune import Chain, load_model, prune_chain
from chainprune.trace_steps import steps_at
from chainprune.types import Trace

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def prune_all(chains: list[Chain], unit: str, args: argparse.Namespace, pruner) -> None:
    out, times = args.work_dir / f"{unit}.jsonl", args.work_dir / f"{unit}.times.jsonl"
    done = {r["id"] for r in read_jsonl(times)}
    for chain in chains:
        if chain.id in done:
            continue
        start = time.perf_counter()
        trace = prune_chain(pruner, chain, keep=args.keep, engine=args.engine, unit=unit)
        seconds = time.perf_counter() - start
        with out.open("a") as f:
            f.write(json.dumps(trace.to_json()) + "\n")
        with times.open("a") as f:
            f.write(json.dumps({"id": chain.id, "seconds": seconds}) + "\n")
        print(f"{unit} {chain.id}: {len(trace.reasoning_ids)} tokens, {seconds:.1f} s, {trace.token_forwards} token-forwards", flush=True)


@torch.no_grad()
def reader_logprob(reader, question: str, reasoning: str) -> tuple[float, int]:
    """(sum of log p of the reasoning's tokens after the question, their count) under the reader."""
    tokenizer = reader.tokenizer
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    text_ids = tokenizer(reasoning, add_special_tokens=False)["input_ids"]
    if not text_ids:
        return 0.0, 0
    ids = torch.tensor([prompt_ids + text_ids])
    logits = reader.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].double()
    logp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(prompt_ids) :, None])
    return float(logp.sum()), len(text_ids)


def intact_numbers(kept: str, original: str) -> tuple[int, int]:
    """(numbers in the kept text that are numbers of the original, numbers in the kept text)."""
    known = set(NUMBER.findall(original))
    found = NUMBER.findall(kept)
    return sum(n in known for n in found), len(found)


def measure(chains: dict[str, Chain], args: argparse.Namespace, reader) -> dict:
    rows: dict = {}
    for unit in args.units:
        traces = {r["id"]: Trace.from_json(r) for r in read_jsonl(args.work_dir / f"{unit}.jsonl")}
        times = {r["id"]: r["seconds"] for r in read_jsonl(args.work_dir / f"{unit}.times.jsonl")}
        ids = [i for i in chains if i in traces and all(i in read_ids(args.work_dir / f"{u}.jsonl") for u in args.units)]
        per_keep = {}
        for r in [1.0, *args.keep]:
            objective, kept_share, logp, tokens, intact, numbers = [], [], 0.0, 0, 0, 0
            for i in ids:
                trace = traces[i]
                n = len(trace.reasoning_ids)
                steps = steps_at(trace, r)
                objective.append(trace.objective_values[steps])
                kept = trace.kept_text(r)
                kept_share.append(len(trace.kept_positions(r)) / n)
                s, c = reader_logprob(reader, chains[i].question, kept) if reader is not None else (0.0, 0)
                logp, tokens = logp + s, tokens + c
                a, b = intact_numbers(kept, chains[i].reasoning)
                intact, numbers = intact + a, numbers + b
            per_keep[repr(r)] = {
                "kept_share": statistics.mean(kept_share),
                "objective": statistics.mean(objective),
                "reader_logp_per_token": logp / tokens if tokens else None,
                "intact_numbers": intact / numbers if numbers else None,
            }
        rows[unit] = {
            "chains": len(ids),
            "units_per_chain": statistics.mean(len(traces[i].units or traces[i].reasoning_ids) for i in ids),
            "seconds": sum(times[i] for i in ids),
            "token_forwards": sum(traces[i].token_forwards for i in ids),
            "keep": per_keep,
        }
    return rows


def read_ids(path: Path) -> set[str]:
    return {r["id"] for r in read_jsonl(path)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--work-dir", type=Path, default=RUNS / "units", help="traces and times (resumable)")
    parser.add_argument("--out", type=Path, default=RUNS / "units-cpu.json")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--engine", default="packed")
    parser.add_argument("--units", nargs="+", default=["token", "word", "sentence"])
    parser.add_argument("--keep", nargs="+", type=float, default=[0.9, 0.7, 0.5])
    parser.add_argument("--reader", default="qwen2.5-coder-1.5b", help="a model that did not prune ('' to skip)")
    parser.add_argument("--measure-only", action="store_true", help="no pruning: measure the traces in --work-dir")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    chains = [Chain(**{k: v for k, v in r.items() if k in Chain.__dataclass_fields__}) for r in read_jsonl(args.chains)]
    if not args.measure_only:
        pruner = load_model(args.model, dtype="float32", device="cpu")
        for unit in args.units:
            prune_all(chains, unit, args, pruner)
    reader = load_model(args.reader, dtype="float32", device="cpu") if args.reader else None
    result = {
        "benchmark": "units",
        "pruner": args.model,
        "engine": args.engine,
        "reader": args.reader or None,
        "units": measure({c.id: c for c in chains}, args, reader),
    }
    print(json.dumps(result, indent=1))
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
