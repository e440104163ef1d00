"""Does a surrogate trained on pruned states rank better, re-ranking as it deletes? (BENCHMARKS.md, "The surrogate
as a ranker".)

The §5.3 surrogate learns the first pass's scores (the intact chain). Greedy's kept set at keep 0.5 depends on
later passes (Fig. 5), so here a second surrogate also learns states along pruning trajectories: the exact
candidate scores of chains already partly pruned, from `--save-scores` sidecars or `analyze dynamics --pruner`
scores files (TRACES=SCORES pairs; every --every-th pass of each). Both (attention features, the same settings)
are compared on the held-out first-pass Pearson of surrogate_scale.py's split (its cache in --work-dir) and as
rankers against exact greedy traces (--exact, chains neither trained on): one forward, or re-ranked after every
block of B deletions (one forward of the chain as it stands per block).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.studies.surrogate_trajectory --work-dir runs/surrogate \
        --states runs/reallen/exact6.jsonl=runs/reallen/exact6.jsonl.scores.jsonl \
        --states runs/analysis30/all.jsonl=runs/analysis30/dynamics-snap.scores.jsonl \
        --exact runs/units/token.jsonl --exclude gsm8k-train-233 --blocks 1000 8 --out runs/studies/surrogate-trajectory.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import command, write_result
from benchmarks.studies.ranker_overlap import overlap
from benchmarks.studies.surrogate_scale import gsm8k_chains
from chainprune.analysis.surrogate import attention_features, evaluate, train_surrogate
from chainprune.data.scores import load_scores
from chainprune.models import load_model
from chainprune.ranking.base import order_by_importance
from chainprune.types import ChainIds, Trace


def kept_ids(ids: ChainIds, remaining: list[int]) -> ChainIds:
    """The chain with only the reasoning positions `remaining` (in order)."""
    return ChainIds(ids.prompt_ids, [ids.reasoning_ids[i] for i in remaining], ids.answer_ids)


def trajectory_states(model, pairs: list[str], every: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    states = []
    for pair in pairs:
        traces_path, scores_path = (Path(p) for p in pair.split("="))
        saved = load_scores(scores_path)[0]
        for line in traces_path.open():
            trace = Trace.from_json(json.loads(line))
            if str(trace.id) not in saved:
                continue
            for k, p in enumerate(saved[str(trace.id)][1]):
                if p.deleted == 0 or k % every:  # the intact chain is the first-pass data's job
                    continue
                ids = kept_ids(trace.ids, p.remaining(trace.deletion_order, len(trace.reasoning_ids)))
                features = attention_features(model, ids.input_ids, len(ids.prompt_ids), len(ids.reasoning_ids))
                states.append((features, torch.as_tensor(p.scores)))
    return states


def rank(model, surrogate, ids: ChainIds, block: int) -> list[int]:
    remaining, order = list(range(len(ids.reasoning_ids))), []
    while remaining:
        at = kept_ids(ids, remaining)
        features = attention_features(model, at.input_ids, len(at.prompt_ids), len(remaining))
        gone = [remaining[k] for k in order_by_importance((-surrogate.predict(features)).tolist())[:block]]
        order += gone
        dropped = set(gone)
        remaining = [i for i in remaining if i not in dropped]
    return order


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="surrogate_scale.py's (its cached first passes)")
    parser.add_argument("--states", action="append", required=True, metavar="TRACES=SCORES")
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--exact", type=Path, required=True, help="exact greedy traces to rank (held out)")
    parser.add_argument("--exclude", nargs="*", default=[])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1000, 8])
    parser.add_argument("--settings", default="64,0.01,100", metavar="HIDDEN,WEIGHT_DECAY,EPOCHS")
    parser.add_argument("--gsm8k", type=Path, default=None, help="GSM8K train file (default: benchmarks.common's)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    hidden, weight_decay, epochs = args.settings.split(",")
    settings = {"hidden": int(hidden), "weight_decay": float(weight_decay), "epochs": int(epochs)}
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    data = torch.load(args.work_dir / "data-smollm2-135m.pt", weights_only=False)
    items = [data[c["id"]] for c in gsm8k_chains(260, 2, 80, 300, args.gsm8k)]  # surrogate_scale.py's defaults
    train, test = items[:200], items[200:]
    started = time.perf_counter()
    states = trajectory_states(pruner.model, args.states, args.every)
    print(f"{len(states)} pruned states, features in {time.perf_counter() - started:.0f} s", flush=True)
    first = ([i["attention"] for i in train], [i["target"] for i in train])
    sets = {"first passes (200 chains)": first,
            f"+ {len(states)} pruned states": (first[0] + [f for f, _ in states], first[1] + [t for _, t in states])}
    exact = [Trace.from_json(json.loads(line)) for line in args.exact.open()]
    exact = [t for t in exact if str(t.id) not in args.exclude and t.mode is None and t.unit == "token"]
    result = {"settings": settings, "states": len(states), "every": args.every, "exact": str(args.exact),
              "held_out_chains": len(test), "ranked_chains": len(exact), "surrogates": {}}
    for name, (features, targets) in sets.items():
        surrogate = train_surrogate(features, targets, **settings)
        held_out = evaluate(surrogate, [i["attention"] for i in test], [i["target"] for i in test])
        row = {"held_out_pearson": round(statistics.fmean(held_out), 4), "overlap": {}}
        for block in args.blocks:
            per_keep: dict[float, list[float]] = {r: [] for r in (0.9, 0.7, 0.5)}
            for trace in exact:
                order = rank(pruner.model, surrogate, trace.ids, block)
                for r in per_keep:
                    per_keep[r].append(overlap(order, trace, r))
            row["overlap"][f"block {block}"] = {repr(r): {"mean": round(statistics.fmean(v), 4), "min": round(min(v), 4)}
                                                for r, v in per_keep.items()}
        result["surrogates"][name] = row
        print(name, json.dumps(row), flush=True)
    if args.out:
        write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
