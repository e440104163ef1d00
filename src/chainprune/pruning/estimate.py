"""What a prune will cost before it runs: the token-forwards of exact greedy from a chain's lengths alone.

Each pass's work is the engine's own count (`Engine.count`, exact for a given chain), plus what the scorer runs
around it (`ChainScorer`): the chain's forward (full on the first pass; afterwards incremental from the last
one's, or nothing at all when the engine built it from the chosen candidate's scoring), less the suffixes an
engine that keeps them resumes after a deletion. Only which units greedy deletes is unknown before the run: the
estimate assumes each step deletes a unit in the middle (the range: all at the start, all at the end), so it is
an expectation, exact for `naive` on token units (where the work does not depend on the positions deleted);
`tests/test_estimate.py` holds it to measured prunes, and BENCHMARKS.md, "Estimates", to real ones.
Approximate modes do less than exact greedy: for them the exact count is an upper bound.

It knows lengths, engines' counts and the scorer's policy; not models (a chain is tokenized by its tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chainprune.chains import tokenize_chain
from chainprune.keep import deletions_for
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, Engine, get_engine
from chainprune.scoring.engine import PassShape, ScoringOptions
from chainprune.types import Chain
from chainprune.units import unit_spans


@dataclass(frozen=True)
class PruneEstimate:
    token_forwards: int  # expected for exact greedy: each step deleting at the middle (see the module docstring)
    # the range by where deletions fall (a bound for token units; for larger ones which units greedy deletes
    # matters too): each step deleting at the end (the most resumed, the shortest forwards) or at the start
    low: int
    high: int
    passes: int  # scoring passes (one per unit deleted)
    deletions: int  # tokens deleted down to the smallest keep fraction


def estimate_prune(
    n_prompt: int,
    n_answer: int,
    units: Sequence[tuple[int, int]],
    keep: float,
    engine: str | Engine,
    objective: str = "joint",
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    options: ScoringOptions = ScoringOptions(),
) -> PruneEstimate:
    """The token-forwards of exact greedy pruning a chain of `n_prompt` prompt tokens, reasoning `units`
    ([start, end) token spans covering it) and `n_answer` answer tokens down to keep fraction `keep`: expected,
    and the range over where its deletions fall."""
    engine = get_engine(engine)
    if engine.count is None:
        raise ValueError(f"engine {engine.name} does not say what a pass costs (Engine.count)")
    runs = {where: _simulate(n_prompt, n_answer, [b - a for a, b in units], keep, engine, objective,
                             max_batch_tokens, options, where) for where in (0.5, 1.0, 0.0)}
    middle, passes, deleted = runs[0.5]
    counts = [total for total, _, _ in runs.values()]
    return PruneEstimate(middle, min(counts), max(counts), passes, deleted)


def estimate_chain(tokenizer: Any, chain: Chain, keep: float, engine: str | Engine, objective: str = "joint",
                   unit: str = "token", max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> PruneEstimate:
    """`estimate_prune` of `chain` as the pruner's `tokenizer` tokenizes it, over its `unit`s."""
    ids = tokenize_chain(tokenizer, chain)
    return estimate_prune(len(ids.prompt_ids), len(ids.answer_ids), unit_spans(ids.reasoning_texts, unit), keep,
                          engine, objective, max_batch_tokens)


def _simulate(n_prompt: int, n_answer: int, sizes: list[int], keep: float, engine: Engine, objective: str,
              max_batch_tokens: int, options: ScoringOptions, where: float) -> tuple[int, int, int]:
    """(token-forwards, passes, tokens deleted) of greedy deleting, at each step, a unit at relative position
    `where` (0 the first, 1 the last) among the longest remaining (joint) or among all (answer)."""
    n = sum(sizes)
    target = n - deletions_for(n, keep)
    remaining = list(range(len(sizes)))
    kept: list[int] = [0] * len(sizes)  # per remaining unit: suffix tokens carried from the last pass
    total, passes, deleted, forward = 0, 0, 0, 0
    resumes = engine.keeps_suffixes and options.keep_suffix_bytes >= 0  # kept suffixes resumed after a deletion
    built = engine.keeps_suffixes and options.next_from_best  # the next forward built from the chosen's scoring
    while n - deleted > target and remaining:
        spans, at = [], 0
        for unit in remaining:
            spans.append((at, at + sizes[unit]))
            at += sizes[unit]
        shape = PassShape(n_prompt, n_answer, tuple(spans), objective, max_batch_tokens)
        length = shape.length
        if engine.reuses_forward:
            total += length if passes == 0 else forward  # the chain's forward: first in full, then from the deletion on
        total += engine.count(shape) - (sum(kept) if resumes else 0)
        passes += 1
        # the unit greedy deletes: under the joint objective deleting more tokens drops more terms, so greedy
        # takes long units first (measured: the words it deleted were 1.4-1.9 times the mean word); the answer
        # objective has no such pull
        longest = max(sizes[u] for u in remaining) if objective == "joint" else None
        candidates = [k for k, u in enumerate(remaining) if longest is None or sizes[u] == longest]
        chosen = candidates[round(where * (len(candidates) - 1))]
        start = spans[chosen][0]
        # the next chain's forward: built from the chosen candidate's scoring, or run from the deleted unit on
        forward = 0 if built else max(1, length - sizes[remaining[chosen]] - n_prompt - start)
        # what the next pass resumes: candidate k's suffix up to the deleted unit (`ChainCache.carried`)
        suffix = [max(0, shape.m + n_answer - b - 1) for _, b in spans]
        kept = [max(0, min(suffix[k], start - spans[k][1] - 1)) for k in range(len(remaining))]
        deleted += sizes[remaining[chosen]]
        del remaining[chosen], kept[chosen]
    return total, passes, deleted
