"""A/B of building each pass's chain forward from the chosen candidate's scoring (`CurrentChain.after_deletion`).

Prunes the first N chains of a bench_modes chains file in a screened mode, alternately with the kept
continuation and with it switched off (the next forward then runs incrementally from the last one), and prints
wall time, token-forwards and whether the deletions agree.

    .venv/bin/python benchmarks/bench_next_forward.py runs/bench20/chains.jsonl --examples 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import chainprune.scoring.chain_state as chain_state
from chainprune.data.jsonl import parse_chain
from chainprune.models import load_model
from chainprune.pruning import Approximation, prune_chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chains", type=Path)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--screen", type=int, default=8)
    parser.add_argument("--lookahead", type=int, default=4)
    args = parser.parse_args()
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    chains = [parse_chain(json.loads(line)) for line in args.chains.open()][: args.examples]
    approximation = Approximation(screen=args.screen, lookahead=args.lookahead)
    offer = chain_state.BestContinuation.offer
    for _ in range(args.repeats):
        for label, kept in (("kept continuation", True), ("incremental forward", False)):
            chain_state.BestContinuation.offer = offer if kept else (lambda self, continuation: None)
            start, forwards, orders = time.perf_counter(), 0, []
            for chain in chains:
                trace = prune_chain(pruner, chain, keep=[0.5], engine="packed", approximation=approximation)
                forwards += trace.token_forwards
                orders.append(trace.deletion_order)
            print(f"{label:>20}: {time.perf_counter() - start:6.1f} s, {forwards:,} token-forwards, "
                  f"deletions {hash(str(orders)) & 0xFFFF:04x}", flush=True)
    chain_state.BestContinuation.offer = offer


if __name__ == "__main__":
    main()
