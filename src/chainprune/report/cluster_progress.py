"""Progress and the end-of-run summary of a distributed prune (`chainprune prune --ray`), on stderr.

One bar for the examples of the whole cluster, with the rate in examples per hour, the time left, the workers
alive and the retries so far; worker deaths, retries and failed records print as they happen. Where stderr is
no terminal, each finished example is one line (`log_finished`), timed from the start of the run.
"""

from __future__ import annotations

import time

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from chainprune.data.jsonl import RecordError
from chainprune.report.progress import console, log_finished, summary_table
from chainprune.run import ClusterReporter, DistributedSummary
from chainprune.types import Chain, Trace


class ClusterProgress(ClusterReporter):
    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[cluster]}"),
            console=console,
            transient=False,
        )
        self.task = None
        self.workers = 0
        self.alive: set[int] = set()
        self.retries = 0
        self.done = 0
        self.started = time.perf_counter()

    def start(self, total: int, workers: int) -> None:
        self.workers, self.started = workers, time.perf_counter()
        self.progress.start()
        self.task = self.progress.add_task("examples", total=total, rate="", cluster="")
        self._refresh()

    def worker_started(self, pid: int, node: str, device: str) -> None:
        self.alive.add(pid)
        self._refresh()

    def worker_died(self, pid: int | None, reason: str) -> None:
        self.alive.discard(pid)
        who = f"worker {pid}" if pid is not None else "a starting worker"
        self.progress.console.print(f"[yellow]{who} died[/yellow] ({escape(reason)}); replacing it")
        self._refresh()

    def retried(self, chain: Chain, attempt: int, reason: str) -> None:
        self.retries += 1
        self.progress.console.print(f"[yellow]retrying[/yellow] {escape(repr(chain.id))} on another worker (attempt {attempt + 1})")
        self._refresh()

    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None:
        if error is not None:
            self.progress.console.print(f"[red]error[/red] {escape(str(error))}")
        self.done += 1
        self.progress.advance(self.task)
        if error is None:
            log_finished(self.progress, self.task, chain, trace, f"{time.perf_counter() - self.started:.0f} s into the run")
        self._refresh()

    def _refresh(self) -> None:
        if self.task is None:
            return
        elapsed = time.perf_counter() - self.started
        rate = f"{self.done / elapsed * 3600:,.0f} ex/h" if self.done and elapsed > 0 else ""
        cluster = f"workers {len(self.alive)}/{self.workers} alive, {self.retries} retried"
        self.progress.update(self.task, rate=rate, cluster=cluster)

    def stop(self) -> None:
        self.progress.stop()


def distributed_summary_table(summary: DistributedSummary) -> Table:
    """The single-process summary plus where it ran and what went wrong with workers."""
    table = summary_table(summary)
    table.title = "prune summary (Ray)"
    table.add_row("workers", f"{summary.workers} ({summary.device})")
    table.add_row("retried after a worker died", str(summary.retries))
    table.add_row("worker deaths", str(summary.worker_deaths))
    return table
