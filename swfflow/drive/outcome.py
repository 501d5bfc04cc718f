"""What a finished run records for the planned tasks it did not run (pure: plan and saved rows
in, rows to write out)."""

from __future__ import annotations

from typing import Any

from swfflow.errors import RunFailed
from swfflow.plan.model import Plan, TaskSpec

Rows = dict[str, dict[str, Any]]
# (task, its backend id or None, the phase to record, why)
Record = tuple[TaskSpec, str | None, str, str]


def not_run(plan: Plan, rows: Rows) -> list[Record]:
    """Planned tasks a finished run never reached: a false `when`, an empty scatter, or a leaf
    that ran as run-time instances instead."""
    records = []
    for task in plan.tasks:
        if task.key in rows:
            continue
        instances = [k for k in rows if k.startswith(f"{task.step}.") and k != task.key]
        why = (f"ran as {len(instances)} run-time instance(s)" if instances else
               "not run: its `when` was false, or its scatter was empty")
        records.append((task, None, "skipped", why))
    return records


def blocked_by(plan: Plan, rows: Rows, failure: RunFailed) -> tuple[list[Record], RunFailed]:
    """The planned tasks a failure kept from running (recorded as blocked, so `swfflow
    status` says why), and the failure naming their steps."""
    cause = failure.what.splitlines()[0]
    records = []
    for task in plan.tasks:
        row = rows.get(task.key) or {}
        if row.get("phase") in (None, "pending", "submitted", "blocked"):
            records.append((task, row.get("task_id"), "blocked", f"not started: {cause}"))
    if not records:
        return records, failure
    steps = ", ".join(dict.fromkeys(task.step for task, *_ in records))
    hint = "\n".join(filter(None, [failure.hint, f"not started because of it: {steps}"]))
    return records, RunFailed(failure.what, where=failure.where, hint=hint)


def missing_outputs(flow: dict[str, Any], result: dict[str, Any], source: str) -> None:
    """Raise when a required workflow output has no value once the run's files are listed (a
    task that succeeded without writing its file): lazy outputs pass the engine's own check."""
    for name, data in flow.get("outputs", {}).items():
        kind = data.get("type")
        # files are what a lazy dataset value can leave out; other types the engine checked
        if isinstance(kind, str) and kind in ("File", "Directory") and result.get(name) is None:
            raise RunFailed(f"output {name}: no value for a required {kind} output",
                            where=source or None,
                            hint="the step that makes it succeeded without writing it: see "
                                 "its log (swfflow status), or make the output optional")
