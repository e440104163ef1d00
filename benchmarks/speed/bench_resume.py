"""A/B of exact `packed` greedy resuming each candidate's suffix from the last pass (`ChainScorer`, `ScoringOptions.keep_suffix_bytes`).

After the token at index j is deleted, candidate i < j's suffix up to j is still the new chain's; exact passes
keep every candidate's suffix so the next pass computes only the rest. Prunes the first N chains of a
bench_modes chains file exactly with `packed`, alternately with the suffixes kept and with keeping switched
off, and prints (and writes as JSON) wall time, token-forwards and whether deletions and objectives agree.

    .venv/bin/python -m benchmarks.speed.bench_resume runs/bench20/chains.jsonl --examples 2 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import chainprune.pruning as pruning
from benchmarks.common import RUNS, command, write_result
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--model", default="smollm2-135m", help="the pruner (float32, CPU)")
    parser.add_argument("--out", type=Path, default=RUNS / "resume-cpu.json")
    args = parser.parse_args(argv)
    pruner = load_model(args.model, dtype="float32", device="cpu")
    chains = [parse_chain(json.loads(line)) for line in args.chains.open()][: args.examples]
    rows, agreement = [], []
    for repeat in range(args.repeats):
        traces = {}
        for label, keeps in (("suffixes kept", True), ("not kept", False)):
            options = pruning.ScoringOptions() if keeps else pruning.ScoringOptions(keep_suffix_bytes=-1)
            for chain in chains:
                start = time.perf_counter()
                trace = pruning.prune_chain(pruner, chain, keep=[0.5], engine="packed", options=options)
                seconds = time.perf_counter() - start
                traces.setdefault(chain.id, []).append(trace)
                rows.append({"repeat": repeat, "way": label, "id": chain.id, "seconds": round(seconds, 1),
                             "token_forwards": trace.token_forwards})
                print(json.dumps(rows[-1]), flush=True)
        for chain_id, (kept, plain) in traces.items():
            gap = max(abs(a - b) for a, b in zip(kept.objective_values, plain.objective_values))
            agreement.append({"repeat": repeat, "id": chain_id, "same_deletions": kept.deletion_order == plain.deletion_order,
                              "largest_objective_difference": gap})
            print(f"{chain_id}: same deletions {kept.deletion_order == plain.deletion_order}, "
                  f"largest objective difference {gap:.1e} nats")
    print(f"\n{'way':>14} {'chain':>18} {'seconds':>8} {'token-forwards':>15}")
    for row in rows:
        print(f"{row['way']:>14} {row['id']:>18} {row['seconds']:>8.1f} {row['token_forwards']:>15,}")
    report = {"benchmark": "resume", "model": args.model, "rows": rows, "agreement": agreement}
    write_result(args.out, report, command=command(__file__, argv))
    return report


if __name__ == "__main__":
    main()
