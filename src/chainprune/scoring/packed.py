"""The `packed` engine: every candidate's suffix packed into one sequence, with no padding and no recompute.

After one forward of the current chain (length L, prompt P), its KV cache holds keys/values for every
position. Deleting reasoning token i leaves positions before P + i untouched, so candidate i needs only
its suffix seq[P+i+1 : L-1] recomputed (the last token predicts nothing), at positions shifted down by one,
attending to the cached keys before P + i and to its own earlier suffix tokens. The suffixes of many
candidates are laid end to end in a single row of packed tokens; a 4D additive mask
(1, 1, T, L + T) gives each its own view (0 = attend, dtype min = blocked):

    past keys:   candidate i's queries see cached positions [0, P + i)
    packed keys: and the packed tokens of candidate i up to themselves (causal within the suffix)

Work per step is exactly sum_i (L - P - i - 2) token-forwards: the `prefix` engine's chunk redundancy is gone.
The price is dense attention over the packed block, so packs are kept to `PACK_TOKENS` (and within
`max_batch_tokens`). Same numbers as `naive` to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from chainprune.scoring.logprobs import ForwardStats, output_cache, run_decoder, target_logprobs
from chainprune.scoring.objectives import BestContinuation, Continuation, CurrentChain, forward_current
from chainprune.types import ChainIds

PACK_TOKENS = 1024  # packed tokens per forward: the mask and attention grow as T x (L + T)


@torch.no_grad()
def score_packed(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    positions: list[int] | None = None,
    current: CurrentChain | None = None,
    keep: BestContinuation | None = None,
) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after deleting each reasoning token (m,) float64).

    With `positions`, only those candidates are scored; the others are NaN. `current`: this chain's forward
    when the caller already ran it (`forward_current`), so it is not run twice. `keep` is offered each
    candidate's recomputed suffix, to build the next chain's forward from.
    """
    return _packed_scores(model, ids, objective, max_batch_tokens, stats, positions, None, current, keep)


@torch.no_grad()
def score_lookahead(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    window: int,
    current: CurrentChain | None = None,
) -> tuple[float, torch.Tensor]:
    """APPROXIMATE: (objective of the current chain, estimated objective after deleting each reasoning token).

    A deletion's damage shows mostly in the tokens right after it. Candidate i's estimate recomputes exactly
    the first `window` targets after the deletion (as `packed` does, suffixes cut to window - 1 packed tokens)
    and takes the later targets' log-probs unchanged from the current chain. With `window` at least the
    suffix length the estimate is the exact objective. Work: about m x window token-forwards per pass.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    return _packed_scores(model, ids, objective, max_batch_tokens, stats, None, window, current, None)


def _packed_scores(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    positions: list[int] | None,
    window: int | None,
    current: CurrentChain | None,
    keep: BestContinuation | None,
) -> tuple[float, torch.Tensor]:
    """Exact candidate scores (window None), or lookahead estimates recomputing `window` targets each."""
    m = len(ids.reasoning_ids)
    current = current or forward_current(model, ids, objective, stats)
    seq, n_prompt, start = current.seq, current.n_prompt, current.candidate_start
    device, length = seq.device, seq.shape[0]
    scores = torch.full((m,), float("nan"), dtype=torch.float64, device=device)
    if m == 0:
        return current.base, scores.cpu()
    wanted = list(range(m)) if positions is None else sorted(positions)

    # Candidate i: unchanged counted targets before P + i, then seq[P + i + 1], which now follows P + i - 1.
    cand = torch.tensor(wanted, device=device)
    scores[cand] = current.unchanged_prefix(cand) + current.boundary_logp(model, cand, seq[n_prompt + cand + 1])
    suffixes = {i: length - n_prompt - i - 2 for i in wanted}
    if window is not None:
        # Targets after the window: original index j >= P + i + 1 + window keeps its current log-prob; it is
        # counted when its candidate index j - 1 is at or after the objective's start.
        first_tail = torch.clamp(cand + 1 + window, min=start + 1 - n_prompt)
        last = length - n_prompt
        scores[cand] += current.base_cumsum[last] - current.base_cumsum[torch.clamp(first_tail, max=last)]
        suffixes = {i: min(n, window - 1) for i, n in suffixes.items()}
    _score_packs(model, seq, n_prompt, start, current.layers, suffixes, max_batch_tokens, scores, stats, keep)
    return current.base, scores.cpu()


def _score_packs(
    model: Any,
    seq: torch.Tensor,
    n_prompt: int,
    start: int,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    suffixes: dict[int, int],
    max_batch_tokens: int,
    scores: torch.Tensor,
    stats: ForwardStats,
    keep: BestContinuation | None = None,
) -> None:
    """Recompute `suffixes[i]` packed tokens after each candidate i's deletion, in packs of bounded size."""
    pack_limit = max(1, min(PACK_TOKENS, max_batch_tokens))
    group: dict[int, int] = {}
    group_tokens = 0
    for i, suffix in suffixes.items():
        if suffix <= 0:
            continue
        if group and group_tokens + suffix > pack_limit:
            _score_pack(model, seq, n_prompt, start, layers, group, scores, stats, keep)
            group, group_tokens = {}, 0
        group[i] = suffix
        group_tokens += suffix
    if group:
        _score_pack(model, seq, n_prompt, start, layers, group, scores, stats, keep)


def _score_pack(
    model: Any,
    seq: torch.Tensor,
    n_prompt: int,
    start: int,
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    suffixes: dict[int, int],
    scores: torch.Tensor,
    stats: ForwardStats,
    keep: BestContinuation | None = None,
) -> None:
    """One forward of the packed suffixes (candidate -> token count); adds their log-probs to `scores`.
    With `keep`, offers it the best candidate of the pack (whose scores are then complete)."""
    device, length = seq.device, seq.shape[0]
    owner, offset = [], []  # per packed token: which candidate, and its index within that suffix
    for i, n in suffixes.items():
        owner += [i] * n
        offset += range(n)
    owner_t = torch.tensor(owner, device=device)  # (T,)
    offset_t = torch.tensor(offset, device=device)
    inputs = seq[n_prompt + owner_t + 1 + offset_t]  # suffix token k of candidate i is seq[P + i + 1 + k]
    targets = seq[n_prompt + owner_t + 2 + offset_t]
    positions = n_prompt + owner_t + offset_t  # shifted down by one: token P + i was deleted
    total = owner_t.shape[0]

    sees_past = torch.arange(length, device=device)[None, :] < (n_prompt + owner_t)[:, None]  # (T, L)
    packed = torch.arange(total, device=device)
    sees_packed = (owner_t[:, None] == owner_t[None, :]) & (packed[None, :] <= packed[:, None])  # (T, T)
    allowed = torch.cat([sees_past, sees_packed], dim=1)
    dtype = layers[0][0].dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)

    out = run_decoder(
        model, DynamicCache(ddp_cache_data=layers), input_ids=inputs[None], attention_mask=mask[None, None],
        position_ids=positions[None], use_cache=True,
    )
    hidden = out.last_hidden_state[0]  # (T, d)
    stats.add(1, total)
    # packed token k of candidate i predicts seq[P + i + 2 + k], at candidate-sequence index P + i + 1 + k
    counted = (positions + 1) >= start
    logp = target_logprobs(model, hidden[counted], targets[counted])
    scores.index_add_(0, owner_t[counted], logp)
    if keep is not None:
        best = max(suffixes, key=lambda i: (float(scores[i]), -i))
        if keep.wants(best, float(scores[best])):
            first = owner.index(best)
            rows = slice(first, first + suffixes[best])
            row_logp = torch.zeros(total, dtype=logp.dtype, device=device).masked_scatter_(counted, logp)
            keep.offer(Continuation(
                cut=best,
                score=float(scores[best]),
                layers=[(layer.keys[:, :, length:][:, :, rows].clone(), layer.values[:, :, length:][:, :, rows].clone())
                        for layer in output_cache(out).layers],
                hidden=hidden[rows].clone(),
                logp=row_logp[rows],
            ))
