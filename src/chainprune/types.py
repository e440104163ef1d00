"""Plain records that travel between layers: a chain to prune, its tokenization, and the trace of a prune.

Nothing here knows about models or files; `Trace.to_json` / `Trace.from_json` define the trace format that
every other tool (and outside checks) read, and `MatchedRecord` the records of `baseline` and `match`: a
deletion order cut at matched lengths in a student's tokenizer.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field
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
    # scoring options not at their defaults (`scoring.engine.ScoringOptions`: speed and memory only, never the
    # scores); left out of the JSON when all are at their defaults
    options: dict[str, Any] | None = None
    # Deletion by larger units (`chainprune.units`): "word", "sentence" or "step", and each unit's token span [start,
    # end) in reasoning order. Then `deletion_order` lists a unit's tokens together (in position order), the
    # tokens of a unit share their `deleted_step`, and `objective_values[s]` follows s unit deletions.
    # Both are left out of the JSON for token traces (the paper's).
    unit: str = "token"
    units: list[list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        for optional in ("mode", "options"):
            if record[optional] is None:
                del record[optional]
        if record["unit"] == "token":
            del record["unit"], record["units"]
        for token in record["tokens"]:
            if token["category"] is None:
                del token["category"]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any], partial: bool = False) -> Trace:
        """The trace a JSON record holds (fields it does not know are left out). With `partial`, fields without
        a default that the record lacks are None: for readers of trace-like records (annotated, matched) that
        need only some fields and check those first; `pruned` then keeps each cut's text and token count."""
        if partial:
            return cls._partial(record)
        record = dict(record)
        record["tokens"] = [TraceToken(**t) for t in record["tokens"]]
        record["pruned"] = {k: PrunedChain(**v) for k, v in record["pruned"].items()}
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in known})

    @classmethod
    def _partial(cls, record: dict[str, Any]) -> Trace:
        fields = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        if "tokens" in fields:
            fields["tokens"] = [TraceToken(**t) for t in fields["tokens"]]
        if "pruned" in fields:
            if not all(isinstance(v, dict) for v in fields["pruned"].values()):
                raise TypeError("each value of 'pruned' must be an object")
            fields["pruned"] = {k: PrunedChain(v.get("text"), v.get("num_tokens")) for k, v in fields["pruned"].items()}
        fields_ = cls.__dataclass_fields__.items()
        required = [k for k, f in fields_ if f.default is MISSING and f.default_factory is MISSING]
        return cls(**{**dict.fromkeys(required), **fields})

    @property
    def ids(self) -> ChainIds:
        """The tokenized chain the trace pruned, with each reasoning token's text."""
        texts = [t.text for t in sorted(self.tokens or [], key=lambda t: t.position)]  # none in a partial record
        return ChainIds(self.prompt_ids, self.reasoning_ids, self.answer_ids, reasoning_texts=texts)

    @property
    def smallest_keep(self) -> float:
        """The smallest keep fraction the trace was pruned to (1.0 when none)."""
        return min((float(k) for k in self.pruned or {}), default=1.0)

    def step_sizes(self) -> list[int]:
        """Tokens deleted at each step, in order: all 1 for a token trace; a unit's length for a unit trace."""
        if self.unit == "token":
            return [1] * len(self.deletion_order)
        sizes: dict[int, int] = {}
        for token in self.tokens:
            if token.deleted_step is not None:
                sizes[token.deleted_step] = sizes.get(token.deleted_step, 0) + 1
        return [sizes[step] for step in sorted(sizes)]

    def deletions_at(self, keep_fraction: float) -> int:
        """How many of `deletion_order`'s tokens are deleted at `keep_fraction`: n - floor(n r) for a token trace;
        for a unit trace, the fewest whole unit deletions that leave at most floor(n r) tokens."""
        n = len(self.reasoning_ids if self.reasoning_ids is not None else self.tokens)
        need = deletions_for(n, keep_fraction)
        if self.unit == "token":
            return need
        return units_covering(self.step_sizes(), need)

    def kept_positions(self, keep_fraction: float) -> list[int]:
        """Reasoning positions still present at `keep_fraction` (must be one the trace was pruned to or above)."""
        n = len(self.reasoning_ids)
        deleted = set(self.deletion_order[: self.deletions_at(keep_fraction)])
        return [i for i in range(n) if i not in deleted]

    def kept_text(self, keep_fraction: float) -> str:
        """The reasoning kept at `keep_fraction`, joined from the tokens' texts (any keep the trace reaches)."""
        gone = set(self.deletion_order[: self.deletions_at(keep_fraction)])
        return "".join(t.text for t in self.tokens if t.position not in gone)


def units_covering(step_sizes: list[int], need: int) -> int:
    """Tokens deleted by the fewest leading steps (of `step_sizes` tokens each) that delete at least `need`."""
    done = 0
    for size in step_sizes:
        if done >= need:
            break
        done += size
    if done < need:
        raise ValueError(f"the trace deletes {done} tokens, fewer than the {need} asked for")
    return done


@dataclass
class MatchedCut(PrunedChain):
    """A deletion order cut where the kept reasoning comes closest to a target length in the student's tokens."""

    student_tokens: int
    student_fraction: float
    target_student_tokens: int
    deletions: int
    order_exhausted: bool  # the order ran out before the target was reached (a trace pruned too little: prune further)


@dataclass
class MatchedRecord:
    """A record of `baseline` or `match`: a deletion order (a baseline ranker's, or a greedy trace's) cut at
    matched lengths in a student's tokenizer. Trace-like (ids, `deletion_order`, `tokens`, `pruned` as in a
    trace), plus `method`, the student-token numbers and, for scored methods, each reasoning token's score."""

    id: str
    method: str
    # what made the order, written after `method` in this order: `pruner` and `student_tokenizer`, then by
    # method `seed` (uniform), `classifier` (tokenskip), `surrogate` (surrogate), `objective` and `mode` (greedy traces; `mode` only for
    # approximate ones)
    settings: dict[str, Any]
    prompt_ids: list[int]
    reasoning_ids: list[int]
    answer_ids: list[int]
    deletion_order: list[int]
    tokens: list[TraceToken]
    student_tokens: int  # of the whole reasoning
    pruned: dict[str, MatchedCut]  # keyed by str(keep_fraction)
    scores: list[float] | None = None  # scored methods: each reasoning token's importance

    def to_json(self) -> dict[str, Any]:
        record = {"id": self.id, "method": self.method, **self.settings}
        record.update(
            prompt_ids=self.prompt_ids,
            reasoning_ids=self.reasoning_ids,
            answer_ids=self.answer_ids,
            deletion_order=self.deletion_order,
            tokens=[{"position": t.position, "text": t.text, "deleted_step": t.deleted_step} for t in self.tokens],
            student_tokens=self.student_tokens,
            pruned={key: asdict(cut) for key, cut in self.pruned.items()},
        )
        if self.scores is not None:
            record["scores"] = self.scores
        return record
