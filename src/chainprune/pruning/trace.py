"""A prune's trace: the greedy result of one tokenized chain as the record every other tool reads."""

from __future__ import annotations

from collections.abc import Sequence

from chainprune.keep import keep_key
from chainprune.models import LoadedModel
from chainprune.pruning.greedy import GreedyResult
from chainprune.types import ChainIds, PrunedChain, Trace, TraceToken


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
