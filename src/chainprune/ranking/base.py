"""What every ranker returns, and how scores become a deletion order.

A ranking orders the reasoning positions of one tokenized chain from least to most important: the first
position is deleted first. This module knows nothing about models or files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Ranking:
    """A deletion order over reasoning positions (least important first) and, when the method has one, the
    importance score of each position (higher = more important; None for orders without scores)."""

    deletion_order: list[int]
    scores: list[float] | None = None


def order_by_importance(scores: Sequence[float]) -> list[int]:
    """Positions sorted by ascending importance; exact ties go to the smallest position (as in greedy)."""
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))
