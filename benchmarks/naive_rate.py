"""What `naive` would take for exact greedy traces made by a faster engine, at its rate measured now.

`naive`'s whole prune of a long chain takes hours; its token-forwards along an exact trajectory are known exactly
(`bench_modes.naive_token_forwards`), and its rate is timed here on every --every-th pass of each trajectory
(`bench_modes.measure_naive_rate`). Prints and writes JSON: the rate, the sample, and per chain and in total the
token-forwards and estimated seconds, beside the traces' own.

    OMP_NUM_THREADS=1 python benchmarks/naive_rate.py runs/reallen/packed.jsonl --every 40 --out naive.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_modes import measure_naive_rate, naive_token_forwards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path, help="exact greedy traces (token unit, no approximation)")
    parser.add_argument("--every", type=int, default=40, help="time naive on every N-th pass of each trajectory")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    traces = [json.loads(line) for line in args.traces.read_text().splitlines() if line.strip()]
    rate, sampled, seconds = measure_naive_rate(traces, args.every)
    chains = {t["id"]: {"reasoning_tokens": len(t["reasoning_ids"]), "token_forwards": t["token_forwards"],
                        "naive_token_forwards": naive_token_forwards(t)} for t in traces}
    for row in chains.values():
        row["naive_seconds_estimated"] = round(row["naive_token_forwards"] / rate, 1)
    result = {"naive_rate": round(rate, 2), "sample": {"every": args.every, "token_forwards": sampled,
              "seconds": round(seconds, 1)}, "naive_token_forwards": sum(r["naive_token_forwards"] for r in chains.values()),
              "chains": chains}
    result["naive_seconds_estimated"] = round(result["naive_token_forwards"] / rate, 1)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
