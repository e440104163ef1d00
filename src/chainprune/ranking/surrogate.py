"""The attention surrogate as a ranker: one forward of the pruner, the attention each reasoning token receives
(per layer and head; split by distance, with the attention it gives, when the surrogate was trained with
`--features attention-split+given`), and a trained surrogate (`chainprune analyze surrogate`) predicting each token's
post-deletion objective; the tokens predicted safest to delete go first. APPROXIMATE greedy pruning at the
cost of one forward, where exact greedy scores every candidate at every step.

Knows causal LMs, token ids and a trained surrogate, not files or chat templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chainprune.analysis.surrogate import Surrogate, attention_features
from chainprune.ranking.base import Ranking, needs, order_by_importance
from chainprune.types import ChainIds


@dataclass
class SurrogateModel:
    """What the surrogate ranker needs: the causal LM whose attention feeds the surrogate, and the surrogate."""

    model: Any  # the pruner (causal LM) the surrogate was trained on
    surrogate: Surrogate
    name: str  # the surrogate's file, recorded with each ranking


@needs("surrogate")
def surrogate(ids: ChainIds, model: SurrogateModel, seed: int = 0) -> Ranking:
    """Highest predicted post-deletion objective deleted first; the importance score is the negated
    prediction (comparable within one chain only)."""
    m = len(ids.reasoning_ids)
    if m == 0:
        return Ranking(deletion_order=[], scores=[])
    kind = model.surrogate.feature_kind
    features = attention_features(model.model, ids.input_ids, len(ids.prompt_ids), m, kind)
    expected = model.surrogate.info.get("features")
    if expected is not None and features.shape[1] != expected:
        raise ValueError(f"the surrogate {model.name} takes {expected} {kind} features, this pruner gives "
                         f"{features.shape[1]}: train it on the same model")
    scores = (-model.surrogate.predict(features)).tolist()
    return Ranking(deletion_order=order_by_importance(scores), scores=scores)
