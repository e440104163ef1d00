"""Stepping into a model's attention calls: the one place chainprune swaps transformers' attention function.

transformers models dispatch attention through a registry keyed by `config._attn_implementation` ("sdpa",
"eager", ...); each attention module computes its queries and keys itself (projections, rotary embeddings,
q/k norms) and hands them to the registered function. `attention_override` puts a replacement in that slot
for the duration of a `with` block and restores it after; the replacement is given the function the model
would have called, so it can fall back to it. H2O reads the queries and keys this way, and the `packed`
engine computes its block-structured attention this way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def attention_override(model: Any, replacement: Callable[..., Any]) -> Iterator[None]:
    """While active, every attention call of `model` goes to `replacement(original, module, query, key, value,
    attention_mask, *args, **kwargs)`, where `original(module, query, ...)` is what the model would have called
    (its registered function, or the module's own eager attention)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = model.config._attn_implementation
    had_local = name in ALL_ATTENTION_FUNCTIONS._local_mapping
    previous = ALL_ATTENTION_FUNCTIONS._local_mapping.get(name)
    originals: dict[type, Callable] = {}

    def original_for(module: Any) -> Callable:
        if type(module) not in originals:
            fallback = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
            originals[type(module)] = previous or (
                ALL_ATTENTION_FUNCTIONS._global_mapping.get(name) if name != "eager" else None
            ) or fallback
        return originals[type(module)]

    def dispatch(module, query, key, value, attention_mask, *args, **kwargs):
        return replacement(original_for(module), module, query, key, value, attention_mask, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS[name] = dispatch
    try:
        yield
    finally:
        if had_local:
            ALL_ATTENTION_FUNCTIONS[name] = previous
        else:
            del ALL_ATTENTION_FUNCTIONS[name]
