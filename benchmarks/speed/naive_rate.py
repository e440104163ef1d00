"""What `naive` would take for exact greedy traces made by a faster engine, at its rate measured now.

`naive`'s whole prune of a long chain takes hours; its token-forwards along an exact trajectory are known exactly
(`bench_modes.naive_token_forwards`), and its rate is timed here on every --every-th pass of each trajectory
(`bench_modes.measure_naive_rate`). Prints and writes JSON: the rate, the sample, and per chain and in total the
token-forwards and estimated seconds, beside the traces' own.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.speed.naive_rate runs/reallen/packed.jsonl --every 40 --out naive.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RUNS, command, write_result
from benchmarks.speed.bench_modes import measure_naive_rate, naive_token_forwards


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path, help="exact greedy traces (token unit, no approximation)")
    parser.add_argument("--every", type=int, default=40, help="time naive on every N-th pass of each trajectory")
    parser.add_argument("--model", default="smollm2-135m", help="the pruner the traces were made with (float32, CPU)")
    parser.add_argument("--out", type=Path, default=RUNS / "naive-rate-cpu.json")
    args = parser.parse_args(argv)
    traces = [json.loads(line) for line in args.traces.read_text().splitlines() if line.strip()]
    rate, sampled, seconds = measure_naive_rate(traces, args.every, args.model)
    chains = {t["id"]: {"reasoning_tokens": len(t["reasoning_ids"]), "token_forwards": t["token_forwards"],
                        "naive_token_forwards": naive_token_forwards(t)} for t in traces}
    for row in chains.values():
        row["naive_seconds_estimated"] = round(row["naive_token_forwards"] / rate, 1)
    result = {"benchmark": "naive_rate", "traces": str(args.traces), "model": args.model, "naive_rate": round(rate, 2), "sample": {"every": args.every, "token_forwards": sampled,
              "seconds": round(seconds, 1)}, "naive_token_forwards": sum(r["naive_token_forwards"] for r in chains.values()),
              "chains": chains}
    result["naive_seconds_estimated"] = round(result["naive_token_forwards"] / rate, 1)
    print(json.dumps(result, indent=1))
    write_result(args.out, result, command=command(__file__, argv))
    return result


if __name__ == "__main__":
    main()
