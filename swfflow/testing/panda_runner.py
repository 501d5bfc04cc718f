"""What runs the tasks the PanDA contract server accepts.

- :class:`TaskRunner` is the interface; :class:`RunReport` is what a runner says about a task.
- :class:`StateMachineRunner` runs nothing: tasks end after a timer (protocol tests).
- :class:`ExecutorRunner` runs them with a real swfflow Executor (see below).

:class:`ExecutorRunner` adapts any :class:`~swfflow.backends.base.Executor` (in CI: the
:class:`~swfflow.backends.local_executor.LocalExecutor` over a
:class:`~swfflow.backends.rucio.RucioCatalog`) to the server's
:class:`~swfflow.testing.panda_tasks.TaskRunner`. The local executor then does what JEDI and the
pilots would: read ``dsForIN`` from Rucio, keep cutting jobs while the dataset is open
(``runUntilClosed``), run them, and register outputs and logs back into Rucio.

The server only receives task *parameters*; what a job runs (the payload) is in the plan. So
the runner is given the plans it serves and finds each task by its ``taskName``
(:func:`specs_from_plans`), which is exactly the idempotency key swfflow submits under. The
bridge instantiates one plan per run: :func:`specs_from_template` serves every run of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from swfflow.backends.base import Executor, TaskState
from swfflow.plan.model import RUN, Plan, TaskSpec

# --- what a runner reports -----------------------------------------------------------------
RUN_TO_JEDI = {"pending": "pending", "running": "running", "succeeded": "done",
               "partial": "finished", "failed": "failed", "exhausted": "exhausted"}


@dataclass(frozen=True)
class RunReport:
    """Where a runner is with a task: ``state`` is a key of :data:`RUN_TO_JEDI`."""

    state: str
    n_files: int = 0
    n_files_finished: int = 0
    n_files_failed: int = 0
    job_ids: tuple[int, ...] = ()
    message: str = ""


class TaskRunner(Protocol):
    """Runs the tasks the server accepted. Called from the server's tick thread only."""

    def start(self, task_id: int, params: Mapping[str, Any]) -> None: ...

    def poll(self, task_id: int) -> RunReport: ...

    def stop(self, task_id: int, how: str) -> None:
        """``how`` is "kill" (drop everything) or "finish" (no new jobs, let running ones end)."""

    def retry(self, task_id: int, params: Mapping[str, Any]) -> None:
        """Run again whatever failed (or, after incexec, whatever is new)."""


class StateMachineRunner:
    """A runner that runs nothing: each task "runs" for ``run_s`` seconds, then ends with the
    outcome chosen for its name (``outcomes``: regex → list of outcomes, one per attempt, the
    last repeating; default "succeeded"). For tests of the protocol, not of the payloads."""

    def __init__(self, run_s: float = 0.3, outcomes: Mapping[str, list[str]] | None = None,
                 clock: Any = None):
        self.run_s = run_s
        self.outcomes = dict(outcomes or {})
        self._clock = clock or _utcnow
        self._runs: dict[int, dict[str, Any]] = {}
        self._next_job = 1000

    def start(self, task_id: int, params: Mapping[str, Any]) -> None:
        self._next_job += 1
        self._runs[task_id] = {"t0": self._clock(), "attempt": 0, "name": params["taskName"],
                               "jobs": [self._next_job], "stopped": None}

    def poll(self, task_id: int) -> RunReport:
        run = self._runs[task_id]
        elapsed = (self._clock() - run["t0"]).total_seconds()
        if elapsed < self.run_s and run["stopped"] is None:
            return RunReport("running", n_files=1, job_ids=tuple(run["jobs"]))
        outcome = self._outcome(run)
        ok = outcome == "succeeded"
        return RunReport(outcome, n_files=1, n_files_finished=int(ok), n_files_failed=int(not ok),
                         job_ids=tuple(run["jobs"]),
                         message="" if ok else f"simulated {outcome} (attempt {run['attempt']})")

    def stop(self, task_id: int, how: str) -> None:
        self._runs[task_id]["stopped"] = how

    def retry(self, task_id: int, params: Mapping[str, Any]) -> None:
        run = self._runs.get(task_id)
        if run is None:
            self.start(task_id, params)
            return
        self._next_job += 1
        run.update(t0=self._clock(), attempt=run["attempt"] + 1, stopped=None)
        run["jobs"].append(self._next_job)

    def _outcome(self, run: dict[str, Any]) -> str:
        for pattern, outcomes in self.outcomes.items():
            if re.search(pattern, run["name"]):
                return outcomes[min(run["attempt"], len(outcomes) - 1)]
        return "succeeded"



class FailFirst:
    """A runner whose tasks named like ``pattern`` end failed on their first attempt, whatever
    ``inner`` made of them (their jobs ran, their files exist); a retry reports what ``inner``
    says. For tests of retries over payloads that really run."""

    def __init__(self, inner: TaskRunner, pattern: str):
        self.inner, self.pattern = inner, re.compile(pattern)
        self._first: set[int] = set()  # tasks still on their failing first attempt

    def start(self, task_id: int, params: Mapping[str, Any]) -> None:
        if self.pattern.search(params["taskName"]):
            self._first.add(task_id)
        self.inner.start(task_id, params)

    def poll(self, task_id: int) -> RunReport:
        report = self.inner.poll(task_id)
        if task_id not in self._first or report.state not in RUN_FINAL:
            return report
        return RunReport("failed", n_files=report.n_files, n_files_failed=report.n_files,
                         job_ids=report.job_ids, message="simulated failed (attempt 0)")

    def stop(self, task_id: int, how: str) -> None:
        self.inner.stop(task_id, how)

    def retry(self, task_id: int, params: Mapping[str, Any]) -> None:
        self._first.discard(task_id)
        self.inner.retry(task_id, params)


RUN_FINAL = frozenset({"succeeded", "partial", "failed", "exhausted"})


# the executor's view → what the server turns into a JEDI status (panda_tasks.RUN_TO_JEDI)
STATE_TO_RUN = {
    TaskState.SUBMITTED: "running", TaskState.WAITING: "pending",
    TaskState.RUNNING: "running", TaskState.FAILING: "running", TaskState.UNKNOWN: "running",
    TaskState.SUCCEEDED: "succeeded", TaskState.PARTIAL: "partial",
    TaskState.FAILED: "failed", TaskState.EXHAUSTED: "exhausted",
}

SpecLookup = Callable[[Mapping[str, Any]], TaskSpec]


def specs_from_plans(plans: Iterable[Plan]) -> SpecLookup:
    """A lookup of TaskSpecs by ``taskName`` over instantiated plans."""
    by_name = {task.name: task for plan in plans for task in plan.tasks}

    def lookup(params: Mapping[str, Any]) -> TaskSpec:
        name = params.get("taskName")
        if name not in by_name:
            raise LookupError(f"no plan served by this PanDA double has a task named {name!r}")
        return by_name[name]

    return lookup


def specs_from_template(template: Plan) -> SpecLookup:
    """A lookup over every run of a run-templated plan (``${RUN}`` kept, as the bridge holds
    it): the run is read off the task name, the way the bridge named the task when it
    instantiated the plan for that run, and the plan is instantiated for it the same way."""
    if template.run != RUN:
        raise ValueError(f"the plan is already instantiated for run {template.run}")
    patterns = {task.key: _run_pattern(task.name) for task in template.tasks if RUN in task.name}
    instances: dict[str, Plan] = {}

    def lookup(params: Mapping[str, Any]) -> TaskSpec:
        name = str(params.get("taskName"))
        found = {(key, m.group("run")) for key, pattern in patterns.items()
                 if (m := pattern.fullmatch(name))}
        if len(found) != 1:
            what = "no task" if not found else f"{len(found)} tasks (ambiguous)"
            raise LookupError(f"{what} of workflow {template.workflow} named like {name!r}")
        ((key, run),) = found
        if run not in instances:
            instances[run] = template.instantiate(run)
        return instances[run].task(key)

    return lookup


def _run_pattern(templated_name: str) -> re.Pattern[str]:
    """``a.${RUN}.b`` → a regex matching ``a.<run>.b``, the run captured (repeats agree)."""
    first, *rest = (re.escape(part) for part in templated_name.split(RUN))
    return re.compile(first + "(?P<run>.+?)" + "(?P=run)".join(rest))


def specs_from_plan_dir(directory: str | Path) -> SpecLookup:
    """A lookup over the instantiated plan files (``*.json``) in ``directory``, re-read when a
    name is not found, so plans can be dropped there while the server runs."""
    directory = Path(directory)

    def lookup(params: Mapping[str, Any]) -> TaskSpec:
        plans = [Plan.from_json(p.read_text()) for p in sorted(directory.glob("*.json"))]
        return specs_from_plans(plans)(params)

    return lookup


def local_pilot(workdir: str | Path, state_db: str | Path, *, jobs: int = 2,
                no_container: bool = False, rucio_config: str | None = None) -> Any:
    """What JEDI and the pilots do, on this machine: the local executor (built by
    :mod:`swfflow.assemble`) over the Rucio server of ``rucio_config`` (default
    ``$RUCIO_CONFIG``), its job folders under ``workdir``, its state in ``state_db``."""
    from swfflow.assemble import Settings, build_catalog, build_executor
    from swfflow.state import sqlite_engine

    settings = Settings(executor="local", catalog="rucio", workdir=Path(workdir), jobs=jobs,
                        no_container=no_container, rucio_config=rucio_config)
    engine = sqlite_engine(state_db)
    return build_executor(settings, engine=engine,
                          catalog=build_catalog(settings, engine=engine))


def local_runner(plan_dir: str | Path, workdir: str | Path, *, jobs: int = 2,
                 rucio_config: str | None = None) -> ExecutorRunner:
    """The real runner: the local executor over the Rucio server of ``rucio_config``
    (default ``$RUCIO_CONFIG``), state and job directories under ``workdir``."""
    workdir = Path(workdir)
    executor = local_pilot(workdir / "work", workdir / "panda-runner.db", jobs=jobs,
                           rucio_config=rucio_config)
    return ExecutorRunner(executor, specs_from_plan_dir(plan_dir))


class ExecutorRunner:
    """A :class:`~swfflow.testing.panda_tasks.TaskRunner` over a swfflow Executor."""

    def __init__(self, executor: Executor, specs: SpecLookup):
        self.executor = executor
        self.specs = specs
        self.local_ids: dict[int, str] = {}  # PanDA task id → executor task id

    def start(self, task_id: int, params: Mapping[str, Any]) -> None:
        spec = with_shipped_values(self.specs(params), params)
        self.local_ids[task_id] = self.executor.submit(spec)

    def poll(self, task_id: int) -> RunReport:
        local = self.local_ids[task_id]
        status = self.executor.status([local])[local]
        return RunReport(STATE_TO_RUN[status.state], n_files=status.n_jobs,
                         n_files_finished=status.n_jobs_done,
                         n_files_failed=status.n_jobs_failed, message=status.message)

    def stop(self, task_id: int, how: str) -> None:
        local = self.local_ids[task_id]
        (self.executor.kill if how == "kill" else self.executor.finish)(local)

    def retry(self, task_id: int, params: Mapping[str, Any]) -> None:
        if task_id not in self.local_ids:  # e.g. the server restarted from its state file
            self.start(task_id, params)
        else:
            self.executor.retry(self.local_ids[task_id])


def with_shipped_values(spec: TaskSpec, params: Mapping[str, Any]) -> TaskSpec:
    """The plan's spec plus what the job parameters carry beyond the plan: the inputs the
    driver computed at run time (``--values=B64``), merged into the job as ``swfflow job``
    merges them on a worker."""
    from swfflow.plan.jedi import shipped_values

    values = shipped_values(params)
    if not values:
        return spec
    return replace(spec, payload={**spec.payload,
                                  "job": {**(spec.payload.get("job") or {}), **values}})


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
