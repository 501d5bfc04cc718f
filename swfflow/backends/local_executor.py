"""The local Executor: JEDI's behaviour for what a plan asks, in a process pool.

- A task's master input dataset (``dsForIN``) is split into jobs (:mod:`.splitting`); over an
  open dataset (``runUntilClosed``, or a parent's output read with ``noWaitParent``) new files
  become new jobs as they are attached, and the task finishes once the dataset is closed and
  every job is done.
- Jobs run in a process pool bounded by ``jobs`` (cores); a failed job is retried up to
  ``attempts`` times, then the task fails with the job's exit code and log tail.
- Outputs and logs are registered into the task's output/log datasets with adler32 and size.
- All state lives in the state store (SQLite), so a new executor on the same store resumes:
  finished jobs whose outputs still match their checksums are kept, the rest run again.

The executor does its work when asked for :meth:`status` (or :meth:`pump`), so a driver loop,
a bridge or the PanDA test double each drive it at their pace; public calls hold one lock, so
several threads (one driver per run, HTTP handler threads) may share an executor.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select

from swfflow.backends import local_rehearsal as rehearsal
from swfflow.backends.base import Catalog, ExecutorBase, TaskState, TaskStatus
from swfflow.backends.local_jobs import (intact, job_invocations, master_dataset, safe_name,
                                         task_outputs_of)
from swfflow.backends.local_register import add_files, register_log, register_outputs
from swfflow.backends.local_tables import JOBS, TASKS, create_tables
from swfflow.backends.splitting import SplitRule, split_files
from swfflow.plan.model import TaskSpec
from swfflow.runtime.containers import warn_once
from swfflow.runtime.jobcommand import run_command_job
from swfflow.runtime.jobrun import execute_job

_ACTIVE = ("submitted", "running")
_FINAL = ("done", "failed", "aborted")


def job_rows(engine: Any, task_id: str) -> list[Any]:
    """The job rows of one task, in order: what ``swfflow status`` shows, read from the state
    store without an executor."""
    with engine.connect() as conn:
        return conn.execute(select(JOBS).where(JOBS.c.task_id == int(task_id))
                            .order_by(JOBS.c.number)).all()


def _fork_server(start: bool = False) -> Any:
    """The job workers' process context. A fork server, not plain fork: the driver holds
    threads (the flow's, rich progress), which a fork would copy mid-flight; the server imports
    the job runner and cwltool's schema once (:mod:`swfflow.runtime.preload`) and forks each
    worker from it, instead of each spawned worker importing them anew."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["swfflow.runtime.preload"])
    if start:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return context


def _locked(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: LocalExecutor, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


class LocalExecutor(ExecutorBase):
    """An :class:`~swfflow.backends.base.Executor` on this machine."""

    def __init__(self, catalog: Catalog, engine: Any, workdir: str | Path, *, jobs: int = 2,
                 attempts: int | None = None, no_container: bool = False,
                 rehearse: bool = False, sandbox: Path | None = None):
        self.catalog = catalog
        self.engine = engine
        self.workdir = Path(workdir)
        self.max_workers = max(1, jobs)
        self.attempts = attempts  # None: the task's maxAttempt (swf:Retry / profile)
        self.no_container = no_container
        # run each CWL job's command line as a pilot would (backends/local_rehearsal.py)
        self.rehearse = rehearse
        self.sandbox = sandbox  # the workflow folder each task's sandbox holds
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[int, Future] = {}
        self._lock = threading.RLock()
        self._changed: Any = lambda: None  # watch(): told when a job finished
        create_tables(engine)
        self._recover()
        # the fork server imports cwltool (seconds): started now, that overlaps compiling and
        # submitting instead of delaying the first job
        threading.Thread(target=_fork_server, kwargs={"start": True}, daemon=True).start()

    # --- Executor protocol ----------------------------------------------------------------
    @_locked
    def submit(self, task: TaskSpec) -> str:
        if self.rehearse:  # what PanDA's backend would refuse is refused here
            task = rehearsal.submitted(task)
        with self.engine.begin() as conn:
            row = conn.execute(select(TASKS.c.id).where(TASKS.c.name == task.name)).first()
            if row is not None:
                return str(row.id)
            result = conn.execute(TASKS.insert().values(
                name=task.name, spec=asdict(task), state="submitted", message="", assigned=[],
                submitted_at=time.time()))
            return str(result.inserted_primary_key[0])

    @_locked
    def status(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        self.pump()
        ids = [int(t) for t in task_ids]
        with self.engine.connect() as conn:
            tasks = conn.execute(select(TASKS).where(TASKS.c.id.in_(ids))).all()
            jobs = conn.execute(select(JOBS.c.task_id, JOBS.c.state)
                                .where(JOBS.c.task_id.in_(ids))).all()
        counts: dict[int, list[str]] = {}
        for job in jobs:
            counts.setdefault(job.task_id, []).append(job.state)
        out = {}
        for row in tasks:
            states = counts.get(row.id, [])
            out[str(row.id)] = TaskStatus(
                task_id=str(row.id), state=_STATE_MAP[row.state], raw=row.state,
                message=row.message, n_jobs=len(states), n_jobs_done=states.count("done"),
                n_jobs_failed=states.count("failed"))
        return out

    @_locked
    def kill(self, task_id: str) -> None:
        self._set_task(int(task_id), "aborted", "killed by user")

    @_locked
    def finish(self, task_id: str) -> None:
        """Stop creating jobs; the task ends when its running jobs end (JEDI ``finish``)."""
        self._set_task(int(task_id), "finishing", "")

    @_locked
    def pause(self, task_id: str) -> None:
        """Start no new jobs (running ones finish and are recorded); kept in the state store,
        so a new executor on it keeps the task paused. A task that is not active: no-op."""
        with self.engine.begin() as conn:
            conn.execute(TASKS.update().where(TASKS.c.id == int(task_id),
                                              TASKS.c.state.in_(_ACTIVE))
                         .values(state="paused"))

    @_locked
    def resume(self, task_id: str) -> None:
        """A paused task goes on where it stopped; any other task: no-op."""
        with self.engine.begin() as conn:
            has_jobs = conn.execute(select(JOBS.c.id).where(
                JOBS.c.task_id == int(task_id)).limit(1)).first() is not None
            conn.execute(TASKS.update().where(TASKS.c.id == int(task_id),
                                              TASKS.c.state == "paused")
                         .values(state="running" if has_jobs else "submitted"))

    @_locked
    def retry(self, task_id: str) -> None:
        """Run the failed jobs of a failed task again, with fresh attempts."""
        with self.engine.begin() as conn:
            conn.execute(JOBS.update().where(JOBS.c.task_id == int(task_id),
                                             JOBS.c.state == "failed")
                         .values(state="pending", attempt=0))
            conn.execute(TASKS.update().where(TASKS.c.id == int(task_id),
                                              TASKS.c.state.in_(("failed", "aborted")))
                         .values(state="running", message="", finished_at=None))

    def watch(self, changed: Any) -> None:
        self._changed = changed

    # --- beyond the protocol --------------------------------------------------------------
    @_locked
    def job_rows(self, task_id: str) -> list[Any]:
        return job_rows(self.engine, task_id)

    @_locked
    def task_outputs(self, task_id: str) -> dict[str, Any]:
        return task_outputs_of(self.job_rows(task_id))

    @_locked
    def shutdown(self) -> None:
        """Stop the pool; running jobs go back to pending so a later run redoes them. Every
        job marked running, not only the ones in ``_running``: a Ctrl-C between marking a
        job running and handing it to the pool left it "running" for ever (seen in CI)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self.engine.begin() as conn:  # the pool is gone: nothing of ours runs any more
            conn.execute(JOBS.update().where(JOBS.c.state == "running")
                         .values(state="pending"))
        self._running.clear()

    @_locked
    def pump(self) -> None:
        """Harvest finished jobs, cut new jobs from new input files, start pending jobs,
        and update task states. A paused task is left alone: its running jobs are harvested,
        nothing new is cut or started for it."""
        failed = self._harvest()
        with self.engine.connect() as conn:
            active = conn.execute(select(TASKS).where(
                TASKS.c.state.in_(_ACTIVE + ("finishing",)))).all()
        for row in active:
            if row.state != "finishing":
                self._cut_jobs(row)
            self._settle(row.id)
        if not failed:  # a job failed for good: whoever follows hears of it before more start
            self._start_pending()

    # --- internals ------------------------------------------------------------------------
    def _recover(self) -> None:
        """After a crash or Ctrl-C: running jobs run again; finished jobs whose outputs are
        gone or changed (checksum) run again too."""
        with self.engine.begin() as conn:
            conn.execute(JOBS.update().where(JOBS.c.state == "running").values(state="pending"))
            for job in conn.execute(select(JOBS).where(JOBS.c.state == "done")).all():
                if not all(intact(p) for p in job.produced or []):
                    conn.execute(JOBS.update().where(JOBS.c.id == job.id)
                                 .values(state="pending", attempt=0))
                    conn.execute(TASKS.update().where(TASKS.c.id == job.task_id)
                                 .values(state="running"))

    def _set_task(self, task_id: int, state: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(TASKS.update().where(TASKS.c.id == task_id).values(
                state=state, message=message,
                **({"finished_at": time.time()} if state in _FINAL else {})))

    def _cut_jobs(self, row: Any) -> None:
        spec = row.spec
        master = master_dataset(spec)
        with self.engine.begin() as conn:
            n_jobs = len(conn.execute(select(JOBS.c.id).where(JOBS.c.task_id == row.id)).all())
            if master is None:
                if n_jobs == 0:
                    conn.execute(JOBS.insert().values(task_id=row.id, number=1, files=[],
                                                      state="pending", attempt=0))
                return
            if not self.catalog.dataset_exists(master):
                return  # the producer has not created it yet
            closed = not self.catalog.is_open(master)
            assigned = set(row.assigned)
            fresh = [f for f in self.catalog.list_files(master) if f.did not in assigned]
            chunks, _ = split_files(fresh, SplitRule.from_params(spec["params"]), closed=closed)
            for i, chunk in enumerate(chunks):
                conn.execute(JOBS.insert().values(task_id=row.id, number=n_jobs + i + 1,
                                                  files=[f.did for f in chunk],
                                                  state="pending", attempt=0))
                assigned.update(f.did for f in chunk)
            if chunks:
                conn.execute(TASKS.update().where(TASKS.c.id == row.id)
                             .values(assigned=sorted(assigned), state="running"))

    def _settle(self, task_id: int) -> None:
        """Decide whether an active task is done or failed."""
        with self.engine.connect() as conn:
            row = conn.execute(select(TASKS).where(TASKS.c.id == task_id)).first()
            jobs = conn.execute(select(JOBS).where(JOBS.c.task_id == task_id)
                                .order_by(JOBS.c.number)).all()
        states = [j.state for j in jobs]
        if "pending" in states or "running" in states:
            return
        failed = [j for j in jobs if j.state == "failed"]
        if failed:
            job = failed[0]
            tail = "\n".join((job.log or "").splitlines()[-15:])
            self._set_task(task_id, "failed",
                           f"job {job.number} failed after {job.attempt} attempt(s), "
                           f"exit code {job.exit_code}\n{tail}")
            return
        master = master_dataset(row.spec)
        drained = master is None or (self.catalog.dataset_exists(master)
                                     and not self.catalog.is_open(master)
                                     and len(row.assigned) >= len(self.catalog.list_files(master)))
        # a closed empty input (a run without STFs) ends the task with no job, as it ends
        if row.state == "finishing" or (drained and (jobs or master is not None)):
            self._set_task(task_id, "done", "")

    def _pool_or_new(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.max_workers, mp_context=_fork_server())
        return self._pool

    def _start_pending(self) -> None:
        free = self.max_workers - len(self._running)
        if free <= 0:
            return
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(JOBS, TASKS.c.spec).join(TASKS, TASKS.c.id == JOBS.c.task_id)
                .where(JOBS.c.state == "pending", TASKS.c.state.in_(_ACTIVE + ("finishing",)))
                .order_by(JOBS.c.id).limit(free)).all()
        for job in pending:
            run, request, provenance = self._request(job.spec, job)
            with self.engine.begin() as conn:
                conn.execute(JOBS.update().where(JOBS.c.id == job.id).values(
                    state="running", attempt=job.attempt + 1,
                    started_at=job.started_at or time.time(), job=provenance))
            future = self._pool_or_new().submit(run, request)
            future.add_done_callback(lambda _done: self._changed())
            self._running[job.id] = future

    def _request(self, spec: dict[str, Any], job: Any) -> tuple[Any, dict[str, Any], Any]:
        """What the pool worker runs for the job, its request, and what the job row keeps of
        it (the CWL job object; a rehearsal: its command line)."""
        outdir = self.workdir / "jobs" / safe_name(spec["name"]) / f"{job.number:06d}"
        if self.rehearse and rehearsal.rehearses(spec):
            request = rehearsal.command_request(spec, job.task_id, job.number, job.files,
                                                self.catalog, outdir, self.workdir,
                                                self.sandbox)
            return run_command_job, request, {"argv": request["argv"]}
        request = self._job_request(spec, job, outdir)
        jobs = request["jobs"]
        return execute_job, request, jobs[0] if len(jobs) == 1 else jobs

    def _job_request(self, spec: dict[str, Any], job: Any, outdir: Path) -> dict[str, Any]:
        payload = spec["payload"]
        tool = payload.get("tool_uri") or payload["tool"]
        master = master_dataset(spec)
        files = []
        if master is not None:
            records = {f.did: f for f in self.catalog.list_files(master)}
            files = [records[did].cwl_value() for did in job.files]
        jobs = job_invocations(spec, files, lambda did: [
            f.cwl_value() for f in self.catalog.list_files(did)])
        return {"tool": tool, "jobs": jobs, "outdir": str(outdir),
                "workdir": str(self.workdir), "no_container": self.no_container,
                "where": spec["step"]}

    def _harvest(self) -> bool:
        """Record the finished jobs; True if one of them failed for good."""
        failed = False
        for job_id, future in list(self._running.items()):
            if not future.done():
                continue
            try:
                result = future.result()
            except Exception as exc:  # the worker died (killed, out of memory)
                if isinstance(exc, BrokenProcessPool):
                    self._pool = None  # a broken pool takes no more work: start a new one
                result = {"status": "permanentFail", "outputs": None, "command": [],
                          "container": None, "exit_code": None, "final": False,
                          "log": f"worker process failed: {exc!r}"}
            # forget the job only once its result is recorded: if the catalog is down now,
            # the next pump records it again instead of leaving it "running" for ever
            failed = self._record(job_id, result) == "failed" or failed
            del self._running[job_id]
        return failed

    def _record(self, job_id: int, result: dict[str, Any]) -> str:
        """Write down a job's result; its new state."""
        for note in result.get("fallbacks") or ():  # the workers' host runs, said once here
            warn_once(*note)
        with self.engine.connect() as conn:
            job = conn.execute(select(JOBS).where(JOBS.c.id == job_id)).first()
            task = conn.execute(select(TASKS).where(TASKS.c.id == job.task_id)).first()
        produced: list[dict[str, Any]] = []
        outputs = result.get("outputs")
        ok = result["status"] == "success"
        if ok and "report" in result:  # a rehearsal: the files the job placed, its report
            records, outputs = rehearsal.placed_outputs(
                task.spec, result["report"], Path(result["jobdir"]))
            produced = add_files(self.catalog, records)
        elif ok:
            produced = register_outputs(self.catalog, task.spec, task.id, job.number,
                                        outputs or {})
        if ok:
            register_log(self.catalog, self.workdir, task.spec, task.id, job.number,
                         result["log"])
        state = "done" if ok else (
            "failed" if result.get("final") or job.attempt >= self._max_attempts(task.spec)
            else "pending")
        with self.engine.begin() as conn:
            conn.execute(JOBS.update().where(JOBS.c.id == job_id).values(
                state=state, command=result["command"], container=result["container"],
                exit_code=result["exit_code"], outputs=outputs, produced=produced,
                log=result["log"], finished_at=None if state == "pending" else time.time()))
        return state

    def _max_attempts(self, spec: dict[str, Any]) -> int:
        if self.attempts is not None:
            return max(1, self.attempts)
        return max(1, int(spec["params"].get("maxAttempt") or 3))


_STATE_MAP = {"submitted": TaskState.SUBMITTED, "running": TaskState.RUNNING,
              "finishing": TaskState.RUNNING, "paused": TaskState.RUNNING,
              "done": TaskState.SUCCEEDED,
              "failed": TaskState.FAILED, "aborted": TaskState.FAILED}
