"""Local real services for tests and users: ActiveMQ (STOMP), a Rucio server on PostgreSQL and,
on request (``--with panda``), a real panda-server + JEDI on PostgreSQL.

``up()`` starts what is not running (idempotent, waits until each answers), ``down()`` stops by
recorded PID, ``status()`` probes each one. All state — configuration, data, logs, PID and
endpoint files — lives in one directory: ``$SWFFLOW_SERVICES_DIR`` or ``~/.swfflow/services``.
Calls on one state directory are serialised with a file lock, so concurrent callers (pytest-xdist
workers, two shells) never start a service twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from swfflow.errors import ConfigError
from swfflow.services import activemq, panda_server, rucio_server
from swfflow.services.state import ServiceHome, ServiceStatus, file_lock, state_dir

# name → module with start(home, **options) / stop(home) / status(home); started in this order
SERVICES: dict[str, ModuleType] = {"activemq": activemq, "rucio": rucio_server,
                                   "panda": panda_server}
# what `up` starts when no service is named; the others only when named (or `--with`)
DEFAULT = ("activemq", "rucio")
# the options of up() each service's start() takes
OPTIONS: dict[str, tuple[str, ...]] = {"rucio": ("fresh_session",),
                                       "panda": ("fresh_session", "schema")}

__all__ = ["SERVICES", "ServiceHome", "ServiceStatus", "down", "purge", "status", "stomp_url", "up"]


def _selected(names: Iterable[str] | None, default: Iterable[str] = SERVICES) -> list[str]:
    chosen = list(names) if names else list(default)
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise ConfigError(f"unknown service(s): {', '.join(unknown)}",
                          hint=f"choose from: {', '.join(SERVICES)}")
    return chosen


def _lock(root: Path):
    return file_lock(root / ".lock")


def up(names: Iterable[str] | None = None, *, state: str | os.PathLike[str] | None = None,
       fresh_session: str | None = None, with_: Iterable[str] = (),
       schema: str | os.PathLike[str] | None = None) -> list[ServiceStatus]:
    """Start the services that are not running and wait until they answer: those named, else
    the default ones plus ``with_`` (e.g. ``["panda"]``).

    ``fresh_session``: an id (e.g. one pytest run). The first call with a new id gives Rucio and
    PanDA empty databases; later calls with the same id reuse them (so xdist workers share one).
    ``schema``: PanDA's panda-database folder (default ``$SWFFLOW_PANDA_SCHEMA``, else
    ``../shared/panda-database`` next to the repository)."""
    root = state_dir(state)
    given = {"fresh_session": fresh_session, "schema": schema}
    chosen = _selected(names, default=(*DEFAULT, *_selected(with_, default=())))
    with _lock(root):
        results = []
        for name in sorted(chosen, key=list(SERVICES).index):
            options = {key: given[key] for key in OPTIONS.get(name, ())}
            results.append(SERVICES[name].start(ServiceHome(root, name), **options))
        return results


def down(names: Iterable[str] | None = None, *, state: str | os.PathLike[str] | None = None,
         drop_data: bool = False) -> dict[str, bool]:
    """Stop the services (reverse order); returns name → whether one was running.
    ``drop_data``: also delete what lives outside the directory (Rucio's database)."""
    root = state_dir(state)
    stopped = {}
    with _lock(root):
        for name in reversed(_selected(names)):
            module, home = SERVICES[name], ServiceHome(root, name)
            stopped[name] = module.stop(home)
            if drop_data and hasattr(module, "purge"):
                module.purge(home)
    return stopped


def purge(state: str | os.PathLike[str]) -> None:
    """Stop every service, delete what lives outside the directory (Rucio's database), then
    the directory itself. For throwaway directories (one per test run)."""
    import shutil

    root = state_dir(state)
    down(state=root, drop_data=True)
    shutil.rmtree(root, ignore_errors=True)


def status(names: Iterable[str] | None = None, *,
           state: str | os.PathLike[str] | None = None) -> list[ServiceStatus]:
    """The named services, else the default ones and every other one started in ``state``."""
    root = state_dir(state)
    started = [name for name in SERVICES if (root / name / "endpoint.json").exists()]
    chosen = _selected(names, default=[name for name in SERVICES
                                       if name in DEFAULT or name in started])
    return [SERVICES[name].status(ServiceHome(root, name)) for name in chosen]


def stomp_url(state: str | os.PathLike[str] | None = None) -> str | None:
    """The STOMP URL of the running broker, or None."""
    found = activemq.status(ServiceHome(state_dir(state), "activemq"))
    return found.url if found.healthy else None
