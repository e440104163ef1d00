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
    # The prefix lengths of `deletion_order` that are states the method reached, ascending from 0: a unit
    # trace's step ends (it deleted whole words or sentences). None: every prefix is one.
    boundaries: list[int] | None = None


def order_by_importance(scores: Sequence[float]) -> list[int]:
    """Positions sorted by ascending importance; exact ties go to the smallest position (as in greedy)."""
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))


RANKER_MODELS = (None, "causal_lm", "token_classifier", "surrogate")


def needs(model: str | None):
    """Declare what a ranker's `model` argument is: nothing (None), the pruner (`causal_lm`), LLMLingua-2's
    classifier (`token_classifier`) or the pruner with a trained attention surrogate (`surrogate`). The
    pipelines load it from that; a ranker is then registered by its one line in `choices.RANKERS`."""
    if model not in RANKER_MODELS:
        raise ValueError(f"unknown ranker model {model!r}")

    def declare(ranker):
        ranker.needs = model
        return ranker

    return declare
