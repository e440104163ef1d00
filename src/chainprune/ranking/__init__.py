"""Token-importance rankers: greedy pruning and the paper's baselines behind one interface.

A ranker takes a chain tokenized once in context by the pruner (`chainprune.chains.tokenize_chain`), the
model it needs (`RANKER_NEEDS` says which) and a seed, and returns a `Ranking`: every reasoning position,
least important (deleted first) to most. Ties always go to the smallest position. `matching` then cuts
any deletion order at matched student-token lengths.

`RANKERS` maps each name to its ranker, loaded from the registry in `chainprune.choices` (name -> where the
function lives, kept there so the CLI lists the names without importing torch).
"""

from __future__ import annotations

from typing import Any, Protocol

from chainprune import choices
from chainprune.choices import DEFAULT_CLASSIFIER
from chainprune.ranking.base import Ranking, order_by_importance
from chainprune.ranking.greedy import greedy_from_trace
from chainprune.ranking.surrogate import SurrogateModel
from chainprune.ranking.tokenskip import TokenClassifier
from chainprune.types import ChainIds


class Ranker(Protocol):
    def __call__(self, ids: ChainIds, model: Any, seed: int = 0) -> Ranking:
        """Deletion order over `ids.reasoning_ids` positions, least important first."""


RANKERS: dict[str, Ranker] = {name: choices.load(where) for name, where in choices.RANKERS.items()}

# What each ranker's `model` argument is, as the ranker declares it (`ranking.base.needs`).
RANKER_NEEDS: dict[str, str | None] = {name: ranker.needs for name, ranker in RANKERS.items()}


def get_ranker(name: str) -> Ranker:
    if name not in RANKERS:
        import difflib

        near = difflib.get_close_matches(name, RANKERS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown method {name!r}{hint}; choose one of {', '.join(RANKERS)}")
    return RANKERS[name]


__all__ = [
    "DEFAULT_CLASSIFIER",
    "RANKERS",
    "RANKER_NEEDS",
    "Ranker",
    "Ranking",
    "SurrogateModel",
    "TokenClassifier",
    "get_ranker",
    "greedy_from_trace",
    "order_by_importance",
]
