"""The one place that talks to panda-client: each call under its lock, pointed at our server,
its chatter kept off the terminal, failed exchanges retried with exponential backoff and then
raised as one :class:`~swfflow.errors.ServiceError` naming the server and the call."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from swfflow.backends.panda_client import CLIENT_LOCK, load_client, point_client_at, redact
from swfflow.errors import ServiceError

log = logging.getLogger("swfflow.backends.panda")


class Unanswered(Exception):
    """One exchange with the server failed (panda-client status != 0); worth retrying."""


class PandaCalls:
    def __init__(self, url: str, api_base: str, *, attempts: int, backoff_s: float,
                 max_backoff_s: float):
        self.url, self.api_base = url, api_base
        self.attempts, self.backoff_s, self.max_backoff_s = attempts, backoff_s, max_backoff_s

    def where(self, call: str) -> str:
        return f"PanDA server {self.url} ({call})"

    def call(self, call: str, *args: Any, attempts: int | None = None, **kwargs: Any) -> Any:
        """Run one panda-client function; exchange failures are retried with backoff."""
        return self.with_retries(call, functools.partial(self.exchange, call), args, kwargs,
                                 attempts=attempts)

    def with_retries(self, call: str, exchange: Callable[..., Any], *args: Any,
                     attempts: int | None = None) -> Any:
        """``exchange(*args)``, panda-client's (status, answer), retried with backoff while
        the status is not 0; the answer."""
        attempts = attempts or self.attempts
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception_type(Unanswered), reraise=True,
            before_sleep=lambda rs: log.warning("PanDA %s %s failed (attempt %d/%d), retrying",
                                                self.api_base, call, rs.attempt_number, attempts))
        try:
            for attempt in retrying:
                with attempt:
                    status, payload = exchange(*args)
                    if status != 0:
                        raise Unanswered(redact(str(payload)) if payload else "")
                    return payload
        except Unanswered as exc:
            detail = f": {exc}" if str(exc) else ""
            raise ServiceError(
                f"PanDA server {self.url} did not answer {call} after {attempts} attempt(s)"
                f"{detail}", where=self.where(call),
                hint="check that the server is up and PANDA_URL_SSL points at it "
                     "(and that your token or proxy is valid)") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def exchange(self, call: str, args: tuple, kwargs: dict) -> Any:
        chatter = io.StringIO()
        with CLIENT_LOCK:
            client = load_client()
            point_client_at(client, self.url, self.api_base)
            function: Callable[..., tuple[int, Any]] = getattr(client, call)
            try:
                # panda-client prints warnings and tracebacks to stdout: keep them off the
                # user's terminal (and out of --json output), log them redacted instead
                with contextlib.redirect_stdout(chatter):
                    status, payload = function(*args, **kwargs)
            except SystemExit:
                raise ServiceError(f"panda-client gave up during {call} (authentication setup)",
                                   where=self.where(call),
                                   hint="check PANDA_AUTH, PANDA_AUTH_VO and the token/proxy "
                                        "variables") from None
            finally:
                text = chatter.getvalue().strip()
                if text:
                    log.debug("panda-client %s: %s", call, redact(text))
        return status, payload
