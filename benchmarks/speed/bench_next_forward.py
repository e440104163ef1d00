"""A/B of building each pass's chain forward from the chosen candidate's scoring (`CurrentChain.after_deletion`).

Prunes the first N chains of a bench_modes chains file in a screened mode, alternately with the kept
continuation and with it switched off (the next forward then runs incrementally from the last one), and prints
(and writes as JSON) wall time, token-forwards and whether the deletions agree.

    .venv/bin/python -m benchmarks.speed.bench_next_forward runs/bench20/chains.jsonl --examples 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import RUNS, command, write_result
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import Approximation, ScoringOptions, prune_chain


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--screen", type=int, default=8)
    parser.add_argument("--lookahead", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m", help="the pruner (float32, CPU)")
    parser.add_argument("--out", type=Path, default=RUNS / "next-forward-cpu.json")
    args = parser.parse_args(argv)
    pruner = load_model(args.model, dtype="float32", device="cpu")
    chains = [parse_chain(json.loads(line)) for line in args.chains.open()][: args.examples]
    approximation = Approximation(screen=args.screen, lookahead=args.lookahead)
    rows = []
    for repeat in range(args.repeats):
        for label, kept in (("kept continuation", True), ("incremental forward", False)):
            options = ScoringOptions(next_from_best=kept)
            start, forwards, orders = time.perf_counter(), 0, []
            for chain in chains:
                trace = prune_chain(pruner, chain, keep=[0.5], engine="packed", approximation=approximation, options=options)
                forwards += trace.token_forwards
                orders.append(trace.deletion_order)
            seconds = time.perf_counter() - start
            rows.append({"repeat": repeat, "way": label, "seconds": round(seconds, 1), "token_forwards": forwards,
                         "deletion_orders": orders})
            print(f"{label:>20}: {seconds:6.1f} s, {forwards:,} token-forwards, "
                  f"deletions {hash(str(orders)) & 0xFFFF:04x}", flush=True)
    result = {"benchmark": "next_forward", "model": args.model, "chains": [c.id for c in chains],
              "screen": args.screen, "lookahead": args.lookahead,
              "same_deletions": len({str(r["deletion_orders"]) for r in rows}) == 1, "rows": rows}
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
