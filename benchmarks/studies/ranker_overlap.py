"""One-forward rankers against exact greedy: the kept-set overlap with exact greedy's at each keep fraction, in
the pruner's tokens (no student matching), and what each costs (BENCHMARKS.md, "The surrogate as a ranker").

Takes exact greedy traces (`chainprune prune`, no approximation options) of chains the surrogate did not train
on, ranks the same tokenized chains with each one-forward ranker (uniform, surprisal, h2o, surrogate), and for
keep r compares the floor(n r) tokens each keeps with those exact greedy keeps: overlap = |both| / floor(n r).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.studies.ranker_overlap EXACT.jsonl --surrogate S.pt --exclude ID ... \
        --out runs/studies/ranker-overlap.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import command, write_result
from chainprune.analysis.surrogate import Surrogate
from chainprune.keep import kept_count
from chainprune.models import load_model
from chainprune.ranking import RANKER_NEEDS, SurrogateModel, get_ranker
from chainprune.types import Trace


def overlap(order: list[int], exact: Trace, r: float) -> float:
    n = len(exact.reasoning_ids)
    kept = kept_count(n, r)
    if kept == 0:
        return 1.0
    mine = set(range(n)) - set(order[: n - kept])
    return len(mine & set(exact.kept_positions(r))) / kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exact", type=Path, help="exact greedy traces (token unit)")
    parser.add_argument("--surrogate", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", nargs="+", default=["uniform", "surprisal", "h2o", "surrogate"])
    parser.add_argument("--keep", nargs="+", type=float, default=[0.9, 0.7, 0.5])
    parser.add_argument("--exclude", nargs="*", default=[], help="ids the surrogate trained on")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    traces = [Trace.from_json(json.loads(line)) for line in args.exact.read_text().splitlines() if line.strip()]
    traces = [t for t in traces if t.id not in args.exclude and t.mode is None and t.unit == "token"]
    pruner = load_model(args.model, dtype="float32", device="cpu")
    models = {"causal_lm": pruner.model, "surrogate": SurrogateModel(pruner.model, Surrogate.load(args.surrogate), args.surrogate.name), None: None}
    result = {"what": "one-forward rankers vs exact greedy: kept-set overlap in pruner tokens",
              "pruner": args.model, "surrogate": str(args.surrogate), "chains": [t.id for t in traces],
              "reasoning_tokens": [len(t.reasoning_ids) for t in traces],
              "exact_token_forwards_mean": statistics.fmean(t.token_forwards for t in traces), "methods": {}}
    for method in args.methods:
        ranker = get_ranker(method)
        per_keep: dict[float, list[float]] = {r: [] for r in args.keep}
        seconds = 0.0
        for trace in traces:
            start = time.perf_counter()
            ranking = ranker(trace.ids, models[RANKER_NEEDS[method]], seed=0)
            seconds += time.perf_counter() - start
            for r in args.keep:
                per_keep[r].append(overlap(ranking.deletion_order, trace, r))
        result["methods"][method] = {
            "overlap": {repr(r): {"mean": round(statistics.fmean(v), 4), "min": round(min(v), 4)} for r, v in per_keep.items()},
            "seconds_per_chain": round(seconds / len(traces), 4),
        }
        print(method, json.dumps(result["methods"][method]), flush=True)
    if args.out:
        write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
