"""The greedy pruning loop (the paper's Algorithm 1), with no I/O and no model: it takes a scorer.

At each step every remaining reasoning token is a deletion candidate; the one whose deletion gives the
highest objective is deleted (exact ties go to the smallest position). Positions are those of the original
reasoning, so the deletion order ranks the original tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Scorer(Protocol):
    def objective(self, remaining: Sequence[int]) -> float:
        """Objective of the chain holding the reasoning tokens at `remaining` (original positions, sorted)."""

    def candidates(self, remaining: Sequence[int]) -> tuple[float, Sequence[float]]:
        """(objective of `remaining`, objective after deleting each of `remaining`'s tokens)."""


@dataclass
class GreedyResult:
    deletion_order: list[int]
    objective_values: list[float]  # [0] before any deletion, [s] after s deletions


class ScoreError(ValueError):
    """The scorer returned something greedy cannot rank (NaN objectives)."""


def best_candidate(scores: Sequence[float]) -> int:
    """Index of the highest score; exact ties go to the smallest index."""
    best = 0
    for k in range(1, len(scores)):
        if scores[k] > scores[best]:
            best = k
    return best


def greedy_prune(
    n: int, scorer: Scorer, deletions: int, on_step: Callable[[int], None] | None = None
) -> GreedyResult:
    """Delete `deletions` of the n reasoning tokens one at a time, each time the least harmful one."""
    if not 0 <= deletions <= n:
        raise ValueError(f"cannot make {deletions} deletions from {n} tokens")
    remaining = list(range(n))
    order: list[int] = []
    values: list[float] = []
    for step in range(deletions):
        base, scores = scorer.candidates(remaining)
        scores = [float(s) for s in scores]
        if len(scores) != len(remaining):
            raise ScoreError(f"scorer returned {len(scores)} candidates for {len(remaining)} tokens")
        if any(math.isnan(s) for s in scores) or math.isnan(base):
            raise ScoreError("the objective is NaN (in float16/bfloat16, try --dtype float32)")
        if step == 0:
            values.append(float(base))
        best = best_candidate(scores)
        order.append(remaining.pop(best))
        values.append(scores[best])
        if on_step is not None:
            on_step(step + 1)
    if deletions == 0:
        values.append(float(scorer.objective(remaining)))
    return GreedyResult(deletion_order=order, objective_values=values)
