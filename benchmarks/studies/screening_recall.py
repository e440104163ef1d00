"""How well cheap estimates find exact greedy's choice, pass by pass, along the exact trajectory.

Reads exact traces with their `--save-scores` sidecar (every pass's exact candidate objectives; bench_modes.py
writes one for its reference), recomputes each pass's lookahead estimates for a few windows W, and reports for
screening rules "re-score exactly the S best by estimate (and the k best by the previous pass's exact scores)"
how often exact greedy's deletion is among those re-scored (its recall) and what the rule costs in
token-forwards per pass; likewise for margin rules "re-score every candidate whose estimate is within a margin
of the best estimate (at most --cap)"; and for rounds rules "re-score the S best estimates and the last pass's two
runners-up, then S more at a time while an estimate is within a margin of the best exact score found" (what
`--margin` did before it widened windows; benchmarks/studies/widening_recall.py replays the current rule). A miss does
not always change the deletion (a near-tie may be chosen), but a rule with recall 1.0 on every pass reproduces exact
greedy.

    .venv/bin/python -m benchmarks.studies.screening_recall runs/bench-modes20/packed.jsonl --windows 2 4 8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.common import command, write_result
from chainprune.data.scores import load_scores, scores_path
from chainprune.models import load_model
from chainprune.pruning import ChainScorer
from chainprune.pruning.greedy import RUNNERS_UP
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.types import ChainIds


def ranks_of(values: np.ndarray, k: int) -> int:
    """0-based rank of index k when `values` are sorted best first (ties to the smaller index)."""
    better = (values > values[k]).sum() + ((values == values[k]) & (np.arange(len(values)) < k)).sum()
    return int(better)


def rounds_rule(row: dict, window: int, size: int, margin: float) -> set[int]:
    """What the rounds rule (the earlier `--margin`) re-scores in this pass."""
    order, estimate, exact = row[f"order_w{window}"], row[f"est_w{window}"], row["exact"]
    chosen = set(order[:size]) | set(row["order_stale"][:RUNNERS_UP])
    while True:
        best = max(exact[j] for j in chosen)
        more = [j for j in order if j not in chosen and estimate[j] >= best - margin][:size]
        if not more:
            return chosen
        chosen.update(more)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path)
    parser.add_argument("--windows", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--screens", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    parser.add_argument("--stale", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--margins", type=float, nargs="*", default=[0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--cap", type=int, default=8, help="most candidates a margin rule re-scores")
    parser.add_argument("--bounds", type=float, nargs="*", default=[1.0, 2.0, 3.0],
                        help="margins of the rounds rule (the earlier --margin) against the best exact score")
    parser.add_argument("--rounds", type=int, nargs="+", default=[4], help="candidates per round of the rounds rule")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    traces = [json.loads(line) for line in args.traces.open()]
    scores, errors = load_scores(scores_path(args.traces))
    if errors:
        raise SystemExit(f"{scores_path(args.traces)}: {errors[0]}")
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    rows = []  # per pass: m, suffix lengths, rank of the exact choice under each estimate and under stale scores
    for trace in traces:
        n, passes = scores[trace["id"]]
        ids = ChainIds(trace["prompt_ids"], trace["reasoning_ids"], trace["answer_ids"])
        scorer = ChainScorer(pruner.model, ids, trace["objective"], "packed", DEFAULT_MAX_BATCH_TOKENS)
        previous: dict[int, float] = {}
        for p in passes:
            remaining = p.remaining(trace["deletion_order"], n)
            exact = p.scores.astype(np.float64)
            choice = int(trace["deletion_order"][p.deleted])
            k = remaining.index(choice)
            m = len(remaining)
            row = {"id": trace["id"], "m": m, "answer": len(ids.answer_ids),
                   "suffix": [m - 1 - j + len(ids.answer_ids) - 1 for j in range(m)], "exact_choice": k,
                   "exact": exact.tolist()}
            for w in args.windows:
                estimate = np.asarray(scorer.estimates(remaining, w), dtype=np.float64)
                order = np.lexsort((np.arange(m), -estimate))
                row[f"order_w{w}"] = order.tolist()
                row[f"est_w{w}"] = estimate.tolist()
            stale = np.array([previous.get(pos, -np.inf) for pos in remaining])
            row["order_stale"] = np.lexsort((np.arange(m), -stale)).tolist() if previous else []
            previous = dict(zip(remaining, exact))
            rows.append(row)
        print(trace["id"], len(passes), "passes", flush=True)

    print(f"\n{len(rows)} passes over {len(traces)} chains; mean m {np.mean([r['m'] for r in rows]):.1f}")
    print(f"{'rule':>22} {'recall':>7} {'chains all-hit':>14} {'token-fwd/pass':>14}")
    results = []
    for w in args.windows:
        for s in args.screens:
            for k in args.stale:
                hits, cost, chain_ok = [], [], {}
                for r in rows:
                    chosen = set(r[f"order_w{w}"][:s]) | set(r["order_stale"][:k])
                    hit = r["exact_choice"] in chosen
                    hits.append(hit)
                    chain_ok[r["id"]] = chain_ok.get(r["id"], True) and hit
                    # estimates: boundary row + (w - 1) packed tokens per candidate; exact: each chosen suffix
                    cost.append(r["m"] * w + sum(r["suffix"][j] for j in chosen))
                result = {"window": w, "screen": s, "stale": k, "recall": float(np.mean(hits)),
                          "chains_all_hit": sum(chain_ok.values()), "chains": len(chain_ok),
                          "token_forwards_per_pass": float(np.mean(cost))}
                results.append(result)
                print(f"{f'W={w} S={s} stale={k}':>22} {result['recall']:7.3f} "
                      f"{result['chains_all_hit']:>7}/{result['chains']:<6} {result['token_forwards_per_pass']:14.0f}")
    print(f"\n{'margin rule':>22} {'recall':>7} {'chains all-hit':>14} {'token-fwd/pass':>14} {'mean re-scored':>14}")
    for w in args.windows:
        for margin in args.margins:
            hits, cost, sizes, chain_ok = [], [], [], {}
            for r in rows:
                estimate = np.asarray(r[f"est_w{w}"])
                within = np.flatnonzero(estimate >= estimate.max() - margin)
                chosen = set(int(j) for j in within) if len(within) <= args.cap else set(r[f"order_w{w}"][: args.cap])
                hit = r["exact_choice"] in chosen
                hits.append(hit)
                sizes.append(len(chosen))
                chain_ok[r["id"]] = chain_ok.get(r["id"], True) and hit
                cost.append(r["m"] * w + sum(r["suffix"][j] for j in chosen))
            result = {"window": w, "margin": margin, "cap": args.cap, "recall": float(np.mean(hits)),
                      "chains_all_hit": sum(chain_ok.values()), "chains": len(chain_ok),
                      "token_forwards_per_pass": float(np.mean(cost)), "mean_rescored": float(np.mean(sizes))}
            results.append(result)
            print(f"{f'W={w} margin={margin} cap={args.cap}':>22} {result['recall']:7.3f} "
                  f"{result['chains_all_hit']:>7}/{result['chains']:<6} {result['token_forwards_per_pass']:14.0f} "
                  f"{result['mean_rescored']:14.1f}")
    if args.bounds:
        print(f"\n{'rounds rule':>22} {'recall':>7} {'chains all-hit':>14} {'token-fwd/pass':>14} {'mean re-scored':>14}")
    for w in args.windows:
        for size in args.rounds:
            for margin in args.bounds:
                hits, cost, sizes, chain_ok = [], [], [], {}
                for r in rows:
                    chosen = rounds_rule(r, w, size, margin)
                    # a hit: the best re-scored candidate is exact greedy's choice, or exactly as good
                    hit = max(r["exact"][j] for j in chosen) >= r["exact"][r["exact_choice"]]
                    hits.append(hit)
                    sizes.append(len(chosen))
                    chain_ok[r["id"]] = chain_ok.get(r["id"], True) and hit
                    cost.append(r["m"] * w + sum(r["suffix"][j] for j in chosen))
                result = {"window": w, "rounds_of": size, "bound_margin": margin, "recall": float(np.mean(hits)),
                          "chains_all_hit": sum(chain_ok.values()), "chains": len(chain_ok),
                          "token_forwards_per_pass": float(np.mean(cost)), "mean_rescored": float(np.mean(sizes))}
                results.append(result)
                print(f"{f'W={w} S={size} margin={margin}':>22} {result['recall']:7.3f} "
                      f"{result['chains_all_hit']:>7}/{result['chains']:<6} {result['token_forwards_per_pass']:14.0f} "
                      f"{result['mean_rescored']:14.1f}")
    gaps = {w: [max(r[f"est_w{w}"]) - r[f"est_w{w}"][r["exact_choice"]] for r in rows] for w in args.windows}
    for w, g in gaps.items():
        print(f"W={w}: best estimate minus the exact choice's estimate, quantiles 50/90/95/99/100%: "
              + " ".join(f"{q:.3f}" for q in np.quantile(g, [0.5, 0.9, 0.95, 0.99, 1.0])))
    naive = np.mean([r["m"] * (r["m"] + r["answer"]) for r in rows])
    print(f"(for scale: naive re-runs about m x (P + m + A) tokens per pass; its reasoning+answer part alone is {naive:.0f})")
    if args.out:
        write_result(args.out, {"traces": str(args.traces), "passes": len(rows), "rules": results},
                     command=command(__file__, argv))


if __name__ == "__main__":
    main()
