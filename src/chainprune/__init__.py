"""chainprune: exact, fast greedy pruning of LLM reasoning chains.

    from chainprune import load_model, prune_chain, Chain
    pruner = load_model("smollm2-135m")
    trace = prune_chain(pruner, Chain(id="q1", question=..., reasoning=..., answer=...), keep=[0.9, 0.5])
    # approximate, faster (the trace's `mode` says so):
    trace = prune_chain(pruner, chain, approximation=Approximation(screen=2, lookahead=3, margin=5))

The names below are imported on first use (PEP 562), so `import chainprune.cli` (and `chainprune --help`) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_PUBLIC = {
    "DEFAULT_MODEL": "chainprune.choices",
    "Approximation": "chainprune.pruning",
    "Chain": "chainprune.types",
    "ChainError": "chainprune.chains",
    "ChainIds": "chainprune.types",
    "LoadedModel": "chainprune.models",
    "Trace": "chainprune.types",
    "load_model": "chainprune.models",
    "prune_chain": "chainprune.pruning",
    "tokenize_chain": "chainprune.chains",
}
__all__ = [
    "DEFAULT_MODEL",
    "Approximation",
    "Chain",
    "ChainError",
    "ChainIds",
    "LoadedModel",
    "Trace",
    "load_model",
    "prune_chain",
    "tokenize_chain",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from chainprune.chains import ChainError, tokenize_chain
    from chainprune.choices import DEFAULT_MODEL
    from chainprune.models import LoadedModel, load_model
    from chainprune.pruning import Approximation, prune_chain
    from chainprune.types import Chain, ChainIds, Trace


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'chainprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
