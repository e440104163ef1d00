"""Scoring engines: given the current chain, the objective after every candidate deletion (of one reasoning
token, or of a span of them for word and sentence units).

An engine is an `Engine` (`scoring.engine`): a name, the capabilities it declares, and a `score` function
`(model, ScoreRequest) -> (base, candidates)`; a request names the chain, objective, candidates, batch bound,
the caller's `ChainCache` for the chain and the `ScoringOptions`. `ENGINES` maps
each name to its `Engine`, loaded from the registry in `chainprune.choices` (name -> where the `Engine` lives,
kept there so the CLI lists the names without importing torch): adding an engine is its module, declaring its
`Engine`, plus its line in `choices.ENGINES`. Callers ask an engine what it can do (`reuses_forward`,
`keeps_suffixes`, `runs_packs`, `estimates`), never which one it is.
"""

from __future__ import annotations

from typing import Any

from chainprune import choices
from chainprune.choices import DEFAULT_MAX_BATCH_TOKENS
from chainprune.scoring.chain_state import ChainCache
from chainprune.scoring.engine import Engine, ScoreRequest, ScoringOptions
from chainprune.scoring.logprobs import ForwardStats
from chainprune.scoring.objectives import objective_start, reference_objective, sequence_objectives

ENGINES: dict[str, Engine] = {name: choices.load(where) for name, where in choices.ENGINES.items()}


def get_engine(name: str | Engine) -> Engine:
    """The engine registered as `name` (an `Engine` is returned as it is)."""
    if isinstance(name, Engine):
        return name
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def engines_that(capability: str) -> list[str]:
    """Names of the registered engines with `capability` (an `Engine` property: "runs_packs", "estimates", ...)."""
    return [name for name, engine in ENGINES.items() if getattr(engine, capability)]


def default_estimator(engine: Engine) -> Engine:
    """The engine whose lookahead estimates a run with `engine` uses: its own, or else the first registered
    engine that gives them (the estimates need not come from the engine scoring exactly)."""
    if engine.estimates:
        return engine
    for other in ENGINES.values():
        if other.estimates:
            return other
    raise ValueError("no registered engine gives lookahead estimates")


def run_packs(model: Any, packs: list[Any]) -> list[Any]:
    """Packs submitted by chains pruned at once (`together`), run as one forward by the engine that built them."""
    return get_engine(packs[0].engine).run_packs(model, packs)


__all__ = [
    "DEFAULT_MAX_BATCH_TOKENS",
    "ENGINES",
    "ChainCache",
    "Engine",
    "ForwardStats",
    "ScoreRequest",
    "ScoringOptions",
    "default_estimator",
    "engines_that",
    "get_engine",
    "objective_start",
    "reference_objective",
    "run_packs",
    "sequence_objectives",
]
