"""The pruning objectives, as the first target position they count, and a plain reference scorer.

Both objectives are sums of natural-log next-token probabilities under teacher forcing, conditioned on the
prompt: `joint` counts every token of (remaining reasoning + answer), `answer` only the answer tokens. In a
sequence prompt + reasoning + answer (lengths P, m, A) that is every target position >= `objective_start`.
The states engines build on (the chain's forward, a candidate's continuation) are in `chain_state`.
"""

from __future__ import annotations

from typing import Any

import torch

from chainprune.scoring.logprobs import ForwardStats, decoder, target_logprobs
from chainprune.types import OBJECTIVES


def objective_start(n_prompt: int, n_reasoning: int, objective: str) -> int:
    """Index of the first token whose log-probability the objective counts."""
    if objective == "joint":
        return n_prompt
    if objective == "answer":
        return n_prompt + n_reasoning
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


@torch.no_grad()
def sequence_objectives(model: Any, input_ids: torch.Tensor, start: int, stats: ForwardStats) -> torch.Tensor:
    """Full forward of each row of input_ids (batch, T); sum of log p(token) for tokens at index >= start."""
    batch, length = input_ids.shape
    hidden = decoder(model)(input_ids=input_ids, use_cache=False).last_hidden_state  # (batch, T, d)
    stats.add(batch, length)
    rows = hidden[:, start - 1 : length - 1].reshape(-1, hidden.shape[-1])
    logp = target_logprobs(model, rows, input_ids[:, start:].reshape(-1))
    return logp.view(batch, -1).sum(dim=1)


@torch.no_grad()
def reference_objective(model: Any, input_ids: list[int], start: int) -> float:
    """The objective by the plainest route: the model's own forward and logits. Used to check engines."""
    ids = torch.tensor([input_ids], device=next(model.parameters()).device)
    logits = model(input_ids=ids).logits[0].double()  # (T, vocab)
    logp = torch.log_softmax(logits, dim=-1)[start - 1 : -1]
    return float(logp.gather(1, ids[0, start:, None]).sum())

