"""Whole prunes of real GSM8K chains with every engine and approximate mode, and their fidelity to exact greedy.

Each mode prunes the same chains to keep 0.9/0.7/0.5 through `chainprune prune`'s pipeline (traces written
under --work-dir); approximate traces are compared with the exact `prefix` traces by `chainprune compare`'s
code. Prints a table and writes JSON: wall time, token-forwards, speed-up vs naive (when naive is run), and
kept-set overlap / Kendall tau / objective gap at keep 0.5.

    .venv/bin/python benchmarks/bench_modes.py --examples 8 --max-reasoning 60 --out benchmarks/results/modes-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import re
from datetime import date
from pathlib import Path

import torch

from chainprune.pipelines.compare import compare_traces
from chainprune.pipelines.prune import PruneConfig, run_prune

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
CALCULATOR = re.compile(r"<<[^>]*>>")

MODES = {
    "naive": dict(engine="naive"),
    "prefix": dict(engine="prefix"),
    "packed": dict(engine="packed"),
    "per_step=2": dict(per_step=2),
    "per_step=4": dict(per_step=4),
    "screen=8,refresh=10": dict(screen=8, refresh=10),
    "screen=8,refresh=10,per_step=2": dict(screen=8, refresh=10, per_step=2),
    "screen=4,lookahead=8": dict(screen=4, lookahead=8),
    "screen=8,lookahead=8": dict(screen=8, lookahead=8),
    "screen=4,lookahead=16": dict(screen=4, lookahead=16),
    "screen=8,lookahead=16": dict(screen=8, lookahead=16),
}


def write_chains(path: Path, n: int, max_words: int, seed: int) -> None:
    records = [json.loads(line) for line in GSM8K.open()]
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    lines = []
    for i in order:
        reasoning, answer = records[i]["answer"].split("####")
        reasoning = CALCULATOR.sub("", reasoning).strip()
        if len(reasoning.split()) <= max_words:
            chain = {"id": f"gsm8k-train-{i}", "question": records[i]["question"], "reasoning": reasoning,
                     "answer": f"The answer is {answer.strip()}."}
            lines.append(json.dumps(chain))
        if len(lines) == n:
            break
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--max-reasoning", type=int, default=60, help="longest reasoning kept, in words")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench-modes"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/modes-cpu.json"))
    parser.add_argument("--merge", action="store_true",
                        help="add to the results already in --out (same chains) and reuse the exact prefix traces "
                             "in --work-dir instead of re-running them")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    chains = args.work_dir / "chains.jsonl"
    write_chains(chains, args.examples, args.max_reasoning, args.seed)
    previous = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    if previous and (previous["examples"], previous["max_reasoning_words"]) != (args.examples, args.max_reasoning):
        parser.error(f"--merge: {args.out} holds another set of chains")
    results = dict(previous["modes"]) if previous else {}
    reuse_exact = args.merge and "prefix" in results and (args.work_dir / "prefix.jsonl").exists()
    for name in (["prefix"] if not reuse_exact else []) + [m for m in args.modes if m != "prefix"]:
        config = PruneConfig(model="smollm2-135m", keep=[0.9, 0.7, 0.5], dtype="float32", device="cpu", **MODES[name])
        out = args.work_dir / f"{name}.jsonl"
        summary = run_prune(chains, out, config, overwrite=True)
        row = {"seconds": summary.seconds, "token_forwards": summary.token_forwards, "examples": summary.done}
        if name != "prefix":
            fidelity = compare_traces(args.work_dir / "prefix.jsonl", out)
            at_half = next(k for k in fidelity.per_keep if k.keep == 0.5)
            row.update(overlap_mean=at_half.overlap_mean, overlap_min=at_half.overlap_min,
                       kendall_tau=at_half.kendall_tau_mean, objective_gap=at_half.objective_gap_mean)
        results[name] = row
        print(name, json.dumps(row), flush=True)
    if "naive" in results:
        for row in results.values():
            row["speedup_vs_naive"] = results["naive"]["seconds"] / row["seconds"]
    report = {
        "benchmark": "modes",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": "benchmarks/bench_modes.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__,
        "examples": args.examples,
        "max_reasoning_words": args.max_reasoning,
        "modes": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'mode':>32} {'seconds':>8} {'token-fwd':>10} {'vs naive':>8} {'overlap@0.5':>11} {'tau':>6} {'gap':>7}")
    for name, row in results.items():
        print(f"{name:>32} {row['seconds']:8.1f} {row['token_forwards']:10,d} {row.get('speedup_vs_naive', float('nan')):7.1f}x "
              f"{row.get('overlap_mean', 1.0):11.3f} {row.get('kendall_tau', 1.0):6.3f} {row.get('objective_gap', 0.0):7.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
