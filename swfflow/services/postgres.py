"""The local PostgreSQL the services keep their databases in, and the server venvs they run from.

PostgreSQL is ``$SWFFLOW_PGHOST``:``$SWFFLOW_PGPORT`` (default 127.0.0.1:5432), reached with trust
auth as ``$SWFFLOW_PGUSER`` (default ``postgres``) through ``psql``. A service gets one database
per state directory, copied from a schema template built once per machine and schema version
(``CREATE DATABASE … TEMPLATE``: well under a second, against seconds to minutes for a build).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from swfflow.services.state import file_lock, run_checked

ROLE_LOCK = Path("/tmp/swfflow-pg-role.lock")  # role creation races between concurrent runs


def pg() -> tuple[str, str, str]:
    """(host, port, user) of the PostgreSQL server."""
    return (os.environ.get("SWFFLOW_PGHOST", "127.0.0.1"),
            os.environ.get("SWFFLOW_PGPORT", "5432"), os.environ.get("SWFFLOW_PGUSER", "postgres"))


def psql_argv(database: str = "postgres") -> list[str]:
    host, port, user = pg()
    return ["psql", "-h", host, "-p", port, "-U", user, "-d", database, "-AtqX",
            "-v", "ON_ERROR_STOP=1"]


def psql(sql: str, what: str, database: str = "postgres", timeout: float = 120) -> str:
    """Run SQL as the superuser; a failure is a ServiceError quoting psql's output."""
    return run_checked([*psql_argv(database), "-c", sql], what=what, timeout=timeout).strip()


def psql_file(path: Path, what: str, database: str, timeout: float = 600) -> str:
    return run_checked([*psql_argv(database), "-f", str(path)], what=what,
                       timeout=timeout).strip()


def ensure_role(role: str, password: str) -> None:
    with file_lock(ROLE_LOCK):
        if psql(f"select 1 from pg_roles where rolname = '{role}'", "look up role") != "1":
            psql(f"create role {role} login password '{password}'", f"create role {role}")


def database_exists(name: str) -> bool:
    return psql(f"select 1 from pg_database where datname = '{name}'", "look up database") == "1"


def drop_database(name: str) -> None:
    psql(f"drop database if exists {name} with (force)", f"drop database {name}")


def per_directory_name(prefix: str, directory: Path) -> str:
    """One database per state directory (so test runs never share one)."""
    return f"{prefix}_{hashlib.sha1(str(directory).encode()).hexdigest()[:10]}"


def ensure_template(template: str, owner: str, build: Callable[[str], None]) -> None:
    """Make database ``template`` once per machine: ``build(name)`` fills a scratch database,
    which is renamed only once complete (a crashed build never leaves a half template)."""
    with file_lock(Path(f"/tmp/{template}.lock")):
        if database_exists(template):
            return
        building = template + "_building"
        drop_database(building)
        psql(f"create database {building} owner {owner}", f"create database {building}")
        build(building)
        psql(f"alter database {building} rename to {template}", f"rename {building}")


def copy_template(template: str, name: str, owner: str) -> None:
    """Drop ``name`` and recreate it as a copy of ``template``, commits without WAL flush wait
    (2-3x faster writes on a busy disk; a crash loses at most the last moment of a disposable
    local service database)."""
    drop_database(name)
    with file_lock(Path(f"/tmp/{template}.lock")):  # a template must be idle while copied
        psql(f"create database {name} owner {owner} template {template}",
             f"create database {name}")
    psql(f"alter database {name} set synchronous_commit = off", f"tune database {name}")


# --- server venvs --------------------------------------------------------------------------------
def ensure_venv(venv: Path, requirements: Sequence[str], *, what: str,
                before: Callable[[Path], None] | None = None, key: str = "",
                python: str = sys.executable) -> None:
    """Create a service's own venv once: ``before(venv)`` (extra install steps, described by
    ``key``), then ``pip install requirements``. A marker file records what was installed;
    pip's cache makes a re-creation fast."""
    marker = venv / ".swfflow-requirements"
    wanted = "\n".join(filter(None, (key, *requirements)))
    venv.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(venv.parent / f".{venv.name}.lock"):
        if marker.exists() and marker.read_text() == wanted:
            return
        run_checked([python, "-m", "venv", "--clear", str(venv)], what=f"create {what} venv")
        if before:
            before(venv)
        run_checked([str(venv / "bin" / "pip"), "install", "-q", *requirements],
                    what=f"pip install {what}", timeout=1800)
        marker.write_text(wanted)
