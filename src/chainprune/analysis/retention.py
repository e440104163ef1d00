"""Category retention curves (the paper's Fig. 3): per functional category, the fraction of its tokens still
kept at each overall keep fraction. Pure: takes categories and deletion orders, knows no files or models.

Retention of category c at keep fraction r is pooled over chains: (tokens of c kept at r) / (tokens of c),
where a chain of n reasoning tokens keeps all but its first `n - floor(n*r)` deletions. A chain pruned by words
or sentences (a unit trace) keeps the state its greedy run reached: all but the fewest whole units that delete
that many (`Trace.deletions_at`), so it may keep fewer than floor(n*r). Uniform random deletion keeps every
category at r in expectation (the diagonal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chainprune.analysis.categories import CATEGORIES
from chainprune.keep import deletions_for
from chainprune.types import units_covering


@dataclass(frozen=True)
class RetentionPoint:
    keep: float  # requested keep fraction
    category: str
    tokens: int  # tokens of the category over all chains
    kept: int  # of those, still kept at `keep`

    @property
    def retention(self) -> float:
        return self.kept / self.tokens if self.tokens else float("nan")


def retention_curve(
    chains: Sequence[tuple[Sequence[str], Sequence[int]] | tuple[Sequence[str], Sequence[int], Sequence[int] | None]],
    fractions: Sequence[float],
) -> list[RetentionPoint]:
    """Points for every (keep fraction, category); `chains` holds (category per token, deletion order) pairs, or
    triples whose third item is the tokens each step deleted (`Trace.step_sizes()` of a unit trace; None: one).

    A chain's deletion order must reach each requested fraction (ValueError otherwise).
    """
    points = []
    for r in fractions:
        tokens = dict.fromkeys(CATEGORIES, 0)
        kept = dict.fromkeys(CATEGORIES, 0)
        for k, (categories, order, *steps) in enumerate(chains):
            need = deletions_for(len(categories), r)
            if need > len(order):
                raise ValueError(f"chain {k} has {len(order)} deletions; keep {r} needs {need}")
            if steps and steps[0] is not None:
                need = units_covering(steps[0], need)
            gone = set(order[:need])
            for position, category in enumerate(categories):
                tokens[category] += 1
                kept[category] += position not in gone
        points += [RetentionPoint(r, c, tokens[c], kept[c]) for c in CATEGORIES]
    return points


def overall_kept_fraction(lengths: Sequence[int], r: float) -> float:
    """The fraction of all tokens kept at r (slightly below r, as floor(n*r) is kept of each chain)."""
    total = sum(lengths)
    return sum(n - deletions_for(n, r) for n in lengths) / total if total else float("nan")
