"""Several chains pruned at once, their packed forwards run as one (`prune --batch-chains K`).

A pruning pass runs a few small packed forwards one after another, each waiting on the last; small forwards
use a CPU (or GPU) poorly. `run_together` prunes K chains in K threads; whenever a thread needs a packed
forward (`packed.run_pack`) it hands the pack to this module and waits, and once every thread is waiting
(or done) the calling thread runs all the waiting packs as one forward and hands each its part. So forwards
run on the calling thread only, one at a time, as large as K chains make them; what happens between them (the
greedy loop's bookkeeping, the first forward of a new chain) runs in the threads.

This module knows nothing of packs beyond handing them to a function that runs a list of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

Task = TypeVar("Task")
_local = threading.local()


def current() -> SharedForwards | None:
    """The shared forwards this thread hands its packs to, when it runs under `run_together`."""
    return getattr(_local, "shared", None)


def peers() -> int:
    """How many chains are being pruned alongside this thread's, itself included (1 outside `run_together`):
    what a chain may hold in memory is divided among them."""
    shared = current()
    return shared.threads if shared is not None else 1


@dataclass
class _Request:
    item: Any
    result: Any = None
    error: BaseException | None = None
    done: bool = False


class SharedForwards:
    """Collects the threads' packs and runs them, together, on the serving thread."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], threads: int):
        self.run, self.threads = run, threads
        self._cv = threading.Condition()
        self._waiting: list[_Request] = []
        self._working = threads  # threads neither waiting on a forward nor finished

    def submit(self, item: Any) -> Any:
        """(In a worker thread.) Wait for `item` to be run with the others, and return its result."""
        request = _Request(item)
        with self._cv:
            self._waiting.append(request)
            self._working -= 1
            self._cv.notify_all()
            self._cv.wait_for(lambda: request.done)
        if request.error is not None:
            raise request.error
        return request.result

    def finished(self) -> None:
        """(In a worker thread.) This thread has no more work."""
        with self._cv:
            self._working -= 1
            self._cv.notify_all()

    def serve(self) -> None:
        """(In the serving thread.) Run what the threads submit, all that is waiting as one call, until every
        thread has finished."""
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._working == 0)
                batch, self._waiting = self._waiting, []
            if not batch:
                return
            try:
                results = self.run([request.item for request in batch])
            except Exception as error:  # each thread's chain reports it; the run goes on
                for request in batch:
                    request.error = error
            else:
                for request, result in zip(batch, results):
                    request.result = result
            with self._cv:
                for request in batch:
                    request.done = True
                self._working += len(batch)
                self._cv.notify_all()


def run_together(tasks: Iterable[Task], work: Callable[[Task], None], threads: int, run: Callable[[list[Any]], list[Any]]) -> None:
    """Call `work(task)` for every task, `threads` at a time in worker threads, the packs they submit run by
    `run` on this thread (see the module docstring). An exception `work` lets out stops that thread and is
    raised here once the others finish."""
    shared = SharedForwards(run, threads)
    pending, end = iter(tasks), object()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        _local.shared = shared
        # The threads' own work is small; left at the default they would each start a team of CPU threads, and
        # idle teams slowed the serving thread's forwards by up to 70% on a 2-core CPU (measured).
        torch.set_num_threads(1)
        try:
            while True:
                with lock:
                    task = next(pending, end)
                if task is end:
                    return
                work(task)
        except BaseException as error:  # noqa: BLE001 - raised on the serving thread
            errors.append(error)
        finally:
            shared.finished()

    workers = [threading.Thread(target=worker, name=f"chainprune-together-{k}", daemon=True) for k in range(threads)]
    for thread in workers:
        thread.start()
    shared.serve()
    for thread in workers:
        thread.join()
    if errors:
        raise errors[0]
