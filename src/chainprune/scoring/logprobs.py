"""Log-probabilities of target tokens from decoder hidden states, with the LM head applied only where needed.

Engines run the decoder themselves (to reuse KV caches) and hand the rows whose next-token log-probability
the objective needs to `target_logprobs`, which applies the LM head and a log-softmax over the vocabulary in
row chunks so memory stays bounded whatever the batch. This module knows models, not chains.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from dataclasses import dataclass
from typing import Any

import torch

# Largest logits block materialised at once, in elements (x4 bytes in float32): 2**25 = 128 MiB.
LOGITS_BLOCK = 2**25
_head_checked: weakref.WeakSet = weakref.WeakSet()


@dataclass
class ForwardStats:
    """Work done by an engine: forwards run and token positions computed (the pruner's cost)."""

    forwards: int = 0
    token_forwards: int = 0

    def add(self, batch: int, length: int) -> None:
        self.forwards += 1
        self.token_forwards += batch * length


def decoder(model: Any) -> Any:
    """The transformer body of a causal LM (everything but the LM head)."""
    return model.get_decoder()


def run_decoder(model: Any, cache: Any = None, **inputs: Any) -> Any:
    """The decoder's forward on `inputs`, continuing from the KV `cache` when given. transformers 5 renamed
    the forward's `past_key_values` to `cache` (the old name warns, and goes in 5.40): the name this version
    takes is used."""
    body = decoder(model)
    if cache is not None:
        inputs[cache_argument(type(body))] = cache
    return body(**inputs)


def output_cache(out: Any) -> Any:
    """The KV cache a decoder forward returned (`cache`, formerly `past_key_values`)."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


@functools.cache
def cache_argument(body_type: type) -> str:
    return "cache" if "cache" in inspect.signature(body_type.forward).parameters else "past_key_values"


def logits_from_hidden(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """(rows, d) -> (rows, vocab): what the causal LM's own forward does after its decoder."""
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _logsoftmax_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


@torch.no_grad()
def target_logprobs(model: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) for hidden (rows, d) and targets (rows,), as float64 (rows,)."""
    ensure_head_matches(model)
    vocab = model.get_output_embeddings().weight.shape[0]
    rows_per_block = max(1, LOGITS_BLOCK // vocab)
    out = torch.empty(hidden.shape[0], dtype=torch.float64, device=hidden.device)
    for i in range(0, hidden.shape[0], rows_per_block):
        logits = logits_from_hidden(model, hidden[i : i + rows_per_block])  # (block, vocab)
        logp = torch.log_softmax(logits.to(_logsoftmax_dtype(logits.dtype)), dim=-1)
        out[i : i + rows_per_block] = logp.gather(1, targets[i : i + rows_per_block, None])[:, 0].double()
    return out


@torch.no_grad()
def ensure_head_matches(model: Any) -> None:
    """Check once per model that decoder + `logits_from_hidden` reproduces the model's own logits.

    Some architectures post-process logits in their forward (scales, caps); scoring with a head that
    silently differs would give wrong objectives, so an unknown post-processing fails loudly here.
    """
    if model in _head_checked:
        return
    device = next(model.parameters()).device
    ids = torch.arange(1, 6, device=device)[None] % model.config.get_text_config().vocab_size
    expected = model(input_ids=ids).logits[0]
    got = logits_from_hidden(model, decoder(model)(input_ids=ids).last_hidden_state[0])
    if not torch.allclose(expected.float(), got.float(), rtol=1e-3, atol=1e-3):
        raise NotImplementedError(
            f"{type(model).__name__} post-processes its logits in a way chainprune's scoring does not reproduce"
        )
    _head_checked.add(model)
