"""What the threads walking a flow are doing, for :meth:`FlowRun.settle`: which are inside a
leaf call, which of those (or of the walk) wait on a task or a dataset, and when that last
changed. Nothing but waiting for a while means everything that may be submitted now has been."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Activity:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leaves: Counter[int] = Counter()  # thread → leaf calls it is in
        self._waits: Counter[int] = Counter()  # thread → waits it is in
        self._changed = time.monotonic()

    def restart(self) -> None:
        """Count quiet time from now (the walk starts)."""
        with self._lock:
            self._changed = time.monotonic()

    @contextmanager
    def leaf(self) -> Iterator[None]:
        with self._entered(self._leaves):
            yield

    @contextmanager
    def waiting(self) -> Iterator[None]:
        with self._entered(self._waits):
            yield

    def idle(self, quiet_s: float) -> bool:
        """No thread in a leaf call but waiting, for ``quiet_s``, since the walk reached its
        first leaf or wait (before that it is still working its way there)."""
        with self._lock:
            busy = +self._leaves - self._waits
            started = bool(self._leaves or self._waits)  # keys stay, at zero, once seen
            return started and not busy and time.monotonic() - self._changed >= quiet_s

    @contextmanager
    def _entered(self, counter: Counter[int]) -> Iterator[None]:
        me = threading.get_ident()
        with self._lock:
            counter[me] += 1
            self._changed = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                counter[me] -= 1
                self._changed = time.monotonic()
