"""Plain records that travel between layers: a chain to prune, its tokenization, and the trace of a prune.

Nothing here knows about models or files; `Trace.to_json` / `Trace.from_json` define the trace format that
every other tool (and outside checks) read. The format is documented in DESIGN.md and README.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from chainprune.keep import deletions_for

OBJECTIVES = ("joint", "answer")


@dataclass(frozen=True)
class Chain:
    """One question/reasoning/answer example, as read from an input line."""

    id: str
    question: str
    reasoning: str
    answer: str
    system: str | None = None


@dataclass(frozen=True)
class ChainIds:
    """A chain tokenized once, in context. `prompt_ids + reasoning_ids + answer_ids` is what the pruner scores."""

    prompt_ids: list[int]
    reasoning_ids: list[int]
    answer_ids: list[int]
    # Text of each reasoning token, sliced from the rendered conversation (so it concatenates to the reasoning).
    reasoning_texts: list[str] = field(default_factory=list)

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.reasoning_ids + self.answer_ids


@dataclass
class TraceToken:
    position: int
    text: str
    deleted_step: int | None  # 1-based step at which the token was deleted; None if still kept at the end
    category: str | None = None  # functional category, set by `chainprune annotate` (absent otherwise)


@dataclass
class PrunedChain:
    text: str
    num_tokens: int


@dataclass
class Trace:
    """The full record of pruning one chain: every deletion in order, and the objective after each."""

    id: str
    pruner: str
    objective: str
    prompt_ids: list[int]
    reasoning_ids: list[int]
    answer_ids: list[int]
    deletion_order: list[int]  # original reasoning positions, in the order deleted
    objective_values: list[float]  # [0] unpruned; [s] after s deletions
    tokens: list[TraceToken]
    pruned: dict[str, PrunedChain]  # keyed by str(keep_fraction), e.g. "0.5"
    engine: str = "prefix"
    dtype: str = "float32"
    token_forwards: int = 0
    mode: dict[str, Any] | None = None  # set only by approximate modes

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        if record["mode"] is None:
            del record["mode"]
        for token in record["tokens"]:
            if token["category"] is None:
                del token["category"]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Trace:
        record = dict(record)
        record["tokens"] = [TraceToken(**t) for t in record["tokens"]]
        record["pruned"] = {k: PrunedChain(**v) for k, v in record["pruned"].items()}
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in known})

    def kept_positions(self, keep_fraction: float) -> list[int]:
        """Reasoning positions still present at `keep_fraction` (must be one the trace was pruned to or above)."""
        n = len(self.reasoning_ids)
        deleted = set(self.deletion_order[: deletions_for(n, keep_fraction)])
        return [i for i in range(n) if i not in deleted]
