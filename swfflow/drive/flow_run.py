"""Run a plan with its full CWL semantics: the engine walks the plan's flow, every leaf job is
a task of the plan, submitted to the executor and followed to its end.

- The engine (:mod:`swfflow.drive.engine`) decides values, scatter widths and conditions on
  real data, from the flow the plan carries (:mod:`swfflow.plan.flow`) — never from the CWL
  document.
- **Dataset tasks.** A leaf job whose inputs are exactly the datasets its planned task reads
  (the run's stream, a producer's output) runs as that task, unchanged: the backend splits the
  dataset into jobs (JEDI), pipelines on producers that are still running (stream edges) or
  waits for them (complete edges), and its outputs are datasets too (:mod:`.datasets`).
- **Value tasks.** Any other leaf job gets its inputs as values in its payload (``swfflow job
  --values`` on PanDA): the planner's own task when there is one (a leaf without scatter, the
  element ``step.0.2`` of a scatter known at compile time), else a run-time **instance** of
  the leaf's task (:mod:`.instances`) with its own name and output datasets.
- Tasks are idempotent by name, so running the same plan over the same state store again
  resumes: finished tasks answer at once with their outputs, failed ones run again.
- A task that fails stops the tasks pipelining on its output (they would wait for ever) and
  fails the run, with its message. ExpressionTools are evaluated here, never submitted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog, Executor, TaskStatus
from swfflow.drive.activity import Activity
from swfflow.drive.datasets import DatasetRef, DatasetValues
from swfflow.drive.engine import Engine
from swfflow.drive.instances import templates
from swfflow.drive.leaf_jobs import LeafJobs
from swfflow.drive.outcome import blocked_by, missing_outputs, not_run
from swfflow.drive.parallel import worker_threads
from swfflow.drive.phases import PHASE_OF_STATE, TaskPhase
from swfflow.drive.store import DriverStore
from swfflow.errors import RunFailed
from swfflow.plan.flow import workflow_of
from swfflow.plan.model import Plan, TaskSpec
from swfflow.runtime.files import absolute_locations, describe_files

log = logging.getLogger("swfflow.run")

Prepare = Callable[[TaskSpec], TaskSpec]
ExpressionRunner = Callable[[TaskSpec, dict[str, Any]], dict[str, Any]]
OutputsReader = Callable[[str], dict[str, Any]]
JobInputsReader = Callable[[str], dict[int, list[str]]]  # task id → {job number: input DIDs}
# an error submitting a task → seconds to wait before trying again, or None: the run fails
SubmitErrors = Callable[[Exception], float | None]
# how long the engine must have had nothing to do but wait for tasks before `settle` says so
SETTLE_S = 1.5


@dataclass
class _Live:
    """A submitted task, until the executor says it is final."""

    spec: TaskSpec
    task_id: str
    done: threading.Event = field(default_factory=threading.Event)
    status: TaskStatus | None = None
    phase: TaskPhase = TaskPhase.SUBMITTED


class FlowRun(LeafJobs):
    """One instance of a plan, run to its end.

    Either all at once (:meth:`run`, which raises :class:`RunFailed` when a task fails), or
    driven by its caller — the bridge, ``swfflow submit`` — with :meth:`start`, then
    :meth:`tick` until it returns True (:attr:`error` then says whether it failed), and
    :meth:`detach` to leave the rest to a later process over the same state store.
    ``on_tick`` is called on every tick (e.g. to feed the run's stream)."""

    def __init__(self, plan: Plan, catalog: Catalog, executor: Executor, store: DriverStore, *,
                 source_path: str, outputs_of: OutputsReader, prepare: Prepare,
                 run_expression: ExpressionRunner, jobs: int = 1, poll_s: float = 0.05,
                 on_tick: Callable[[FlowRun], None] | None = None,
                 job_inputs: JobInputsReader | None = None,
                 submit_errors: SubmitErrors | None = None, stop_on_failure: bool = False):
        self.plan, self.catalog, self.executor, self.store = plan, catalog, executor, store
        self.source_path = source_path
        self.outputs_of = outputs_of
        self.prepare = prepare
        self.run_expression = run_expression
        self.jobs = jobs
        self.poll_s = poll_s
        self.on_tick = on_tick
        self.submit_errors = submit_errors
        # cwltool's on_error=stop (swfflow run): the first failed task stops the others; on
        # PanDA (submit, the bridge) independent branches go on and only readers are stopped
        self.stop_on_failure = stop_on_failure
        self.instance = f"{plan.workflow}:{plan.run}"
        self.templates = templates(plan)
        self.by_key = {t.key: t for t in plan.tasks}
        # datasets several planned tasks write (compile-time scatter elements): closed at the end
        self.shared = {did for did, n in Counter(
            did for t in plan.tasks for did in t.outputs.values()).items() if n > 1}
        self._live: dict[str, _Live] = {}  # task key → live task
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._recording = threading.Lock()
        executor.watch(self._wake.set)
        self._opened: set[str] = set()
        self.failures: list[str] = []
        self._saved: dict[str, dict[str, Any]] = {}  # this instance's rows of an earlier run
        self.job_inputs = job_inputs
        self.activity = Activity()  # for `settle`
        self.values = DatasetValues(catalog, self._wait_writer, self._stopped, self._lock,
                                    self._lineage if job_inputs else None,
                                    self.activity.waiting)
        self._outcome: Future[dict[str, Any]] | None = None
        self.finished = False
        self.result: dict[str, Any] | None = None  # the workflow's output object, once done
        self.error: BaseException | None = None  # why it failed, once finished

    # --- the run ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every task the flow reaches; the workflow's output object."""
        self.start()
        try:
            while not self.tick():
                self.wait_for_news()
        except BaseException:  # Ctrl-C: leaves give up waiting
            self._stopped.set()
            self._save_instance("interrupted")
            raise
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def start(self) -> None:
        """Create the plan's datasets (idempotent), load what an earlier run of the instance
        recorded, and start walking the flow (in a thread: leaves submit as they are reached)."""
        base = Path(self.source_path).resolve().parent if self.source_path else Path.cwd()
        inputs = describe_files(absolute_locations(self.plan.inputs, base))
        for spec in self.plan.datasets:
            self.catalog.create_dataset(spec.did, rules=spec.rules)
            if spec.role == "stream":  # the run's stream: read as a dataset, never as values
                inputs[spec.port or ""] = DatasetRef(spec.did, writer=None)
        workflow = workflow_of(self.plan.flow, self.source_path)
        self._saved = self.store.load(self.instance)
        for key, row in self._saved.items():  # what a failure kept from running may go now
            if row["phase"] == TaskPhase.BLOCKED.value:
                self.store.save(self.instance, key, phase=TaskPhase.PENDING.value, message="")
        self._save_instance("running")
        engine = Engine(self._leaf, jobs=self.jobs, materialize=self.values.materialize,
                        splits=self._splits)
        self.activity.restart()  # `settle` counts from here
        self._outcome = worker_threads().submit(engine.run, workflow, inputs)

    def tick(self) -> bool:
        """Follow the live tasks once; finish the run when the flow is walked and no task is
        live. True when finished (then :attr:`result` or :attr:`error` is set)."""
        if self.finished:
            return True
        outcome = self._outcome
        assert outcome is not None, "start() first"
        if outcome.done() and outcome.exception() is not None:
            self._stop_all("the run failed")
        self._follow()
        if self.on_tick is not None:
            self.on_tick(self)
        if outcome.done() and not self._live_tasks():
            self._finish(outcome)
        return self.finished

    def wait_for_news(self, timeout_s: float | None = None) -> None:
        """Until a task may have changed (a submission, a job done) or the poll interval."""
        self._wake.wait(self.poll_s if timeout_s is None else timeout_s)
        self._wake.clear()

    def settle(self, timeout_s: float = 120.0) -> bool:
        """Tick until the run is finished or has nothing to do but wait for its tasks (what
        ``swfflow submit`` without ``--follow`` leaves running). True when finished."""
        deadline = time.monotonic() + timeout_s
        while not self.tick():
            if self.idle():
                return False
            if time.monotonic() > deadline:
                raise RunFailed(f"{self.instance}: still submitting after {timeout_s:.0f} s",
                                hint="the backend is slow to answer: submit again to go on "
                                     "(nothing is submitted twice)")
            self.wait_for_news(0.1)
        return True

    def idle(self, quiet_s: float = SETTLE_S) -> bool:
        """Has the flow had nothing to do but wait for its tasks (or the stream) for
        ``quiet_s``? (Then everything that may be submitted now has been.)"""
        return self.finished or self.activity.idle(quiet_s)

    def detach(self) -> None:
        """Stop walking the flow and leave the tasks to themselves; the saved state lets a
        later run of the instance (``swfflow submit`` again, a restarted bridge) go on."""
        self._stopped.set()
        if self._outcome is not None:
            try:
                self._outcome.exception(timeout=5)  # its waits notice within half a second
            except TimeoutError:
                log.warning("%s: the flow did not stop within 5 s", self.instance)

    def live_task_ids(self) -> list[str]:
        """The backend ids of the tasks submitted and not final."""
        return [live.task_id for live in self._live_tasks()]

    def task_rows(self) -> dict[str, dict[str, Any]]:
        """What the state store says of each task of the instance (key → phase, task id,
        message, outputs); planned tasks not reached yet have no row."""
        return self.store.load(self.instance)

    def problems(self) -> list[str]:
        """The keys of the tasks that failed or were blocked."""
        return sorted(key for key, row in self.task_rows().items()
                      if row["phase"] in (TaskPhase.FAILED.value, TaskPhase.BLOCKED.value))

    def _finish(self, outcome: Future[dict[str, Any]]) -> None:
        self.finished = True
        try:
            if self.failures:  # the first task that failed, not what its stopping caused
                raise RunFailed(self.failures[0].splitlines()[0],
                                hint="\n".join(self.failures[0].splitlines()[1:]) or None)
            self.result = self.values.materialize(outcome.result())
            if getattr(self.executor, "runs_payloads", True):
                missing_outputs(self.plan.flow, self.result, self.plan.source)
        except RunFailed as exc:  # a failed task: what it kept from starting says why
            self._stopped.set()
            self._save_instance("failed")
            self.error = self._with_blocked(exc)
            return
        except Exception as exc:  # e.g. a backend that could not be reached
            self._stopped.set()
            self._save_instance("failed")
            self.error = exc
            return
        self._close_outputs()
        self._record_not_run()
        self._save_instance("done")

    def _record_not_run(self) -> None:
        for task, task_id, phase, why in not_run(self.plan, self.store.load(self.instance)):
            self._record(task, phase, task_id, why)

    def _with_blocked(self, failure: RunFailed) -> RunFailed:
        records, failure = blocked_by(self.plan, self.store.load(self.instance), failure)
        for task, task_id, phase, why in records:
            self._record(task, phase, task_id, why)
        return failure

    def close_streams(self) -> None:
        """The end of run: close the stream datasets (idempotent)."""
        with self._lock:
            for spec in self.plan.datasets:
                if spec.role == "stream":
                    self.catalog.close_dataset(spec.did)

    def _live_tasks(self) -> list[_Live]:
        with self._lock:
            return [live for live in self._live.values() if not live.done.is_set()]

    def _save_instance(self, state: str) -> None:
        self.store.save_instance(self.instance, self.plan.workflow, self.plan.run,
                                 self.plan.to_dict(), state)

    def _close_outputs(self) -> None:
        """The run is done: no task writes any more (a skipped task's datasets stay empty)."""
        planned = {d.did for d in self.plan.datasets if d.role != "stream"}
        with self._lock:
            for did in sorted(self._opened | planned):
                self.catalog.close_dataset(did)

    # --- following ----------------------------------------------------------------------
    def _follow(self) -> None:
        live = {t.task_id: t for t in self._live_tasks()}
        if not live:
            return
        for task_id, status in self.executor.status(list(live)).items():
            if status.state.terminal:
                self._finished(live[task_id], status)
            elif PHASE_OF_STATE[status.state] is not live[task_id].phase:
                live[task_id].phase = PHASE_OF_STATE[status.state]  # e.g. it started running
                self._record(live[task_id].spec, live[task_id].phase.value, task_id)

    def _finished(self, live: _Live, status: TaskStatus) -> None:
        live.status = status
        if status.state.ok:
            with self._lock:  # nobody writes a sole writer's datasets any more
                for did in live.spec.outputs.values():
                    if did not in self.shared:
                        self.catalog.close_dataset(did)
            self._record(live.spec, "succeeded", live.task_id)
        else:
            message = f"step {live.spec.step} failed (task {live.spec.name})\n{status.message}"
            self.failures.append(message.strip())
            self._record(live.spec, "failed", live.task_id, status.message)
            self._stop_readers(live.spec)
            if self.stop_on_failure:
                live.done.set()  # before _stop_all, which would take it for one to stop
                self._stop_all(f"step {live.spec.step} failed")
        live.done.set()

    def _stop_readers(self, failed: TaskSpec) -> None:
        """Tasks pipelining on a failed task's (still open) outputs would wait for ever."""
        outputs = set(failed.outputs.values())
        for live in self._live_tasks():
            if any(i.dataset in outputs for i in live.spec.inputs):
                self.executor.kill(live.task_id)
                self._record(live.spec, "blocked", live.task_id,
                             f"stopped: parent {failed.key} failed")

    def _stop_all(self, why: str) -> None:
        for live in self._live_tasks():
            self.executor.kill(live.task_id)
            self._record(live.spec, "blocked", live.task_id, f"stopped: {why}")
            live.done.set()

    def _wait_writer(self, key: str) -> None:
        with self._lock:
            live = self._live.get(key)
        if live is None:
            raise RunFailed(f"task {key} was never submitted", hint="a bug: please report it")
        with self.activity.waiting():
            while not live.done.wait(0.5):
                if self._stopped.is_set():
                    raise RunFailed(f"task {key} not followed to its end: the run was stopped",
                                    hint="run the same command again to resume")
        if live.status is None or not live.status.state.ok:
            raise RunFailed(f"step {live.spec.step} failed (task {live.spec.name})",
                            hint=live.status.message if live.status else None)

    def _lineage(self, key: str) -> tuple[str | None, str | None, dict[int, list[str]]]:
        with self._lock:
            live = self._live[key]
            master = live.spec.params.get("dsForIN")
            writer = next((other.spec.key for other in self._live.values()
                           if master in other.spec.outputs.values()), None)
        assert self.job_inputs is not None
        return master, writer, self.job_inputs(live.task_id)

    def _submit(self, spec: TaskSpec) -> _Live:
        with self._lock:  # the catalog is shared by every leaf thread
            for did in (*spec.outputs.values(), spec.log_dataset):
                if did and did not in self._opened:
                    self.catalog.create_dataset(did)
                    self._opened.add(did)
        task_id = self._submitted(self.prepare(spec))
        saved = self._saved.get(spec.key) or {}
        if saved.get("phase") in ("failed", "blocked") and saved.get("task_id") == task_id:
            self.executor.retry(task_id)  # resume = try the failed work again
        self._record(spec, "submitted", task_id)  # before anyone can see it finish
        live = _Live(spec, task_id)
        with self._lock:
            self._live[spec.key] = live
        self._wake.set()  # start it now, not at the next poll
        return live

    def _submitted(self, spec: TaskSpec) -> str:
        """Submit; a backend that cannot be reached is tried again for as long as
        ``submit_errors`` says (the bridge: until it answers), else the run fails."""
        while True:
            try:
                return self.executor.submit(spec)
            except Exception as exc:
                delay = self.submit_errors(exc) if self.submit_errors else None
                if delay is None:
                    raise
                log.warning("%s: submitting %s failed (%s); trying again in %.0f s",
                            self.instance, spec.name, str(exc).splitlines()[0], delay)
                if self._stopped.wait(delay):
                    raise RunFailed(f"task {spec.key} not submitted: the run was stopped",
                                    hint="run the same command again to resume") from None

    def _expression(self, spec: TaskSpec, job: dict[str, Any]) -> dict[str, Any]:
        try:
            outputs = self.run_expression(self.prepare(spec), job)
        except RunFailed as exc:
            self._record(spec, "failed", None, str(exc))
            raise
        self._record(spec, "succeeded", None, outputs=outputs)
        return outputs

    def _record(self, spec: TaskSpec, phase: str, task_id: str | None, message: str = "", *,
                outputs: dict[str, Any] | None = None) -> None:
        with self._recording:  # leaf threads and the following loop write the same rows
            self.store.save(self.instance, spec.key, name=spec.name, phase=phase,
                            task_id=task_id, message=message, outputs=outputs)
