"""``swfflow submit`` / ``kill`` / ``retry`` (and the status of a submission): the glue between
the command line and the SAME engine as ``swfflow run`` (:class:`~swfflow.drive.flow_run.FlowRun`),
over PanDA + Rucio.

- :func:`connect` asks :mod:`swfflow.assemble` for the backends (PanDA + Rucio, or ``dryrun``
  on the state directory's own catalog); the driver evaluates ExpressionTool steps here
  (:mod:`swfflow.drive.expressions`).
- :class:`SubmissionStore` is the persistent state directory: the driver's own tables (one row
  per task: phase, PanDA task id, message) plus one row per workflow instance saying which
  servers it was submitted to, so ``status``/``kill``/``retry`` find it by name and a re-run
  after a crash resumes it (task submission is idempotent by task name).
- :func:`refresh` asks PanDA (one bulk call) where the live tasks are and writes it down;
  :func:`kill_instance` and :func:`retry_instance` act on every task of an instance;
  :func:`submitted_status` is what ``swfflow status`` shows for submitted instances.

Nothing here prints: the command module renders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, delete, select

from swfflow.assemble import Backends, Settings, assemble, executor_at
from swfflow.backends.base import TaskState, TaskStatus
from swfflow.drive.flow_run import FlowRun
from swfflow.drive.instances import source_path_of
from swfflow.drive.phases import DONE, FINAL, LIVE, PHASE_OF_STATE, TaskPhase
from swfflow.drive.store import DriverStore
from swfflow.errors import ConfigError
from swfflow.plan.model import Plan

STATE_FILE = "submit.db"
DEFAULT_STATE_DIR = ".swfflow"  # the same place `swfflow run --outdir .` keeps its state
STATE_ENV = "SWFFLOW_STATE"

_META = MetaData()
SUBMISSIONS = Table(
    "submissions", _META,
    Column("instance", String, primary_key=True),
    Column("panda_url", String, nullable=False),
    Column("rucio_host", String, nullable=False),
    Column("source", String, nullable=False),  # the workflow or plan file submitted
    Column("submitted_at", String, nullable=False),  # first submission, ISO UTC
)
# A retry is a command JEDI acts on "in a few minutes": until then the task still shows the
# status it failed with. Remembered here so that no poll (of this or a later swfflow process)
# takes that stale status for a new failure.
PENDING_RETRIES = Table(
    "pending_retries", _META,
    Column("task_id", String, primary_key=True),
    Column("status_before", String, nullable=False),  # the JEDI status the retry was sent in
    Column("sent_at", Float, nullable=False),  # time.time()
)
RETRY_GRACE_S = 900.0  # after this long, a task still in its old status has failed again


def connect(settings: Settings, store: SubmissionStore, stack: ExitStack, *, plan: Plan,
            source: str) -> Backends:
    """The backends ``settings`` name, over the state directory, for driving ``plan`` (the
    workflow or plan file ``source``): nothing is contacted yet. The executor is watched
    (:class:`WatchedExecutor`); ExpressionTool scratch and a dry run's record go under the
    state directory."""
    backends = assemble(replace(settings, workdir=store.path.parent), engine=store.engine,
                        stack=stack, plan=plan, source=source)
    backends.executor = WatchedExecutor(backends.executor, store)
    return backends


class WatchedExecutor:
    """The PanDA executor, plus: the last status of every task it was asked about (for the
    progress display and reports, no extra server call), and retries that JEDI has not acted
    on yet reported as submitted rather than as the failure they are retrying."""

    def __init__(self, inner: Any, store: SubmissionStore | None = None):
        self.inner = inner
        self.store = store
        self.last: dict[str, TaskStatus] = {}

    def status(self, task_ids: Any) -> dict[str, TaskStatus]:
        result = self.inner.status(task_ids)
        pending = self.store.pending_retries(list(result)) if self.store else {}
        for task_id, (before, sent_at) in pending.items():
            status = result[task_id]
            if status.raw == before and time.time() - sent_at < RETRY_GRACE_S:
                result[task_id] = replace(status, state=TaskState.SUBMITTED, message="")
            else:  # JEDI took it: from now on its status is news again
                self.store.forget_retry(task_id)  # type: ignore[union-attr]
        self.last.update(result)
        return result

    def retry(self, task_id: str) -> None:
        before = self.inner.status([task_id])[task_id].raw
        self.inner.retry(task_id)
        if self.store is not None:
            self.store.note_retry(task_id, before)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- state ----------------------------------------------------------------------------------

def state_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)


class SubmissionStore:
    """The state directory of submitted workflow instances (SQLite, WAL)."""

    def __init__(self, directory: Path, *, create: bool = True):
        from swfflow.state import sqlite_engine

        path = directory / STATE_FILE
        if not create and not path.is_file():
            raise ConfigError(f"no submitted workflows under {directory}", where=str(path),
                              hint="submit with `swfflow submit ... --state DIR` first, and "
                                   "pass the same --state (or set SWFFLOW_STATE)")
        self.path = path
        self.engine = sqlite_engine(path)
        self.driver_store = DriverStore(self.engine)
        _META.create_all(self.engine)

    def record(self, instance: str, panda_url: str, rucio_host: str, source: str) -> None:
        """Remember where an instance lives; the first submission time is kept."""
        with self.engine.begin() as conn:
            where = SUBMISSIONS.c.instance == instance
            values = {"panda_url": panda_url, "rucio_host": rucio_host, "source": source}
            if conn.execute(select(SUBMISSIONS.c.instance).where(where)).first():
                conn.execute(SUBMISSIONS.update().where(where).values(**values))
            else:
                conn.execute(SUBMISSIONS.insert().values(
                    instance=instance, submitted_at=_now(), **values))

    def note_retry(self, task_id: str, status_before: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(PENDING_RETRIES).where(PENDING_RETRIES.c.task_id == task_id))
            conn.execute(PENDING_RETRIES.insert().values(
                task_id=task_id, status_before=status_before, sent_at=time.time()))

    def pending_retries(self, task_ids: list[str]) -> dict[str, tuple[str, float]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(PENDING_RETRIES)
                                .where(PENDING_RETRIES.c.task_id.in_(task_ids))).all()
        return {r.task_id: (r.status_before, r.sent_at) for r in rows}

    def forget_retry(self, task_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(PENDING_RETRIES).where(PENDING_RETRIES.c.task_id == task_id))

    def submissions(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(SUBMISSIONS)).all()
        return {r.instance: dict(r._mapping) for r in rows}

    def find(self, name: str) -> str:
        """The instance called ``name`` ("workflow:run"), or the only one of run ``name``."""
        known = self.submissions()
        if name in known:
            return name
        matches = [i for i in known if i.rsplit(":", 1)[-1] == name]
        if len(matches) == 1:
            return matches[0]
        listing = ", ".join(sorted(known)) or "none"
        raise ConfigError(f"no single submitted workflow instance {name!r} in {self.path}",
                          hint=f"give WORKFLOW:RUN; known instances: {listing}")

    def plan(self, instance: str) -> Plan:
        for row in self.driver_store.instances():
            if row.instance == instance:
                return Plan.from_dict(row.plan)
        raise ConfigError(f"instance {instance} has no plan in {self.path}")

    def instance_state(self, instance: str) -> str:
        return next((r.state for r in self.driver_store.instances()
                     if r.instance == instance), "unknown")

    def set_instance_state(self, instance: str, state: str) -> None:
        plan = self.plan(instance)
        self.driver_store.save_instance(instance, plan.workflow, plan.run, plan.to_dict(), state)


# --- acting on an instance ------------------------------------------------------------------

def make_flow(plan: Plan, store: SubmissionStore, backends: Backends, source: str) -> FlowRun:
    """The engine of `swfflow run`, over PanDA + Rucio: the plan's flow walked, each leaf job a
    task of the plan. No payload preparation (PanDA gets the task parameters); expression
    steps run here, their tools rebuilt from the plan (:func:`connect`)."""
    return backends.flow_run(plan, store.driver_store, source_path=source_path_of(plan, source))


def submit(plan: Plan, store: SubmissionStore, backends: Backends, source: str) -> FlowRun:
    """Create the datasets, record the instance, submit what may be released now (until the
    run has nothing to do but wait for its tasks)."""
    flow = make_flow(plan, store, backends, source)
    store.record(flow.instance, backends.executor.url, backends.catalog.host, source)
    _settled(flow)
    return flow


def _settled(flow: FlowRun) -> None:
    """Started and submitted what may go now; a run that failed already (a server that
    cannot be reached, a task PanDA rejects) raises why."""
    try:
        flow.start()
        if flow.settle() and flow.error is not None:
            raise flow.error
    except BaseException:  # the flow's thread stops with the command
        flow.detach()
        raise


def follow(flow: FlowRun, *, poll_s: float, on_tick: Callable[[FlowRun], None] | None = None,
           timeout_s: float | None = None) -> None:
    """Keep driving (release complete edges, close datasets) until every task is final."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        finished = flow.tick()
        if on_tick is not None:
            on_tick(flow)
        if finished:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{flow.instance} not finished after {timeout_s} s")
        flow.wait_for_news(poll_s)


def refresh(store: SubmissionStore, instance: str, executor: Any) -> None:
    """One bulk status call for the instance's live tasks; their new phases are saved."""
    rows = store.driver_store.load(instance)
    live = {r["task_id"]: key for key, r in rows.items()
            if r["task_id"] and TaskPhase(r["phase"]) in LIVE}
    if not live:
        return
    for task_id, status in executor.status(list(live)).items():
        phase = PHASE_OF_STATE[status.state]
        if phase.value != rows[live[task_id]]["phase"]:
            store.driver_store.save(instance, live[task_id], phase=phase.value,
                                    message=status.message if phase is TaskPhase.FAILED else "")


def kill_instance(store: SubmissionStore, instance: str, executor: Any) -> list[str]:
    """Kill every task of the instance that is not final; tasks never submitted will not be.
    Returns the keys of the tasks killed."""
    refresh(store, instance, executor)
    killed = []
    for key, row in store.driver_store.load(instance).items():
        phase = TaskPhase(row["phase"])
        if row["task_id"] and phase in LIVE:
            executor.kill(row["task_id"])
            store.driver_store.save(instance, key, phase=TaskPhase.FAILED.value,
                                    message="killed (swfflow kill)")
            killed.append(key)
    rows = store.driver_store.load(instance)
    for spec in store.plan(instance).tasks:  # never released: never will be
        row = rows.get(spec.key)
        if row is None or TaskPhase(row["phase"]) is TaskPhase.PENDING:
            store.driver_store.save(instance, spec.key, name=spec.name,
                                    phase=TaskPhase.BLOCKED.value, task_id=None,
                                    message="not started: the instance was killed")
    store.set_instance_state(instance, "killed")
    return killed


def retry_instance(store: SubmissionStore, instance: str, backends: Backends) -> FlowRun:
    """Retry the failed (failed, partial, exhausted, killed) tasks of the instance and release
    again what they blocked; succeeded tasks are left alone. Returns the run, settled."""
    refresh(store, instance, backends.executor)
    source = store.submissions()[instance]["source"]
    flow = make_flow(store.plan(instance), store, backends, source)
    _settled(flow)  # re-submits by name: failed tasks are retried (executor.retry), like a re-run
    return flow


# --- reports --------------------------------------------------------------------------------

def instance_report(store: SubmissionStore, instance: str,
                    statuses: dict[str, TaskStatus] | None = None) -> dict[str, Any]:
    """One instance as plain data: where it was submitted and each task's phase, PanDA task
    id, JEDI status and file counts (from ``statuses`` when the caller polled)."""
    plan = store.plan(instance)
    rows = store.driver_store.load(instance)
    where = store.submissions().get(instance, {})
    tasks = []
    keys = [(spec.key, spec.name) for spec in plan.tasks]
    # run-time instances (a scatter the planner could not size) follow the planned tasks
    keys += [(key, row["name"]) for key, row in sorted(rows.items())
             if key not in {k for k, _ in keys}]
    for key, name in keys:
        row = rows.get(key, {})
        status = (statuses or {}).get(row.get("task_id") or "")
        tasks.append({"key": key, "name": name, "task_id": row.get("task_id"),
                      "phase": row.get("phase", TaskPhase.PENDING.value),
                      "message": row.get("message") or "",
                      "jedi_status": status.raw if status else None,
                      "files": status.n_jobs if status else None,
                      "files_done": status.n_jobs_done if status else None,
                      "files_failed": status.n_jobs_failed if status else None})
    return {"instance": instance, "workflow": plan.workflow, "run": plan.run,
            "state": _instance_state(store.instance_state(instance), tasks),
            "panda_url": where.get("panda_url"), "rucio_host": where.get("rucio_host"),
            "source": where.get("source"), "submitted_at": where.get("submitted_at"),
            "tasks": tasks}


def submitted_status(directory: Path, run: str | None = None, *, refresh_live: bool = True,
                     panda_url: str | None = None) -> dict[str, Any]:
    """What ``swfflow status`` shows for the instances submitted from ``directory``: the same
    shape as the monitor model's local instances (``instances`` → ``tasks``) plus, per
    task, the PanDA task id, JEDI status and file counts. With ``refresh_live`` the live tasks
    are polled first (one bulk call per PanDA server)."""
    store = SubmissionStore(Path(directory), create=False)
    instances = []
    for instance, where in sorted(store.submissions().items()):
        plan = store.plan(instance)
        if run is not None and plan.run != str(run):
            continue
        statuses = None
        if refresh_live:
            executor = WatchedExecutor(executor_at(panda_url or where["panda_url"], Settings(),
                                                   engine=store.engine), store)
            refresh(store, instance, executor)
            statuses = executor.last
        instances.append(instance_report(store, instance, statuses))
    return {"instances": instances, "datasets": []}


def _instance_state(recorded: str, tasks: list[dict[str, Any]]) -> str:
    phases = {TaskPhase(t["phase"]) for t in tasks}
    if recorded == "killed":
        return "killed"
    if phases <= DONE:
        return "done"
    if phases <= FINAL:
        return "failed"
    return "running"


def failure_text(report: dict[str, Any]) -> str:
    """Why an instance did not succeed: each failed task, then what it blocked."""
    lines = [f"task {t['name']} (PanDA {t['task_id']}) {t['phase']}: {t['message']}"
             for t in report["tasks"] if t["phase"] == TaskPhase.FAILED.value]
    blocked = [t["key"] for t in report["tasks"] if t["phase"] == TaskPhase.BLOCKED.value]
    if blocked:
        lines.append(f"not started because of it: {', '.join(blocked)}")
    return "\n".join(lines) or f"{report['instance']} did not finish"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
