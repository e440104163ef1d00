"""Scoring one chain's deletion candidates for the greedy loop: `ChainScorer` (the `Scorer` of `pruning.greedy`),
what it keeps between passes and how much memory that may take, and exact ties between equal neighbours.

It knows tokenized chains, engines and models; not files, traces or keep fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from chainprune.scoring import Engine, ForwardStats, default_estimator, get_engine, together
from chainprune.scoring.chain_state import BestContinuation, ChainCache, CurrentChain, forward_current
from chainprune.scoring.engine import ScoreRequest, ScoringOptions, token_spans
from chainprune.scoring.objectives import objective_start, sequence_objectives
from chainprune.types import ChainIds


class ChainScorer:
    """Scores the deletion candidates of one tokenized chain with one engine (implements `Scorer`).

    What it keeps between passes is its `cache` (a `ChainCache`, given to the engine in every request). An
    engine that reuses the chain's forward (`Engine.reuses_forward`) is given one the scorer runs itself
    (`forward`), incrementally from the previous pass's (only the tokens after the first deletion since are
    recomputed), or, when the deletion made is the best candidate the engine scored, from the states that
    scoring computed (nothing is run); it shares it between a pass's estimates and its exact scores. An engine
    that keeps suffixes (`Engine.keeps_suffixes`) is given what was computed of each candidate's suffix (a
    partial suffix), so widening an estimate's window or re-scoring a candidate exactly computes only the
    tokens not yet computed; after a deletion, each suffix up to the deleted token is still the new chain's and
    is kept too, so a candidate before it is re-scored from there on (exact passes keep suffixes only while a
    pass's fit in `suffix_budget`). An engine that does neither (the `naive` reference) reads none of it. The
    lookahead estimates come from `estimator` (`Engine.estimate`): by default the engine's own, else the first
    registered engine that gives them (`default_estimator`). `options` go to the engine in every request.
    """

    def __init__(
        self, model: Any, ids: ChainIds, objective: str, engine: str | Engine, max_batch_tokens: int,
        estimator: str | Engine | None = None, units: Sequence[tuple[int, int]] | None = None,
        options: ScoringOptions = ScoringOptions(),
    ):
        objective_start(1, 0, objective)  # validates the objective name early
        self.model, self.ids, self.objective_name, self.options = model, ids, objective, options
        self.engine = get_engine(engine)
        self.estimator = get_engine(estimator) if estimator is not None else default_estimator(self.engine)
        self.max_batch_tokens = max_batch_tokens
        self.stats = ForwardStats()
        # the deletion candidates: [start, end) spans of reasoning tokens (one per token unless units are given)
        self.units = token_spans(len(ids.reasoning_ids)) if units is None else [tuple(u) for u in units]
        self.cache = ChainCache()  # of the chain last scored (see `forward`)
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

    def chain_at(self, remaining: Sequence[int]) -> ChainIds:
        """The tokenized chain the remaining units leave."""
        reasoning = [self.ids.reasoning_ids[i] for i in self._tokens(remaining)]
        return ChainIds(self.ids.prompt_ids, reasoning, self.ids.answer_ids)

    def _keys(self, remaining: Sequence[int]) -> list[tuple[int, ...]]:
        """What each remaining unit deletes: deleting either of two equal neighbours leaves the same chain."""
        return [tuple(self.ids.reasoning_ids[i] for i in range(*self.units[unit])) for unit in remaining]

    def forward(self, remaining: Sequence[int]) -> CurrentChain:
        """The forward of the chain at `remaining`, which the cache then holds: after the deletion of the best
        candidate last scored, built from its scoring (unless `options.next_from_best` is off); otherwise
        incremental from the last forward. The suffixes computed on the last chain that this one leaves as they
        were are carried over (`ChainCache.carried`)."""
        tokens = tuple(self._tokens(remaining))
        cache = self.cache
        if cache.holds(tokens):
            return cache.current
        ids = self.chain_at(remaining)
        chain = None
        if cache.current is not None and cache.best.kept is not None and self.options.next_from_best:
            chain = cache.current.after_deletion(self.model, ids, self.objective_name, cache.best.kept)
        if chain is None:
            chain = forward_current(self.model, ids, self.objective_name, self.stats, cache.current)
        partials = cache.carried(tokens)
        if partials is None and self.engine.keeps_suffixes and (
            suffix_bytes(chain, len(remaining)) <= suffix_budget(chain.seq.device, self.options.keep_suffix_bytes)
        ):
            partials = {}
        self.cache = ChainCache(tokens, chain, self._spans(remaining), BestContinuation(), partials)
        return chain

    def _request(self, remaining: Sequence[int], subset: Sequence[int] | None, cache: ChainCache | None) -> ScoreRequest:
        return ScoreRequest(
            self.chain_at(remaining), self.objective_name, self.max_batch_tokens,
            positions=None if subset is None else list(subset), spans=self._spans(remaining), stats=self.stats,
            cache=cache, options=self.options,
        )

    def _halving(self, score):
        """`score()`, and while it runs out of memory (a GPU's `torch.OutOfMemoryError`), again with half the
        batch bound (`max_batch_tokens`, kept halved for the rest of the chain): the scores do not change, only
        how many tokens one forward holds. What a failed call computed of the suffixes stays valid and is
        resumed. Raised once a bound of one token still does not fit."""
        while True:
            try:
                return score()
            except torch.OutOfMemoryError:
                if self.max_batch_tokens <= 1:
                    raise
                self.max_batch_tokens //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def candidates(self, remaining: Sequence[int], subset: Sequence[int] | None = None) -> tuple[float, torch.Tensor]:
        cache = None
        if self.engine.reuses_forward:
            self.forward(remaining)
            cache = self.cache
        base, scores = self._halving(lambda: self.engine(self.model, self._request(remaining, subset, cache)))
        if self._scored[0] != tuple(remaining):
            self._scored = (tuple(remaining), {})
        known = self._scored[1]
        scores = tie_repeated_tokens(self._keys(remaining), scores, known)
        known.update((k, float(v)) for k, v in enumerate(scores.tolist()) if v == v)
        return base, scores

    def estimates(self, remaining: Sequence[int], lookahead: int, subset: Sequence[int] | None = None) -> torch.Tensor:
        self.forward(remaining)
        if self.cache.partials is None:
            self.cache.partials = {}
        _, scores = self._halving(
            lambda: self.estimator.estimate(self.model, self._request(remaining, subset, self.cache), lookahead))
        return tie_repeated_tokens(self._keys(remaining), scores)

    def objective(self, remaining: Sequence[int]) -> float:
        if self.engine.reuses_forward:  # incremental, and the next pass builds on it (per-step's last intermediate chain)
            return self.forward(remaining).base
        ids = self.chain_at(remaining)
        seq = torch.tensor([ids.input_ids], device=next(self.model.parameters()).device)
        start = objective_start(len(ids.prompt_ids), len(ids.reasoning_ids), self.objective_name)
        return float(sequence_objectives(self.model, seq, start, self.stats)[0])


def suffix_budget(device: torch.device, keep_bytes: int) -> int:
    """Memory exact passes may hold in kept suffixes: `keep_bytes`, or on a GPU a quarter of its free memory
    when that is more (unless `keep_bytes` is negative: never); shared among the chains pruned at once
    (`together`)."""
    budget = keep_bytes
    if device.type == "cuda" and keep_bytes >= 0:
        budget = max(keep_bytes, torch.cuda.mem_get_info(device)[0] // 4)
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
