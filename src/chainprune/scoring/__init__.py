"""Scoring engines: given the current chain, the objective of every single-token deletion.

An engine is a plain function `(model, ids, objective, max_batch_tokens, stats) -> (base, candidates)`:
`base` is the objective of the chain as it stands, `candidates[i]` the objective after deleting reasoning
token i. Given `positions`, an engine scores only those candidates (the rest are NaN): approximate modes
use this to re-score a screened few. Given `current` (the chain's own forward, `forward_current`), an engine
that builds on it need not run it again. Given `keep`, an engine that can offers it the recomputed suffix of
the best candidate it scored, from which the next pass's forward is built. Given `partials`, an engine that
can resumes candidates from suffixes computed earlier on the same chain and adds what it computes. Engines
differ only in how much work they do; all agree to rounding.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from chainprune.scoring.logprobs import ForwardStats
from chainprune.scoring.naive import score_naive
from chainprune.scoring.objectives import BestContinuation, CurrentChain, objective_start, reference_objective, sequence_objectives
from chainprune.scoring.packed import Partial, score_packed
from chainprune.scoring.prefix import score_prefix
from chainprune.types import ChainIds


class Engine(Protocol):
    def __call__(
        self,
        model: Any,
        ids: ChainIds,
        objective: str,
        max_batch_tokens: int,
        stats: ForwardStats,
        positions: list[int] | None = None,
        current: CurrentChain | None = None,
        keep: BestContinuation | None = None,
        partials: dict[int, Partial] | None = None,
    ) -> tuple[float, torch.Tensor]: ...


ENGINES: dict[str, Engine] = {"prefix": score_prefix, "packed": score_packed, "naive": score_naive}
DEFAULT_MAX_BATCH_TOKENS = 8192


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


__all__ = [
    "DEFAULT_MAX_BATCH_TOKENS",
    "ENGINES",
    "Engine",
    "ForwardStats",
    "get_engine",
    "objective_start",
    "reference_objective",
    "sequence_objectives",
]
