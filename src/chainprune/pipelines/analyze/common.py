"""What the analyses share: reading trace records with the fields an analysis needs, keep-fraction grids, CSV."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import RecordError, decode_lines
from chainprune.types import Trace

Track = Callable[[Iterable, int, str], Iterable]  # (items, total, description) -> items, e.g. a progress bar


def no_track(items: Iterable, total: int, description: str) -> Iterable:
    return items


def read_records(path: Path, required: Sequence[str] = ("id", "tokens")) -> tuple[list[tuple[int, dict]], list[RecordError]]:
    """Every JSON object of a JSONL file having `required` fields, with its line; errors for the others."""
    records = []
    decoded, errors = decode_lines(path)
    for number, record in decoded:
        if not isinstance(record, dict):
            errors.append(RecordError(number, None, "expected a JSON object"))
            continue
        missing = [k for k in required if k not in record]
        if missing:
            errors.append(RecordError(number, str(record.get("id")) if "id" in record else None,
                                      f"missing field(s) {', '.join(map(repr, missing))}"))
            continue
        records.append((number, record))
    return records, sorted(errors, key=lambda e: e.line)


def read_trace_records(path: Path, required: Sequence[str]) -> tuple[list[tuple[int, Trace]], list[RecordError]]:
    """Every trace-like record (a trace, annotated or not, or a matched record) of a JSONL file having
    `required` fields, read as a `Trace` (`Trace.from_json(partial=True)`: only those fields are read), with
    its line; errors for the others."""
    records, errors = read_records(path, required)
    traces = []
    for number, record in records:
        try:
            traces.append((number, Trace.from_json(record, partial=True)))
        except (TypeError, ValueError) as e:
            errors.append(RecordError(number, str(record["id"]), f"{type(e).__name__}: {e}"))
    return traces, sorted(errors, key=lambda e: e.line)



DEFAULT_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def fractions_reached(fractions: Sequence[float] | None, smallest: float) -> list[float]:
    """The keep fractions asked for (default `DEFAULT_FRACTIONS`) down to `smallest`, the lowest one reached."""
    return [r for r in (fractions or DEFAULT_FRACTIONS) if r >= smallest - 1e-12]


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def reasons(failures: Sequence[RecordError]) -> str:
    """The first failures, to say why nothing could be analysed."""
    return "".join(f"; {f}" for f in failures[:3]) + ("; ..." if len(failures) > 3 else "")
