"""`chainprune prune --ray`: the same pruning as `run_prune`, spread over the workers of a Ray cluster.

The driver (this process) reads and validates the chains and applies resume exactly as `run_prune` does, then
hands the chains to workers longest first, keeping at most `queue` chains in flight per worker, so memory stays
bounded however many chains there are. A worker is a Ray actor that loads the pruner once (one per GPU, or one per
CPU slot) and runs `prune_one`, the function of the single-process run, so a trace does not depend on which process
made it. Only the driver writes files: each trace is appended (flushed, fsynced) as it arrives, in completion
order; when every chain is done or failed, the file is rewritten atomically (temp file + `os.replace`) in input
order, so it equals the single-process output byte for byte.

A worker that dies (process killed, node lost) is replaced and the chain it was running is resubmitted; the chains
queued behind it are resubmitted without counting an attempt. A chain that has killed `1 + max_retries` workers is
reported as a failure instead of looping. `ray` is imported only when a run starts.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainprune.data.jsonl import JsonlAppender, RecordError
from chainprune.data.scores import ScoreRecorder, scores_path
from chainprune.pipelines.prune import (
    PruneConfig,
    ScoresWriter,
    default_loader,
    longest_first,
    open_run,
    prune_one,
    surrogate_screener,
)
# ClusterReporter and DistributedSummary are also imported from here (by tests)
from chainprune.run import ClusterReporter, DistributedSummary, Reporter, write_errors
from chainprune.types import Chain, Trace

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RAY_MISSING = "--ray needs the `ray` package: pip install 'chainprune[ray]' (or pip install 'ray>=2.30')"


@dataclass
class RayOptions:
    """Where and how wide to run. None of these change a trace, so they are not result settings."""

    address: str | None = None  # None: start a local Ray instance; "auto": join the cluster running here; or host:port
    workers: int | None = None  # default: one per GPU when the pruner runs on CUDA, else one per CPU of the cluster
    max_retries: int = 2  # times a chain is resubmitted after the worker running it died
    queue: int = 2  # chains in flight per worker: one running, the rest waiting so the worker never idles

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.max_retries < 0 or self.queue < 1:
            raise ValueError("max_retries must be >= 0 and queue >= 1")


class PruneWorker:
    """A Ray actor's body: one pruner, loaded once, pruning one chain per call with the single-process code."""

    def __init__(self, config: PruneConfig, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.config = config
        self.pruner = default_loader(config)
        self.screener = surrogate_screener(config.surrogate, self.pruner) if config.surrogate else None

    def info(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": str(self.pruner.device)}

    def prune(self, line: int, chain: Chain) -> tuple[Trace | None, RecordError | None, dict | None]:
        scores = _CollectedScores() if self.config.save_scores else None
        trace, error = prune_one(self.pruner, chain, line, self.config, Reporter(), scores, self.screener)
        return trace, error, scores.record if scores is not None else None


class _CollectedScores(ScoresWriter):
    """A worker writes no files: it keeps the `--save-scores` record for the driver to append."""

    def __init__(self) -> None:
        super().__init__(None)
        self.record: dict | None = None

    def recorder(self) -> ScoreRecorder:
        return ScoreRecorder()

    def write(self, trace: Trace, recorder: ScoreRecorder | None) -> None:
        if recorder is not None:
            self.record = recorder.to_json(trace.id, len(trace.reasoning_ids))


@dataclass
class _Slot:
    """One worker position: the live actor in it (replaced when it dies) and its chains in submission order."""

    actor: Any = None
    pid: int | None = None
    ready_ref: Any = None  # the actor's info() call while it starts; None once it is up
    queue: deque = field(default_factory=deque)  # ObjectRefs of chains submitted to this actor, oldest first
    start_failures: int = 0


def run_prune_distributed(
    input_path: Path,
    out: Path,
    config: PruneConfig,
    options: RayOptions | None = None,
    resume: bool = False,
    overwrite: bool = False,
    reporter: ClusterReporter | None = None,
) -> DistributedSummary:
    """Prune every chain in `input_path` into `out` on Ray workers; the output equals `run_prune`'s.

    Raises ValueError for unusable settings or files, ImportError without ray, RuntimeError when workers
    cannot be started (what was written stays, for --resume).
    """
    options = options or RayOptions()
    options.validate()
    input_path, out = Path(input_path), Path(out)
    reporter = reporter or ClusterReporter()
    summary = DistributedSummary()
    chains, todo = open_run(input_path, out, config, resume, overwrite, summary)

    started = time.perf_counter()
    if todo:
        ray, started_ray = _connect(options.address)
        try:
            _Driver(ray, config, options, reporter, summary).run(longest_first(todo), out)
        finally:
            if started_ray:
                ray.shutdown()
    else:
        reporter.start(0, 0)
    # Every chain is now done or failed: put the records in input order, as a single process writes them.
    order = [chain.id for _, chain in chains]
    summary.warnings += rewrite_in_order(out, order)
    if config.save_scores:
        summary.warnings += rewrite_in_order(scores_path(out), order, keep="last")
    summary.failures.sort(key=lambda e: (e.line is None, e.line or 0))
    summary.seconds = time.perf_counter() - started
    write_errors(out, summary.failures)
    return summary


def _connect(address: str | None):
    """(ray module, whether this call started Ray). An existing connection of this process is used as it is."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    if ray.is_initialized():
        return ray, False
    import logging

    # Workers' own logs stay in Ray's session folder (/tmp/ray/session_latest/logs); they would break the bars.
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = " (start one with `ray start --head`, or leave out --ray-address for a local one)" if address else ""
        raise RuntimeError(f"could not connect to {where}{hint}: {e}") from e
    return ray, True


class _Driver:
    """Hands chains to workers, collects traces, replaces dead workers. One instance per run."""

    def __init__(self, ray, config: PruneConfig, options: RayOptions, reporter: ClusterReporter,
                 summary: DistributedSummary):
        self.ray, self.config, self.options, self.reporter, self.summary = ray, config, options, reporter, summary
        self.count, self.actor_options, self.threads = plan_workers(config, options, ray.cluster_resources())
        summary.workers = self.count
        summary.device = "cuda" if "num_gpus" in self.actor_options else "cpu"
        self.worker_class = ray.remote(PruneWorker)
        self.slots = [_Slot() for _ in range(self.count)]
        self.in_flight: dict[Any, tuple[_Slot, int, Chain]] = {}  # ObjectRef -> (slot, line, chain)
        self.attempts: dict[str, int] = {}
        errors = ray.exceptions
        # Ways a task's worker process can be lost; anything else a task raises is the chain's own error.
        self.deaths = (errors.RayActorError, errors.WorkerCrashedError, errors.OutOfMemoryError, errors.NodeDiedError,
                       errors.LocalRayletDiedError)

    def run(self, todo: list[tuple[int, Chain]], out: Path) -> None:
        self.pending = deque(todo)
        self.reporter.start(len(todo), self.count)
        try:
            for slot in self.slots:
                self._start(slot)
            scores_file = JsonlAppender(scores_path(out)) if self.config.save_scores else nullcontext()
            with JsonlAppender(out) as traces, scores_file as scores:
                self.traces, self.scores = traces, scores
                while self.in_flight or self.pending:
                    waiting = list(self.in_flight) + [s.ready_ref for s in self.slots if s.ready_ref is not None]
                    if not waiting:
                        raise RuntimeError("no worker is running and none is starting")  # unreachable by design
                    ready, _ = self.ray.wait(waiting, num_returns=1)
                    ref = ready[0]
                    slot = next((s for s in self.slots if s.ready_ref == ref), None)
                    if slot is not None:
                        self._worker_ready(slot, ref)
                    elif ref in self.in_flight:  # (a dead worker's refs were already taken out)
                        self._collect(ref)
                    self._fill()
        finally:
            for slot in self.slots:
                if slot.actor is not None:
                    self.ray.kill(slot.actor, no_restart=True)

    # -- workers --------------------------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        slot.actor = self.worker_class.options(**self.actor_options).remote(self.config, self.threads)
        slot.pid, slot.queue = None, deque()
        slot.ready_ref = slot.actor.info.remote()

    def _worker_ready(self, slot: _Slot, ref) -> None:
        slot.ready_ref = None
        try:
            info = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            # A worker that cannot load the pruner (bad model, out of memory) is not the fault of any chain.
            slot.start_failures += 1
            self.reporter.worker_died(None, _reason(e))
            if slot.start_failures > self.options.max_retries:
                tries = f"{slot.start_failures} attempt{'s' if slot.start_failures > 1 else ''}"
                raise RuntimeError(f"a Ray worker could not start ({tries}): {_reason(e)}") from None
            self.ray.kill(slot.actor, no_restart=True)
            self._start(slot)
            return
        slot.pid, slot.start_failures = info["pid"], 0
        self.reporter.worker_started(info["pid"], info["node"], info["device"])

    def _fill(self) -> None:
        for slot in self.slots:
            while slot.ready_ref is None and slot.actor is not None and self.pending and len(slot.queue) < self.options.queue:
                line, chain = self.pending.popleft()
                ref = slot.actor.prune.remote(line, chain)
                slot.queue.append(ref)
                self.in_flight[ref] = (slot, line, chain)
                self.reporter.dispatched(chain, slot.pid)

    # -- results --------------------------------------------------------------------------------------------------

    def _collect(self, ref) -> None:
        slot, line, chain = self.in_flight[ref]
        try:
            trace, error, score_record = self.ray.get(ref)
        except self.deaths as e:
            self._worker_died(slot, e)
            return
        except self.ray.exceptions.RayError as e:  # the pruning raised what prune_one does not catch
            trace, error, score_record = None, RecordError(line, chain.id, _reason(e)), None
        del self.in_flight[ref]
        slot.queue.remove(ref)
        self._record(chain, trace, error, score_record)

    def _record(self, chain: Chain, trace: Trace | None, error: RecordError | None, score_record: dict | None) -> None:
        if trace is not None:
            if self.scores is not None and score_record is not None:
                self.scores.write(score_record)  # before the trace, as run_prune does
            self.traces.write(trace.to_json())
            self.summary.done += 1
            self.summary.deletions += len(trace.deletion_order)
            self.summary.token_forwards += trace.token_forwards
        else:
            self.summary.failures.append(error)
        self.reporter.finished(chain, trace, error)

    def _worker_died(self, slot: _Slot, error: Exception) -> None:
        """The actor in `slot` is gone: keep what it finished, blame the chain it was running, requeue the rest."""
        reason = _reason(error)
        self.summary.worker_deaths += 1
        self.reporter.worker_died(slot.pid, reason)
        refs = list(slot.queue)
        finished, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        lost = []
        for ref in refs:  # oldest first: the actor runs its calls in order, so the first lost one was running
            _, line, chain = self.in_flight.pop(ref)
            result = None
            if ref in finished:  # it may have completed just before the actor died
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayError:
                    pass
            if result is None:
                lost.append((line, chain))
            else:
                self._record(chain, *result)
        retry = []
        for index, (line, chain) in enumerate(lost):
            if index > 0:  # only queued behind the chain that was running: not its fault
                retry.append((line, chain))
                continue
            attempts = self.attempts[chain.id] = self.attempts.get(chain.id, 0) + 1
            if attempts > self.options.max_retries:
                failure = RecordError(line, chain.id, f"its worker died {attempts} times while pruning it (last: {reason})")
                self.summary.failures.append(failure)
                self.reporter.finished(chain, None, failure)
                continue
            self.summary.retries += 1
            self.reporter.retried(chain, attempts, reason)
            retry.append((line, chain))
        self.pending.extendleft(reversed(retry))  # first in line again, in their original order
        self.ray.kill(slot.actor, no_restart=True)
        self._start(slot)


def plan_workers(config: PruneConfig, options: RayOptions, resources: dict[str, float]) -> tuple[int, dict, int]:
    """(worker count, Ray actor options, torch threads per worker) for the cluster's resources."""
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    on_gpu = config.device == "cuda" or (config.device == "auto" and gpus > 0)
    base = {"max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
    if on_gpu:
        if gpus == 0:
            raise ValueError("--device cuda was asked for but the Ray cluster has no GPUs")
        count = options.workers or gpus
        if count > gpus:
            raise ValueError(f"--workers {count} asks for more pruners than the cluster's {gpus} GPU(s) (one per GPU)")
        return count, base | {"num_gpus": 1, "num_cpus": 1}, max(1, cpus // count)
    if cpus == 0:
        raise ValueError("the Ray cluster has no CPUs to run workers on")
    count = options.workers or cpus
    if count > cpus:
        raise ValueError(f"--workers {count} asks for more CPU workers than the cluster's {cpus} CPU(s)")
    # Ray's CPU slots decide placement; torch gets each worker's share of the cluster's cores.
    return count, base | {"num_cpus": 1}, max(1, cpus // count)


def _reason(error: BaseException) -> str:
    """A Ray error in one line: the worker's own exception when there is one, else Ray's first line."""
    cause = getattr(error, "cause", None)  # RayTaskError: what the pruning raised in the worker
    if isinstance(cause, BaseException) and cause is not error:
        return f"{type(cause).__name__}: {cause}"[:300]
    lines = [line.strip() for line in ANSI.sub("", str(error)).splitlines() if line.strip()]
    if getattr(error, "actor_init_failed", False) and lines:  # the traceback of __init__ ends with its exception
        return f"the worker could not load the pruner: {lines[-1]}"[:300]
    return f"{type(error).__name__}: {lines[0]}"[:300] if lines else type(error).__name__


def rewrite_in_order(path: Path, order: Sequence[str], keep: str = "first") -> list[str]:
    """Rewrite a JSONL output so its records follow `order` (ids; others after, as they were), atomically.

    Records are moved as raw bytes, never re-encoded; memory holds one offset per record. A repeated id keeps its
    `first` (traces) or `last` (score records) copy; a line that does not parse is dropped. Returns warnings.
    """
    path = Path(path)
    if not path.exists():
        return []
    warnings: list[str] = []
    spans: dict[str, tuple[int, int]] = {}  # id -> (byte offset, length)
    sequence: list[tuple[int, int]] = []  # every span in file order, to tell whether anything changes
    with path.open("rb") as f:
        offset = 0
        for number, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            sequence.append((start, len(raw)))
            try:
                record_id = str(json.loads(raw)["id"])
                if not raw.endswith(b"\n"):
                    raise ValueError
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError):
                warnings.append(f"{path}: line {number} is not a complete record; dropped")
                continue
            if record_id in spans:
                warnings.append(f"{path}: id {record_id!r} appears twice; kept the {keep} copy")
                if keep == "first":
                    continue
            spans[record_id] = (start, len(raw))
    rank = {record_id: i for i, record_id in enumerate(order)}
    ordered = sorted(spans.items(), key=lambda item: (rank.get(item[0], len(rank)), item[1][0]))
    if [span for _, span in ordered] == sequence:
        return warnings  # already in order, nothing dropped
    staging = path.with_name(f".{path.name}.reordering")
    with path.open("rb") as source, staging.open("wb") as target:
        for _, (start, length) in ordered:
            source.seek(start)
            target.write(source.read(length))
        target.flush()
        os.fsync(target.fileno())
    os.replace(staging, path)  # atomic: a crash here leaves the complete file in one order or the other
    return warnings
