"""Scoring a chain's deletion candidates with packs: the `packed` engine and the lookahead estimates.

Every candidate's suffix is recomputed once, in packs of bounded size (`PACK_TOKENS`, and within
`max_batch_tokens`). A candidate's suffix may also be computed in parts (`chain_state.Partial`): a later part resumes from
the keys and values of the earlier ones, which go in the cache after the chain's and which only that
candidate's tokens see. The lookahead estimates use this to widen a window at the cost of the tokens added, and
the pruning loop to resume, after a deletion, each candidate's suffix up to the deleted token (`ChainScorer`).
Same numbers as `naive` to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from chainprune.scoring.chain_state import BestContinuation, Continuation, CurrentChain, Partial
from chainprune.scoring.engine import Engine, PassShape, ScoreRequest
from chainprune.scoring.packed.attention import Pack, run_pack, run_packs
from chainprune.scoring.packed.layout import PackLayout

PACK_TOKENS = 1024  # packed tokens per forward: the dense mask grows as T x (L + T)


@torch.no_grad()
def score_packed(model: Any, request: ScoreRequest) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after each candidate deletion, float64): a candidate deletes
    reasoning tokens [start, end) of `request.spans` (by default, one candidate per reasoning token).

    With `request.positions`, only those candidates are scored; the others are NaN. From the request's cache
    (`ChainCache`), when given: the chain's forward (`current`, else run here), `best`, offered each candidate
    whose whole suffix was recomputed (to build the next chain's forward from), and `partials` (candidate ->
    `Partial`, for this chain only; when not None, candidates are resumed from what it holds, and what is
    computed is added to it).
    """
    return _packed_scores(model, request, None)


@torch.no_grad()
def score_lookahead(model: Any, request: ScoreRequest, window: int) -> tuple[float, torch.Tensor]:
    """APPROXIMATE: (objective of the current chain, estimated objective after each candidate deletion).

    A deletion's damage shows mostly in the tokens right after it. Candidate i's estimate recomputes exactly
    the first `window` targets after the deletion (as `packed` does, suffixes cut to window - 1 packed tokens)
    and takes the later targets' log-probs unchanged from the current chain. With `window` at least the
    suffix length the estimate is the exact objective. Work: about m x window token-forwards per pass. The
    request as for `score_packed` (its cache's `best` is not offered estimates): a candidate resumed from a
    `Partial` longer than the window is estimated from all of it, and widening a window costs only the tokens
    added.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    return _packed_scores(model, request, window)


def _packed_scores(model: Any, request: ScoreRequest, window: int | None) -> tuple[float, torch.Tensor]:
    """Exact candidate scores (window None), or lookahead estimates recomputing `window` targets each."""
    current = request.current(model)
    cache = request.cache
    partials = cache.partials if cache is not None else None
    seq, n_prompt = current.seq, current.n_prompt
    device, length = seq.device, seq.shape[0]
    cuts = Cuts.of(request.candidates, device)
    scores = torch.full((cuts.count,), float("nan"), dtype=torch.float64, device=device)
    wanted = request.wanted(cuts.count)
    if not wanted:
        return current.base, scores.cpu()
    stored = {} if partials is None else partials

    # Candidate k deletes [s, s + w): unchanged counted targets before P + s, then seq[P + s + w], which now
    # follows P + s - 1.
    cand = torch.tensor(wanted, device=device)
    start, width = cuts.start[cand], cuts.width[cand]
    scores[cand] = current.unchanged_prefix(start) + current.first_target(model, start, width)
    # Then its packed suffix (length - P - s - w - 1 tokens when whole), of which `reach` is computed (from what
    # is stored on, so the first `done` need not be); targets after the reach keep the current chain's log-probs.
    whole = dict(zip(wanted, cuts.suffix_lengths(length, n_prompt)[cand].tolist()))
    done = {k: stored[k].done if k in stored else 0 for k in wanted}
    reach = {k: n if window is None else max(min(n, window - 1), done[k]) for k, n in whole.items()}
    first_tail = torch.maximum(
        start + width + 1 + torch.tensor([reach[k] for k in wanted], device=device),
        current.start_after(width) + width - n_prompt,
    )
    last = length - n_prompt
    scores[cand] += current.base_cumsum[last] - current.base_cumsum[torch.clamp(first_tail, max=last)]
    for k in wanted:
        if done[k]:
            scores[k] += stored[k].logp.sum()
    todo = {k: (done[k], reach[k]) for k in wanted if reach[k] > done[k]}
    _score_packs(model, request, current, cuts, todo, stored, scores, partials is not None)
    if cache is not None and window is None:
        _offer_best(cache.best, scores, cuts, {k: whole[k] for k in wanted if reach[k] == whole[k]}, stored)
    return current.base, scores.cpu()


@dataclass
class Cuts:
    """The candidate deletions of one pass: candidate k deletes reasoning tokens start[k] to start[k] + width[k]."""

    start: torch.Tensor  # (K,)
    width: torch.Tensor  # (K,)

    @classmethod
    def of(cls, spans: list[tuple[int, int]], device: torch.device) -> Cuts:
        """From [start, end) spans."""
        bounds = torch.tensor(spans, dtype=torch.long, device=device).view(-1, 2)
        return cls(bounds[:, 0], bounds[:, 1] - bounds[:, 0])

    @property
    def count(self) -> int:
        return self.start.shape[0]

    def suffix_lengths(self, length: int, n_prompt: int) -> torch.Tensor:
        """(K,) packed tokens of each candidate's whole suffix in a chain of `length` tokens: every token after
        its span but the last (which predicts nothing)."""
        return length - n_prompt - self.start - self.width - 1


def _offer_best(
    best: BestContinuation, scores: torch.Tensor, cuts: Cuts, complete: dict[int, int], stored: dict[int, Partial]
) -> None:
    """Offer `best` the best of the candidates whose whole suffix was scored (`complete`: candidate -> its
    length), when its rows are at hand."""
    if not complete:
        return
    top = max(complete, key=lambda k: (float(scores[k]), -k))
    rows = stored.get(top)
    cut, width = int(cuts.start[top]), int(cuts.width[top])
    if rows is not None and rows.done == complete[top] and best.wants(cut, float(scores[top])):
        best.offer(Continuation(cut, float(scores[top]), rows.layers, rows.hidden, rows.logp, width))


def _score_packs(
    model: Any,
    request: ScoreRequest,
    current: CurrentChain,
    cuts: Cuts,
    spans: dict[int, tuple[int, int]],
    stored: dict[int, Partial],
    scores: torch.Tensor,
    record: bool,
) -> None:
    """Compute packed tokens [begin, end) of each candidate k's suffix (`spans[k]`), in packs of bounded size,
    each candidate resumed from `stored[k]` (its first `begin` tokens). Adds their log-probs to `scores`.
    A suffix longer than a pack is computed in parts, each resuming from the one before (so no pack, and no
    attention over it, grows with the chain). With `record`, what is computed is added to `stored`; without,
    only the best candidate of each pack whose whole suffix was computed is kept there (to offer as the next
    forward's continuation), and a part only until the next part of its suffix has run."""
    pack_limit = max(1, min(PACK_TOKENS, request.max_batch_tokens))
    parts = [(k, (at, min(at + pack_limit, end))) for k, (begin, end) in spans.items() for at in range(begin, end, pack_limit)]
    last_part = {k: end for k, (_, end) in parts}
    group: dict[int, tuple[int, int]] = {}
    group_tokens = 0
    for k, (begin, end) in parts:
        if group and (group_tokens + end - begin > pack_limit or k in group):
            _score_pack(model, request, current, cuts, group, stored, scores, record, last_part)
            group, group_tokens = {}, 0
        group[k] = (begin, end)
        group_tokens += end - begin
    if group:
        _score_pack(model, request, current, cuts, group, stored, scores, record, last_part)


def _score_pack(
    model: Any,
    request: ScoreRequest,
    current: CurrentChain,
    cuts: Cuts,
    spans: dict[int, tuple[int, int]],
    stored: dict[int, Partial],
    scores: torch.Tensor,
    record: bool,
    last_part: dict[int, int],
) -> None:
    """One forward of the packed spans (see `_score_packs`; `last_part[k]`: where candidate k's last part of
    this call ends)."""
    seq, n_prompt, layers = current.seq, current.n_prompt, current.layers
    device, length = seq.device, seq.shape[0]
    owner, offset = [], []  # per packed token: which candidate, and its index within that suffix
    for k, (begin, end) in spans.items():
        owner += [k] * (end - begin)
        offset += range(begin, end)
    owner_t = torch.tensor(owner, device=device)  # (T,)
    offset_t = torch.tensor(offset, device=device)
    start, width = cuts.start[owner_t], cuts.width[owner_t]
    inputs = seq[n_prompt + start + width + offset_t]  # suffix token j of candidate k is seq[P + s + w + j]
    targets = seq[n_prompt + start + width + 1 + offset_t]
    positions = n_prompt + start + offset_t  # shifted down by w: tokens P + s to P + s + w - 1 were deleted
    total = owner_t.shape[0]
    resumed = [stored[k] for k, (begin, _) in spans.items() if begin]
    runs = [(begin, end - begin) for begin, end in spans.values()]

    # keys: the current chain's [0, L), then the resumed candidates' stored suffixes, then the packed tokens
    past_layers = layers
    if resumed:
        past_layers = [
            (torch.cat([k] + [p.layers[n][0] for p in resumed], dim=2), torch.cat([v] + [p.layers[n][1] for p in resumed], dim=2))
            for n, (k, v) in enumerate(layers)
        ]
    # packed token j of candidate k predicts seq[P + s + w + 1 + j], at candidate-sequence index P + s + 1 + j
    counted = (positions + 1) >= current.start_after(width)
    layout = PackLayout.of(layers[0][0].shape[2], n_prompt + start, runs)
    pack = Pack(inputs, positions, past_layers, layout, counted, targets[counted], request.options)
    result = run_pack(model, pack)
    hidden, new_keys = result.hidden, result.layers  # what is kept of a candidate is a view of these
    request.stats.add(1, total)
    scores.index_add_(0, owner_t[counted], result.logp)
    row_logp = torch.zeros(total, dtype=result.logp.dtype, device=device).masked_scatter_(counted, result.logp)

    def computed(k: int, first: int, count: int) -> Partial:
        rows = slice(first, first + count)
        more = Partial([(keys[:, :, rows], values[:, :, rows]) for keys, values in new_keys], hidden[rows], row_logp[rows])
        return stored[k].then(more) if spans[k][0] else more

    whole = dict(zip(spans, cuts.suffix_lengths(length, n_prompt)[list(spans)].tolist()))
    first = 0
    complete = [k for k, (_, end) in spans.items() if end == whole[k]]
    best = max(complete, key=lambda k: (float(scores[k]), -k)) if complete else None
    for k, (begin, end) in spans.items():
        if record or k == best or end < last_part[k]:  # (a part with more to come is resumed by the next)
            stored[k] = computed(k, first, end - begin)
        elif begin:
            stored.pop(k, None)  # its earlier parts, kept only for this one
        first += end - begin


def count_packed(shape: PassShape) -> int:
    """Token-forwards of one exact pass with nothing resumed: every candidate's whole suffix once."""
    return sum(max(0, shape.m + shape.n_answer - b - 1) for _, b in shape.spans)


PACKED = Engine(
    "packed", score_packed, reuses_forward=True, keeps_suffixes=True, run_packs=run_packs, estimate=score_lookahead,
    count=count_packed,
)
