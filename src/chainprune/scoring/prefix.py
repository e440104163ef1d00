"""The `prefix` engine: one forward of the current chain, its KV cache shared by every deletion candidate.

Deleting reasoning token i (sequence index p = P + i), or the tokens of a span from i, changes nothing before p: the keys/values and the
log-probabilities of tokens before p are those of the current chain. Candidates are grouped in chunks of
neighbouring positions [a, b). For a chunk, the cache is cropped to the shared prefix (P + a tokens) and
expanded over the chunk's rows; row r holds the tokens from P + a to the end with token a + r left out, so
every row has the same length and the chunk is one plain batched forward. Per candidate:

    objective = (counted base log-probs of targets before P + a)            # unchanged prefix
              + log p(first target | base hidden state at P + a - 1)          # last prefix position
              + sum of log p over the row's own hidden states                 # the recomputed suffix

Same numbers as `naive` to rounding; far fewer token-forwards since the prefix is never recomputed.
Chunk width trades redundant work (row r recomputes r tokens before its deletion) against the number of
forwards: a chunk is at most a quarter of its suffix length wide, and rows x held tokens stay within
`max_batch_tokens`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from chainprune.scoring.engine import Engine, PassShape, ScoreRequest
from chainprune.scoring.logprobs import run_decoder, target_logprobs

MAX_REDUNDANCY = 0.25  # a chunk's width is at most this fraction of its row length


def chunk_width(row_length: int, held_tokens: int, remaining: int, max_batch_tokens: int) -> int:
    by_budget = max_batch_tokens // max(held_tokens, 1)
    by_redundancy = int(row_length * MAX_REDUNDANCY)
    return max(1, min(remaining, by_budget, by_redundancy))


def chunk_plan(
    spans: list[tuple[int, int]], wanted: list[int], n_prompt: int, m: int, length: int, max_batch_tokens: int
) -> list[tuple[list[int], int, int, int]]:
    """The chunks one pass runs, in order: (its candidates, the first token a they may delete, their width, the
    row length: tokens recomputed per row). A chunk holds the wanted candidates starting in [a, a + span) and as
    wide; `span` from `chunk_width`."""
    plan, k = [], 0
    while k < len(wanted):
        a, end = spans[wanted[k]]
        width = end - a
        row_length = length - n_prompt - a - width - 1  # candidate length (L - width) minus shared prefix minus last token
        span = chunk_width(row_length, length - width, m - a, max_batch_tokens)
        chunk = []
        for j in wanted[k : k + span]:
            if spans[j][0] >= a + span or spans[j][1] - spans[j][0] != width:
                break
            chunk.append(j)
        k += len(chunk)
        plan.append((chunk, a, width, row_length))
    return plan


def count_prefix(shape: PassShape) -> int:
    """Token-forwards of one exact pass over every candidate (the chain's forward given)."""
    spans = list(shape.spans)
    plan = chunk_plan(spans, list(range(len(spans))), shape.n_prompt, shape.m, shape.length, shape.max_batch_tokens)
    return sum(len(chunk) * row_length for chunk, _, _, row_length in plan if row_length > 0)


@torch.no_grad()
def score_prefix(model: Any, request: ScoreRequest) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after each candidate deletion, float64): a candidate deletes
    reasoning tokens [start, end) of `request.spans` (by default, one candidate per reasoning token).

    With `request.positions`, only those candidates are scored; the others are NaN. The chain's forward is the
    request's cache's when it holds one (so it is not run twice). It keeps no suffixes: the rows of a chunk do
    not hold a candidate's suffix alone. A chunk's candidates delete as many tokens each (so its rows are as
    long).
    """
    ids, stats, max_batch_tokens = request.ids, request.stats, request.max_batch_tokens
    m = len(ids.reasoning_ids)
    current = request.current(model)
    seq, n_prompt = current.seq, current.n_prompt
    device, length = seq.device, seq.shape[0]
    spans = request.candidates
    scores = torch.full((len(spans),), float("nan"), dtype=torch.float64, device=device)
    wanted = request.wanted(len(spans))

    for chunk, a, width, row_length in chunk_plan(spans, wanted, n_prompt, m, length, max_batch_tokens):
        shared = n_prompt + a  # tokens of the shared prefix
        rows_in_chunk = len(chunk)
        skipped = torch.tensor([spans[j][0] for j in chunk], device=device)[:, None] - a  # (rows, 1): first token each row leaves out
        # rows[r] = seq[shared:] without its `width` tokens from skipped[r]: (rows, row_length + 1), the last
        # column target only
        cols = torch.arange(row_length + 1, device=device)[None, :]
        rows = seq[shared:][cols + width * (cols >= skipped).long()]
        start = current.start_after(width)
        first_counted = max(0, start - shared)  # column of the first target the objective counts

        # column 0 is predicted by the last shared position, from the current chain's forward
        cut = torch.full((rows_in_chunk,), a, device=device)
        total = current.unchanged_prefix(a) + current.boundary_logp(model, cut, rows[:, 0], start)
        if row_length > 0 and first_counted <= row_length:
            cache = DynamicCache(
                ddp_cache_data=[
                    (keys[:, :, :shared].expand(rows_in_chunk, -1, -1, -1), values[:, :, :shared].expand(rows_in_chunk, -1, -1, -1))
                    for keys, values in current.layers
                ]
            )
            position_ids = torch.arange(shared, shared + row_length, device=device)[None].expand(rows_in_chunk, -1)
            row_hidden = run_decoder(
                model, cache, input_ids=rows[:, :row_length], position_ids=position_ids, use_cache=True
            ).last_hidden_state  # (rows, row_length, d)
            stats.add(rows_in_chunk, row_length)
            # hidden column t predicts rows[:, t + 1]; keep only counted targets
            t0 = max(first_counted - 1, 0)
            picked = row_hidden[:, t0:].reshape(-1, row_hidden.shape[-1])
            logp = target_logprobs(model, picked, rows[:, t0 + 1 :].reshape(-1))
            total += logp.view(rows_in_chunk, -1).sum(dim=1)
        scores[chunk] = total
    return current.base, scores.cpu()


PREFIX = Engine("prefix", score_prefix, reuses_forward=True, count=count_prefix)
