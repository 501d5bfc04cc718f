"""The collectors: fill the one status model (:mod:`.model`) from what the stores hold.

One collector per source, each reading its own tables with a few bulk queries (never one query
per task or job: a monitor polls 50 runs × 20 tasks every second):

- :func:`local_instances` — the driver's rows (``drv_*``) joined with the local executor's
  jobs (``exec_*``) and the local catalog's datasets (``swfflow run``, a bridge on this machine);
- :func:`bridge_runs` — the bridge's runs, STFs, DAQ messages, holds and dead letters (``br_*``);
- :func:`submitted` — instances ``swfflow submit`` sent to PanDA (:mod:`swfflow.submission`'s
  own report, converted).

:func:`collect` merges them into one :class:`~.model.Status`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from swfflow.monitor.model import (
    DaqEvent,
    Dataset,
    DeadLetter,
    Hold,
    Instance,
    Job,
    ParentEdge,
    Run,
    Status,
    Task,
    eta,
)
from swfflow.monitor.sites import site_replication

LOG_TAIL_LINES = 20
DEAD_BODY_CHARS = 2000
# the DAQ messages that change a run's state: its timeline (stf_gen is data, not state)
DAQ_EVENTS = ("run_imminent", "start_run", "pause_run", "resume_run", "end_run")


def collect(engine: Engine | None, run: str | None = None, *, detail: bool = True,
            submissions: Path | None = None, refresh_live: bool = False,
            instance: str | None = None, panda_monitor: str | None = None) -> Status:
    """Everything known, optionally of one run only. ``detail``: with each task's jobs (log
    tails, commands, outputs); without, only the job counts (what lists need)."""
    status = Status(collected_at=time.time())
    if engine is not None:
        tables = set(inspect(engine).get_table_names())
        if "drv_instances" in tables:
            status.instances = local_instances(engine, run, detail=detail, instance=instance,
                                               with_jobs="exec_jobs" in tables)
        if "catalog_datasets" in tables:
            status.datasets = local_datasets(engine)
        if "br_runs" in tables:
            status.runs, status.dead_letters = bridge_runs(engine, status.instances, run)
    if submissions is not None:
        status.submitted = submitted(submissions, run, refresh_live=refresh_live,
                                     panda_monitor=panda_monitor)
    return status


# --- the driver + local executor ------------------------------------------------------------

def local_instances(engine: Engine, run: str | None = None, *, detail: bool = True,
                    with_jobs: bool = True, instance: str | None = None) -> list[Instance]:
    from swfflow.drive.store import INSTANCES, TASKS

    with engine.connect() as conn:
        query = select(INSTANCES).order_by(INSTANCES.c.instance)
        if run is not None:
            query = query.where(INSTANCES.c.run == str(run))
        if instance is not None:
            query = query.where(INSTANCES.c.instance == instance)
        instances = conn.execute(query).all()
        names = [i.instance for i in instances]
        rows: dict[str, dict[str, Any]] = defaultdict(dict)
        if names:
            columns = (TASKS.c.instance, TASKS.c.key, TASKS.c.name, TASKS.c.phase,
                       TASKS.c.task_id, TASKS.c.message)  # not the JSON provenance columns
            for row in conn.execute(select(*columns).where(TASKS.c.instance.in_(names))):
                rows[row.instance][row.key] = row._mapping
    task_ids = [int(r["task_id"]) for by_key in rows.values() for r in by_key.values()
                if r["task_id"] and str(r["task_id"]).isdigit()]
    counts: dict[str, JobCounts] = {}
    jobs: dict[str, list[Job]] = {}
    if with_jobs and task_ids:
        jobs = _jobs_of(engine, task_ids) if detail else {}
        counts = ({key: JobCounts.of(value) for key, value in jobs.items()} if detail
                  else _job_counts(engine, task_ids))
        _task_times(engine, task_ids, counts)
    return [Instance(instance=inst.instance, workflow=inst.workflow, run=inst.run,
                     state=inst.state, tasks=_tasks(inst.plan, rows[inst.instance], counts, jobs))
            for inst in instances]


@dataclass
class JobCounts:
    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    attempts: int = 0
    files_done: int = 0  # master input files of finished jobs
    by_state: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None  # the earliest job start
    submitted_at: float | None = None  # the executor's task row (see _task_times)
    finished_at: float | None = None

    def add(self, state: str, n: int, attempts: int, files: int,
            started_at: float | None = None) -> None:
        self.total += n
        self.by_state[state] = self.by_state.get(state, 0) + n
        self.attempts = max(self.attempts, attempts or 0)
        if state in ("done", "failed", "running"):
            setattr(self, state, getattr(self, state) + n)
        if state == "done":
            self.files_done += files or 0
        if started_at is not None:
            self.started_at = min(self.started_at or started_at, started_at)

    @classmethod
    def of(cls, jobs: list[Job]) -> JobCounts:
        counts = cls()
        for job in jobs:
            counts.add(job.state, 1, job.attempt, job.inputs, job.started_at)
        return counts


def _tasks(plan: dict[str, Any], rows: dict[str, Any], counts: dict[str, JobCounts],
           jobs: dict[str, list[Job]]) -> list[Task]:
    specs = {spec["key"]: spec for spec in plan.get("tasks", [])}
    # run-time instances (a scatter the planner could not size) follow the planned tasks
    keys = list(specs) + sorted(k for k in rows if k not in specs)
    tasks = []
    for key in keys:
        spec, row = specs.get(key, {}), rows.get(key, {})
        task_id = row.get("task_id")
        count = counts.get(str(task_id)) or JobCounts()
        # model_construct: these values come from our own stores, typed by their columns;
        # validating 1000 tasks per poll cost more than reading them
        tasks.append(Task.model_construct(
            key=key, name=row.get("name") or spec.get("name", key), step=spec.get("step"),
            phase=row.get("phase", "pending"), task_id=task_id,
            message=row.get("message") or "", site=(spec.get("params") or {}).get("site"),
            streaming=bool(spec.get("streaming")),
            parents=[ParentEdge.model_construct(key=p["key"], mode=p["mode"])
                     for p in spec.get("parents", [])],
            jobs=jobs.get(str(task_id), []), jobs_total=count.total, jobs_done=count.done,
            jobs_failed=count.failed, jobs_running=count.running, attempts=count.attempts,
            jobs_by_state=count.by_state, submitted_at=count.submitted_at,
            started_at=count.started_at, finished_at=count.finished_at,
            files_processed=count.files_done, backend="local", jedi_status=None,
            monitor_url=None))
    return tasks


def _job_counts(engine: Engine, ids: list[int]) -> dict[str, JobCounts]:
    """Per task: jobs by state, highest attempt, input files of finished jobs — aggregated by
    the database (a summary of 1000 tasks must not read 5000 job rows)."""
    from swfflow.backends.local_tables import JOBS

    files = func.json_array_length(JOBS.c.files)
    query = (select(JOBS.c.task_id, JOBS.c.state, func.count(), func.max(JOBS.c.attempt),
                    func.sum(files), func.min(JOBS.c.started_at))
             .where(JOBS.c.task_id.in_(ids)).group_by(JOBS.c.task_id, JOBS.c.state))
    out: dict[str, JobCounts] = defaultdict(JobCounts)
    with engine.connect() as conn:
        for task_id, state, n, attempts, n_files, started in conn.execute(query):
            out[str(task_id)].add(state, n, attempts, n_files, started)
    return out


def _task_times(engine: Engine, ids: list[int], counts: dict[str, JobCounts]) -> None:
    """When the executor got each task and when it ended (its own rows), one query."""
    from swfflow.backends.local_tables import TASKS as EXEC_TASKS

    # a key range, not IN (1000 ids): binding the list cost more than reading the rows
    wanted = set(ids)
    query = (select(EXEC_TASKS.c.id, EXEC_TASKS.c.submitted_at, EXEC_TASKS.c.finished_at)
             .where(EXEC_TASKS.c.id.between(min(ids), max(ids))))
    with engine.connect() as conn:
        for task_id, submitted_at, finished_at in conn.execute(query):
            if task_id not in wanted:
                continue
            count = counts.setdefault(str(task_id), JobCounts())
            count.submitted_at, count.finished_at = submitted_at, finished_at


def _jobs_of(engine: Engine, ids: list[int]) -> dict[str, list[Job]]:
    """The local executor's jobs of these tasks, in job order, one query."""
    from swfflow.backends.local_tables import JOBS

    out: dict[str, list[Job]] = defaultdict(list)
    with engine.connect() as conn:
        for m in conn.execute(select(JOBS).where(JOBS.c.task_id.in_(ids))
                              .order_by(JOBS.c.task_id, JOBS.c.number)):
            out[str(m.task_id)].append(Job(
                number=m.number, state=m.state, attempt=m.attempt or 0, exit_code=m.exit_code,
                inputs=len(m.files or []), input_files=list(m.files or []), command=m.command,
                container=m.container, produced=list(m.produced or []),
                log_tail="\n".join((m.log or "").splitlines()[-LOG_TAIL_LINES:]),
                started_at=m.started_at, finished_at=m.finished_at))
    return out


def local_datasets(engine: Engine) -> list[Dataset]:
    """The local catalog's datasets with the replication rules they carry (where copies are
    wanted: the local catalog replicates nothing, so no per-site counts)."""
    from swfflow.backends.local_catalog import DATASETS, datasets_in

    with engine.connect() as conn:
        rules = {r.did: r.rules or [] for r in conn.execute(select(DATASETS.c.did,
                                                                   DATASETS.c.rules))}
    return [Dataset(**row, rules=[f"{rule['copies']}x {rule['rse_expression']}"
                                  for rule in rules.get(row["did"], [])])
            for row in datasets_in(engine)]


# --- the bridge -----------------------------------------------------------------------------

def bridge_runs(engine: Engine, instances: list[Instance],
                run: str | None = None) -> tuple[list[Run], list[DeadLetter]]:
    from swfflow.stream.tables import DEAD, FILES, HOLDS, MESSAGES, RUNS

    now = time.time()
    by_run = {inst.run: inst for inst in instances}
    with engine.connect() as conn:
        query = select(RUNS).order_by(RUNS.c.created_at)
        if run is not None:
            query = query.where(RUNS.c.run_id == str(run))
        runs = conn.execute(query).all()
        counts = {r.run_id: r for r in conn.execute(
            select(FILES.c.run_id, func.count().label("recorded"),
                   func.count(FILES.c.attached_at).label("attached"),
                   func.count(FILES.c.meta_at).label("meta")).group_by(FILES.c.run_id))}
        history: dict[str, list[DaqEvent]] = defaultdict(list)
        for m in conn.execute(select(MESSAGES.c.run_id, MESSAGES.c.msg_type,
                                     MESSAGES.c.processed_at)
                              .where(MESSAGES.c.msg_type.in_(DAQ_EVENTS))
                              .order_by(MESSAGES.c.processed_at)):
            history[m.run_id].append(DaqEvent(at=m.processed_at, event=m.msg_type))
        holds = {h.run_id: h for h in conn.execute(select(HOLDS))}
        dead = conn.execute(select(DEAD).order_by(DEAD.c.received_at)).all()
        sites = site_replication(conn, {r.run_id: counts[r.run_id].attached
                                        if r.run_id in counts else 0 for r in runs})
    out = []
    for row in runs:
        count = counts.get(row.run_id)
        inst = by_run.get(row.run_id)
        hold = holds.get(row.run_id)
        finished = row.phase in ("done", "failed")
        elapsed = ((row.updated_at if finished else now) - row.created_at
                   if row.created_at else None)
        tasks = inst.tasks if inst else []
        total = sum(t.jobs_total for t in tasks)
        done = sum(t.jobs_done for t in tasks)
        out.append(Run(
            run=row.run_id, namespace=row.namespace, phase=row.phase, daq_state=row.daq_state,
            daq_substate=row.daq_substate,
            daq_history=_in_daq_order(history.get(row.run_id, []), row.created_at),
            stream_dataset=row.stream_did, stf_announced=row.total_stf_files,
            stf_recorded=count.recorded if count else 0,
            stf_attached=count.attached if count else 0,
            stf_metadata_set=count.meta if count else 0,
            stf_processed=sum(t.files_processed for t in tasks if t.streaming),
            missing=list(row.missing or []), message=row.message or "",
            tasks_hold=None if hold is None else Hold(
                wanted=hold.wanted, applied=hold.applied_at is not None,
                paused_tasks=list(hold.paused or []), message=hold.message or ""),
            sites=sites.get(row.run_id, []),
            created_at=row.created_at, updated_at=row.updated_at, elapsed_s=elapsed,
            eta_s=None if finished else eta(elapsed, done, total),
            workflow=inst.workflow if inst else None, instance=inst.instance if inst else None,
            instance_state=inst.state if inst else None, tasks=tasks))
        if inst is not None:
            inst.source = "bridge"
    letters = [DeadLetter(received_at=d.received_at, msg_type=d.msg_type, run=d.run_id,
                          reason=d.reason, body=(d.body or "")[:DEAD_BODY_CHARS]) for d in dead
               if run is None or d.run_id == str(run)]
    return out, letters


def _in_daq_order(events: list[DaqEvent], created_at: float | None) -> list[DaqEvent]:
    """The timeline in the DAQ's order. ``processed_at`` is when the bridge completed a
    message's effect, and run_imminent's (datasets and tasks created) can complete after
    start_run's: it happened when the run was recorded (``created_at``)."""
    for event in events:
        if event.event == "run_imminent" and created_at is not None:
            event.at = min(event.at, created_at)
    rank = {"run_imminent": 0, "end_run": 2}
    return sorted(events, key=lambda e: (rank.get(e.event, 1), e.at))


# --- swfflow submit (PanDA) -----------------------------------------------------------------

def submitted(directory: Path, run: str | None = None, *, refresh_live: bool = False,
              panda_monitor: str | None = None) -> list[Instance]:
    """Instances submitted from ``directory`` (its ``.swfflow``), as the submission store's own
    report has them (refreshed from PanDA first with ``refresh_live``)."""
    from swfflow.submission import submitted_status

    report = submitted_status(directory, run, refresh_live=refresh_live)
    out = []
    for inst in report["instances"]:
        # PanDA's monitor (BigPanDA) is its own site, not the server: only when told where
        base = (panda_monitor or "").rstrip("/")
        tasks = [Task(key=t["key"], name=t["name"], phase=t["phase"], task_id=t["task_id"],
                      message=t["message"], backend="panda", jedi_status=t["jedi_status"],
                      jobs_total=t["files"] or 0, jobs_done=t["files_done"] or 0,
                      jobs_failed=t["files_failed"] or 0,
                      monitor_url=f"{base}/task/{t['task_id']}/" if t["task_id"] and base
                      else None)
                 for t in inst["tasks"]]
        out.append(Instance(instance=inst["instance"], workflow=inst["workflow"], run=inst["run"],
                            state=inst["state"], source="panda", panda_url=inst["panda_url"],
                            submitted_at=inst.get("submitted_at"), tasks=tasks))
    return out
