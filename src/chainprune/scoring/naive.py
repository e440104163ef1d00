"""The `naive` engine: every deletion candidate scored by a full forward of its whole sequence.

What the paper did (with vLLM). It is the reference the fast engines are tested against, so it stays plain:
build each candidate sequence, run it from the first token, sum its log-probabilities.
"""

from __future__ import annotations

from typing import Any

import torch

from chainprune.scoring.engine import Engine
from chainprune.scoring.logprobs import ForwardStats
from chainprune.scoring.objectives import objective_start, sequence_objectives
from chainprune.types import ChainIds


@torch.no_grad()
def score_naive(
    model: Any,
    ids: ChainIds,
    objective: str,
    max_batch_tokens: int,
    stats: ForwardStats,
    positions: list[int] | None = None,
) -> tuple[float, torch.Tensor]:
    """(objective of the current chain, objective after deleting each reasoning token (m,) float64).

    With `positions`, only those candidates are scored; the others are NaN. It takes nothing computed
    before: the reference recomputes everything from the token ids.
    """
    n_prompt, m = len(ids.prompt_ids), len(ids.reasoning_ids)
    device = next(model.parameters()).device
    seq = torch.tensor(ids.input_ids, device=device)  # (L,)
    length = seq.shape[0]
    base = float(sequence_objectives(model, seq[None], objective_start(n_prompt, m, objective), stats)[0])
    scores = torch.full((m,), float("nan"), dtype=torch.float64)
    if m == 0:
        return base, scores

    start = objective_start(n_prompt, m - 1, objective)  # candidate sequences hold m - 1 reasoning tokens
    rows_per_batch = max(1, max_batch_tokens // (length - 1))
    steps = torch.arange(length - 1, device=device)
    wanted = list(range(m)) if positions is None else sorted(positions)
    for first in range(0, len(wanted), rows_per_batch):
        batch = wanted[first : first + rows_per_batch]
        deleted = n_prompt + torch.tensor(batch, device=device)  # (rows,)
        # Row r skips sequence index deleted[r]: index k reads seq[k] before it and seq[k + 1] from it on.
        candidates = seq[steps[None, :] + (steps[None, :] >= deleted[:, None]).long()]  # (rows, L - 1)
        scores[batch] = sequence_objectives(model, candidates, start, stats).cpu()
    return base, scores


NAIVE = Engine("naive", score_naive)
