"""H2O: the attention each reasoning token receives from every later token of the chain, summed over layers
and heads (Zhang et al., 2023, adapted to deletion as in the paper's App. B.3); least attended deleted first.

One forward with the model's own attention implementation (SDPA by default). The model computes queries and
keys itself (projections, rotary embeddings, q/k norms, grouped KV heads): we wrap the attention function it
dispatches to, read the query and key tensors it is handed, and compute the causal softmax's column sums in
blocks of query rows, so no (layers, heads, T, T) tensor and no eager attention for the whole model is needed.
Grouped-query attention: query head h uses KV head h // (heads / kv_heads), as transformers' `repeat_kv`.

Knows causal LMs from transformers and token ids, not chat templates or files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from chainprune.models.attention import attention_override
from chainprune.ranking.base import Ranking, needs, order_by_importance
from chainprune.scoring.logprobs import decoder
from chainprune.types import ChainIds

# Largest block of attention weights materialised at once, in elements (x8 bytes in float64): 2**24 = 128 MiB.
ATTENTION_BLOCK = 2**24


def received_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Sum over heads and over later query rows i > j of softmax attention weights A[h, i, j].

    query (1, H, T, d), key (1, KVH, T, d) -> (T,) float64. `attention_mask` is the 4D mask the model passed
    to its attention function (bool: True = attend; float: added to the scores) or None for plain causal.
    """
    _, heads, length, _ = query.shape
    groups = heads // key.shape[1]
    q = query[0].double()  # (H, T, d)
    k = key[0].double().repeat_interleave(groups, dim=0)  # (H, T, d), as repeat_kv
    positions = torch.arange(length, device=q.device)
    received = torch.zeros(length, dtype=torch.float64, device=q.device)
    rows = max(1, ATTENTION_BLOCK // (heads * length))
    for start in range(0, length, rows):
        end = min(length, start + rows)
        scores = torch.einsum("hqd,hkd->hqk", q[:, start:end], k) * scaling  # (H, rows, T)
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is None:
            allowed = positions[None, :] <= positions[start:end, None]  # (rows, T) causal
            scores = scores.masked_fill(~allowed, float("-inf"))
        elif attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask[0, :, start:end, :length], float("-inf"))
        else:
            scores = scores + attention_mask[0, :, start:end, :length].double()
        weights = torch.softmax(scores, dim=-1)
        later = positions[start:end, None] > positions[None, :]  # only queries after the key count
        received += (weights * later).sum(dim=(0, 1))
    return received


@contextlib.contextmanager
def capture_attention_inputs(model: Any, on_attention: Callable[..., None]) -> Iterator[None]:
    """While active, every attention call of `model` first hands (module, query, key, attention_mask, kwargs)
    to `on_attention`, then runs the model's own attention function unchanged."""

    def observe(original, module, query, key, value, attention_mask, *args, **kwargs):
        on_attention(module, query, key, attention_mask, kwargs)
        return original(module, query, key, value, attention_mask, *args, **kwargs)

    with attention_override(model, observe):
        yield


@torch.no_grad()
def chain_received_attention(model: Any, input_ids: list[int]) -> torch.Tensor:
    """Attention received by every position of `input_ids` from all later positions, summed over layers and
    heads: (T,) float64. One forward of the model."""
    device = next(model.parameters()).device
    total = torch.zeros(len(input_ids), dtype=torch.float64, device=device)
    calls = 0

    def on_attention(module, query, key, attention_mask, kwargs):
        nonlocal total, calls
        if query.shape[0] != 1 or query.shape[2] != key.shape[2]:
            raise NotImplementedError("H2O scores need one unpadded sequence without a cache")
        if kwargs.get("s_aux") is not None:
            raise NotImplementedError(f"{type(module).__name__} uses attention sinks, which H2O scoring does not model")
        scaling = kwargs.get("scaling") or query.shape[-1] ** -0.5
        mask = attention_mask if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 4 else None
        total += received_attention(query, key, scaling, mask, kwargs.get("softcap"))
        calls += 1

    seq = torch.tensor([input_ids], device=device)
    with capture_attention_inputs(model, on_attention):
        decoder(model)(input_ids=seq, use_cache=False)  # the LM head is not needed
    if calls == 0:
        raise NotImplementedError(f"{type(model).__name__} did not dispatch through transformers' attention functions")
    return total.cpu()


@needs("causal_lm")
def h2o(ids: ChainIds, model: Any, seed: int = 0) -> Ranking:
    """Least attended reasoning tokens deleted first; the score is the attention received."""
    p, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    if m == 0:
        return Ranking(deletion_order=[], scores=[])
    scores = chain_received_attention(model, ids.input_ids)[p : p + m].tolist()
    return Ranking(deletion_order=order_by_importance(scores), scores=scores)
