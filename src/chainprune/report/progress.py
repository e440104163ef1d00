"""Progress bars and end-of-run summaries for pipelines, on stderr."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from chainprune.data.jsonl import RecordError
from chainprune.run import PruneSummary, Reporter
from chainprune.types import Chain, Trace

console = Console(stderr=True, soft_wrap=True)
HEARTBEAT_SECONDS = 300.0  # in a log, a long example's progress is said this often


class ProgressReporter(Reporter):
    """Two bars: examples done, and deletion steps of the example in progress. Errors print as they happen.
    When stderr is no terminal (a background run's log), where bars do not draw, each finished example is one
    line instead, and an example still running says how far it is every `HEARTBEAT_SECONDS`."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.examples = None
        self.steps = None
        self.current = ""
        self.started = self.said = time.perf_counter()

    def start(self, total: int) -> None:
        self.progress.start()
        self.examples = self.progress.add_task("examples", total=total)
        self.steps = self.progress.add_task("  steps", total=None)

    def estimate(self, token_forwards: int, exact: bool) -> None:
        bound = "" if exact else " (at most: this approximate mode computes fewer)"
        self.progress.console.print(f"estimate: {token_forwards:,} token-forwards of exact greedy for the chains to "
                                    f"prune{bound}; `--estimate` says what that means in time")

    def example(self, chain: Chain, steps: int) -> None:
        self.progress.update(self.steps, description=f"  {chain.id[:24]}", completed=0, total=None)
        self.current = str(chain.id)
        self.started = self.said = time.perf_counter()

    def step(self, done: int, total: int) -> None:
        self.progress.update(self.steps, completed=done, total=total)
        now = time.perf_counter()
        if not self.progress.console.is_terminal and now - self.said >= HEARTBEAT_SECONDS:
            self.said = now
            self.progress.console.print(f"  {escape(self.current)}: {done}/{total} deletions, "
                                        f"{now - self.started:.0f} s", highlight=False)

    def finished(self, chain: Chain, trace: Trace | None, error: RecordError | None) -> None:
        if error is not None:
            self.progress.console.print(f"[red]error[/red] {escape(str(error))}")
        self.progress.advance(self.examples)
        if error is None:
            log_finished(self.progress, self.examples, chain, trace, f"{time.perf_counter() - self.started:.0f} s")

    def stop(self) -> None:
        self.progress.stop()


def log_finished(progress: Progress, task_id, chain: Chain, trace: Trace | None, timing: str) -> None:
    """Where the console is no terminal (a background run's log), where bars do not draw: one line for a
    finished example, `3/10 id: 130 deletions, 812,004 token-forwards, 640 s`."""
    if progress.console.is_terminal:
        return
    task = progress.tasks[task_id]
    what = f": {len(trace.deletion_order)} deletions, {trace.token_forwards:,} token-forwards" if trace else ""
    progress.console.print(f"{int(task.completed)}/{int(task.total or 0)} {escape(str(chain.id))}{what}, {timing}",
                           highlight=False)


def summary_table(summary: PruneSummary) -> Table:
    table = Table(title="prune summary", show_header=False)
    rate = summary.done / summary.seconds * 3600 if summary.seconds > 0 and summary.done else 0.0
    rows = [
        ("pruned", str(summary.done)),
        ("skipped (already in output)", str(summary.skipped)),
        ("failed", str(len(summary.failures))),
        ("deletions", str(summary.deletions)),
        ("token-forwards", f"{summary.token_forwards:,}"),
        ("wall time", f"{summary.seconds:.1f} s"),
        ("examples / hour", f"{rate:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_table(report: Any) -> Table:
    """`prune --estimate`: per chain and in all, the token-forwards and what they mean here and on a GPU."""
    bound = "" if report.exact else " (at most: an approximate mode does less)"
    table = Table(title=f"estimate of exact greedy{bound}: token-forwards expected (range by where deletions fall)")
    for column in ("id", "tokens", "reasoning", "units", "passes", "token-forwards", "range",
                   f"here ({report.device})", f"{report.gpu} at {report.gpu_utilisation:.0%}"):
        table.add_column(column, justify="left" if column == "id" else "right")
    here = gpu = 0.0
    for chain in report.chains:
        e = chain.estimate
        seconds_here, seconds_gpu = report.seconds_here(e.token_forwards), report.seconds_on_gpu(chain, e.token_forwards)
        here, gpu = here + seconds_here, gpu + seconds_gpu
        table.add_row(chain.id, str(chain.tokens), str(chain.reasoning), str(chain.units), str(e.passes),
                      f"{e.token_forwards:,}", f"{e.low:,}-{e.high:,}", _duration(seconds_here), _duration(seconds_gpu))
    if report.chains:
        table.add_row("all", "", "", "", str(sum(c.estimate.passes for c in report.chains)), f"{report.token_forwards:,}",
                      f"{sum(c.estimate.low for c in report.chains):,}-{sum(c.estimate.high for c in report.chains):,}",
                      _duration(here), _duration(gpu), style="bold")
    table.caption = (f"here: {report.rate:,.0f} token-forwards/s, measured now; GPU: FLOPs per token-forward at "
                     f"{report.gpu_utilisation:.0%} of bfloat16 peak (stated, not measured)")
    return table
