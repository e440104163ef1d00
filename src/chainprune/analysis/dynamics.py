"""Rank dynamics (the paper's §5.2, Fig. 5): do early rankings predict later greedy deletions?

At each transition between keep fractions r > r', greedy pruning deletes a set S. Hit@|S| of a ranking is
the share of S among the |S| tokens that ranking puts first (highest post-deletion objective = safest to
delete). Three rankings of the tokens remaining at r:
- dynamic: the candidate scores of the scoring pass at r (the local ranking greedy itself uses);
- frozen@1.0: the scores of the very first pass (keep 1.0), restricted to the remaining tokens;
- random: a uniformly random ranking, whose expected Hit@|S| is |S| / (tokens remaining at r).
Pure: takes deletion orders and score arrays, knows no files or models.

Token traces only: the question is about rankings of single-token deletions. A trace pruned by words or
sentences (`prune --unit`) ranks whole units at every pass, so its passes hold no token ranking to test; the
`analyze dynamics` pipeline refuses such traces rather than reading unit scores as token scores.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from chainprune.keep import deletions_for


def ranked_by_score(positions: Sequence[int], scores: Sequence[float]) -> list[int]:
    """Positions, highest score first; ties to the smallest position (greedy's rule); NaN (unscored) last."""
    def key(k: int) -> tuple[bool, float, int]:
        s = float(scores[k])
        return (math.isnan(s), -s if not math.isnan(s) else 0.0, positions[k])

    return [positions[k] for k in sorted(range(len(positions)), key=key)]


def hit_at_size(ranking: Sequence[int], pruned: Collection[int]) -> float:
    """|top-|S| of `ranking` ∩ S| / |S| for S = `pruned` (which must be non-empty)."""
    pruned = set(pruned)
    if not pruned:
        raise ValueError("Hit@|S| needs a non-empty pruned set")
    return len(set(ranking[: len(pruned)]) & pruned) / len(pruned)


@dataclass(frozen=True)
class Transition:
    keep: float  # from this keep fraction ...
    next_keep: float  # ... to this one
    pruned: int  # |S|
    remaining: int  # tokens remaining at `keep`
    dynamic: float
    frozen: float
    random: float  # expected value


def chain_dynamics(
    n: int, deletion_order: Sequence[int], passes: Sequence[tuple[int, Sequence[float]]], fractions: Sequence[float]
) -> list[Transition]:
    """Hit@|S| at every transition between consecutive `fractions` (largest first) that deletes something.

    `passes` are (deletions made before the pass, scores of the then remaining positions in increasing order).
    The dynamic ranking at r uses the last pass made at or before r's deletion count (the pass at exactly that
    count in exact greedy), restricted to the tokens remaining at r.
    """
    fractions = sorted(set(fractions), reverse=True)
    passes = sorted(passes, key=lambda p: p[0])
    if not passes or passes[0][0] != 0:
        raise ValueError("the scores of the first pass (no deletions yet) are missing")

    def scores_at(deleted: int) -> dict[int, float]:
        before = [p for p in passes if p[0] <= deleted][-1]
        gone = set(deletion_order[: before[0]])
        positions = [i for i in range(n) if i not in gone]
        if len(positions) != len(before[1]):
            raise ValueError(f"a pass after {before[0]} deletions has {len(before[1])} scores for {len(positions)} tokens")
        return dict(zip(positions, before[1]))

    frozen_all = scores_at(0)
    out = []
    for r, r_next in zip(fractions, fractions[1:]):
        start, stop = deletions_for(n, r), deletions_for(n, r_next)
        if stop > len(deletion_order):
            raise ValueError(f"the deletion order stops at {len(deletion_order)}; keep {r_next} needs {stop}")
        pruned = deletion_order[start:stop]
        if not pruned:
            continue
        gone = set(deletion_order[:start])
        remaining = [i for i in range(n) if i not in gone]
        local = scores_at(start)
        dynamic = ranked_by_score(remaining, [local[i] for i in remaining])
        frozen = ranked_by_score(remaining, [frozen_all[i] for i in remaining])
        out.append(Transition(r, r_next, len(pruned), len(remaining), hit_at_size(dynamic, pruned),
                              hit_at_size(frozen, pruned), len(pruned) / len(remaining)))
    return out
