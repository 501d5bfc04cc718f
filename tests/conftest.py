"""Session fixtures shared by every test: real ActiveMQ, a real Rucio server and a real PanDA.

Each pytest run (all its xdist workers together) gets its own services directory, hence its own
broker (own port, own KahaDB) and its own Rucio database, so concurrent test runs on one machine
never see each other's messages or files. Services start once per run, on first use, under the
file lock of ``swfflow.services``; the controller process stops them at the end. A service that
cannot start makes the fixture fail loudly (an error, never a skip).

Set ``SWFFLOW_TEST_SERVICES_DIR`` to keep the services running in a fixed directory across runs
(faster local iteration; Rucio still gets an empty database per run).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

# --- environment, set before anything imports panda-client (reference/panda.md §8) -------------
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")
for _var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
    os.environ.setdefault(_var, "http://127.0.0.1:25080/server/panda")

# One id and one owner per pytest run: set in the controller at import time, inherited by the
# xdist workers it spawns afterwards.
os.environ.setdefault("SWFFLOW_TEST_SESSION", uuid.uuid4().hex[:10])
os.environ.setdefault("SWFFLOW_TEST_OWNER_PID", str(os.getpid()))
SESSION = os.environ["SWFFLOW_TEST_SESSION"]
# the Rucio server's venv is shared by all runs (per-run directories would reinstall it)
os.environ.setdefault("SWFFLOW_RUCIO_VENV", str(
    Path(os.environ.get("SWFFLOW_SERVICES_DIR") or Path.home() / ".swfflow" / "services")
    / "rucio" / "venv"))
# so is PanDA's (≈660 MB, 2-3 min to install)
os.environ.setdefault("SWFFLOW_PANDA_VENV", str(
    Path(os.environ["SWFFLOW_RUCIO_VENV"]).parent.parent / "panda" / "venv"))
SESSIONS_ROOT = Path(tempfile.gettempdir()) / "swfflow-test-services"
KEEP_DIR = os.environ.get("SWFFLOW_TEST_SERVICES_DIR")


def _session_dir() -> Path:
    return Path(KEEP_DIR) if KEEP_DIR else SESSIONS_ROOT / SESSION


def _owner_alive(directory: Path) -> bool:
    from swfflow.services.state import pid_alive

    try:
        return pid_alive(int((directory / "owner.pid").read_text()))
    except (OSError, ValueError):
        return False


def _teardown(directory: Path) -> None:
    from swfflow import services

    services.purge(directory)


def _reap_stale_sessions() -> None:
    """Stop the services of earlier runs that died without cleaning up (killed pytest).
    Called with the sessions lock held, which also covers creating a run's directory."""
    for directory in SESSIONS_ROOT.iterdir():
        if directory.is_dir() and directory.name != SESSION and not _owner_alive(directory):
            _teardown(directory)


@pytest.fixture(scope="session")
def services_dir() -> Path:
    """This run's services directory (its pid/endpoint files, logs and configuration)."""
    from swfflow.services.state import file_lock, write_atomic

    directory = _session_dir()
    if KEEP_DIR:
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    with file_lock(SESSIONS_ROOT / ".lock"):  # a directory never exists without its owner
        directory.mkdir(parents=True, exist_ok=True)
        owner = directory / "owner.pid"
        if not owner.exists():
            write_atomic(owner, os.environ["SWFFLOW_TEST_OWNER_PID"])
        _reap_stale_sessions()
    return directory


@pytest.fixture(scope="session")
def stomp_url(services_dir: Path) -> str:
    """``stomp://127.0.0.1:<port>`` of a real ActiveMQ broker (any login is accepted)."""
    from swfflow import services

    (broker,) = services.up(["activemq"], state=services_dir)
    assert broker.healthy and broker.url, broker
    return broker.url


@pytest.fixture(scope="session")
def rucio_env(services_dir: Path) -> dict[str, str]:
    """A real Rucio server with an empty database for this test run.

    Returns the environment a Rucio client needs (``RUCIO_CONFIG`` = the client rucio.cfg,
    plus ``RUCIO_HOST``) and exports it in this process, dropping ``RUCIO_ACCOUNT`` and
    ``RUCIO_AUTH_TYPE`` which would override the file."""
    from rucio.common.config import clean_cached_config

    from swfflow import services
    from swfflow.services.rucio_server import client_config

    (server,) = services.up(["rucio"], state=services_dir, fresh_session=SESSION)
    assert server.healthy and server.url, server
    env = {"RUCIO_CONFIG": str(client_config(services.ServiceHome(services_dir, "rucio"))),
           "RUCIO_HOST": server.url}
    for name in ("RUCIO_ACCOUNT", "RUCIO_AUTH_TYPE"):
        os.environ.pop(name, None)
    os.environ.update(env)
    clean_cached_config()  # rucio caches the first config file it read
    return env


@pytest.fixture(scope="session")
def rucio_catalog(rucio_env: dict[str, str]):
    """A :class:`swfflow.backends.rucio.RucioCatalog` on the session's Rucio server."""
    from swfflow.backends.rucio import RucioCatalog

    return RucioCatalog.from_config(rucio_env["RUCIO_CONFIG"])


@pytest.fixture(scope="session")
def panda_server(services_dir: Path, rucio_env: dict[str, str]) -> dict[str, str]:
    """A real panda-server 1.0.4 + JEDI with an empty database for this test run; JEDI's DDM
    client talks to this run's Rucio (``rucio_env``).

    Returns ``url`` (what panda-client's ``PANDA_URL_SSL`` takes), ``database`` (its PostgreSQL
    database, for checks of what JEDI made of a task) and ``log_dir``. ``os.environ`` is left
    alone: the contract-server tests keep their own ``PANDA_URL``."""
    from swfflow import services

    (server,) = services.up(["panda"], state=services_dir, fresh_session=SESSION)
    assert server.healthy and server.url, server
    endpoint = services.ServiceHome(services_dir, "panda").endpoint()
    return {"url": endpoint["api"], "database": endpoint["database"],
            "log_dir": str(Path(endpoint["log"]).parent)}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In the controller (or a run without xdist): stop this run's services."""
    if hasattr(session.config, "workerinput") or KEEP_DIR:
        return
    directory = _session_dir()
    if directory.exists() and os.environ["SWFFLOW_TEST_OWNER_PID"] == str(os.getpid()):
        _teardown(directory)
