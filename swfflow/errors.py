"""User-facing errors: what went wrong, where, and how to fix it.

Every error a user can cause is a :class:`SwfflowError`. The CLI prints it without a traceback
and exits with its ``exit_code`` (2 for bad input, 33 for an unsupported feature, as cwl-runner
does, 1 for a failed run).
"""

from __future__ import annotations


class SwfflowError(Exception):
    """An error caused by input or environment, reported without a traceback."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class WorkflowError(SwfflowError):
    """A workflow document is malformed or invalid."""


class UnsupportedFeature(SwfflowError):
    """The workflow uses a feature swfflow does not implement (cwl-runner exit code 33)."""

    exit_code = 33


class ConfigError(SwfflowError):
    """A profile, parameter file or command-line setting is wrong."""


class RunFailed(SwfflowError):
    """A run or a step failed; the message says which and why."""

    exit_code = 1


class ServiceError(SwfflowError):
    """A server (Rucio, PanDA, broker) failed or could not be reached after retries."""

    exit_code = 1
