"""chainprune: exact, fast greedy pruning of LLM reasoning chains.

    from chainprune import load_model, prune_chain, Chain
    pruner = load_model("smollm2-135m")
    trace = prune_chain(pruner, Chain(id="q1", question=..., reasoning=..., answer=...), keep=[0.9, 0.5])
    # approximate, faster (the trace's `mode` says so):
    trace = prune_chain(pruner, chain, approximation=Approximation(screen=2, lookahead=3, margin=5))
"""

from chainprune.chains import ChainError, tokenize_chain
from chainprune.models import DEFAULT_MODEL, LoadedModel, load_model
from chainprune.pruning import Approximation, prune_chain
from chainprune.types import Chain, ChainIds, Trace

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
