"""How often `--margin` screening finds exact greedy's choice, and at what cost, replayed along exact trajectories.

For each exact trace (e.g. bench_modes.py's reference, `runs/bench20/packed.jsonl`), every pass of its exact
trajectory is scored once exactly with every candidate's suffix log-probs kept (cached in --cache, so a grid
of settings replays in seconds). Each setting (lookahead W, screen S, margin D) then runs the real rule,
`chainprune.pruning.greedy.lookahead_pass`, against a scripted scorer answering from those numbers: an estimate
with window w is the exact score with the targets past w taken from the chain as it stands, exactly what the
`packed` engine computes, and the cost counts the packed tokens a run would compute (a widened window or an
exact re-scoring resumes the suffix already computed, and after a deletion each candidate before it resumes
its suffix up to the deleted token, as `ChainScorer` does). A pass is a hit when the candidate the rule would delete is as good as exact greedy's; every pass is
replayed from the exact trajectory, so one miss does not change the passes after it (in a real run it may).

    .venv/bin/python -m benchmarks.studies.widening_recall runs/bench20/packed.jsonl --examples 10 \
        --windows 3 4 --screens 1 2 --margins 3 4 5 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
from pathlib import Path

import numpy as np

from benchmarks.common import command, write_result
from chainprune.chains import tokenize_chain
from chainprune.data.jsonl import parse_chain
from chainprune.data.scores import load_scores
from chainprune.models import load_model
from chainprune.pruning.greedy import Approximation, lookahead_pass
from chainprune.scoring import ChainCache, ForwardStats, ScoreRequest
from chainprune.scoring.chain_state import forward_current
from chainprune.scoring.packed import score_lookahead


def record_pass(model, ids, current, stats) -> dict:
    """Exact scores of every candidate, and per candidate the gain of each suffix target over the chain as it
    stands (recomputed log-prob minus the current one), from one exact scoring that keeps its suffixes."""
    cache = ChainCache(current=current, partials={})
    partials = cache.partials
    _, scores = score_lookahead(model, ScoreRequest(ids, "joint", stats=stats, cache=cache), len(ids.input_ids))
    base = current.base_logp.cpu().numpy()
    gains = []
    for i in range(len(ids.reasoning_ids)):
        logp = partials[i].logp.cpu().numpy() if i in partials else np.zeros(0)
        gains.append(logp - base[i + 2 : i + 2 + len(logp)])  # packed token k predicts target i + 2 + k
    return {"scores": scores.numpy(), "gains": gains}


def record(traces: Path, chains: Path, examples: int, cache: Path, every: int = 1) -> list[dict]:
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    pruner = load_model("smollm2-135m", dtype="float32", device="cpu")
    by_id = {c.id: c for c in (parse_chain(json.loads(line)) for line in chains.open())}
    recorded = []
    for line in list(traces.open())[:examples]:
        trace = json.loads(line)
        ids = tokenize_chain(pruner.tokenizer, by_id[trace["id"]])
        remaining, passes, current, stats = list(range(len(ids.reasoning_ids))), [], None, ForwardStats()
        for step, position in enumerate(trace["deletion_order"]):
            if step % every == 0:  # a sampled pass: the chain as it stands after `step` deletions
                at = type(ids)(ids.prompt_ids, [ids.reasoning_ids[i] for i in remaining], ids.answer_ids)
                current = forward_current(pruner.model, at, "joint", stats, None)
                passes.append({"step": step, "remaining": list(remaining), "deleted": position,
                               **record_pass(pruner.model, at, current, stats)})
            remaining.remove(position)
        recorded.append({"id": trace["id"], "order": trace["deletion_order"], "prompt": len(ids.prompt_ids), "answer": len(ids.answer_ids), "passes": passes})
        print(f"recorded {trace['id']}: {len(passes)} passes", flush=True)
    cache.write_bytes(pickle.dumps(recorded))
    return recorded


class ReplayScorer:
    """Answers one pass's `estimates` and `candidates` from recorded exact numbers, counting packed tokens
    (each candidate resumed from its first `done[k]` tokens, which cost nothing)."""

    def __init__(self, scores: np.ndarray, gains: list[np.ndarray], done: list[int] | None = None):
        self.scores, self.gains = scores.astype(np.float64), gains
        self.tails = [np.concatenate([np.cumsum(g[::-1])[::-1], [0.0]]) for g in gains]  # [k] = sum of gains[k:]
        self.done = list(done) if done is not None else [0] * len(scores)
        self.tokens = 0
        self.forwards = 0

    def _compute(self, k: int, upto: int) -> None:
        upto = min(upto, len(self.gains[k]))
        self.tokens += max(0, upto - self.done[k])
        self.done[k] = max(self.done[k], upto)

    def estimates(self, remaining, lookahead, subset=None):
        chosen = range(len(remaining)) if subset is None else subset
        self.forwards += 1
        out = [float("nan")] * len(remaining)
        for k in chosen:
            self._compute(k, lookahead - 1)
            out[k] = self.scores[k] - self.tails[k][self.done[k]]
        return out

    def candidates(self, remaining, subset=None):
        chosen = range(len(remaining)) if subset is None else subset
        self.forwards += 1
        out = [float("nan")] * len(remaining)
        for k in chosen:
            self._compute(k, len(self.gains[k]))
            out[k] = self.scores[k]
        return 0.0, out


def replay(recorded: list[dict], window: int, screen: int, margin: tuple[float, ...], saved: dict | None = None) -> dict:
    """With passes recorded only every so many (`--every`), a pass does not follow the one recorded before it:
    it resumes nothing (its cost is over-counted), and its runners-up are the best two survivors of the
    previous pass's exact scores from the `--save-scores` sidecar (`saved`), which the real rule approximates."""
    approximation = Approximation(screen=screen, lookahead=window, margin=margin)
    hits = passes = tokens = forwards = naive = 0
    all_hit = 0
    for chain in recorded:
        last_exact: dict[int, float] = {}
        chain_hits, done, previous_step = 0, None, -1
        for p in chain["passes"]:
            step = p.get("step", previous_step + 1)
            if step != previous_step + 1:
                done, last_exact = None, {}
                if saved is not None and step > 0:
                    before = saved[chain["id"]][1][step - 1]
                    positions = sorted(set(p["remaining"]) | {chain["order"][step - 1]})
                    last_exact = {i: float(v) for i, v in zip(positions, before.scores) if i != chain["order"][step - 1]}
            previous_step = step
            remaining, scorer = p["remaining"], ReplayScorer(p["scores"], p["gains"], done)
            _, scores, subset = lookahead_pass(scorer, remaining, approximation, last_exact)
            pick = max(subset, key=lambda k: (scores[k], -k))
            chain_hits += int(scorer.scores[pick] >= scorer.scores.max())
            tokens += scorer.tokens
            forwards += scorer.forwards
            m = len(remaining)
            naive += m * (chain["prompt"] + m + chain["answer"] - 1)  # each candidate's sequence, in full
            # runners-up for the next pass: this pass's exact scores of the candidates it re-scored (exact greedy's
            # own deletion made, as the replay follows the exact trajectory)
            last_exact = {remaining[k]: scores[k] for k in subset if remaining[k] != p["deleted"]}
            # the next pass resumes candidate i before the deleted index j from its first j - i - 2 tokens
            j = remaining.index(p["deleted"])
            done = [max(0, min(scorer.done[i], j - i - 2)) if i < j else 0 for i in range(len(remaining) - 1)]
        hits += chain_hits
        passes += len(chain["passes"])
        all_hit += chain_hits == len(chain["passes"])
    return {"lookahead": window, "screen": screen, "margin": ",".join(f"{m:g}" for m in margin), "recall": hits / passes, "passes": passes,
            "chains_all_hit": all_hit, "chains": len(recorded), "token_forwards_per_pass": tokens / passes,
            "forwards_per_pass": forwards / passes, "naive_token_forwards_per_pass": naive / passes,
            "fewer_token_forwards_than_naive": naive / tokens}


def winner_tails(recorded: list[dict], windows: list[int], margins: list[float], stale: bool = False) -> list[dict]:
    """Per window w: how far the estimate of each pass's best candidate falls short of its exact score (the
    score change past the window; positive: the estimate under-states the winner, which a margin must cover),
    and how many candidates' estimates are within each margin of the best exact score (what widening costs).

    `stale`: the estimate adds each candidate's tail as measured at the previous recorded pass (a memory of
    the far chain's response; passes without a previous one are skipped)."""
    rows = []
    for w in windows:
        shortfalls, close, pairs = [], {d: [] for d in margins}, []
        for chain in recorded:
            before: dict[int, float] | None = None
            for p in chain["passes"]:
                scores, gains = p["scores"].astype(np.float64), p["gains"]
                tails = np.array([g[w - 1 :].sum() for g in gains])
                known, before = before, {pos: t for pos, t in zip(p["remaining"], tails)}
                if stale:
                    if known is None:
                        continue
                    tails = tails - np.array([known.get(pos, 0.0) for pos in p["remaining"]])
                # can the part already seen predict the rest? the gains from window w // 4 to w against the tail
                pairs += [(g[max(w // 4, 1) - 1 : w - 1].sum(), g[w - 1 :].sum()) for g in gains if len(g) >= 2 * w and w >= 4]
                best = int(np.argmax(scores))
                shortfalls.append(float(tails[best]))
                for d in margins:
                    close[d].append(int((scores - tails >= scores[best] - d).sum()))
        t = np.array(shortfalls)
        rows.append({"window": w, "passes": len(t), "winner_shortfall_max": round(float(t.max()), 3),
                     "winner_shortfall_p95": round(float(np.percentile(t, 95)), 3),
                     "winner_shortfall_median": round(float(np.median(t)), 3),
                     "candidates_within": {f"{d:g}": round(float(np.mean(close[d])), 1) for d in margins},
                     "tail_vs_last_quarter_window_corr": round(float(np.corrcoef(np.array(pairs).T)[0, 1]), 3) if pairs else None})
    return rows


def margin_schedule(text: str) -> tuple[float, ...]:
    return tuple(float(m) for m in text.split(","))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", type=Path, help="exact traces (joint objective, the bundled model)")
    parser.add_argument("--chains", type=Path, default=None, help="their chains (default: chains.jsonl beside the traces)")
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--windows", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--screens", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--margins", type=margin_schedule, nargs="+", default=[(3.0,), (4.0,), (5.0,), (6.0,)],
                        help="margins to try; 8,5,2 is one margin per window (W, 4W, 16W, ...)")
    parser.add_argument("--tails", type=int, nargs="*", default=None, metavar="W",
                        help="also report, per window W, how far the winner's estimate falls short (margin study)")
    parser.add_argument("--stale-tails", action="store_true",
                        help="with --tails: estimates carry each candidate's tail from the previous recorded pass")
    parser.add_argument("--every", type=int, default=1, help="record every this many passes (long chains)")
    parser.add_argument("--scores", type=Path, default=None, help="the traces' --save-scores sidecar (runners-up of sampled passes)")
    parser.add_argument("--cache", type=Path, default=None, help="recorded passes (default: beside the traces)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    chains = args.chains or args.traces.with_name("chains.jsonl")
    cache = args.cache or args.traces.with_name(f"{args.traces.stem}.suffixes-{args.examples}-every{args.every}.pkl")
    recorded = record(args.traces, chains, args.examples, cache, args.every)
    orders = {json.loads(line)["id"]: json.loads(line)["deletion_order"] for line in args.traces.open()}
    for chain in recorded:
        chain.setdefault("order", orders[chain["id"]])
    saved = load_scores(args.scores)[0] if args.scores else None
    rows = [replay(recorded, w, s, d, saved) for w, s, d in itertools.product(args.windows, args.screens, args.margins)]
    print(f"{'W':>3} {'S':>3} {'D':>9} {'recall':>7} {'all-hit':>8} {'tf/pass':>8} {'fwd/pass':>9} {'x naive tf':>11}")
    for r in rows:
        print(f"{r['lookahead']:>3} {r['screen']:>3} {r['margin']:>9} {r['recall']:>7.4f} "
              f"{r['chains_all_hit']:>4}/{r['chains']:<3} {r['token_forwards_per_pass']:>8.0f} "
              f"{r['forwards_per_pass']:>9.1f} {r['fewer_token_forwards_than_naive']:>11.1f}")
    result = {"traces": str(args.traces), "examples": args.examples, "every": args.every, "stale_tails": args.stale_tails, "rows": rows}
    if args.tails:
        result["winner_tails"] = winner_tails(recorded, args.tails, [1.0, 2.0, 3.0, 5.0, 8.0], args.stale_tails)
        print(f"{'window':>6} {'winner short: max':>18} {'p95':>6} {'median':>7}  candidates within 1/2/3/5/8 nats")
        for r in result["winner_tails"]:
            print(f"{r['window']:>6} {r['winner_shortfall_max']:>18.2f} {r['winner_shortfall_p95']:>6.2f} "
                  f"{r['winner_shortfall_median']:>7.2f}  {' / '.join(str(v) for v in r['candidates_within'].values())}"
                  f"  corr(tail, gains W/4..W) {r['tail_vs_last_quarter_window_corr']}")
    if args.out:
        write_result(args.out, result, command=command(__file__, argv))


if __name__ == "__main__":
    main()
