"""The `naive` engine: every deletion candidate scored by a full forward of its whole sequence.

What the paper did (with vLLM). It is the reference the fast engines are tested against, so it stays plain:
build each candidate sequence, run it from the first token, sum its log-probabilities.
"""

from __future__ import annotations

from typing import Any

import torch

from chainprune.scoring.engine import Engine, PassShape, ScoreRequest
from chainprune.scoring.objectives import objective_start, sequence_objectives


@torch.no_grad()
def score_naive(model: Any, request: ScoreRequest) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after each candidate deletion, float64): a candidate deletes
    reasoning tokens [start, end) of `request.spans` (by default, one candidate per reasoning token).

    With `request.positions`, only those candidates are scored; the others are NaN. It reads nothing of the
    request's cache: the reference recomputes everything from the token ids.
    """
    ids, objective, stats, max_batch_tokens = request.ids, request.objective, request.stats, request.max_batch_tokens
    n_prompt, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    device = next(model.parameters()).device
    seq = torch.tensor(ids.input_ids, device=device)  # (L,)
    length = seq.shape[0]
    base = float(sequence_objectives(model, seq[None], objective_start(n_prompt, m, objective), stats)[0])
    spans = request.candidates
    scores = torch.full((len(spans),), float("nan"), dtype=torch.float64)
    wanted = request.wanted(len(spans))
    for width in sorted({spans[k][1] - spans[k][0] for k in wanted}):
        start = objective_start(n_prompt, m - width, objective)  # candidate sequences hold m - width reasoning tokens
        rows_per_batch = max(1, max_batch_tokens // (length - width))
        steps = torch.arange(length - width, device=device)
        alike = [k for k in wanted if spans[k][1] - spans[k][0] == width]
        for first in range(0, len(alike), rows_per_batch):
            batch = alike[first : first + rows_per_batch]
            deleted = n_prompt + torch.tensor([spans[k][0] for k in batch], device=device)  # (rows,)
            # Row r skips sequence indices deleted[r] to deleted[r] + width: index k reads seq[k] before them and
            # seq[k + width] from them on.
            candidates = seq[steps[None, :] + width * (steps[None, :] >= deleted[:, None]).long()]  # (rows, L - width)
            scores[batch] = sequence_objectives(model, candidates, start, stats).cpu()
    return base, scores


def count_naive(shape: PassShape) -> int:
    """Token-forwards of one pass: the chain as it stands, then every candidate sequence in full."""
    return shape.length + sum(shape.length - (b - a) for a, b in shape.spans)


NAIVE = Engine("naive", score_naive, count=count_naive)
