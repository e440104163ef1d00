"""Greedy pruning of one chain: tokenize in context, score with an engine, run the greedy loop, build the trace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from chainprune.chains import ChainError, tokenize_chain
from chainprune.choices import DEFAULT_ENGINE
from chainprune.keep import deletions_for, keep_key, normalize_keep_fractions
from chainprune.models import LoadedModel
from chainprune.pruning.greedy import EXACT, Approximation, GreedyResult, ScoreError, best_candidate, greedy_prune
from chainprune.scoring import DEFAULT_MAX_BATCH_TOKENS, Engine, ForwardStats, default_estimator, get_engine, together
from chainprune.scoring.chain_state import BestContinuation, CurrentChain, forward_current
from chainprune.scoring.engine import token_spans
from chainprune.scoring.objectives import objective_start, sequence_objectives
from chainprune.types import Chain, ChainIds, PrunedChain, Trace, TraceToken
from chainprune.units import unit_spans


class ChainScorer:
    """Scores the deletion candidates of one tokenized chain with one engine (implements `Scorer`).

    An engine that reuses the chain's forward (`Engine.reuses_forward`) is given one the scorer runs itself,
    incrementally from the previous pass's (only the tokens after the first deletion since are recomputed),
    or, when the deletion made is the best candidate the engine scored, from the states that scoring computed
    (nothing is run); it shares it between a pass's estimates and its exact scores. An engine that keeps
    suffixes (`Engine.keeps_suffixes`) is given what was computed of each candidate's suffix (a partial
    suffix), so widening an estimate's window or re-scoring a candidate exactly computes only the tokens not yet
    computed; after a deletion, each suffix up to the deleted token is still the new chain's and is kept too, so
    a candidate before it is re-scored from there on (exact passes keep suffixes only while a pass's fit in
    `suffix_budget`). An engine that does neither (the `naive` reference) is given nothing. The lookahead
    estimates come from `estimator` (`Engine.estimate`): by default the engine's own, else the first registered
    engine that gives them (`default_estimator`).
    """

    def __init__(
        self, model: Any, ids: ChainIds, objective: str, engine: str | Engine, max_batch_tokens: int,
        estimator: str | Engine | None = None, units: Sequence[tuple[int, int]] | None = None,
    ):
        objective_start(1, 0, objective)  # validates the objective name early
        self.model, self.ids, self.objective_name = model, ids, objective
        self.engine = get_engine(engine)
        self.estimator = get_engine(estimator) if estimator is not None else default_estimator(self.engine)
        self.max_batch_tokens = max_batch_tokens
        self.stats = ForwardStats()
        # the deletion candidates: [start, end) spans of reasoning tokens (one per token unless units are given)
        self.units = token_spans(len(ids.reasoning_ids)) if units is None else [tuple(u) for u in units]
        self._current: tuple[tuple[int, ...], CurrentChain, list[tuple[int, int]]] | None = None  # the last
        # forward: its reasoning tokens, its chain, and its candidates' spans in it
        self._best = BestContinuation()  # the best candidate scored on that chain, and what scoring it computed
        # what scoring on that chain computed of each candidate's suffix, which later calls resume from: kept by
        # an engine that keeps suffixes when a whole pass's suffixes fit in `suffix_budget`, and always once
        # estimates are asked for
        self._partials: dict[int, Any] | None = None
        # exact scores already returned for the chain at these remaining units (a pass may score in several
        # calls): ties between equal neighbours are made with them too
        self._scored: tuple[tuple[int, ...], dict[int, float]] = ((), {})

    def _tokens(self, remaining: Sequence[int]) -> list[int]:
        """The reasoning tokens of the remaining units, in order."""
        return [i for unit in remaining for i in range(*self.units[unit])]

    def _spans(self, remaining: Sequence[int]) -> list[tuple[int, int]]:
        """Each remaining unit's span in the chain they leave."""
        spans, at = [], 0
        for unit in remaining:
            a, b = self.units[unit]
            spans.append((at, at + b - a))
            at += b - a
        return spans

    def _at(self, remaining: Sequence[int]) -> ChainIds:
        reasoning = [self.ids.reasoning_ids[i] for i in self._tokens(remaining)]
        return ChainIds(self.ids.prompt_ids, reasoning, self.ids.answer_ids)

    def _keys(self, remaining: Sequence[int]) -> list[tuple[int, ...]]:
        """What each remaining unit deletes: deleting either of two equal neighbours leaves the same chain."""
        return [tuple(self.ids.reasoning_ids[i] for i in range(*self.units[unit])) for unit in remaining]

    def _forward(self, remaining: Sequence[int], ids: ChainIds) -> CurrentChain:
        """The forward of the chain at `remaining`: after the deletion of the best candidate last scored, built
        from its scoring; otherwise incremental from the last forward."""
        key = tuple(self._tokens(remaining))
        if self._current is None or self._current[0] != key:
            previous = self._current[1] if self._current is not None else None
            chain = None
            if previous is not None and self._best.kept is not None:
                chain = previous.after_deletion(self.model, ids, self.objective_name, self._best.kept)
            if chain is None:
                chain = forward_current(self.model, ids, self.objective_name, self.stats, previous)
            partials = self._carried(key)
            if partials is None and self.engine.keeps_suffixes and (
                suffix_bytes(chain, len(remaining)) <= suffix_budget(chain.seq.device)
            ):
                partials = {}
            self._current, self._best, self._partials = (key, chain, self._spans(remaining)), BestContinuation(), partials
        return self._current[1]

    def _carried(self, tokens: tuple[int, ...]) -> dict[int, Any] | None:
        """What was computed of the candidates' suffixes on the last chain that the chain of reasoning `tokens`
        leaves as it was: the suffix token j of candidate k, deleting [s, e), reads reasoning tokens up to
        e + j + 1, unchanged when they come before the first token deleted since (and candidate k keeps its index
        and span). So each suffix is kept up to there."""
        if self._partials is None or self._current is None:
            return None
        before, _, spans = self._current
        first = next((k for k, (a, b) in enumerate(zip(before, tokens)) if a != b), min(len(before), len(tokens)))
        return {k: p.first(min(p.done, first - spans[k][1] - 1)) for k, p in self._partials.items() if first - spans[k][1] - 1 > 0}

    def candidates(self, remaining: Sequence[int], subset: Sequence[int] | None = None) -> tuple[float, torch.Tensor]:
        ids = self._at(remaining)
        positions = None if subset is None else list(subset)
        current = self._forward(remaining, ids) if self.engine.reuses_forward else None
        base, scores = self.engine(
            self.model, ids, self.objective_name, self.max_batch_tokens, self.stats, positions, current=current,
            best=self._best, partials=self._partials, spans=self._spans(remaining),
        )
        if self._scored[0] != tuple(remaining):
            self._scored = (tuple(remaining), {})
        known = self._scored[1]
        scores = tie_repeated_tokens(self._keys(remaining), scores, known)
        known.update((k, float(v)) for k, v in enumerate(scores.tolist()) if v == v)
        return base, scores

    def estimates(self, remaining: Sequence[int], lookahead: int, subset: Sequence[int] | None = None) -> torch.Tensor:
        ids = self._at(remaining)
        current = self._forward(remaining, ids)
        if self._partials is None:
            self._partials = {}
        positions = None if subset is None else list(subset)
        _, scores = self.estimator.estimate(
            self.model, ids, self.objective_name, self.max_batch_tokens, self.stats, lookahead, current=current,
            positions=positions, partials=self._partials, spans=self._spans(remaining),
        )
        return tie_repeated_tokens(self._keys(remaining), scores)

    def objective(self, remaining: Sequence[int]) -> float:
        ids = self._at(remaining)
        if self.engine.reuses_forward:  # incremental, and the next pass builds on it (per-step's last intermediate chain)
            return self._forward(remaining, ids).base
        seq = torch.tensor([ids.input_ids], device=next(self.model.parameters()).device)
        start = objective_start(len(ids.prompt_ids), len(ids.reasoning_ids), self.objective_name)
        return float(sequence_objectives(self.model, seq, start, self.stats)[0])


KEEP_BYTES = 2**31  # exact passes (of an engine that keeps suffixes) keep every candidate's suffix up to this size


def suffix_budget(device: torch.device) -> int:
    """Memory exact passes may hold in kept suffixes: KEEP_BYTES, or on a GPU a quarter of its free memory when
    that is more; shared among the chains pruned at once (`together`)."""
    budget = KEEP_BYTES
    if device.type == "cuda" and KEEP_BYTES >= 0:
        budget = max(KEEP_BYTES, torch.cuda.mem_get_info(device)[0] // 4)
    return budget // together.peers()


def suffix_bytes(chain: CurrentChain, m: int) -> int:
    """Memory of every candidate's whole suffix on `chain` (m reasoning tokens): keys, values, hidden states."""
    keys, values = chain.layers[0]
    per_token = len(chain.layers) * (keys[0, :, 0].numel() * keys.element_size() + values[0, :, 0].numel() * values.element_size())
    per_token += chain.hidden.shape[1] * chain.hidden.element_size()
    length = chain.seq.shape[0] - chain.n_prompt - 2  # candidate 0's suffix; candidate i's is i shorter
    return per_token * sum(max(0, length - i) for i in range(m))


def tie_repeated_tokens(
    reasoning_ids: Sequence[Any], scores: torch.Tensor, known: dict[int, float] | None = None
) -> torch.Tensor:
    """Deleting either of two equal neighbouring tokens (or units: tuples of token ids) leaves the same
    sequence, so the two candidates are exactly tied. Engines compute them along different paths (rounding may
    differ in the last bits); copying the first score of each run of equal tokens over the run makes the tie
    exact, so it always goes to the smallest position whatever the engine. (Unscored candidates are NaN; a run
    takes its first scored value, or the value `known` holds for one of its candidates: scores given earlier
    for the same chain, already tied.)"""
    scores = scores.clone()
    known = known or {}
    k = 0
    while k < len(reasoning_ids):
        end = k + 1
        while end < len(reasoning_ids) and reasoning_ids[end] == reasoning_ids[k]:
            end += 1
        if end - k > 1:
            earlier = [known[j] for j in range(k, end) if j in known]
            run = scores[k:end]
            scored = run[~torch.isnan(run)]
            if earlier:
                scores[k:end] = earlier[0]
            elif scored.numel():
                scores[k:end] = scored[0]
        k = end
    return scores


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
) -> Trace:
    """Greedily prune `chain`'s reasoning down to the smallest keep fraction in `keep`.

    Returns the full trace: deletion order, objective after every deletion, and the pruned text at each
    requested keep fraction. `on_step(done, total)` is called after every deletion (for progress bars; in
    tokens). `approximation` trades exactness for speed; the trace's `mode` then records it. `on_scores(remaining,
    scores)` observes every scoring pass (see `greedy_prune`). `screener(ids)`, predicted scores of the
    current chain's reasoning tokens, guides `approximation.screen` instead of stale scores.
    `unit` ("token", "word" or "sentence", see `chainprune.units`): what one greedy step deletes; keep fractions
    count tokens, and a keep fraction's chain is the state after the fewest unit deletions that keep at most
    floor(n r) tokens.
    Raises `ChainError` for a chain that cannot be scored (too long for the model, empty prompt/answer).
    """
    fractions = normalize_keep_fractions(keep)
    ids = tokenize_chain(pruner.tokenizer, chain)
    limit = pruner.max_length
    if limit is not None and len(ids.input_ids) > limit:
        raise ChainError(f"chain is {len(ids.input_ids)} tokens, longer than the pruner's context of {limit}")
    check_unit_mode(unit, approximation, screener is not None)
    n = len(ids.reasoning_ids)
    units = unit_spans(ids.reasoning_texts, unit)
    deletions = deletions_for(n, fractions[-1])
    scorer = ChainScorer(pruner.model, ids, objective, engine, max_batch_tokens, units=units)
    step = (lambda done: on_step(done, deletions)) if on_step else None
    if step is not None:
        step(0)
    guide = (lambda remaining: screener(scorer._at(remaining))) if screener is not None else None
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
    return trace


def check_unit_mode(unit: str, approximation: Approximation, screened_by_surrogate: bool = False) -> None:
    """Refuse a word or sentence prune in an approximate mode whose fidelity with units has not been measured:
    exact greedy and `screen`/`lookahead`/`margin` are (BENCHMARKS.md, "Units"); a surrogate predicts single
    tokens' scores."""
    if unit == "token":
        return
    if screened_by_surrogate:
        raise ValueError("a surrogate predicts the scores of single tokens: it cannot screen word or sentence units")
    if not approximation.exact and approximation.margin is None:
        raise ValueError(f"with unit {unit!r}, the approximate mode measured is screen + lookahead + margin "
                         "(--screen 2 --lookahead 3 --margin 5); use it or exact greedy")


def build_trace(
    pruner: LoadedModel,
    chain_id: str,
    ids: ChainIds,
    result: GreedyResult,
    fractions: Sequence[float],
    objective: str,
    engine: str,
    token_forwards: int,
    unit: str = "token",
    units: Sequence[tuple[int, int]] | None = None,
) -> Trace:
    """The trace of a prune. For a unit prune, `result.deletion_order` lists the tokens of each unit deleted,
    unit by unit, and `units` gives the units' spans."""
    n = len(ids.reasoning_ids)
    of_token = {i: k for k, (a, b) in enumerate(units or []) for i in range(a, b)}
    steps: dict[int, int] = {}  # unit (or token) -> step
    deleted_step = {}
    for pos in result.deletion_order:
        deleted_step[pos] = steps.setdefault(of_token.get(pos, pos), len(steps) + 1)
    tokens = [TraceToken(position=i, text=ids.reasoning_texts[i], deleted_step=deleted_step.get(i)) for i in range(n)]
    trace = Trace(
        id=chain_id,
        pruner=pruner.name,
        objective=objective,
        prompt_ids=ids.prompt_ids,
        reasoning_ids=ids.reasoning_ids,
        answer_ids=ids.answer_ids,
        deletion_order=result.deletion_order,
        objective_values=result.objective_values,
        tokens=tokens,
        pruned={},
        engine=engine,
        dtype=str(pruner.dtype).removeprefix("torch."),
        token_forwards=token_forwards,
        unit=unit,
        units=[list(u) for u in units] if unit != "token" else None,
    )
    for r in fractions:
        gone = set(result.deletion_order[: trace.deletions_at(r)])
        kept = [t for i, t in enumerate(ids.reasoning_ids) if i not in gone]
        text = pruner.tokenizer.decode(kept, clean_up_tokenization_spaces=False)
        trace.pruned[keep_key(r)] = PrunedChain(text=text, num_tokens=n - len(gone))
    return trace


__all__ = [
    "EXACT",
    "Approximation",
    "ChainError",
    "ChainScorer",
    "GreedyResult",
    "ScoreError",
    "best_candidate",
    "build_trace",
    "check_unit_mode",
    "greedy_prune",
    "prune_chain",
    "tie_repeated_tokens",
]
