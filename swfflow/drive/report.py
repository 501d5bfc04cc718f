"""``swfflow status``: what the state store knows, per instance → task → job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect

from swfflow.backends.local_catalog import datasets_in
from swfflow.state import sqlite_engine
from swfflow.drive.store import DriverStore


def collect_status(db: Path, run: str | None = None) -> dict[str, Any]:
    engine = sqlite_engine(db)
    store = DriverStore(engine)
    has_jobs = inspect(engine).has_table("exec_jobs")
    instances = []
    for inst in store.instances():
        if run is not None and inst.run != str(run):
            continue
        tasks = []
        rows = store.load(inst.instance)
        planned = [(spec["key"], spec["name"]) for spec in inst.plan["tasks"]]
        # run-time instances (a scatter whose width the planner could not know) follow
        planned += [(key, row["name"]) for key, row in sorted(rows.items())
                    if key not in {k for k, _ in planned}]
        for key, name in planned:
            row = rows.get(key, {})
            tasks.append({"key": key, "name": name,
                          "phase": row.get("phase", "pending"), "task_id": row.get("task_id"),
                          "message": row.get("message", ""),
                          "jobs": _jobs(engine, row.get("task_id")) if has_jobs else []})
        instances.append({"instance": inst.instance, "workflow": inst.workflow, "run": inst.run,
                          "state": inst.state, "tasks": tasks})
    datasets = datasets_in(engine) if inspect(engine).has_table(
        "catalog_datasets") else []
    return {"instances": instances, "datasets": datasets}


def _jobs(engine: Any, task_id: str | None) -> list[dict[str, Any]]:
    if not task_id:
        return []
    from swfflow.backends.local_executor import job_rows
    rows = job_rows(engine, task_id)
    return [{"number": r.number, "state": r.state, "attempt": r.attempt,
             "exit_code": r.exit_code, "inputs": len(r.files), "command": r.command,
             "container": r.container, "produced": r.produced} for r in rows]


def render_status(report: dict[str, Any]) -> None:
    console = Console()
    for inst in report["instances"]:
        table = Table(title=f"{inst['instance']}  [{inst['state']}]")
        for column in ("task", "state", "jobs done/all", "failed", "why"):
            table.add_column(column)
        for task in inst["tasks"]:
            jobs = task["jobs"]
            done = sum(j["state"] == "done" for j in jobs)
            failed = sum(j["state"] == "failed" for j in jobs)
            table.add_row(task["key"], task["phase"], f"{done}/{len(jobs)}", str(failed),
                          (task["message"] or "").splitlines()[0][:100]
                          if task["message"] else "")
        console.print(table)
        for task in inst["tasks"]:
            if task["phase"] == "failed" and task["message"]:
                console.print(f"[bold red]{task['key']}[/]: {task['message']}")
    if report["datasets"]:
        table = Table(title="datasets")
        for column in ("dataset", "open", "files"):
            table.add_column(column)
        for ds in report["datasets"]:
            table.add_row(ds["did"], "open" if ds["open"] else "closed", str(ds["files"]))
        console.print(table)
