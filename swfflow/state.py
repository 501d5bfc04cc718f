"""Database engines for swfflow's state: the one place a SQLAlchemy engine is made.

Every state store (the local catalog and executor, the driver's tables, ``swfflow submit``'s
state directory, the bridge's store) takes an engine from
here: :func:`sqlite_engine` for a file, :func:`state_engine` for a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from swfflow.errors import ConfigError

_URL_HINT = "use sqlite:///bridge.db or postgresql://user@host/dbname"


def sqlite_engine(path: str | Path, *, durable: bool = True) -> Engine:
    """One SQLite engine per state file, in WAL mode so a reader (``swfflow status``) never
    blocks the running driver.

    ``durable=False`` (a local ``swfflow run``'s own state) syncs the WAL at checkpoints only:
    a commit then costs no fsync, and what a power cut loses is at most the last jobs'
    records — which a resumed run redoes. The bridge and ``submit`` keep every commit on disk
    (an acked message, a submitted task must never be forgotten)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", future=True)
    pragmas = ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=10000",
               *([] if durable else ["PRAGMA synchronous=NORMAL"])]

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    return engine


def state_engine(url: str) -> Engine:
    """An engine for a state URL: ``sqlite:///path`` (WAL, busy timeout) or any other
    SQLAlchemy URL such as ``postgresql://user@host/db``."""
    if "://" not in url:
        raise ConfigError(f"state store {url!r} is not a database URL", hint=_URL_HINT)
    if url.startswith("sqlite:///"):
        return sqlite_engine(Path(url.removeprefix("sqlite:///")))
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except Exception as exc:  # unknown dialect, missing driver
        raise ConfigError(f"cannot use state store {url!r}: {exc}", hint=_URL_HINT) from None
    return engine


def add_missing_columns(engine: Engine, tables: Any) -> None:
    """Add the columns a store written by an earlier swfflow lacks (``create_all`` makes
    missing tables only). Every column added since a table first shipped is nullable."""
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    for table in tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
