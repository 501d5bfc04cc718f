"""Release, follow and finish the tasks of one plan instance.

Rules (the plan says which applies to each task):

- ``release=start`` → submitted at once; ``parents_started`` (stream edges, JEDI
  ``noWaitParent``) → once every parent is submitted; ``parents_done`` (complete edges: merges,
  fits) → once every parent has succeeded or was skipped.
- A parent that failed (or was blocked) blocks its children: they are never submitted, and the
  reason names the parent.
- A dynamic ``when`` is evaluated on real values just before release; false → skipped, its
  output datasets are closed empty.
- An output dataset is closed when every task of its producing step succeeded (or was
  skipped); a failed producer's stays open for the retry, and children already pipelining on
  it are stopped (blocked) and resumed with it. The stream
  dataset is closed by whoever feeds it (``swfflow run``'s feeder, the bridge at end_run).
- ExpressionTools (no PanDA task) are evaluated here, by cwltool.

State lives in a :class:`~swfflow.drive.store.DriverStore`; a new driver over the same store and
plan resumes: tasks keep their backend ids (submission is idempotent by task name), failed ones
are retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from swfflow.backends.base import Catalog, Executor, TaskState
from swfflow.drive.store import DriverStore
from swfflow.drive.values import ValueResolver
from swfflow.errors import SwfflowError
from swfflow.plan.model import (CLOSE_WITH_PRODUCER, RELEASE_AFTER_PARENTS, RELEASE_AT_START,
                                RELEASE_WITH_PARENTS, Plan, TaskSpec)


class TaskPhase(str, Enum):
    PENDING = "pending"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # its `when` was false
    BLOCKED = "blocked"  # a parent failed: never submitted


DONE = {TaskPhase.SUCCEEDED, TaskPhase.SKIPPED}
FINAL = DONE | {TaskPhase.FAILED, TaskPhase.BLOCKED}
PHASE_OF_STATE = {
    TaskState.SUBMITTED: TaskPhase.SUBMITTED, TaskState.WAITING: TaskPhase.SUBMITTED,
    TaskState.RUNNING: TaskPhase.RUNNING, TaskState.UNKNOWN: TaskPhase.SUBMITTED,
    TaskState.SUCCEEDED: TaskPhase.SUCCEEDED, TaskState.PARTIAL: TaskPhase.FAILED,
    TaskState.FAILING: TaskPhase.FAILED, TaskState.FAILED: TaskPhase.FAILED,
    TaskState.EXHAUSTED: TaskPhase.FAILED,
}
# release rule → the parent phases that allow it
_RELEASE_WHEN_PARENTS_IN: dict[str, set[TaskPhase]] = {
    RELEASE_AT_START: set(TaskPhase),
    RELEASE_WITH_PARENTS: set(TaskPhase) - {TaskPhase.PENDING},
    RELEASE_AFTER_PARENTS: DONE,
}


@dataclass
class DriverTask:
    spec: TaskSpec
    phase: TaskPhase = TaskPhase.PENDING
    task_id: str | None = None
    message: str = ""
    outputs: dict[str, Any] | None = None  # parameter outputs known to the driver


Prepare = Callable[[TaskSpec], TaskSpec]
ExpressionRunner = Callable[[TaskSpec, dict[str, Any]], dict[str, Any]]


class Driver:
    def __init__(self, plan: Plan, catalog: Catalog, executor: Executor, store: DriverStore, *,
                 prepare: Prepare | None = None,
                 run_expression: ExpressionRunner | None = None):
        self.plan = plan
        self.catalog = catalog
        self.executor = executor
        self.store = store
        self.prepare = prepare or (lambda task: task)
        self.run_expression = run_expression
        self.instance = f"{plan.workflow}:{plan.run}"
        self.tasks = {t.key: DriverTask(t) for t in plan.tasks}
        self.values = ValueResolver(plan, catalog, self)
        self._closed: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Create every dataset (idempotent), load saved state, re-arm failed tasks."""
        for spec in self.plan.datasets:
            self.catalog.create_dataset(spec.did, rules=spec.rules)
        self.store.save_instance(self.instance, self.plan.workflow, self.plan.run,
                                 self.plan.to_dict(), "running")
        for key, row in self.store.load(self.instance).items():
            task = self.tasks.get(key)
            if task is None:
                continue
            task.phase, task.task_id = TaskPhase(row["phase"]), row["task_id"]
            task.message, task.outputs = row["message"] or "", row["outputs"]
            if task.phase in (TaskPhase.FAILED, TaskPhase.BLOCKED) and task.task_id:
                self.executor.retry(task.task_id)  # resume = try the failed work again
                self._set(task, TaskPhase.SUBMITTED, "")
            elif task.phase in (TaskPhase.BLOCKED, TaskPhase.FAILED):
                self._set(task, TaskPhase.PENDING, "")

    def tick(self) -> bool:
        """Follow submitted tasks, close finished outputs, release what may go. True when
        every task is final."""
        self._follow()
        self._close_finished_outputs()
        for task in self.tasks.values():
            if task.phase is TaskPhase.PENDING:
                self._consider(task)
        self._close_finished_outputs()
        finished = self.finished
        if finished:
            self.store.save_instance(self.instance, self.plan.workflow, self.plan.run,
                                     self.plan.to_dict(), "failed" if self.failed else "done")
        return finished

    def run(self, *, poll_s: float = 0.2, on_tick: Callable[[Driver], None] | None = None,
            timeout_s: float | None = None) -> None:
        self.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if on_tick is not None:
                on_tick(self)
            if self.tick():
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.instance} not finished after {timeout_s} s")
            time.sleep(poll_s)

    @property
    def finished(self) -> bool:
        return all(t.phase in FINAL for t in self.tasks.values())

    @property
    def failed(self) -> list[DriverTask]:
        return [t for t in self.tasks.values() if t.phase is TaskPhase.FAILED]

    def close_streams(self) -> None:
        """The end of run: close the stream datasets (idempotent)."""
        for spec in self.plan.datasets:
            if spec.role == "stream":
                self.catalog.close_dataset(spec.did)

    # --- following ------------------------------------------------------------------------
    def _follow(self) -> None:
        live = {t.task_id: t for t in self.tasks.values()
                if t.task_id and t.phase in (TaskPhase.SUBMITTED, TaskPhase.RUNNING)}
        if not live:
            return
        for task_id, status in self.executor.status(list(live)).items():
            task = live[task_id]
            phase = PHASE_OF_STATE[status.state]
            if phase is not task.phase:
                message = status.message if phase is TaskPhase.FAILED else ""
                self._set(task, phase, message)
                if phase is TaskPhase.FAILED:
                    self._stop_children(task)

    def _stop_children(self, parent: DriverTask) -> None:
        """Children already pipelining on a failed parent's (still open) output would wait
        forever: stop them; they resume with the parent on the next run."""
        for spec in self.plan.children(parent.spec.key):
            child = self.tasks[spec.key]
            if child.task_id and child.phase in (TaskPhase.SUBMITTED, TaskPhase.RUNNING):
                self.executor.kill(child.task_id)
                self._set(child, TaskPhase.BLOCKED,
                          f"stopped: parent {parent.spec.key} failed")
                self._stop_children(child)

    def _close_finished_outputs(self) -> None:
        for spec in self.plan.datasets:
            if spec.close != CLOSE_WITH_PRODUCER or spec.did in self._closed:
                continue
            # a failed producer's dataset stays open: a later run retries into it
            producers = [t for t in self.tasks.values() if t.spec.step == spec.producer]
            if producers and all(t.phase in DONE for t in producers):
                self.catalog.close_dataset(spec.did)
                self._closed.add(spec.did)

    # --- releasing ------------------------------------------------------------------------
    def _consider(self, task: DriverTask) -> None:
        parents = [self.tasks[p.key] for p in task.spec.parents if p.key in self.tasks]
        broken = [p for p in parents if p.phase in (TaskPhase.FAILED, TaskPhase.BLOCKED)]
        if broken:
            first = broken[0]
            reason = first.message.splitlines()[0] if first.message else first.phase.value
            self._set(task, TaskPhase.BLOCKED,
                      f"not started: parent {first.spec.key} {first.phase.value} ({reason})")
            return
        allowed = _RELEASE_WHEN_PARENTS_IN[task.spec.release]
        if not all(p.phase in allowed for p in parents):
            return
        try:
            spec, inputs = self.values.resolve(task.spec)
            skip = bool(spec.when) and not self.values.condition(spec, inputs)
        except SwfflowError as exc:  # a valueFrom/when that fails on the real values
            self._set(task, TaskPhase.FAILED, str(exc))
            return
        if skip:
            self._set(task, TaskPhase.SKIPPED, f"when {spec.when} is false", inputs=inputs)
            return
        if spec.kind == "expression":
            self._evaluate_expression(task, spec, inputs)
            return
        task.task_id = self.executor.submit(self.prepare(spec))
        self._set(task, TaskPhase.SUBMITTED, "", inputs=inputs)

    def _evaluate_expression(self, task: DriverTask, spec: TaskSpec,
                             inputs: dict[str, Any]) -> None:
        if self.run_expression is None:
            # every swfflow command passes one; a library caller that built a Driver may not
            self._set(task, TaskPhase.FAILED,
                      f"expression step {spec.step} cannot be evaluated: this driver has no "
                      "expression runner (pass run_expression=, e.g. "
                      "swfflow.drive.expressions.expressions_for_plan)")
            return
        try:
            outputs = self.run_expression(self.prepare(spec), inputs)
        except Exception as exc:  # the expression failed: the step fails, with why
            self._set(task, TaskPhase.FAILED, str(exc), inputs=inputs)
            return
        task.outputs = outputs
        self._set(task, TaskPhase.SUCCEEDED, "", inputs=inputs)

    def _set(self, task: DriverTask, phase: TaskPhase, message: str, *,
             inputs: Mapping[str, Any] | None = None) -> None:
        task.phase, task.message = phase, message
        values: dict[str, Any] = {"name": task.spec.name, "phase": phase.value,
                                  "task_id": task.task_id, "message": message,
                                  "outputs": task.outputs}
        if inputs is not None:
            values["inputs"] = _jsonable(inputs)
        self.store.save(self.instance, task.spec.key, **values)

    # --- results --------------------------------------------------------------------------
    def task_outputs(self, key: str) -> dict[str, Any]:
        """Parameter outputs of a finished task (driver-evaluated, or from the executor)."""
        task = self.tasks[key]
        if task.outputs is not None:
            return task.outputs
        reader = getattr(self.executor, "task_outputs", None)
        if task.task_id and reader is not None:
            return reader(task.task_id)
        return {}

    def workflow_outputs(self, types: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {name: self.values.output(sources, (types or {}).get(name, "Any"))
                for name, sources in self.plan.outputs.items()}


def with_job_values(spec: TaskSpec, values: Mapping[str, Any]) -> TaskSpec:
    payload = dict(spec.payload)
    payload["job"] = {**(payload.get("job") or {}), **values}
    return replace(spec, payload=payload)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
