"""What ``swfflow status --run N [--json]`` shows of bridge-driven runs: the bridge store's
runs and STF counts joined with the driver's tasks (same database)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from swfflow.stream.store import BridgeStore
from swfflow.state import state_engine


def run_status(state_url: str, run: str | None = None) -> dict[str, Any]:
    """What ``swfflow status --run N --json`` shows for bridge-driven runs: per run its DAQ
    state, phase, STF counts, and per step/task the driver's phase (JSON-ready)."""
    engine = state_engine(state_url)
    try:
        return run_status_of(engine, run)
    finally:
        engine.dispose()


def run_status_of(engine: Engine, run: str | None = None) -> dict[str, Any]:
    """:func:`run_status` on an open engine."""
    from swfflow.drive.store import DriverStore
    from swfflow.stream.replica_store import ReplicaStore

    store, replicas = BridgeStore(engine), ReplicaStore(engine)
    drivers = {inst.run: inst for inst in DriverStore(engine).instances()}
    out = []
    for row in store.runs():
        if run is not None and row["run_id"] != str(run):
            continue
        recorded, attached, with_meta = store.file_counts_all(row["run_id"])
        hold = store.hold(row["run_id"])
        tasks = []
        inst = drivers.get(row["run_id"])
        if inst is not None:
            saved = DriverStore(engine).load(inst.instance)
            for spec in inst.plan["tasks"]:
                task = saved.get(spec["key"], {})
                tasks.append({"key": spec["key"], "name": spec["name"],
                              "phase": task.get("phase", "pending"),
                              "task_id": task.get("task_id"),
                              "message": task.get("message") or ""})
        out.append({"run": row["run_id"], "namespace": row["namespace"], "phase": row["phase"],
                    "daq_state": row["daq_state"], "daq_substate": row["daq_substate"],
                    "stream_dataset": row["stream_did"],
                    "stf_announced": row["total_stf_files"], "stf_recorded": recorded,
                    "stf_attached": attached, "stf_metadata_set": with_meta,
                    "missing": row["missing"] or [],
                    "message": row["message"],
                    "tasks_hold": None if hold is None else {
                        "wanted": hold["wanted"], "applied": hold["applied_at"] is not None,
                        "paused_tasks": hold["paused"], "message": hold["message"]},
                    # the butterfly: each E1 site's copies and running checksum, and the
                    # alarm if a copy or a site's sum differs from the DAQ's
                    "sites": {rse: {"files": site["files"], "checksum": site["checksum"],
                                    "checked": site["checked_at"] is not None,
                                    "alarm": site["alarm"]}
                              for rse, site in replicas.sums(row["run_id"]).items()},
                    "workflow": inst.workflow if inst else None,
                    "instance_state": inst.state if inst else None, "tasks": tasks})
    return {"runs": out, "dead_letters": len(store.dead_letters()),
            "sites": {rse: {"down": site["down"], "reason": site["reason"]}
                      for rse, site in replicas.sites().items()}}
