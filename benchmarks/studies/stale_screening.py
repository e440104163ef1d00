"""Can stale exact scores screen? A replay along exact greedy trajectories, from their `--save-scores` sidecar.

Each pass re-scores exactly only the K candidates best by their last exact score, the candidates within d
positions of the previous deletion, and any never scored; every R passes it re-scores all. A pass is a hit
when the best candidate re-scored is as good as exact greedy's deletion. Cost: the packed suffix tokens of the
candidates re-scored (a candidate's suffix and the answer), against a full `packed` pass. Model-free: seconds.

    .venv/bin/python -m benchmarks.studies.stale_screening runs/reallen/exact6.jsonl --keeps 4 8 16 24 --near 0 2 4 --refresh 1000 16 8
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from benchmarks.common import command, write_result
from chainprune.data.scores import load_scores, scores_path


def replay(traces: list[dict], saved: dict, keep: int, near: int, refresh: int) -> dict:
    hits = passes = cost = full = 0
    for trace in traces:
        n, order, objective = len(trace["reasoning_ids"]), trace["deletion_order"], trace["objective_values"]
        answer = len(trace["answer_ids"])
        last: dict[int, float] = {}  # position -> its last exact score, relative to the chain it was scored in
        for step, p in enumerate(saved[str(trace["id"])][1][: len(order)]):
            remaining = p.remaining(order, n)
            gain = {pos: float(s) - objective[step] for pos, s in zip(remaining, p.scores)}
            suffix = {pos: len(remaining) - k - 1 + answer for k, pos in enumerate(remaining)}
            if step % refresh == 0:
                chosen = set(remaining)
            else:
                best = sorted((pos for pos in remaining if pos in last), key=lambda q: -last[q])[:keep]
                close = [pos for pos in remaining if abs(pos - order[step - 1]) <= near]
                chosen = {*best, *close, *(pos for pos in remaining if pos not in last)}
            pick = max(chosen, key=lambda q: (gain[q], -q))
            hits += gain[pick] >= gain[order[step]] - 1e-6
            passes += 1
            cost += sum(suffix[q] for q in chosen)
            full += sum(suffix.values())
            last.update((q, gain[q]) for q in chosen)
    return {"keep": keep, "near": near, "refresh": refresh, "recall": round(hits / passes, 4), "passes": passes,
            "fewer_token_forwards_than_packed": round(full / cost, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path, help="exact traces pruned with --save-scores")
    parser.add_argument("--keeps", type=int, nargs="+", default=[4, 8, 16, 24])
    parser.add_argument("--near", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--refresh", type=int, nargs="+", default=[1000, 16, 8])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    traces = [json.loads(line) for line in args.traces.open()]
    saved = load_scores(scores_path(args.traces))[0]
    rows = [replay(traces, saved, k, d, r) for r, k, d in itertools.product(args.refresh, args.keeps, args.near)]
    for row in rows:
        print(f"refresh {row['refresh']:>5} keep {row['keep']:>3} near {row['near']:>2}: recall {row['recall']:.3f}, "
              f"{row['fewer_token_forwards_than_packed']:.1f}x fewer token-forwards than packed")
    if args.out:
        write_result(args.out, {"traces": str(args.traces), "rows": rows}, command=command(__file__, argv))


if __name__ == "__main__":
    main()
