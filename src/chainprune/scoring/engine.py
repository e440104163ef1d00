"""What a scoring engine is: a name, what it can do, and a `score` function of one named request.

`engine(model, request)` scores the deletion candidates of `request.ids` and returns `(base, candidates)`:
`base` is the objective of the chain as it stands, `candidates[k]` the objective after candidate deletion k,
float64. A candidate deletes one reasoning token (candidate i deletes token i), or, given `request.spans`
([start, end) per candidate, for units of several tokens), the tokens of its span. Given `request.positions`,
only those candidates are scored (the rest are NaN): approximate modes use this to re-score a screened few.
Engines differ only in how much work they do; all agree to rounding.

Every engine takes the same `ScoreRequest`; what it may read of `request.cache` (the `ChainCache` its caller
keeps for the chain), it declares:
- `reuses_forward`: it builds every candidate on one forward of the chain as it stands (`cache.current`, run
  by the caller, or by the engine when there is none), so the caller may share one forward between calls;
- `keeps_suffixes`: it offers `cache.best` the recomputed suffix of the best candidate it scored (from which
  the next pass's forward is built), and resumes each candidate from what `cache.partials` holds of its suffix
  and adds to it (when `partials` is not None); the caller keeps them across passes;
- `run_packs`: its forwards are packs that the forwards of several chains pruned at once can run as one
  (`--batch-chains`); this runs a list of them;
- `estimate`: it gives lookahead estimates (`--lookahead`), as `estimate(model, request, window)`;
- `count`: the token-forwards of one exact pass over every candidate, from the lengths alone (`PassShape`),
  the chain's forward given: what `chainprune prune --estimate` adds up before a run.

`ScoringOptions` are the switches that change speed and memory, never the scores; they travel in the request,
and a trace records those not at their defaults. This module knows no engine by name; the registry
(`chainprune.scoring.ENGINES`) does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import torch

from chainprune.choices import DEFAULT_MAX_BATCH_TOKENS
from chainprune.scoring.chain_state import ChainCache, CurrentChain, forward_current
from chainprune.scoring.logprobs import ForwardStats
from chainprune.types import ChainIds

Scores = tuple[float, torch.Tensor]  # (base objective, per-candidate objectives (m,) float64)


@dataclass(frozen=True)
class ScoringOptions:
    """How scoring runs where that changes speed and memory but not the scores: passed to the scorer and its
    engine in every request (never patched into a module), and written into a trace (`Trace.options`) when not
    at their defaults, so a result says which setting made it. The benchmarks' A/B switches."""

    # exact passes of an engine that keeps suffixes keep every candidate's suffix while a pass's fit in this
    # many bytes (`pruning.scorer.suffix_budget`); negative: never (`benchmarks/speed/bench_resume.py`)
    keep_suffix_bytes: int = 2**31
    # after deleting the best candidate an engine scored, the next forward is built from that candidate's
    # suffix (no forward run); False: run incrementally from the last forward (`benchmarks/speed/bench_next_forward.py`)
    next_from_best: bool = True
    # packed attention by the layout's structure (`PackLayout.attend`); False: always the model's own attention
    # function with the dense mask (`benchmarks/speed/bench_attention.py`)
    structured_attention: bool = True
    # a pack with fewer (packed tokens x keys) than this attends through the model's own function with its
    # dense mask: for small packs one fused call beats the structured attention's dozen small ones (CPU, 9
    # heads: 0.45 vs 1.31 ms at 60 x 260, 2.6 vs 3.5 ms at 234 x 454; 36 vs 12 ms at 1155 x 1355)
    dense_below: int = 2**17

    def changed(self) -> dict[str, Any]:
        """The options not at their defaults, by name (what a trace records)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class ScoreRequest:
    """One scoring call: the chain, the objective, which candidates (all, or `positions`; each token, or the
    units of `spans`), the batch bound, where token-forwards are counted, what the caller keeps for the chain
    (`cache`: None for a one-off call) and the options."""

    ids: ChainIds
    objective: str
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    positions: Sequence[int] | None = None
    spans: Sequence[tuple[int, int]] | None = None
    stats: ForwardStats = field(default_factory=ForwardStats)
    cache: ChainCache | None = None
    options: ScoringOptions = ScoringOptions()

    @property
    def candidates(self) -> list[tuple[int, int]]:
        """Every candidate's [start, end) span of reasoning tokens."""
        return token_spans(len(self.ids.reasoning_ids)) if self.spans is None else [tuple(s) for s in self.spans]

    def wanted(self, count: int) -> list[int]:
        """The candidates to score, in order, of `count`."""
        return list(range(count)) if self.positions is None else sorted(self.positions)

    def current(self, model: Any) -> CurrentChain:
        """The forward of the chain as it stands: the cache's, or run now."""
        if self.cache is not None and self.cache.current is not None:
            return self.cache.current
        return forward_current(model, self.ids, self.objective, self.stats)


@dataclass(frozen=True)
class PassShape:
    """What the work of one exact scoring pass depends on, without the tokens: the prompt and answer lengths,
    every candidate's span in the reasoning as it stands (the spans cover it), the objective and the batch
    bound."""

    n_prompt: int
    n_answer: int
    spans: tuple[tuple[int, int], ...]
    objective: str = "joint"
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS

    @property
    def m(self) -> int:
        return self.spans[-1][1] if self.spans else 0

    @property
    def length(self) -> int:
        return self.n_prompt + self.m + self.n_answer


class ScoreFunction(Protocol):
    def __call__(self, model: Any, request: ScoreRequest) -> Scores: ...


class EstimateFunction(Protocol):
    def __call__(self, model: Any, request: ScoreRequest, window: int) -> Scores: ...


def token_spans(m: int) -> list[tuple[int, int]]:
    """The candidates when none are given: one per reasoning token, each deleting itself."""
    return [(i, i + 1) for i in range(m)]


@dataclass(frozen=True)
class Engine:
    """A scoring engine (see the module docstring). Called as a function, it is its `score`."""

    name: str
    score: ScoreFunction
    reuses_forward: bool = False
    keeps_suffixes: bool = False
    run_packs: Callable[[Any, list[Any]], list[Any]] | None = None
    estimate: EstimateFunction | None = None
    count: Callable[[PassShape], int] | None = None

    def __post_init__(self) -> None:
        if self.keeps_suffixes and not self.reuses_forward:
            raise ValueError(f"engine {self.name}: the suffixes it keeps are computed on the chain's forward")

    @property
    def runs_packs(self) -> bool:
        return self.run_packs is not None

    @property
    def estimates(self) -> bool:
        return self.estimate is not None

    def __call__(self, model: Any, request: ScoreRequest) -> Scores:
        return self.score(model, request)
