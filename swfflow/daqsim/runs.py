"""Run numbers from a local counter file: no monitor or other service needed.

The file holds the last run number issued. An exclusive ``flock`` serialises concurrent
simulators on one machine, so two of them never get the same run number. The testbed's
global counter starts at 100010; so does this one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from swfflow.errors import ConfigError

FIRST_RUN_NUMBER = 100010


def default_counter_path() -> Path:
    """``$SWFFLOW_STATE_DIR/run-counter``, else ``$XDG_STATE_HOME/swfflow/run-counter``."""
    if os.environ.get("SWFFLOW_STATE_DIR"):
        return Path(os.environ["SWFFLOW_STATE_DIR"]) / "run-counter"
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "swfflow" / "run-counter"


class RunCounter:
    def __init__(self, path: str | Path | None = None, first: int = FIRST_RUN_NUMBER):
        self.path = Path(path) if path else default_counter_path()
        self.first = first

    def next(self) -> int:
        """Reserve and return the next run number (atomic across processes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if text and not text.isdigit():
                raise ConfigError(f"run counter file holds {text!r}, not a run number",
                                  where=str(self.path),
                                  hint="write the last used run number into it, or delete it "
                                       f"to start again at {self.first}")
            number = max(int(text) + 1, self.first) if text else self.first
            payload = f"{number}\n".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
            os.fsync(fd)
            return number
        finally:
            os.close(fd)  # releases the lock
