"""Surprisal: self-information -log p(token | everything before it) of each reasoning token, with teacher
forcing on the full chain in one forward; the most predictable tokens (lowest surprisal) are deleted first.

Knows causal LMs and token ids, not chat templates or files.
"""

from __future__ import annotations

from typing import Any

import torch

from chainprune.ranking.base import Ranking, needs, order_by_importance
from chainprune.scoring.logprobs import decoder, target_logprobs
from chainprune.types import ChainIds


@torch.no_grad()
def reasoning_surprisal(model: Any, ids: ChainIds) -> torch.Tensor:
    """-log p of each reasoning token given the prompt and the reasoning before it, float64 (m,)."""
    p, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    if m == 0:
        return torch.zeros(0, dtype=torch.float64)
    device = next(model.parameters()).device
    seq = torch.tensor([ids.prompt_ids + ids.reasoning_ids], device=device)  # the answer cannot affect them
    hidden = decoder(model)(input_ids=seq).last_hidden_state[0]  # (p + m, d)
    targets = seq[0, p : p + m]
    return -target_logprobs(model, hidden[p - 1 : p + m - 1], targets).cpu()


@needs("causal_lm")
def surprisal(ids: ChainIds, model: Any, seed: int = 0) -> Ranking:
    """Lowest surprisal deleted first; the importance score is the surprisal in nats."""
    scores = reasoning_surprisal(model, ids).tolist()
    return Ranking(deletion_order=order_by_importance(scores), scores=scores)
