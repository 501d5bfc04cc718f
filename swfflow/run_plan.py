"""``swfflow run`` for a workflow with a stream input: compile, assemble the local backends,
then drive the plan as PanDA + Rucio would run it (the stream input's files fed one per tick by
:class:`~swfflow.drive.local_run.StreamFeeder`)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.assemble import Settings, assemble
from swfflow.drive.driver import Driver, TaskPhase
from swfflow.drive.local_run import StreamFeeder
from swfflow.drive.progress import Progress
from swfflow.drive.store import DriverStore
from swfflow.errors import RunFailed
from swfflow.pipeline import compile_loaded
from swfflow.state import sqlite_engine

log = logging.getLogger("swfflow.run")
STATE_DB = Path(".swfflow") / "state.db"


def run_plan_locally(workflow: ir.Workflow, inputs: dict[str, Any], outdir: Path, *,
                     jobs: int, attempts: int | None, no_container: bool, run: str,
                     profile_path: str | None, quiet: bool) -> dict[str, Any]:
    from swfflow.runtime.batch import relocate

    plan = compile_loaded(workflow, inputs, profile_path, run)
    workdir = outdir / ".swfflow"
    engine = sqlite_engine(outdir / STATE_DB)
    settings = Settings(executor="local", catalog="local", workdir=workdir, jobs=jobs,
                        attempts=attempts, no_container=no_container)
    with ExitStack() as stack:  # the executor is shut down however the run ends
        backends = assemble(settings, engine=engine, stack=stack, plan=plan, workflow=workflow)
        driver = Driver(plan, backends.catalog, backends.executor, DriverStore(engine),
                        prepare=backends.prepare, run_expression=backends.run_expression)
        feeder = StreamFeeder(plan, backends.catalog,
                              {n: inputs.get(n) for n in workflow.stream_inputs()})
        progress = Progress(driver, enabled=not quiet)
        try:
            with progress:
                driver.run(on_tick=lambda d: (feeder(d), progress.update()))
        except KeyboardInterrupt:
            log.warning("interrupted: state saved in %s; run the same command to resume",
                        outdir / STATE_DB)
            raise
    if driver.failed or any(t.phase is TaskPhase.BLOCKED for t in driver.tasks.values()):
        raise RunFailed(_failure_text(driver), where=workflow.source_path or None,
                        hint=f"see `swfflow status --outdir {outdir}`; fix and run the same "
                             "command again to resume")
    types = {name: out.type for name, out in workflow.outputs.items()}
    return relocate(driver.workflow_outputs(types), outdir, workdir)


def _failure_text(driver: Driver) -> str:
    lines = []
    for task in driver.tasks.values():
        if task.phase is TaskPhase.FAILED:
            lines.append(f"step {task.spec.step} failed: {task.message}")
    blocked = [t.spec.step for t in driver.tasks.values() if t.phase is TaskPhase.BLOCKED]
    if blocked:
        lines.append(f"not started because of it: {', '.join(blocked)}")
    return "\n".join(lines)
