"""Token-importance rankers: greedy pruning and the paper's baselines behind one interface.

A ranker takes a chain tokenized once in context by the pruner (`chainprune.chains.tokenize_chain`), the
model it needs (`RANKER_NEEDS` says which) and a seed, and returns a `Ranking`: every reasoning position,
least important (deleted first) to most. Ties always go to the smallest position. `matching` then cuts
any deletion order at matched student-token lengths.
"""

from __future__ import annotations

from typing import Any, Protocol

from chainprune.choices import DEFAULT_CLASSIFIER
from chainprune.ranking.base import Ranking, order_by_importance
from chainprune.ranking.greedy import greedy, greedy_from_trace
from chainprune.ranking.h2o import h2o
from chainprune.ranking.surprisal import surprisal
from chainprune.ranking.tokenskip import TokenClassifier, tokenskip
from chainprune.ranking.uniform import uniform
from chainprune.types import ChainIds


class Ranker(Protocol):
    def __call__(self, ids: ChainIds, model: Any, seed: int = 0) -> Ranking:
        """Deletion order over `ids.reasoning_ids` positions, least important first."""


RANKERS: dict[str, Ranker] = {
    "uniform": uniform,
    "surprisal": surprisal,
    "h2o": h2o,
    "tokenskip": tokenskip,
    "greedy": greedy,
}

# What each ranker's `model` argument is: nothing, the causal LM (the pruner), or LLMLingua-2's classifier.
RANKER_NEEDS: dict[str, str | None] = {
    "uniform": None,
    "surprisal": "causal_lm",
    "h2o": "causal_lm",
    "tokenskip": "token_classifier",
    "greedy": "causal_lm",
}


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
    "TokenClassifier",
    "get_ranker",
    "greedy_from_trace",
    "order_by_importance",
]
