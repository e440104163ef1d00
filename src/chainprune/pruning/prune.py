"""Greedy pruning of one chain: tokenize in context, score with an engine, run the greedy loop, build the trace."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chainprune.chains import check_fits, tokenize_chain
from chainprune.choices import DEFAULT_ENGINE
from chainprune.keep import deletions_for, normalize_keep_fractions
from chainprune.models import LoadedModel
from chainprune.pruning.greedy import EXACT, Approximation, GreedyResult, greedy_prune
from chainprune.pruning.scorer import ChainScorer
from chainprune.pruning.trace import build_trace
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS
from chainprune.scoring.engine import ScoringOptions
from chainprune.types import Chain, ChainIds, Trace
from chainprune.units import unit_spans


def prune_chain(
    pruner: LoadedModel,
    chain: Chain,
    keep: Sequence[float] = (0.5,),
    objective: str = "joint",
    engine: str = DEFAULT_ENGINE,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    on_step: Callable[[int, int], None] | None = None,
    approximation: Approximation = EXACT,
    on_scores: Callable[[Sequence[int], Sequence[float]], None] | None = None,
    screener: Callable[[ChainIds], Sequence[float]] | None = None,
    unit: str = "token",
    options: ScoringOptions = ScoringOptions(),
) -> Trace:
    """Greedily prune `chain`'s reasoning down to the smallest keep fraction in `keep`.

    Returns the full trace: deletion order, objective after every deletion, and the pruned text at each
    requested keep fraction. `on_step(done, total)` is called after every deletion (for progress bars; in
    tokens). `approximation` trades exactness for speed; the trace's `mode` then records it. `on_scores(remaining,
    scores)` observes every scoring pass (see `greedy_prune`). `screener(ids)`, predicted scores of the
    current chain's reasoning tokens, guides `approximation.screen` instead of stale scores.
    `unit` ("token", "word", "sentence" or "step", see `chainprune.units`): what one greedy step deletes; keep fractions
    count tokens, and a keep fraction's chain is the state after the fewest unit deletions that keep at most
    floor(n r) tokens. `options`: how scoring runs (speed and memory only; the trace records those not at
    their defaults in `options`).
    Raises `ChainError` for a chain that cannot be scored (too long for the model, empty prompt/answer).
    """
    fractions = normalize_keep_fractions(keep)
    ids = tokenize_chain(pruner.tokenizer, chain)
    check_fits(ids, pruner.max_length)
    check_unit_mode(unit, approximation, screener is not None)
    n = len(ids.reasoning_ids)
    units = unit_spans(ids.reasoning_texts, unit)
    deletions = deletions_for(n, fractions[-1])
    scorer = ChainScorer(pruner.model, ids, objective, engine, max_batch_tokens, units=units, options=options)
    step = (lambda done: on_step(done, deletions)) if on_step else None
    if step is not None:
        step(0)
    guide = (lambda remaining: screener(scorer.chain_at(remaining))) if screener is not None else None
    result = greedy_prune(
        len(units), scorer, deletions, on_step=step, approximation=approximation, on_scores=on_scores,
        screener=guide, sizes=[b - a for a, b in units],
    )
    # greedy ran over units: the trace's deletion order lists their tokens
    result = GreedyResult(
        [i for u in result.deletion_order for i in range(*units[u])], result.objective_values, result.scoring_passes
    )
    trace = build_trace(
        pruner, chain.id, ids, result, fractions, objective, engine, scorer.stats.token_forwards, unit, units
    )
    trace.mode = approximation.describe()
    trace.options = options.changed() or None
    return trace


def check_unit_mode(unit: str, approximation: Approximation, screened_by_surrogate: bool = False) -> None:
    """Refuse a word or sentence prune in an approximate mode whose fidelity with units has not been measured:
    exact greedy and `screen`/`lookahead`/`margin` are (BENCHMARKS.md, "Units"); a surrogate predicts single
    tokens' scores."""
    if unit == "token":
        return
    if screened_by_surrogate:
        raise ValueError("a surrogate predicts the scores of single tokens: it cannot screen word, sentence or step units")
    if unit == "step" and not approximation.exact:
        raise ValueError("with unit 'step' only exact greedy: no approximate mode's fidelity has been measured with steps")
    if not approximation.exact and approximation.margin is None:
        raise ValueError(f"with unit {unit!r}, the approximate mode measured is screen + lookahead + margin "
                         "(--screen 2 --lookahead 3 --margin 5); use it or exact greedy")
