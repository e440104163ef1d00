"""JSONL I/O for every stage: validated chain input, crash-safe append-per-record output, resume.

Bad input never stops a run: each problem is reported as a `RecordError` naming the line (and id when
known), and the good records go on. Output is appended one record per line, flushed and fsynced as each
record finishes, so a killed run loses at most the record in progress; a partial last line left by a crash
is detected and cut off on resume rather than parsed as a record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from chainprune.types import Chain, Trace

T = TypeVar("T")

CHAIN_FIELDS = ("id", "question", "reasoning", "answer")


@dataclass
class RecordError:
    line: int | None
    id: str | None
    message: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        if self.id is not None:
            where.append(f"id {self.id!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "error": self.message}


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line


def decode_lines(path: Path) -> tuple[list[tuple[int, Any]], list[RecordError]]:
    """(line number, decoded JSON value) of every non-blank line that is valid JSON, and an error for each
    line that is not."""
    decoded: list[tuple[int, Any]] = []
    errors: list[RecordError] = []
    for number, line in read_lines(path):
        try:
            decoded.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            errors.append(RecordError(number, None, f"not valid JSON ({e.msg} at column {e.colno})"))
    return decoded, errors


def parse_chain(record: Any) -> Chain:
    """A validated Chain from one decoded JSON value; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in CHAIN_FIELDS if k not in record]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    if not isinstance(record["id"], (str, int)) or isinstance(record["id"], bool):
        raise ValueError(f"field 'id' must be a string or integer, got {type(record['id']).__name__}")
    for key in ("question", "reasoning", "answer"):
        if not isinstance(record[key], str):
            raise ValueError(f"field {key!r} must be a string, got {type(record[key]).__name__}")
    system = record.get("system")
    if system is not None and not isinstance(system, str):
        raise ValueError(f"field 'system' must be a string, got {type(system).__name__}")
    return Chain(str(record["id"]), record["question"], record["reasoning"], record["answer"], system or None)


def read_valid(path: Path, parse: Callable[[Any], T]) -> tuple[list[tuple[int, str, T]], list[RecordError]]:
    """(line number, id, parse(record)) for every valid line, and an error for every bad one (duplicate ids
    included). `parse` raises ValueError for an invalid record, and checks its `id` (kept as a string)."""
    valid: list[tuple[int, str, T]] = []
    decoded, errors = decode_lines(path)
    first_seen: dict[str, int] = {}
    for number, record in decoded:
        record_id = str(record["id"]) if isinstance(record, dict) and record.get("id") is not None else None
        try:
            value = parse(record)
        except ValueError as e:
            errors.append(RecordError(number, record_id, str(e)))
            continue
        if record_id in first_seen:
            errors.append(RecordError(number, record_id, f"duplicate id (first seen on line {first_seen[record_id]})"))
            continue
        first_seen[record_id] = number
        valid.append((number, record_id, value))
    return valid, sorted(errors, key=lambda e: e.line)


def read_chains(path: Path) -> tuple[list[tuple[int, Chain]], list[RecordError]]:
    """Every valid chain with its line number, and an error for every bad line (duplicates included)."""
    valid, errors = read_valid(path, parse_chain)
    return [(number, chain) for number, _, chain in valid], errors


def repair_and_read_ids(path: Path) -> tuple[set[str], list[str]]:
    """Ids of the complete records in an output file, cutting off a partial last line left by a crash.

    Returns (ids, warnings). A line that does not parse is never counted as done.
    """
    path = Path(path)
    if not path.exists():
        return set(), []
    data = path.read_bytes()
    warnings = []
    good_end = data.rfind(b"\n") + 1  # everything after the last newline is an unfinished write
    if good_end < len(data):
        warnings.append(f"{path}: cut off a partial last line ({len(data) - good_end} bytes) left by an interrupted run")
        with path.open("r+b") as f:
            f.truncate(good_end)
    ids = set()
    for number, line in enumerate(data[:good_end].decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            warnings.append(f"{path}: line {number} is not a complete record; ignored (its example will be redone)")
    return ids, warnings


class JsonlAppender:
    """Appends one JSON record per line, durably (flush + fsync per record)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# every field a `Trace` needs; readers of only some of them ask for fewer
TRACE_FIELDS = tuple(f.name for f in fields(Trace) if f.default is MISSING and f.default_factory is MISSING)


def read_traces(path: Path, required: Sequence[str] = ("id", "deletion_order", "pruned")) -> Iterator[dict[str, Any]]:
    """The records of a traces file (from `chainprune prune`; also trace-like records of `baseline` and `match`),
    each checked to hold the `required` fields: ValueError naming the file and line of the first that does not
    (invalid JSON; chains or other records)."""
    for number, line in read_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
        missing = [name for name in required if name not in record] if isinstance(record, dict) else required
        if missing:
            raise ValueError(f"{path}, line {number}: not a trace of `chainprune prune` "
                             f"(no {', '.join(missing)})")
        yield record


def config_path(out: Path) -> Path:
    """Where a run writing `out` keeps its settings."""
    return out.with_name(out.name + ".config.json")


def refuse_existing(out: Path, resume: bool, overwrite: bool) -> None:
    """ValueError when `out` already holds records and neither resuming nor replacing it was asked for."""
    if out.exists() and out.stat().st_size > 0 and not (resume or overwrite):
        raise ValueError(f"{out} already exists: pass --resume to continue it or --overwrite to replace it")


def check_resume_settings(out: Path, settings: dict[str, Any], result_fields: Sequence[str]) -> None:
    """Refuse to resume `out` with settings that would change its records (those saved beside it differ)."""
    path = config_path(out)
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    differ = [k for k in result_fields if k in saved and saved[k] != settings[k]]
    if differ:
        detail = ", ".join(f"{k}: {saved[k]!r} -> {settings[k]!r}" for k in differ)
        raise ValueError(f"{out} was written with other settings ({detail}); use another --out or the same settings")


def save_settings(out: Path, settings: dict[str, Any]) -> None:
    config_path(out).write_text(json.dumps(settings, indent=2) + "\n")
