"""Shared plumbing for the local services: state directory, pid/port files, locks, readiness.

Every service keeps everything in one directory ``<state>/<service>/``: its configuration, data,
logs, ``pid`` and ``endpoint.json`` (port and URL, which clients read: ports are chosen at start
and never assumed). Processes are started detached (own session, output to a log file) and
stopped by their recorded PID only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swfflow.errors import ServiceError

STATE_DIR_ENV = "SWFFLOW_SERVICES_DIR"
DEFAULT_STATE_DIR = Path.home() / ".swfflow" / "services"


def state_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The services' state directory: ``path``, else ``$SWFFLOW_SERVICES_DIR``, else the default."""
    chosen = Path(path or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).expanduser()
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen.resolve()


@dataclass(frozen=True)
class ServiceStatus:
    """What ``swfflow services status`` reports for one service."""

    name: str
    healthy: bool
    pid: int | None = None
    port: int | None = None
    url: str | None = None
    detail: str = ""
    log: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ServiceHome:
    """The directory of one service inside the state directory, and its pid/endpoint files."""

    def __init__(self, root: Path, name: str):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pid_file = self.dir / "pid"
        self.endpoint_file = self.dir / "endpoint.json"

    def pid(self) -> int | None:
        """The recorded PID if that process is still alive, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def endpoint(self) -> dict[str, Any]:
        try:
            return json.loads(self.endpoint_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_endpoint(self, **values: Any) -> None:
        write_atomic(self.endpoint_file, json.dumps(values, indent=2, sort_keys=True) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers never see it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (pytest-xdist workers, concurrent CLI calls)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pid_file_alive(pid_file: Path) -> bool:
    """Is the process whose pid ``pid_file`` holds alive (no file, no process)?"""
    try:
        return pid_alive(int(pid_file.read_text()))
    except (OSError, ValueError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(preferred: int | None, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free, else a free port the kernel picks."""
    if preferred and port_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_detached(argv: Sequence[str], *, log: Path, pid_file: Path,
                   env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a long-running process in its own session, output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    write_atomic(pid_file, f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid_file: Path, *, timeout: float = 20.0, group: bool = False) -> bool:
    """SIGTERM the recorded process (SIGKILL after ``timeout``); True if one was running.

    ``group``: signal its whole process group (a daemon and the workers it forked), and SIGKILL
    whatever of the group is left once the process is gone, so that no worker is orphaned."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    stopped = False
    if pid_alive(pid):
        pgid = _own_group(pid) if group else None

        def send(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig) if pgid else os.kill(pid, sig)

        send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid) or pgid:
            send(signal.SIGKILL)
        _reap(pid)
        stopped = True
    pid_file.unlink(missing_ok=True)
    return stopped


def _own_group(pid: int) -> int | None:
    """The process group of ``pid`` if it is not ours (never signal our own group)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return pgid if pgid != os.getpgrp() else None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_ready(name: str, probe: Callable[[], bool], *, pid: int, logs: Sequence[Path],
               timeout: float) -> float:
    """Poll ``probe`` until it is true; fail loudly (with the log tail) if the process dies
    or the timeout passes. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        if not pid_alive(pid):
            _reap(pid)
            raise ServiceError(f"{name} exited during start-up (pid {pid})",
                               where=str(logs[0]), hint=_log_tails(logs))
        time.sleep(0.1)
    raise ServiceError(f"{name} did not become ready within {timeout:.0f} s (pid {pid})",
                       where=str(logs[0]), hint=_log_tails(logs))


def _log_tails(logs: Sequence[Path]) -> str:
    return "\n".join(f"{log} ends with:\n{tail(log)}" for log in logs if log.exists())


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def run_checked(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None,
                timeout: float = 600) -> str:
    """Run a setup command; a failure is a ServiceError quoting its output."""
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise ServiceError(f"{what} failed (exit {proc.returncode})",
                           where=" ".join(argv[:3]), hint="\n".join(output))
    return proc.stdout
