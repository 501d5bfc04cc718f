"""``--backend dryrun``: an Executor that records what would be submitted and runs nothing.

Every task submitted is one JSON line appended to ``<workdir>/dryrun-tasks.jsonl`` (``swfflow
submit``: the state directory; the bridge: ``--workdir``)::

    {"event": "submit", "id": "1", "name": "<task name>", "key": "<plan key>",
     "step": "<step>", "params": {<the JEDI task parameters>}}

Commands (kill, finish, retry, pause, resume) are recorded the same way (``"event"`` = the
command, with the task ``id``). Ids count up from 1 in the file; submitting a name already
recorded returns its id and records nothing (idempotent by task name, like every backend).

Status is deterministic, decided from the file and the catalog alone:

- a task that reads its input until the dataset is closed (``runUntilClosed``) is ``running``
  while that dataset is open, as JEDI keeps such a task alive;
- a killed task is ``failed`` (JEDI ``aborted``) until it is retried;
- every other task is ``succeeded`` (JEDI ``done``) from its first status call on — so a
  dry run follows the whole plan: merges are released, datasets closed, runs finished.

Nothing reads the tasks' outputs (``task_outputs`` is empty): an ExpressionTool step that
needs a command step's parameter outputs sees none.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swfflow.backends.base import ExecutorBase, TaskState, TaskStatus
from swfflow.plan.model import TaskSpec

RECORD = "dryrun-tasks.jsonl"
SCHEME = "dryrun:"


class DryRunExecutor(ExecutorBase):
    """Records submissions and commands in a JSON-lines file; runs nothing."""

    runs_payloads = False

    def __init__(self, path: str | Path, catalog: Any = None):
        self.path = Path(path)
        self.catalog = catalog  # where ``runUntilClosed`` inputs are looked up (None: closed)
        self.url = f"{SCHEME}{self.path}"  # what ``swfflow submit`` records as the server
        self._lock = threading.Lock()

    # --- the record -------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Every line recorded so far, in order."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def _append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(event, sort_keys=True) + "\n")

    def _tasks(self) -> dict[str, dict[str, Any]]:
        """id → the submit event, with ``killed`` as the commands left it."""
        tasks: dict[str, dict[str, Any]] = {}
        for event in self.events():
            if event["event"] == "submit":
                tasks[event["id"]] = {**event, "killed": False}
            elif event["id"] in tasks and event["event"] in ("kill", "retry"):
                tasks[event["id"]]["killed"] = event["event"] == "kill"
        return tasks

    # --- Executor protocol ------------------------------------------------------------------
    def submit(self, task: TaskSpec) -> str:
        with self._lock:
            tasks = self._tasks()
            for task_id, known in tasks.items():
                if known["name"] == task.name:
                    return task_id
            task_id = str(len(tasks) + 1)
            self._append({"event": "submit", "id": task_id, "name": task.name, "key": task.key,
                          "step": task.step, "params": task.params})
            return task_id

    def status(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        tasks = self._tasks()
        return {task_id: self._status(task_id, tasks.get(task_id)) for task_id in task_ids}

    def _status(self, task_id: str, task: dict[str, Any] | None) -> TaskStatus:
        if task is None:
            return TaskStatus(task_id, TaskState.UNKNOWN, raw="unknown",
                              message="not in the dry-run record")
        if task["killed"]:
            return TaskStatus(task_id, TaskState.FAILED, raw="aborted", message="killed")
        params = task["params"]
        reading = params.get("dsForIN") if params.get("runUntilClosed") else None
        if reading and self.catalog is not None and self.catalog.is_open(reading):
            return TaskStatus(task_id, TaskState.RUNNING, raw="running")
        return TaskStatus(task_id, TaskState.SUCCEEDED, raw="done")

    def _command(self, event: str, task_id: str) -> None:
        with self._lock:
            self._append({"event": event, "id": task_id})

    def kill(self, task_id: str) -> None:
        self._command("kill", task_id)

    def finish(self, task_id: str) -> None:
        self._command("finish", task_id)

    def retry(self, task_id: str) -> None:
        self._command("retry", task_id)

    def pause(self, task_id: str) -> None:
        self._command("pause", task_id)

    def resume(self, task_id: str) -> None:
        self._command("resume", task_id)


def build(settings: Any, *, engine: Any = None, catalog: Any = None) -> DryRunExecutor:
    """The factory :mod:`swfflow.assemble` calls: the record in the settings' workdir."""
    return DryRunExecutor(Path(settings.workdir).resolve() / RECORD, catalog)

