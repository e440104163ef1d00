"""The `--save-scores` sidecar: every scoring pass's candidate objectives, one JSONL record per trace.

Beside `TRACES.jsonl`, `TRACES.jsonl.scores.jsonl` holds per trace id
`{"id": ..., "n": n, "passes": [{"deleted": d, "scores": "<base64 float32>"}, ...]}`: pass k was scored after
`d` deletions, on the reasoning positions remaining then (all of `range(n)` except the trace's
`deletion_order[:d]`, in increasing order); `scores[j]` is the objective after deleting the j-th of them
(NaN where a screened pass did not score it). float32 rather than float16: neighbouring candidates often differ
by less than float16's resolution at objective values of -100. Appended per record like the traces; when a
crash left an id twice, the last record wins.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chainprune.data.jsonl import RecordError, decode_lines


def scores_path(traces: Path) -> Path:
    return Path(traces).with_name(Path(traces).name + ".scores.jsonl")


@dataclass
class ScorePass:
    deleted: int  # deletions made before this pass
    scores: np.ndarray  # (len(remaining),) float32, aligned with the remaining positions in increasing order

    def remaining(self, deletion_order: Sequence[int], n: int) -> list[int]:
        gone = set(deletion_order[: self.deleted])
        return [i for i in range(n) if i not in gone]


@dataclass
class ScoreRecorder:
    """Collects the passes of one prune; pass `self.observe` as `on_scores`, then `to_json(id, n)`."""

    passes: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (remaining count, scores)

    def observe(self, remaining: Sequence[int], scores: Sequence[float]) -> None:
        self.passes.append((len(remaining), np.asarray(scores, dtype=np.float32)))

    def to_json(self, trace_id: str, n: int) -> dict[str, Any]:
        passes = [encode_pass(ScorePass(n - count, scores)) for count, scores in self.passes]
        return {"id": trace_id, "n": n, "passes": passes}


def encode_pass(p: ScorePass) -> dict[str, Any]:
    data = np.ascontiguousarray(p.scores, dtype="<f4").tobytes()
    return {"deleted": p.deleted, "scores": base64.b64encode(data).decode("ascii")}


def decode_record(record: dict[str, Any]) -> tuple[int, list[ScorePass]]:
    """(n, passes) of one sidecar record; ValueError when it is malformed."""
    try:
        n = int(record["n"])
        passes = []
        for p in record["passes"]:
            scores = np.frombuffer(base64.b64decode(p["scores"], validate=True), dtype="<f4").astype(np.float32)
            if len(scores) != n - int(p["deleted"]):
                raise ValueError(f"a pass after {p['deleted']} deletions has {len(scores)} scores, expected {n - int(p['deleted'])}")
            passes.append(ScorePass(int(p["deleted"]), scores))
    except (KeyError, TypeError, ValueError, base64.binascii.Error) as e:
        raise ValueError(f"malformed scores record: {e}") from None
    return n, passes


def load_scores(path: Path) -> tuple[dict[str, tuple[int, list[ScorePass]]], list[RecordError]]:
    """(id -> (n, passes), errors): a bad line is reported and skipped; the last record of an id wins
    (a crash between writing the sidecar and the trace can repeat one)."""
    by_id: dict[str, tuple[int, list[ScorePass]]] = {}
    decoded, errors = decode_lines(path)
    for number, record in decoded:
        record_id = str(record["id"]) if isinstance(record, dict) and "id" in record else None
        try:
            if record_id is None:
                raise ValueError("missing field 'id'")
            by_id[record_id] = decode_record(record)
        except ValueError as e:
            errors.append(RecordError(number, record_id, str(e)))
    return by_id, sorted(errors, key=lambda e: e.line)
