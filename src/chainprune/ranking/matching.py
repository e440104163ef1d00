"""Matched lengths: cut every method's deletion order where the pruned text is as long, in the *student's*
tokens, as the target; pure (takes a deletion order and a counting function, knows no tokenizers or files).

Rule. For keep fraction r and a reasoning whose full text is N student tokens, the target is
round(r * N) (exact arithmetic, halves round up). The candidate kept sets are the prefixes of the method's
deletion order: after k deletions, for k = 0 .. len(order) (a greedy trace's order stops at its smallest keep
fraction; a baseline's covers every token), or only those k where a step ends for an order that deletes in
steps (a unit trace's words or sentences), so the kept set is always a state the method reached. The chosen
k is the one whose kept set's student count is closest to the target; ties go to the smallest k (the longer
text). Counts are usually, not always,
decreasing in k (deleting a token can merge or split the student's tokens), so every k is checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from chainprune.keep import check_keep_fraction


@dataclass(frozen=True)
class Match:
    keep: float  # the requested keep fraction r
    deletions: int  # k: how many of the order's positions are deleted
    kept: list[int]  # reasoning positions kept, ascending
    target: int  # round(r * N) student tokens
    student_tokens: int  # student tokens of the kept text
    student_total: int  # N

    @property
    def student_fraction(self) -> float:
        return self.student_tokens / self.student_total if self.student_total else 1.0


def target_tokens(total: int, r: float) -> int:
    """round(r * total) in exact arithmetic, halves up (r as written: 0.29 is 29/100)."""
    return math.floor(total * Fraction(repr(check_keep_fraction(r))) + Fraction(1, 2))


def kept_after(order: Sequence[int], n: int, k: int) -> list[int]:
    gone = set(order[:k])
    return [i for i in range(n) if i not in gone]


def closest(counts: Sequence[int], target: int) -> int:
    """Index of the count closest to target; ties to the smallest index."""
    return min(range(len(counts)), key=lambda k: (abs(counts[k] - target), k))


def match_lengths(
    order: Sequence[int], n: int, count: Callable[[list[int]], int], keep: Sequence[float],
    boundaries: Sequence[int] | None = None,
) -> list[Match]:
    """For each keep fraction, the prefix of `order` whose kept set's student count is closest to the target.

    `order`: reasoning positions (0 .. n-1), first deleted first, possibly covering only some of them.
    `count(kept)`: student tokens of the text made of the kept positions (called once per prefix length).
    `boundaries`: the only prefix lengths allowed (ascending, from 0 to len(order)); None: all of them.
    """
    if len(set(order)) != len(order) or any(not 0 <= i < n for i in order):
        raise ValueError(f"deletion order is not a list of distinct positions in 0..{n - 1}")
    lengths = list(range(len(order) + 1)) if boundaries is None else list(boundaries)
    if not lengths or lengths[0] != 0 or lengths[-1] != len(order) or lengths != sorted(set(lengths)):
        raise ValueError(f"step boundaries must rise from 0 to the order's length {len(order)}")
    counts = [count(kept_after(order, n, k)) for k in lengths]
    total = counts[0]
    matches = []
    for r in keep:
        target = target_tokens(total, r)
        best = closest(counts, target)
        k = lengths[best]
        matches.append(Match(r, k, kept_after(order, n, k), target, counts[best], total))
    return matches
