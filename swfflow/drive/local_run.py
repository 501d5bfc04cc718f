"""``swfflow run`` for a streaming workflow: compile, then drive the plan over local backends.

The stream input's files (from the inputs file) play the DAQ: they are registered (size,
adler32) and attached to the open run dataset one per tick of the run, and the dataset is closed
after the last one — so the streaming step runs while its dataset is still open and the merge
is released at close, as in a real run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.backends.base import FileRecord
from swfflow.backends.local_catalog import LocalCatalog, sqlite_engine
from swfflow.backends.local_executor import LocalExecutor
from swfflow.checksum import adler32_file
from swfflow.drive.flow_run import FlowRun
from swfflow.drive.payload import LocalPayloads
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

    def __call__(self, run: FlowRun) -> None:
        if self.queue:
            did, path = self.queue.pop(0)
            scope = did.split(":", 1)[0]
            self.catalog.add_files(did, [FileRecord(
                did=f"{scope}:{path.name}", size=path.stat().st_size,
                adler32=adler32_file(path), pfn=str(path))])
        elif not self.closed:
            run.close_streams()
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
    """Compile, then run the plan on the local backends; the workflow's output object, its
    files copied into ``outdir``."""
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile

    streams = {name: inputs.get(name) for name in workflow.stream_inputs()}
    for name, files in streams.items():
        if not files:
            raise ConfigError(f"stream input {name!r} has no files",
                              where=workflow.source_path or None,
                              hint=f"list the run's STF files under {name}: in the inputs file")
    plan = compile_workflow(workflow, inputs, load_profile(profile_path), run)
    workdir = outdir / ".swfflow"
    engine = sqlite_engine(outdir / STATE_DB)
    catalog = LocalCatalog(engine)
    executor = LocalExecutor(catalog, engine, workdir, jobs=jobs, attempts=attempts,
                             no_container=no_container)
    feeder = StreamFeeder(plan, catalog, streams)
    flow = FlowRun(plan, catalog, executor, DriverStore(engine),
                   source_path=workflow.source_path, outputs_of=executor.task_outputs,
                   prepare=LocalPayloads(workflow),
                   run_expression=run_expression_locally(workdir), jobs=jobs, on_tick=feeder,
                   job_inputs=lambda task_id: {row.number: list(row.files)
                                               for row in executor.job_rows(task_id)})
    try:
        outputs = flow.run()
    except KeyboardInterrupt:
        log.warning("interrupted: state saved in %s; run the same command to resume",
                    outdir / STATE_DB)
        raise
    finally:
        executor.shutdown()
    return relocate(outputs, outdir, workdir)


def relocate(outputs: dict[str, Any], outdir: Path, workdir: Path) -> dict[str, Any]:
    """Copy the output files out of the job directories into ``outdir`` (cwltool's own
    relocation, so names, secondary files and checksums follow its rules)."""
    from cwltool.process import relocateOutputs
    from cwltool.stdfsaccess import StdFsAccess

    outdir.mkdir(parents=True, exist_ok=True)
    return relocateOutputs(outputs, str(outdir), {str(workdir)}, "copy", StdFsAccess(""))
