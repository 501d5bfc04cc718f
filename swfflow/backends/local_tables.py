"""The local executor's state: its tasks and their jobs, in the state store (SQLite or
PostgreSQL). The monitor reads the same tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text

from swfflow.state import add_missing_columns

_META = MetaData()
TASKS = Table(
    "exec_tasks", _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String, unique=True, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("state", String, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("assigned", JSON, nullable=False, default=list),  # master file DIDs given to jobs
    # timings (epoch seconds) for the monitor; NULL in stores written before they were kept
    Column("submitted_at", Float),
    Column("finished_at", Float),  # reached done, failed or aborted (NULL again on retry)
)
JOBS = Table(
    "exec_jobs", _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Integer, nullable=False, index=True),
    Column("number", Integer, nullable=False),  # JEDI's serial: 1, 2, …
    Column("files", JSON, nullable=False),  # master input file DIDs
    Column("state", String, nullable=False),  # pending | running | done | failed
    Column("attempt", Integer, nullable=False, default=0),
    Column("job", JSON),  # the CWL job object it ran with (provenance: inputs)
    Column("command", JSON),
    Column("container", String),
    Column("exit_code", Integer),
    Column("outputs", JSON),  # the CWL output object
    Column("produced", JSON),  # [{did, adler32, size, pfn}] registered outputs
    Column("log", Text),
    Column("started_at", Float),  # its first attempt started
    Column("finished_at", Float),  # its last attempt ended done or failed
)


def create_tables(engine: Any) -> None:
    _META.create_all(engine)
    add_missing_columns(engine, (TASKS, JOBS))
