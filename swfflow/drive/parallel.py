"""Bounded parallelism for the run-time engine: leaf jobs run in threads, at most N at once.

Each leaf job is a cwltool job running a subprocess, so threads are enough to keep N cores
busy. The bound is a semaphore taken only around a leaf job — never while waiting for other
work — so nested fan-outs (a scatter of sub-workflows that scatter again) cannot deadlock.

After the first failure no new leaf job starts (as a sequential run stops at its first failed
job); jobs already running finish. The error raised is the first real failure in the order a
sequential run would have met it, never a sibling's "not started".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from functools import partial
from typing import TypeVar

T = TypeVar("T")

# One process-wide pool whose idle threads are reused: cwl-utils keeps a node process per
# thread that ever evaluated JavaScript, so fresh threads per fan-out would leak processes and
# file descriptors. Fan-outs bound their own width; the size only guards against runaway
# nesting (a thread waiting for its children holds a worker).
_THREADS = ThreadPoolExecutor(max_workers=512, thread_name_prefix="swfflow-job")


def worker_threads() -> ThreadPoolExecutor:
    """The process-wide pool (for a caller that runs the engine beside its own loop)."""
    return _THREADS


class NotStarted(Exception):
    """A job skipped because another job of the run failed first."""


class JobSlots:
    """At most ``jobs`` leaf jobs at once, and the run-wide stop after a failure."""

    def __init__(self, jobs: int):
        self.jobs = max(1, jobs)
        self._slots = threading.BoundedSemaphore(self.jobs)
        self.stopped = threading.Event()

    def run(self, job: Callable[[], T]) -> T:
        with self._slots:
            return self._guarded(job)

    def fan_out(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """The results of ``calls`` in their order; at most ``jobs`` threads."""
        if self.jobs == 1 or len(calls) <= 1:
            return [call() for call in calls]
        width = threading.BoundedSemaphore(min(self.jobs, len(calls)))
        futures = []
        try:
            for call in calls:
                width.acquire()
                futures.append(_THREADS.submit(self._within, width, call))
            wait(futures)
        except BaseException:  # Ctrl-C: start nothing more, let running jobs end
            self.stopped.set()
            raise
        raise_first([f.exception() for f in futures])
        return [f.result() for f in futures]

    def run_dag(self, names: Sequence[str], parents: Mapping[str, set[str]],
                call: Callable[[str], T], done: Callable[[str, T], None]) -> None:
        """Run ``call(name)`` for each of ``names`` (in topological order) once its
        ``parents`` are done, independent ones at the same time; ``done(name, result)`` is
        called in this thread, so whatever it writes needs no lock."""
        if self.jobs == 1 or len(names) <= 1:
            for name in names:
                done(name, call(name))
            return
        pending, running, errors = list(names), {}, {}
        try:
            while pending or running:
                unfinished = set(pending) | set(running.values())
                for name in [n for n in pending if not parents.get(n, set()) & unfinished]:
                    if self.stopped.is_set():
                        break
                    pending.remove(name)
                    running[_THREADS.submit(self._guarded, partial(call, name))] = name
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    if future.exception() is not None:
                        errors[name] = future.exception()
                    else:
                        done(name, future.result())
        except BaseException:  # Ctrl-C: start nothing more, let running steps end
            self.stopped.set()
            raise
        for name in pending:  # never started: a parent failed, or another branch did
            errors[name] = NotStarted(f"{name}: not started, another job failed first")
        raise_first([errors.get(n) for n in names])

    def _within(self, width: threading.BoundedSemaphore, call: Callable[[], T]) -> T:
        try:
            return self._guarded(call)
        finally:
            width.release()

    def _guarded(self, call: Callable[[], T]) -> T:
        if self.stopped.is_set():
            raise NotStarted("another job of the run failed first")
        try:
            return call()
        except BaseException:
            self.stopped.set()
            raise


def raise_first(errors: Sequence[BaseException | None]) -> None:
    """Raise the first real failure of ``errors`` (in order), else the first NotStarted."""
    real = [e for e in errors if e is not None and not isinstance(e, NotStarted)]
    skipped = [e for e in errors if isinstance(e, NotStarted)]
    if real or skipped:
        raise (real or skipped)[0]
