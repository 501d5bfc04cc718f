"""``swfflow run`` for a streaming workflow: compile, then drive the plan over local backends.

The stream input's files (from the inputs file) play the DAQ: they are registered (size,
adler32) and attached to the open run dataset one per driver tick, and the dataset is closed
after the last one — so the streaming step runs while its dataset is still open and the merge
is released at close, as in a real run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.backends.base import FileRecord
from swfflow.backends.local_catalog import LocalCatalog
from swfflow.state import sqlite_engine
from swfflow.backends.local_executor import LocalExecutor
from swfflow.checksum import adler32_file
from swfflow.drive.driver import Driver, TaskPhase
from swfflow.drive.payload import LocalPayloads
from swfflow.drive.progress import Progress
from swfflow.drive.store import DriverStore
from swfflow.errors import ConfigError, RunFailed
from swfflow.plan.model import Plan, TaskSpec

log = logging.getLogger("swfflow.run")
STATE_DB = Path(".swfflow") / "state.db"


class StreamFeeder:
    """Attaches the stream input's files to the run dataset, one per tick, then closes it."""

    def __init__(self, plan: Plan, catalog: LocalCatalog, files_by_input: dict[str, list]):
        self.catalog = catalog
        self.queue: list[tuple[str, Path]] = []
        for spec in plan.datasets:
            if spec.role == "stream":
                for value in files_by_input.get(spec.port or "", []) or []:
                    self.queue.append((spec.did, _local_path(value, spec.port or "")))
        self.closed = False

    def __call__(self, driver: Driver) -> None:
        if self.queue:
            did, path = self.queue.pop(0)
            scope = did.split(":", 1)[0]
            self.catalog.add_files(did, [FileRecord(
                did=f"{scope}:{path.name}", size=path.stat().st_size,
                adler32=adler32_file(path), pfn=str(path))])
        elif not self.closed:
            driver.close_streams()
            self.closed = True


def _local_path(value: Any, port: str) -> Path:
    location = value.get("location", "") if isinstance(value, dict) else str(value)
    path = Path(location[len("file://"):] if location.startswith("file://") else location)
    if not path.is_file():
        raise ConfigError(f"stream input {port!r}: no such file {path}",
                          hint="stream inputs are local files for `swfflow run`")
    return path


def run_expression_locally(workdir: Path) -> Any:
    from swfflow.runtime.jobrun import clean_outputs
    from swfflow.runtime.tool import run_tool

    def run(spec: TaskSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        job = {**inputs, **(spec.payload.get("job") or {})}
        result = run_tool(spec.payload["tool"], job, workdir / "expressions" / spec.name,
                          workdir=workdir, where=spec.step)
        if not result.ok:
            raise RunFailed(f"expression step {spec.step} failed", hint=result.log_tail())
        return clean_outputs(result.outputs or {})

    return run


def run_plan_locally(workflow: ir.Workflow, inputs: dict[str, Any], outdir: Path, *,
                     jobs: int, attempts: int | None, no_container: bool, run: str,
                     profile_path: str | None, quiet: bool) -> dict[str, Any]:
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile
    from swfflow.runtime.batch import relocate

    plan = compile_workflow(workflow, inputs, load_profile(profile_path), run)
    workdir = outdir / ".swfflow"
    engine = sqlite_engine(outdir / STATE_DB)
    catalog = LocalCatalog(engine)
    executor = LocalExecutor(catalog, engine, workdir, jobs=jobs, attempts=attempts,
                             no_container=no_container)
    driver = Driver(plan, catalog, executor, DriverStore(engine),
                    prepare=LocalPayloads(workflow),
                    run_expression=run_expression_locally(workdir))
    feeder = StreamFeeder(plan, catalog, {n: inputs.get(n) for n in workflow.stream_inputs()})
    progress = Progress(driver, enabled=not quiet)
    try:
        with progress:
            driver.run(on_tick=lambda d: (feeder(d), progress.update()))
    except KeyboardInterrupt:
        log.warning("interrupted: state saved in %s; run the same command to resume",
                    outdir / STATE_DB)
        raise
    finally:
        executor.shutdown()
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
