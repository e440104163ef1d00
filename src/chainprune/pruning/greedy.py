"""The greedy pruning loop (the paper's Algorithm 1), with no I/O and no model: it takes a scorer.

At each step every remaining reasoning token is a deletion candidate; the one whose deletion gives the
highest objective is deleted (exact ties go to the smallest position). Positions are those of the original
reasoning, so the deletion order ranks the original tokens. `Approximation` relaxes this for speed (several
deletions per scoring pass, screening candidates by stale scores); traces record which was used.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Scorer(Protocol):
    def objective(self, remaining: Sequence[int]) -> float:
        """Objective of the chain holding the reasoning tokens at `remaining` (original positions, sorted)."""

    def candidates(
        self, remaining: Sequence[int], subset: Sequence[int] | None = None
    ) -> tuple[float, Sequence[float]]:
        """(objective of `remaining`, objective after deleting each of `remaining`'s tokens).

        With `subset` (indices into `remaining`), only those candidates need scores; the others may be NaN.
        """

    def estimates(self, remaining: Sequence[int], lookahead: int, subset: Sequence[int] | None = None) -> Sequence[float]:
        """Cheap estimates of every candidate's objective (or of `subset`'s, the others NaN): exact for the
        `lookahead` targets after the deletion, the current chain's log-probs after them (used only by the
        lookahead approximation). Estimating again on the same chain with a wider window may reuse the work."""


@dataclass
class GreedyResult:
    deletion_order: list[int]
    objective_values: list[float]  # [0] before any deletion, [s] after s deletions
    scoring_passes: int = 0


@dataclass(frozen=True)
class Approximation:
    """Ways to trade exactness for speed; the default is exact greedy.

    per_step: delete the `per_step` best candidates of each scoring pass (the paper's suggestion).
    screen/refresh: between full scorings (every `refresh` passes), re-score exactly only the `screen`
    candidates best under the last full scoring, plus the neighbours of tokens deleted since then.
    screen/lookahead: every pass, estimate every candidate from the `lookahead` tokens after its deletion
    (the rest of the chain's log-probs taken as they are) and re-score exactly the `screen` best estimates.
    screen/lookahead/margin: as screen/lookahead, with the last pass's two runners-up re-scored too; then,
    while any candidate not yet re-scored has an estimate within `margin` nats of the best exact score found,
    those candidates' windows are widened fourfold and their estimates redone (the work already done on them
    is kept), until the window spans the chain and they are re-scored exactly. An estimate leaves out the damage
    past its window, which mostly lowers the objective, so it mostly over-states the candidate: one whose
    estimate falls well below an exact score already found is unlikely to beat it, and most candidates drop
    out after a few tokens while the close ones are followed to the end.
    A tuple of margins gives one per window (W, 4W, 16W, ...; the last one for every wider window), to study
    whether the error an estimate hides shrinks as its window grows; on model-written chains it did not until
    windows of about 48 tokens, and no schedule beat one margin (BENCHMARKS.md, "Where the margin rule's cost
    goes at real length").
    """

    per_step: int = 1
    screen: int | None = None
    refresh: int = 10
    lookahead: int | None = None
    margin: float | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.per_step < 1 or (self.screen is not None and self.screen < 1) or self.refresh < 1:
            raise ValueError("per_step, screen and refresh must be at least 1")
        if self.lookahead is not None and (self.lookahead < 1 or self.screen is None):
            raise ValueError("lookahead must be at least 1 and needs screen (how many estimates to re-score)")
        if isinstance(self.margin, (list, tuple)):  # one margin per window; a single one is just that number
            margins = tuple(float(m) for m in self.margin)
            object.__setattr__(self, "margin", margins[0] if len(margins) == 1 else margins)
        if self.margin is not None and (self.lookahead is None or not self.margins or not all(m >= 0 for m in self.margins)):
            raise ValueError("margin must be at least 0 and needs lookahead (the estimates it compares)")

    @property
    def margins(self) -> tuple[float, ...]:
        """The margin at each widening (the last one repeats); empty without a margin."""
        if self.margin is None:
            return ()
        return self.margin if isinstance(self.margin, tuple) else (float(self.margin),)

    @property
    def exact(self) -> bool:
        return self.per_step == 1 and self.screen is None

    def describe(self) -> dict | None:
        if self.exact:
            return None
        mode: dict = {}
        if self.per_step != 1:
            mode["per_step"] = self.per_step
        if self.lookahead is not None:
            mode.update(screen=self.screen, lookahead=self.lookahead)
            if self.margin is not None:
                mode["margin"] = list(self.margin) if isinstance(self.margin, tuple) else self.margin
        elif self.screen is not None:
            mode.update(screen=self.screen, refresh=self.refresh)
        return mode


EXACT = Approximation()


class ScoreError(ValueError):
    """The scorer returned something greedy cannot rank (NaN objectives)."""


def ranked_candidates(scores: Sequence[float], among: Sequence[int]) -> list[int]:
    """Indices in `among`, best score first; exact ties in order of index."""
    return sorted(among, key=lambda k: (-scores[k], k))


def best_candidate(scores: Sequence[float]) -> int:
    """Index of the highest score; exact ties go to the smallest index."""
    return ranked_candidates(scores, range(len(scores)))[0]


def screened_subset(
    remaining: Sequence[int], stale: dict[int, float], deleted_since: Sequence[int], size: int
) -> list[int]:
    """Indices into `remaining` to re-score: the `size` best under stale scores, plus deletion neighbours."""
    by_stale = sorted(range(len(remaining)), key=lambda k: (-stale[remaining[k]], k))
    chosen = set(by_stale[:size])
    for position in deleted_since:
        right = bisect.bisect_left(remaining, position)  # first remaining position after the deleted one
        chosen.update(k for k in (right - 1, right) if 0 <= k < len(remaining))
    return sorted(chosen)


def greedy_prune(
    n: int,
    scorer: Scorer,
    deletions: int,
    on_step: Callable[[int], None] | None = None,
    approximation: Approximation = EXACT,
    on_scores: Callable[[Sequence[int], Sequence[float]], None] | None = None,
    screener: Callable[[Sequence[int]], Sequence[float]] | None = None,
    sizes: Sequence[int] | None = None,
) -> GreedyResult:
    """Delete `deletions` of the n reasoning tokens, each time the least harmful one (exact by default).

    With `sizes`, the n items deleted are units of sizes[k] tokens each and `deletions` counts tokens: greedy
    stops after the first deletion that reaches it (the fewest unit deletions that delete at least that many
    tokens); `on_step` is told the tokens deleted so far.
    `on_scores(remaining, scores)` observes every scoring pass before its deletions: the remaining original
    positions and each one's post-deletion objective (NaN where a screened pass did not score it).
    With `approximation.screen`, `screener(remaining)` (predicted scores of the remaining tokens, e.g. an
    attention surrogate's) replaces the stale scores that pick the candidates re-scored between full passes.
    """
    sizes = [1] * n if sizes is None else list(sizes)
    if not 0 <= deletions <= sum(sizes):
        raise ValueError(f"cannot make {deletions} deletions from {sum(sizes)} tokens")
    remaining = list(range(n))
    order: list[int] = []
    values: list[float] = []
    stale: dict[int, float] = {}
    last_exact: dict[int, float] = {}  # the previous pass's exact scores, by original position
    deleted_since: list[int] = []
    passes = 0
    deleted = 0  # tokens
    while deleted < deletions:
        lookahead, size = approximation.lookahead, approximation.screen
        full = size is None or (lookahead is None and passes % approximation.refresh == 0)
        if full:
            subset = None
            base, scores = scorer.candidates(remaining, subset)
        elif lookahead is not None:
            base, scores, subset = lookahead_pass(scorer, remaining, approximation, last_exact)
        else:
            guide = stale if screener is None else dict(zip(remaining, (float(s) for s in screener(remaining))))
            subset = screened_subset(remaining, guide, deleted_since, size)
            base, scores = scorer.candidates(remaining, subset)
        scores = [float(s) for s in scores]
        passes += 1
        if len(scores) != len(remaining):
            raise ScoreError(f"scorer returned {len(scores)} candidates for {len(remaining)} tokens")
        scored = range(len(remaining)) if subset is None else subset
        if math.isnan(base) or any(math.isnan(scores[k]) for k in scored):
            raise ScoreError("the objective is NaN (in float16/bfloat16, try --dtype float32)")
        if not values:
            values.append(float(base))
        if on_scores is not None:
            on_scores(list(remaining), scores)
        if full:
            stale = {remaining[k]: scores[k] for k in range(len(remaining))}
            deleted_since = []
        last_exact = {remaining[k]: scores[k] for k in scored}
        picked, short = [], deletions - deleted
        for k in ranked_candidates(scores, scored)[: approximation.per_step]:  # those that reach `deletions`
            picked.append(k)
            short -= sizes[remaining[k]]
            if short <= 0:
                break
        for position in [remaining[k] for k in picked]:
            remaining.remove(position)
            order.append(position)
            deleted_since.append(position)
            deleted += sizes[position]
            # A single deletion's score is the exact objective of the new chain; after several deletions
            # in one pass, the objective of each intermediate chain is computed, not guessed.
            values.append(scores[picked[0]] if len(picked) == 1 else float(scorer.objective(remaining)))
            if on_step is not None:
                on_step(deleted)
    if deletions == 0:
        values.append(float(scorer.objective(remaining)))
    return GreedyResult(deletion_order=order, objective_values=values, scoring_passes=passes)


RUNNERS_UP = 2  # with a margin, the previous pass's best survivors are re-scored too
WIDEN = 4  # with a margin, each widening multiplies the window by this (fewer, larger forwards than doubling)


def lookahead_pass(
    scorer: Scorer, remaining: Sequence[int], approximation: Approximation, last_exact: dict[int, float]
) -> tuple[float, list[float], list[int]]:
    """One screened pass guided by lookahead estimates: (objective, scores with NaN where not re-scored, the
    indices re-scored). Without a margin, the `screen` best estimates; with one, see `Approximation`."""
    size, margins, window = approximation.screen, approximation.margins, approximation.lookahead
    estimates = [float(e) for e in scorer.estimates(remaining, window)]
    subset = set(ranked_candidates(estimates, range(len(remaining)))[:size])
    if margins:
        known = [k for k, position in enumerate(remaining) if position in last_exact]
        subset.update(sorted(known, key=lambda k: (-last_exact[remaining[k]], k))[:RUNNERS_UP])
    base, scores = scorer.candidates(remaining, sorted(subset))
    scores = [float(s) for s in scores]
    widenings = 0
    while margins:
        margin = margins[min(widenings, len(margins) - 1)]
        widenings += 1
        best = max(scores[k] for k in subset)
        close = [k for k in range(len(remaining)) if k not in subset and estimates[k] >= best - margin]
        if not close:
            break
        window *= WIDEN
        if window <= len(remaining):
            wider = scorer.estimates(remaining, window, close)
            for k in close:
                estimates[k] = float(wider[k])
        else:
            _, extra = scorer.candidates(remaining, close)
            for k in close:
                scores[k] = float(extra[k])
            subset.update(close)
    return base, scores, sorted(subset)
