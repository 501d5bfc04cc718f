"""The PanDA Executor: JEDI tasks through panda-client 2.x (``pandaclient.Client``).

What each protocol call does on the server (docs/panda.md has the why):

- ``submit``: look the task name up first (``task/get_tasks_detailed_info_since`` with exact
  ``taskName``, ``vo`` and ``prodSourceLabel``), so a re-submission after a crash returns the
  existing task and never re-runs a final one; otherwise ``insertTaskParams`` (the inputs the
  driver computed at run time added to ``jobParameters`` as ``--values=B64``, plan/jedi.py).
  The id comes from ``jediTaskID=N`` in the server's message; code 1/2 (already there) resolves
  to that id, code 3 (an incremental re-run) is only caused on purpose by :meth:`retry`.
- ``status``: ONE ``get_tasks_detailed_info_since`` call per 200 tasks, filtered by the exact
  task ids and bounded by the earliest submission time we know; ids it does not return (the
  server truncates before it filters) are looked up one by one, exactly.
- ``kill``/``finish``: the commands; repeating one on a task that already obeys is a no-op.
- ``pause``/``resume``: ``pauseTask``/``resumeTask`` (the server takes them from production
  roles only); pausing a paused task or resuming one that is not paused is a no-op.
- ``retry``: ``retryTask``; a task JEDI will not retry but will re-execute (aborted, done) is
  re-submitted under its own name, which JEDI turns into an incremental execution (code 3).

Every exchange that fails (panda-client status 255: network error, non-200, unparsable body) is
retried with exponential backoff, then raised as :class:`ServiceError` naming the server and
the call. Credentials come from panda-client's usual environment (``PANDA_AUTH=oidc`` with
``PANDA_AUTH_VO`` and a token, or an X.509 proxy); token values are scrubbed from everything
swfflow logs or raises.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from swfflow.backends.base import CommandRefused, ExecutorBase, TaskState, TaskStatus
from swfflow.backends.panda_calls import PandaCalls
from swfflow.backends.panda_client import check_auth_environment, redact
from swfflow.backends.panda_sandbox import (
    CacheUploads,
    SandboxShipper,
    name_in_cache,
    upload_in_child,
)
from swfflow.backends.panda_states import (
    FINISHED_OR_FINISHING,
    INCEXEC_ACCEPTED,
    JEDI_STATUSES,
    KILLED_OR_KILLING,
    RESUME_ACCEPTED,
    to_state,
)
from swfflow.errors import ConfigError, ServiceError
from swfflow.plan.jedi import with_computed_values
from swfflow.plan.model import TaskSpec

log = logging.getLogger(__name__)

TASK_ID_IN_MESSAGE = re.compile(r"jediTaskID=(\d+)")
# panda-client reports the server's code 3 (incremental re-execution) as 0: only the message
# tells them apart (pandaserver task_api.submit answers success for both)
REEXECUTION_MESSAGE = re.compile(r"^\s*reactivation accepted")
SINCE_FORMAT = "%Y-%m-%d %H:%M:%S"  # what task/get_tasks_detailed_info_since parses
REGEX_META = set(r"^$*+?\|()")  # the server treats a filter value with any of these as a regex
URL_VARIABLES = ("PANDA_URL_SSL", "PANDA_URL")  # panda-client's, in its order of preference

# insertTaskParams codes (pandaserver DBProxy.insertTaskParamsPanda)
SUBMIT_ACCEPTED, SUBMIT_DUP_DEFT, SUBMIT_DUP_JEDI, SUBMIT_INCEXEC = 0, 1, 2, 3

REGISTRATION_POLL_S = 2.0

# what a pause/resume leaves behind: repeating it there is a no-op
PAUSED = frozenset({"paused"})
NOT_PAUSED = frozenset(JEDI_STATUSES) - RESUME_ACCEPTED


# --- the executor ----------------------------------------------------------------------------

class PandaExecutor(ExecutorBase):
    """:class:`swfflow.backends.base.Executor` over a PanDA server (JEDI tasks).

    ``url`` defaults to ``PANDA_URL_SSL`` (then ``PANDA_URL``) like panda-client; only its scheme
    and host:port matter (the REST API lives under ``/api/v1``). With neither, it refuses:
    panda-client would fall back to CERN's production server.
    """

    def __init__(self, url: str | None = None, *, attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, since_margin_s: float = 600.0,
                 unknown_alert_polls: int = 5, status_chunk: int = 200, n_tasks: int = 1000,
                 registration_wait_s: float = 180.0):
        self.url = url or next(filter(None, map(os.environ.get, URL_VARIABLES)), None)
        if not self.url:
            raise ConfigError(
                "no PanDA server configured: PANDA_URL_SSL and PANDA_URL are unset",
                hint="export PANDA_URL_SSL=https://host:port/server/panda PANDA_URL=$PANDA_URL_SSL"
                     " (or give the server's URL as an option); swfflow never falls back to "
                     "panda-client's default, CERN's production server")
        parsed = urlparse(self.url)
        if not parsed.scheme or not parsed.netloc:
            raise ConfigError(f"PanDA server URL {self.url!r} is not a URL",
                              hint="set PANDA_URL_SSL=https://host:port/server/panda")
        self.api_base = f"{parsed.scheme}://{parsed.netloc}/api/v1"
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.since_margin = timedelta(seconds=since_margin_s)
        self.unknown_alert_polls = unknown_alert_polls
        self.registration_wait_s = registration_wait_s  # JEDI reads new tasks within this
        self.status_chunk = status_chunk
        self.n_tasks = n_tasks
        self._not_before: dict[int, datetime] = {}  # task id → no modification earlier than this
        self._names: dict[int, str] = {}
        self._unknown_polls: dict[int, int] = {}
        self._uploads = CacheUploads(self.put_in_cache)
        self.calls = PandaCalls(self.url, self.api_base, attempts=attempts, backoff_s=backoff_s,
                                max_backoff_s=max_backoff_s)
        check_auth_environment()

    # --- Executor protocol ---------------------------------------------------------------
    def submit(self, task: TaskSpec) -> str:
        params = with_computed_values(task)  # values the driver computed reach the job
        params.setdefault("taskName", task.name)
        if params["taskName"] != task.name:
            raise ConfigError(f"task {task.key}: params taskName {params['taskName']!r} differs "
                              f"from the plan's task name {task.name!r}", where=task.step)
        existing = self._find_by_name(task.name, params)
        if existing is not None:
            log.info("task %s already on PanDA as %s (%s)", task.name, existing["jediTaskID"],
                     existing.get("status"))
            return str(self._remember(existing))
        params = self._uploads.ensure(params)  # the job sandbox, uploaded when first needed
        submitted_at = _utcnow()
        code, message = self._submit_params(params)
        task_id = self._id_from_answer(task, code, message)
        self._not_before.setdefault(task_id, submitted_at)
        self._names[task_id] = task.name
        return str(task_id)

    def status(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        ids = [_task_id(t) for t in task_ids]
        rows: dict[int, Mapping[str, Any]] = {}
        for chunk in _chunks(ids, self.status_chunk):
            pattern = "^(?:" + "|".join(str(i) for i in chunk) + ")$"
            found = self.calls.call("get_tasks_detailed_info_since", self._since(chunk),
                               {"jediTaskID": pattern}, n_tasks=self.n_tasks) or []
            rows.update((int(r["jediTaskID"]), r) for r in found if int(r["jediTaskID"]) in chunk)
        for task_id in ids:  # truncated away or older than our bound: ask exactly
            if task_id not in rows:
                row = self._lookup(task_id)
                if row is not None:
                    rows[task_id] = row
        result = {}
        for task_id in ids:
            row = rows.get(task_id)
            if row is not None:
                self._remember(row)
            result[str(task_id)] = self._task_status(task_id, row)
        return result

    def kill(self, task_id: str) -> None:
        self._command("killTask", _task_id(task_id), already=KILLED_OR_KILLING)

    def finish(self, task_id: str) -> None:
        self._command("finishTask", _task_id(task_id), already=FINISHED_OR_FINISHING)

    def pause(self, task_id: str) -> None:
        self._command("pauseTask", _task_id(task_id), already=PAUSED)

    def resume(self, task_id: str) -> None:
        self._command("resumeTask", _task_id(task_id), already=NOT_PAUSED)

    def retry(self, task_id: str) -> None:
        tid = _task_id(task_id)
        code, message = self.calls.call("retryTask", tid, properErrorCode=True)
        if code == 0:
            log.info("retry of task %s registered: %s", tid, message)
            return
        row = self._lookup(tid)
        if row is None:
            raise ServiceError(f"PanDA task {tid} not found on {self.url}; cannot retry it "
                               f"(server: {redact(str(message))})", where=self.calls.where("retryTask"))
        if row.get("status") not in INCEXEC_ACCEPTED:
            raise ServiceError(f"PanDA refused to retry task {tid} ({row.get('taskName')}): "
                               f"{redact(str(message))}", where=self.calls.where("retryTask"))
        # JEDI re-executes a final task when its name is submitted again (code 3)
        params = self.calls.call("getTaskParamsMap", tid)
        if not isinstance(params, dict):
            raise ServiceError(f"PanDA returned no task parameters for task {tid}",
                               where=self.calls.where("getTaskParamsMap"))
        code, message = self._submit_params(params)
        if code != SUBMIT_INCEXEC:
            raise ServiceError(f"PanDA refused to re-execute task {tid} ({row.get('taskName')}):"
                               f" {redact(str(message))} (code {code})",
                               where=self.calls.where("insertTaskParams"))
        log.info("task %s re-executed incrementally: %s", tid, message)

    # --- the job sandbox (backends/panda_sandbox.py) ---------------------------------------
    def for_plan(self, plan: Any, source_path: str) -> Callable[[TaskSpec], TaskSpec]:
        """What the tasks of ``plan`` get before submission: the sandbox (the workflow's
        folder + ``plan.json``) its jobs fetch from the server's cache (``sourceURL``)."""
        parsed = urlparse(self.url)
        return SandboxShipper(plan, source_path, uploads=self._uploads,
                              source_url=f"{parsed.scheme}://{parsed.netloc}")

    def shutdown(self) -> None:
        self._uploads.close()  # no sandbox upload outlives the command

    def put_in_cache(self, path: Path) -> str:
        """Upload ``path`` to the server's cache as prun does; the name it has there."""
        answer = str(self.calls.with_retries("putFile", upload_in_child, path, self.url))
        return name_in_cache(redact(answer), path.name, where=self.calls.where("putFile"))

    # --- extras --------------------------------------------------------------------------
    def is_alive(self) -> bool:
        """True when the server answers ``system/is_alive``; one attempt, no retry."""
        try:
            self.calls.call("hello", attempts=1)
        except ServiceError:
            return False
        return True

    def task_name(self, task_id: str) -> str | None:
        return self._names.get(_task_id(task_id))

    # --- submission helpers --------------------------------------------------------------
    def _submit_params(self, params: dict[str, Any]) -> tuple[int, str]:
        answer = self.calls.call("insertTaskParams", params, properErrorCode=True)
        try:
            code, message = answer
        except (TypeError, ValueError):
            raise ServiceError(f"PanDA answered insertTaskParams with {redact(repr(answer))}",
                               where=self.calls.where("insertTaskParams")) from None
        code, message = int(code), str(message)
        if code == SUBMIT_ACCEPTED and REEXECUTION_MESSAGE.search(message):
            code = SUBMIT_INCEXEC
        return code, message

    def _id_from_answer(self, task: TaskSpec, code: int, message: str) -> int:
        match = TASK_ID_IN_MESSAGE.search(message)
        if code in (SUBMIT_ACCEPTED, SUBMIT_DUP_DEFT, SUBMIT_DUP_JEDI, SUBMIT_INCEXEC):
            if code == SUBMIT_INCEXEC:
                # only possible if the task went final between our lookup and the submission
                log.warning("PanDA re-executed the existing task %s: %s", task.name, message)
            elif code != SUBMIT_ACCEPTED:
                log.info("task %s was already submitted: %s", task.name, message)
            if match:
                return int(match.group(1))
            row = self._find_by_name(task.name, task.params)
            if row is not None:
                return int(row["jediTaskID"])
            raise ServiceError(f"PanDA accepted task {task.name} but its id could not be found "
                               f"(message: {redact(message)})",
                               where=self.calls.where("insertTaskParams"))
        raise ServiceError(f"PanDA rejected task {task.name}: {redact(message)} (code {code})",
                           where=task.step or self.calls.where("insertTaskParams"),
                           hint="fix the task parameters (profile or workflow) and submit again")

    def _find_by_name(self, name: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        filters = {"taskName": name}
        filters.update({k: str(params[k]) for k in ("vo", "prodSourceLabel") if params.get(k)})
        filters = {k: (f"^{re.escape(v)}$" if REGEX_META & set(v) else v)
                   for k, v in filters.items()}
        rows = self.calls.call("get_tasks_detailed_info_since", None, filters,
                          n_tasks=self.n_tasks) or []
        matches = [r for r in rows if r.get("taskName") == name]
        return max(matches, key=lambda r: int(r["jediTaskID"])) if matches else None

    # --- status helpers ------------------------------------------------------------------
    def _lookup(self, task_id: int) -> dict[str, Any] | None:
        rows = self.calls.call("get_tasks_detailed_info_since", None, {"jediTaskID": str(task_id)},
                          n_tasks=1) or []
        return next((r for r in rows if int(r["jediTaskID"]) == task_id), None)

    def _since(self, ids: Iterable[int]) -> str | None:
        bounds = [self._not_before.get(i) for i in ids]
        if not bounds or any(b is None for b in bounds):
            return None
        return (min(bounds) - self.since_margin).strftime(SINCE_FORMAT)  # type: ignore[type-var]

    def _remember(self, row: Mapping[str, Any]) -> int:
        task_id = int(row["jediTaskID"])
        created = row.get("creationDate")
        if isinstance(created, datetime):
            self._not_before[task_id] = created.replace(tzinfo=None)
        if row.get("taskName"):
            self._names[task_id] = row["taskName"]
        return task_id

    def _task_status(self, task_id: int, row: Mapping[str, Any] | None) -> TaskStatus:
        raw = str(row.get("status") or "") if row is not None else ""
        state = to_state(raw) if row is not None else TaskState.UNKNOWN
        message = redact(str(row.get("errorDialog") or "")) if row is not None else \
            f"task {task_id} not found on PanDA server {self.url}"
        if state is TaskState.UNKNOWN:
            polls = self._unknown_polls[task_id] = self._unknown_polls.get(task_id, 0) + 1
            if polls >= self.unknown_alert_polls:
                what = f"JEDI status {raw!r} is unknown to swfflow" if row is not None else message
                message = f"{what} ({polls} polls); see docs/panda.md"
                if polls == self.unknown_alert_polls:
                    log.warning("task %s: %s", task_id, message)
        else:
            self._unknown_polls.pop(task_id, None)
        counts = row or {}
        return TaskStatus(task_id=str(task_id), state=state, raw=raw, message=message,
                          n_jobs=int(counts.get("nFiles") or 0),
                          n_jobs_done=int(counts.get("nFilesFinished") or 0),
                          n_jobs_failed=int(counts.get("nFilesFailed") or 0))

    # --- commands ------------------------------------------------------------------------
    def _command(self, call: str, task_id: int, *, already: frozenset[str]) -> None:
        accepted, detail = self.calls.call(call, task_id)
        deadline = time.monotonic() + self.registration_wait_s
        # a task this executor submitted that JEDI has not registered yet is "not found" (the
        # real server's race): the command is given again once JEDI has it, within a bound
        while (not accepted and task_id in self._names and time.monotonic() < deadline
               and self._lookup(task_id) is None):
            time.sleep(REGISTRATION_POLL_S)
            accepted, detail = self.calls.call(call, task_id)
        if accepted:
            log.info("%s of task %s registered", call, task_id)
            return
        row = self._lookup(task_id)
        if row is None:
            raise ServiceError(f"PanDA task {task_id} not found on {self.url} "
                               f"(server: {redact(str(detail))})", where=self.calls.where(call))
        status = str(row.get("status"))
        if status in already or to_state(status).terminal:
            log.info("%s of task %s: nothing to do, it is %s", call, task_id, status)
            return
        raise CommandRefused(f"PanDA refused {call} for task {task_id} "
                             f"({row.get('taskName')}): {redact(str(detail))}",
                             where=self.calls.where(call))


def _task_id(task_id: str | int) -> int:
    try:
        return int(task_id)
    except (TypeError, ValueError):
        raise ConfigError(f"{task_id!r} is not a PanDA task id (jediTaskID, an integer)") from None


def _chunks(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # the server's naive UTC
