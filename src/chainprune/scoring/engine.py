"""What a scoring engine is: a name, what it can do, and a `score` function.

`score(model, ids, objective, max_batch_tokens, stats, positions=None, ..., spans=None)` returns `(base,
candidates)`: `base` is the objective of the chain as it stands, `candidates[k]` the objective after candidate
deletion k, float64. A candidate deletes one reasoning token (candidate i deletes token i, (m,) of them), or,
given `spans` ([start, end) per candidate, for units of several tokens), the tokens of its span. Given
`positions`, only those candidates are scored (the rest are NaN): approximate modes use this to re-score a
screened few. Engines differ only in how much work they do; all agree to rounding.

What else an engine takes, it declares:
- `reuses_forward`: it builds every candidate on one forward of the chain as it stands (`forward_current`), so
  its `score` takes that forward as `current` and the caller may share one forward between several calls;
- `keeps_suffixes`: its `score` also takes `best` (a `BestContinuation`, offered the recomputed suffix of the
  best candidate it scored, from which the next pass's forward is built) and `partials` (candidate -> what was
  computed of its suffix on this chain, resumed from and added to); the caller keeps them across passes.
  These three follow `positions` in this order, and are passed by position;
- `run_packs`: its forwards are packs that the forwards of several chains pruned at once can run as one
  (`--batch-chains`); this runs a list of them;
- `estimate`: it gives lookahead estimates (`--lookahead`), with the signature of `packed.score_lookahead`.

This module knows no engine by name; the registry (`chainprune.scoring.ENGINES`) does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from chainprune.scoring.chain_state import BestContinuation, CurrentChain
from chainprune.scoring.logprobs import ForwardStats
from chainprune.types import ChainIds

Scores = tuple[float, torch.Tensor]  # (base objective, per-candidate objectives (m,) float64)


def token_spans(m: int) -> list[tuple[int, int]]:
    """The candidates when none are given: one per reasoning token, each deleting itself."""
    return [(i, i + 1) for i in range(m)]


@dataclass(frozen=True)
class Engine:
    """A scoring engine (see the module docstring). Called as a function, it is its `score`, given only the
    arguments it declares it takes."""

    name: str
    score: Callable[..., Scores]
    reuses_forward: bool = False
    keeps_suffixes: bool = False
    run_packs: Callable[[Any, list[Any]], list[Any]] | None = None
    estimate: Callable[..., Scores] | None = None

    def __post_init__(self) -> None:
        if self.keeps_suffixes and not self.reuses_forward:
            raise ValueError(f"engine {self.name}: the suffixes it keeps are computed on the chain's forward")

    @property
    def runs_packs(self) -> bool:
        return self.run_packs is not None

    @property
    def estimates(self) -> bool:
        return self.estimate is not None

    def __call__(
        self,
        model: Any,
        ids: ChainIds,
        objective: str,
        max_batch_tokens: int,
        stats: ForwardStats,
        positions: list[int] | None = None,
        current: CurrentChain | None = None,
        best: BestContinuation | None = None,
        partials: dict[int, Any] | None = None,
        spans: list[tuple[int, int]] | None = None,
    ) -> Scores:
        extra: list[Any] = []
        if self.reuses_forward:
            extra.append(current)
            if self.keeps_suffixes:
                extra += [best, partials]
        return self.score(model, ids, objective, max_batch_tokens, stats, positions, *extra, spans=spans)
