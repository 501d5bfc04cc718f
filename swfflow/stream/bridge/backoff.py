"""Retry gates: one per kind of side effect, so a Rucio outage delays attaching but not, say,
recording a pause, and the bridge never hammers a server that is down."""

from __future__ import annotations

import logging
import time

from swfflow.errors import ServiceError, SwfflowError

log = logging.getLogger("swfflow.bridge")


class Backoff:
    """Exponential backoff with a ceiling; ``ready()`` says whether to try now."""

    def __init__(self, name: str, initial_s: float = 0.5, max_s: float = 30.0):
        self.name, self.initial_s, self.max_s = name, initial_s, max_s
        self.delay_s = 0.0
        self.next_at = 0.0
        self.failures = 0  # since the last success
        self.total_failures = 0
        self.last_error = ""

    def ready(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) >= self.next_at

    def ok(self) -> None:
        if self.failures:
            log.info("%s: recovered after %d failed attempt(s)", self.name, self.failures)
        self.delay_s, self.next_at, self.failures, self.last_error = 0.0, 0.0, 0, ""

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        self.total_failures += 1
        self.delay_s = min(self.max_s, self.delay_s * 2 if self.delay_s else self.initial_s)
        self.next_at = time.monotonic() + self.delay_s
        self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        log.warning("%s failed (attempt %d, next in %.1f s): %s", self.name, self.failures,
                    self.delay_s, self.last_error)


def is_permanent(exc: BaseException) -> bool:
    """Will trying again never help? Permanent refusals fail the run (or action) visibly;
    everything else — a server down or slow, a connection lost, a broken worker pool — is
    retried with backoff (and shows in the gate's ``last_error``).

    The Rucio catalog raises :class:`ServiceError` both after its own retries of a transient
    failure and for a refusal; the cause tells them apart. A raw Rucio refusal (a missing
    scope, access denied) or another swfflow error (a missing RSE, a bad DID) is permanent."""
    from rucio.common.exception import RucioException

    from swfflow.backends.rucio import is_transient

    if isinstance(exc, ServiceError):
        return exc.__cause__ is not None and is_permanent(exc.__cause__)
    if isinstance(exc, SwfflowError):
        return True
    return isinstance(exc, RucioException) and not is_transient(exc)
