"""The task side of the PanDA contract server: JEDI's bookkeeping, in memory.

:class:`TaskStore` keeps tasks the way the JEDI tables do (id, name, owner, status, parameters,
times, error dialog, input-file counters), answers the same questions the REST API asks, and
walks every task through JEDI's states on :meth:`TaskStore.tick`:

    registered → defined (parameters pass the refiner's checks) | broken
    defined → ready → running (the runner started it) → done | finished | failed | exhausted
    kill:   toabort → aborting → aborted          finish: finishing → done | finished
    retry:  toretry → ready → running            incexec: toincexec → rerefine → ready → …
    pause:  paused, resume: back to the status it had

What the tasks *do* is up to a :class:`TaskRunner`: :class:`StateMachineRunner` just lets time
pass; :mod:`swfflow.testing.panda_runner` runs them with swfflow's local executor.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from swfflow.backends.panda_states import JEDI_STATUSES, command_allowed
from swfflow.testing.panda_runner import RUN_TO_JEDI, StateMachineRunner, TaskRunner

FINAL = frozenset({"done", "finished", "failed", "exhausted", "broken", "aborted"})


# --- the refiner's checks ------------------------------------------------------------------
# TaskRefinerBase.extractCommon reads these unconditionally (a missing one breaks the task)
COMMON_FIELDS = ("taskName", "userName", "vo", "prodSourceLabel", "taskPriority", "architecture",
                 "transUses", "transHome", "processingType", "taskType")
TEMPLATE_PARAM_TYPES = {"input", "output", "log", "pseudo_input", "pp_input", "trn_log",
                        "trn_output"}


def refine_problems(params: Mapping[str, Any]) -> list[str]:
    """Why JEDI's refiner would break a task with these parameters (empty: it would not)."""
    problems = [f"{name} is missing" for name in COMMON_FIELDS if name not in params]
    job_params = params.get("jobParameters")
    if not isinstance(job_params, list) or not job_params:
        problems.append("jobParameters must be a non-empty list")
        job_params = []
    for i, item in enumerate(job_params):
        problems += [f"jobParameters[{i}]: {p}" for p in _param_item_problems(item)]
    log = params.get("log")
    if log is None:
        problems.append("log is missing")
    else:
        problems += [f"log: {p}" for p in _param_item_problems(log)]
        if isinstance(log, dict) and log.get("param_type") != "log":
            problems.append("log: param_type must be log")
    has_input = params.get("noInput") or params.get("pfnList") or params.get("dsForIN") or any(
        isinstance(i, dict) and i.get("param_type") == "input" for i in job_params)
    if not has_input:
        problems.append("no input: give dsForIN or an input template, or set noInput")
    return problems


def _param_item_problems(item: Any) -> list[str]:
    if not isinstance(item, dict):
        return ["must be a dictionary"]
    kind = item.get("type")
    if kind == "constant":
        return [] if "value" in item else ["constant without value"]
    if kind != "template":
        return [f"unknown type {kind!r} (constant or template)"]
    problems = [] if "value" in item else ["template without value"]
    if item.get("param_type") not in TEMPLATE_PARAM_TYPES:
        problems.append(f"unknown param_type {item.get('param_type')!r}")
    elif item["param_type"] != "pseudo_input" and not item.get("dataset"):
        problems.append(f"{item['param_type']} template without dataset")
    return problems


# --- the store ------------------------------------------------------------------------------
@dataclass
class ServerTask:
    jediTaskID: int
    taskName: str
    userName: str
    vo: str
    prodSourceLabel: str
    status: str
    params: dict[str, Any]
    creationDate: datetime
    modificationTime: datetime
    parent_tid: int | None = None
    errorDialog: str | None = None
    oldStatus: str | None = None
    command: str | None = None  # registered, not yet acted on
    held: bool = False  # status set from outside: the tick leaves the task alone
    nFiles: int = 0
    nFilesFinished: int = 0
    nFilesFailed: int = 0
    job_ids: list[int] = field(default_factory=list)
    started: bool = False
    history: list[str] = field(default_factory=list)  # every status it has had, in order
    # JEDI has read it from the submission table (before: the server knows no such task)
    registered: bool = True


DETAIL_ATTRIBUTES = ("jediTaskID", "taskName", "status", "userName", "creationDate",
                     "modificationTime", "prodSourceLabel", "vo", "parent_tid", "errorDialog",
                     "oldStatus")
SPEC_ATTRIBUTES = set(DETAIL_ATTRIBUTES) | {"workingGroup", "site", "cloud", "campaign",
                                            "taskType", "processingType", "taskPriority", "reqID"}


class TaskStore:
    """JEDI's task tables and state machine. Thread-safe; persisted to ``state_file`` if given."""

    def __init__(self, runner: TaskRunner | None = None, state_file: str | Path | None = None,
                 production_role: bool = False, first_id: int = 1, register_s: float = 0.0):
        self.runner: TaskRunner = runner or StateMachineRunner()
        # the real server inserts into a submission table that JEDI reads within seconds;
        # until then the task is unknown: status 255, "not found" to commands, and a second
        # submission of its name is a new task (which JEDI aborts as a duplicate)
        self.register_s = register_s
        self.state_file = Path(state_file) if state_file else None
        self.production_role = production_role
        self.lock = threading.RLock()
        self.tasks: dict[int, ServerTask] = {}
        self.next_id = first_id
        if self.state_file and self.state_file.exists():
            self._load()

    # --- submission (DBProxy.insertTaskParamsPanda) ------------------------------------------
    def insert(self, params: dict[str, Any], user: str, parent_tid: int | None) -> tuple[int, str]:
        with self.lock:
            params = dict(params)
            params["userName"] = user
            if not self.production_role or "taskType" not in params:
                params["taskType"], params["taskPriority"] = "anal", 1000
            try:
                name, vo, label = params["taskName"], params["vo"], params["prodSourceLabel"]
            except KeyError:
                return 4, "failed to register task"
            if "parentTaskName" in params:
                parent = next((t for t in self.tasks.values() if t.userName == user
                               and t.taskName == params["parentTaskName"]), None)
                if parent is None:
                    return 11, (f'failed to find parent with user="{user}" '
                                f'name={params["parentTaskName"]}')
                parent_tid = parent.jediTaskID
            old = self._same_name(name, user, vo, label)
            if old is not None and params.get("uniqueTaskName") is True:
                if old.status not in FINAL:
                    return 2, (f"jediTaskID={old.jediTaskID} is in the {old.status} state for "
                               f"outDS={name}. You can re-submit the task with new parameters for "
                               "the same or another input once it goes into finished/failed/done. "
                               "Or you can retry the task once it goes into running/finished/"
                               "failed/done. ")
                self._set(old, "toincexec", command="incexec")
                old.params.update({k: v for k, v in params.items() if k.startswith("dsFor")})
                return 3, ("reactivation accepted. "
                           f"jediTaskID={old.jediTaskID} (currently in {old.oldStatus} state) "
                           "will be re-executed with old and/or new input")
            now = _utcnow()
            task = ServerTask(self.next_id, name, user, vo, label, "registered", params, now, now,
                              parent_tid=parent_tid, history=["registered"],
                              registered=self.register_s <= 0)
            self.tasks[task.jediTaskID] = task
            self.next_id += 1
            self._save()
            return 0, f"succeeded. new jediTaskID={task.jediTaskID}"

    # --- commands (DBProxy.sendCommandTaskPanda) -----------------------------------------------
    def command(self, task_id: int, command: str) -> tuple[int, str]:
        with self.lock:
            task = self.get(task_id)
            if task is None:
                return 2, f"jediTaskID={task_id} not found"
            allowed, extra = command_allowed(command, task.status,
                                             production_role=self.production_role)
            if not allowed:
                return 4, (f"Command rejected: the {command} command is not accepted if the task "
                           f"is in {task.status} status {extra}")
            task.command = command
            task.held = False
            self._save()
            return 0, (f"command={command} is registered for task ID {task_id}. "
                       "will be executed in a few minutes")

    # --- queries ---------------------------------------------------------------------------
    def get(self, task_id: int) -> ServerTask | None:
        with self.lock:
            task = self.tasks.get(task_id)
            return task if task is not None and task.registered else None

    def details(self, task: ServerTask) -> dict[str, Any]:
        """The dict of ``get_task_details_json``: task attributes plus input-file progress."""
        out: dict[str, Any] = {a: getattr(task, a) for a in DETAIL_ATTRIBUTES}
        out.update({a: task.params.get(a) for a in SPEC_ATTRIBUTES if a not in out})
        out["splitRule"] = None
        out["job_execution_params"] = None
        out["task_creation_arguments"] = task.params.get("cliParams")
        out["raw_task_params"] = task.params
        out.update(nFiles=task.nFiles, nFilesFinished=task.nFilesFinished,
                   nFilesFailed=task.nFilesFailed, nFilesMissing=0,
                   pctFinished=round(100 * task.nFilesFinished / task.nFiles) if task.nFiles else 0,
                   pctFailed=round(100 * task.nFilesFailed / task.nFiles) if task.nFiles else 0)
        return out

    def select(self, user: str, since: str | None, criteria: Mapping[str, str],
               n_tasks: int) -> list[ServerTask] | None:
        """``getTaskIDsWithCriteria_JEDI``: equality criteria, a modification-time window
        (capped at 90 days) and a row limit applied before anything else filters."""
        if any(k not in SPEC_ATTRIBUTES for k in criteria):
            return None
        floor = _utcnow() - timedelta(days=90)
        if since is not None:
            try:
                floor = max(floor, datetime.strptime(since, "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                return None
        with self.lock:
            rows = [t for t in sorted(self.tasks.values(), key=lambda t: t.jediTaskID)
                    if t.registered and t.userName == user and t.modificationTime >= floor
                    and all(str(self.details(t).get(k)) == str(v) for k, v in criteria.items())]
        return rows[:n_tasks]

    # --- test control ------------------------------------------------------------------------
    def force_status(self, task_id: int, status: str, error_dialog: str | None = None) -> None:
        """Put a task in any status and keep it there (until a command moves it)."""
        with self.lock:
            task = self.tasks[task_id]
            self._set(task, status)
            task.errorDialog = error_dialog
            task.held = True
            self._save()

    # --- the state machine -------------------------------------------------------------------
    def tick(self) -> None:
        with self.lock:
            for task in list(self.tasks.values()):
                if not task.registered:
                    self._register(task)
                elif not task.held:
                    self._advance(task)

    def _register(self, task: ServerTask) -> None:
        if (_utcnow() - task.creationDate).total_seconds() < self.register_s:
            return
        same = self._same_name(task.taskName, task.userName, task.vo, task.prodSourceLabel)
        task.registered = True
        if same is not None and same.status not in FINAL and task.params.get("uniqueTaskName"):
            # the real JEDI registers the duplicate with neither name nor user
            task.taskName = task.userName = ""
            self._set(task, "toabort", error_dialog=(
                f"toabort since there is duplicated task -> jediTaskID={same.jediTaskID}"))

    def _advance(self, task: ServerTask) -> None:
        step = _STEPS.get(task.command or task.status)
        if step is not None:
            step(self, task)

    def _refine(self, task: ServerTask) -> None:
        problems = refine_problems(task.params)
        if problems:
            self._set(task, "broken", error_dialog="task parameters are invalid: " +
                      "; ".join(problems))
        else:
            self._set(task, "defined")

    def _start(self, task: ServerTask) -> None:
        try:
            if task.started:
                self.runner.retry(task.jediTaskID, task.params)
            else:
                self.runner.start(task.jediTaskID, task.params)
                task.started = True
        except Exception as exc:  # what JEDI does with a task it cannot make jobs for
            self._set(task, "broken", error_dialog=f"could not start the task: {exc}")
            return
        self._set(task, "running")

    def _poll(self, task: ServerTask) -> None:
        report = self.runner.poll(task.jediTaskID)
        task.nFiles, task.nFilesFinished = report.n_files, report.n_files_finished
        task.nFilesFailed, task.job_ids = report.n_files_failed, list(report.job_ids)
        status = RUN_TO_JEDI.get(report.state, "running")
        if task.status == "finishing" and status in ("running", "pending"):
            return
        if status != task.status:
            self._set(task, status, error_dialog=report.message or None)

    def _kill(self, task: ServerTask) -> None:
        self._set(task, "toabort", command=None)

    def _aborting(self, task: ServerTask) -> None:
        if task.started:
            self.runner.stop(task.jediTaskID, "kill")
        self._set(task, "aborting")

    def _finish(self, task: ServerTask) -> None:
        if task.started:
            self.runner.stop(task.jediTaskID, "finish")
            self._set(task, "finishing", command=None)
        else:
            self._set(task, "done", command=None)

    def _retry(self, task: ServerTask) -> None:
        self._set(task, "toretry", command=None)

    def _incexec(self, task: ServerTask) -> None:
        self._set(task, "rerefine", command=None)

    def _pause(self, task: ServerTask) -> None:
        self._set(task, "paused", command=None)

    def _resume(self, task: ServerTask) -> None:
        self._set(task, task.oldStatus or "running", command=None)

    def _set(self, task: ServerTask, status: str, *, command: Any = ...,
             error_dialog: str | None = None) -> None:
        assert status in JEDI_STATUSES or status == "staging", status
        if status != task.status:
            task.oldStatus, task.status = task.status, status
            task.modificationTime = _utcnow()
            task.history.append(status)
        if command is not ...:
            task.command = command
        if error_dialog is not None:
            task.errorDialog = error_dialog
        self._save()

    def _same_name(self, name: str, user: str, vo: str, label: str) -> ServerTask | None:
        same = [t for t in self.tasks.values() if t.registered and (
            t.taskName, t.userName, t.vo, t.prodSourceLabel) == (name, user, vo, label)]
        return max(same, key=lambda t: t.jediTaskID) if same else None

    # --- persistence -------------------------------------------------------------------------
    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {"next_id": self.next_id, "tasks": [asdict(t) for t in self.tasks.values()]}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, default=_encode_time))
        tmp.replace(self.state_file)

    def _load(self) -> None:
        data = json.loads(self.state_file.read_text(), object_hook=_decode_time)  # type: ignore[union-attr]
        self.next_id = data["next_id"]
        for row in data["tasks"]:
            task = ServerTask(**row)
            task.started = False  # the runner of the last process is gone: start again
            self.tasks[task.jediTaskID] = task


def _to_ready(store: TaskStore, task: ServerTask) -> None:
    store._set(task, "ready")


def _to_aborted(store: TaskStore, task: ServerTask) -> None:
    store._set(task, "aborted")


_STEPS = {
    "registered": TaskStore._refine, "defined": _to_ready, "ready": TaskStore._start,
    "running": TaskStore._poll, "pending": TaskStore._poll, "finishing": TaskStore._poll,
    "toretry": _to_ready, "rerefine": _to_ready,
    "toabort": TaskStore._aborting, "aborting": _to_aborted,
    "kill": TaskStore._kill, "finish": TaskStore._finish, "retry": TaskStore._retry,
    "incexec": TaskStore._incexec, "pause": TaskStore._pause, "resume": TaskStore._resume,
}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _encode_time(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(type(value).__name__)


def _decode_time(obj: dict[str, Any]) -> Any:
    return datetime.fromisoformat(obj["__datetime__"]) if "__datetime__" in obj else obj
