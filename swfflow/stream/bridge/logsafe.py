"""The bridge's log lines quote what messages carried, and a message may carry anything: lone
surrogates and control characters would make a UTF-8 log file (or a test runner's report) fail
to write. Every record of the bridge's logger is made printable first."""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode escaped (``\\udb0e``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Printable(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = printable(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = printable(logging.Formatter().formatException(record.exc_info))
        return True


def install(logger: logging.Logger) -> None:
    if not any(isinstance(f, Printable) for f in logger.filters):
        logger.addFilter(Printable())
