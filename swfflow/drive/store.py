"""The driver's persistent state: one row per (instance, task) with its phase, backend task id,
message and the provenance the driver knows (released when, inputs it resolved, outputs).

SQLite by default (the working directory's ``.swfflow/state.db``), PostgreSQL for production —
any SQLAlchemy URL. Rows are keyed by instance and task key, so every write is idempotent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine

_META = MetaData()
TASKS = Table(
    "drv_tasks", _META,
    Column("instance", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("phase", String, nullable=False),
    Column("task_id", String),
    Column("message", Text, nullable=False, default=""),
    Column("inputs", JSON),  # values the driver resolved (when, valueFrom), for provenance
    Column("outputs", JSON),  # parameter outputs (ExpressionTools run by the driver)
)
INSTANCES = Table(
    "drv_instances", _META,
    Column("instance", String, primary_key=True),
    Column("workflow", String, nullable=False),
    Column("run", String, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("state", String, nullable=False),
)


class DriverStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        _META.create_all(engine)

    def save_instance(self, instance: str, workflow: str, run: str, plan: dict[str, Any],
                      state: str) -> None:
        with self.engine.begin() as conn:
            exists = conn.execute(select(INSTANCES.c.instance)
                                  .where(INSTANCES.c.instance == instance)).first()
            values = {"workflow": workflow, "run": run, "plan": plan, "state": state}
            if exists:
                conn.execute(INSTANCES.update().where(INSTANCES.c.instance == instance)
                             .values(**values))
            else:
                conn.execute(INSTANCES.insert().values(instance=instance, **values))

    def instances(self) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(select(INSTANCES).order_by(INSTANCES.c.instance)).all()

    def load(self, instance: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(TASKS).where(TASKS.c.instance == instance)).all()
        return {r.key: dict(r._mapping) for r in rows}

    def save(self, instance: str, key: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            where = (TASKS.c.instance == instance) & (TASKS.c.key == key)
            if conn.execute(select(TASKS.c.key).where(where)).first():
                conn.execute(TASKS.update().where(where).values(**values))
            else:
                conn.execute(TASKS.insert().values(instance=instance, key=key, **values))
