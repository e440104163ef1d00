"""Greedy pruning as a ranker: the deletion order of a greedy run (from a trace, or computed here)."""

from __future__ import annotations

from typing import Any

from chainprune.choices import DEFAULT_ENGINE, DEFAULT_MAX_BATCH_TOKENS
from chainprune.pruning import ChainScorer, greedy_prune
from chainprune.ranking.base import Ranking, needs
from chainprune.trace_steps import check_trace_steps, step_ends
from chainprune.types import ChainIds, Trace


def greedy_from_trace(record: dict[str, Any]) -> Ranking:
    """The deletion order recorded in a trace (it stops at the trace's smallest keep fraction). A unit trace's
    may be cut only where one of its steps ends (`boundaries`); ValueError if the trace is inconsistent."""
    if record.get("unit", "token") == "token":
        return Ranking(deletion_order=list(record["deletion_order"]))
    trace = Trace.from_json(record, partial=True)
    try:
        check_trace_steps(trace)
    except ValueError as e:
        raise ValueError(f"cannot cut this {trace.unit} trace at its steps: {e}") from None
    return Ranking(deletion_order=list(trace.deletion_order), boundaries=step_ends(trace))


@needs("causal_lm")
def greedy(ids: ChainIds, model: Any, seed: int = 0, objective: str = "joint", engine: str = DEFAULT_ENGINE,
           max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> Ranking:
    """Exact greedy pruning (joint objective) run down to a single token: a full deletion order.
    Expensive (every step scores every remaining token); `chainprune prune` + `match` is the usual route."""
    n = len(ids.reasoning_ids)
    if n == 0:
        return Ranking(deletion_order=[])
    scorer = ChainScorer(model, ids, objective, engine, max_batch_tokens=max_batch_tokens)
    order = greedy_prune(n, scorer, n - 1).deletion_order
    order.append(next(i for i in range(n) if i not in set(order)))
    return Ranking(deletion_order=order)
