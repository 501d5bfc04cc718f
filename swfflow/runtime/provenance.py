"""Provenance of jobs run by the run-time engine: which inputs, command, container, exit code
and output checksums produced each output, in the same state store ``swfflow status`` reads."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine

from swfflow.runtime.tool import ToolResult

_META = MetaData()
PROV_JOBS = Table(
    "prov_jobs", _META,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", String, nullable=False),
    Column("status", String, nullable=False),
    Column("inputs", JSON),
    Column("command", JSON),
    Column("container", String),
    Column("exit_code", Integer),
    Column("outputs", JSON),
    Column("log", Text),
)


class ProvenanceStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        _META.create_all(engine)

    def __call__(self, label: str, job: dict[str, Any], result: ToolResult) -> None:
        with self.engine.begin() as conn:
            conn.execute(PROV_JOBS.insert().values(
                step=label, status="reused" if result.reused else result.status, inputs=json.loads(json.dumps(job, default=str)),
                command=result.command, container=result.container,
                exit_code=result.exit_code,
                outputs=json.loads(json.dumps(result.outputs, default=str)),
                log=result.log_tail(40)))

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(PROV_JOBS).order_by(PROV_JOBS.c.id)).all()
        return [{k: v for k, v in r._mapping.items() if k != "log"} | {"log_tail": r.log}
                for r in rows]
