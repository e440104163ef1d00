"""What every pipeline run shares: the reporter it tells, the summary it returns, the output it appends to and
resumes, and the errors file beside it.

A run writes one JSONL record per finished example (`data.jsonl`). `open_output` does what comes before the
first record: refuse an output that already holds records unless resuming or overwriting; when overwriting,
clear it and its sidecar files; when resuming, refuse settings that differ from those saved beside it and cut
off a partial last line a crash left, returning the ids already done. `RunOutput.save_settings` then writes
the run's settings beside the output, so a later resume can check them. Bad records go to
`<out>.errors.jsonl` (`write_errors`).

This module knows files, ids and settings, not what the records hold. Pipelines (above it) and the report's
progress bars and tables (beside them) import it; it imports neither.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import RecordError, check_resume_settings, refuse_existing, repair_and_read_ids, save_settings
from chainprune.types import Chain, Trace


class Reporter:
    """What a pipeline tells the outside world; the CLI passes one with progress bars, tests pass none."""

    def start(self, total: int) -> None: ...
    def estimate(self, token_forwards: int, exact: bool) -> None: ...  # of the chains to prune, before the first
    def example(self, chain: Chain, steps: int) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None: ...


class ClusterReporter:
    """What the distributed driver tells the outside world; the CLI passes one with progress, tests may hook in."""

    def start(self, total: int, workers: int) -> None: ...
    def worker_started(self, pid: int, node: str, device: str) -> None: ...
    def worker_died(self, pid: int | None, reason: str) -> None: ...
    def dispatched(self, chain: Chain, pid: int) -> None: ...
    def retried(self, chain: Chain, attempt: int, reason: str) -> None: ...
    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None: ...


@dataclass
class RunSummary:
    """What a run did: records written, examples skipped (already in the output), bad records, warnings."""

    done: int = 0
    skipped: int = 0  # already in the output (resume)
    failures: list[RecordError] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class PruneSummary(RunSummary):
    """A prune run's summary (`prune`, printed by `report.progress.summary_table`)."""

    deletions: int = 0
    token_forwards: int = 0


@dataclass
class DistributedSummary(PruneSummary):
    """A prune run's summary on Ray workers (`prune --ray`)."""

    workers: int = 0
    device: str = "cpu"  # what the workers prune on: cpu or cuda
    retries: int = 0  # chains resubmitted because the worker running them died
    worker_deaths: int = 0


def require_input(path: Path, what: str = "input file") -> None:
    if not Path(path).exists():
        raise ValueError(f"{what} {path} does not exist")
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty")


@dataclass
class RunOutput:
    """An output opened for a run (`open_output`): the ids already in it and what resuming it warned about."""

    path: Path
    resume: bool
    settings: dict[str, Any] | None
    done: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def resume_sidecar(self, path: Path) -> set[str]:
        """When resuming, cut off a partial last line of a sidecar file written with the output; its ids."""
        if not self.resume:
            return set()
        ids, warnings = repair_and_read_ids(path)
        self.warnings += warnings
        return ids

    def save_settings(self) -> None:
        """Write the run's settings beside the output (creating its folder)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        save_settings(self.path, self.settings)


def open_output(
    out: Path,
    resume: bool,
    overwrite: bool,
    settings: dict[str, Any] | None = None,
    result_fields: Sequence[str] = (),
    sidecars: Sequence[Path] = (),
) -> RunOutput:
    """Everything before a run's first record (see the module docstring). `settings`: the run's, whose
    `result_fields` a resumed run must share with the saved ones (None: not checked, not saved). `sidecars`:
    files written beside the output, cleared with it when overwriting (resume them with `resume_sidecar`).
    Raises ValueError when the output may not be written."""
    out = Path(out)
    refuse_existing(out, resume, overwrite)
    if overwrite and not resume:
        for path in (out, *sidecars):
            Path(path).unlink(missing_ok=True)
    output = RunOutput(out, resume, settings)
    if resume:
        if settings is not None:
            check_resume_settings(out, settings, result_fields)
        output.done, output.warnings = repair_and_read_ids(out)
    return output


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def write_errors(out: Path, failures: Sequence[RecordError]) -> None:
    """The run's bad records beside its output, one JSON object a line; no file when there are none."""
    path = errors_path(out)
    if not failures:
        path.unlink(missing_ok=True)
        return
    path.write_text("".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in failures))
