"""Uniform: a non-informative baseline, reasoning tokens deleted in a random order fixed by a seed."""

from __future__ import annotations

import random
from typing import Any

from chainprune.ranking.base import Ranking, needs
from chainprune.types import ChainIds


@needs(None)
def uniform(ids: ChainIds, model: Any = None, seed: int = 0) -> Ranking:
    """A seeded random permutation of the reasoning positions (the model is not used)."""
    order = list(range(len(ids.reasoning_ids)))
    random.Random(seed).shuffle(order)
    return Ranking(deletion_order=order)
