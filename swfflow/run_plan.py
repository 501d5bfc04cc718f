"""``swfflow run``: compile, assemble the local backends, then run the plan as PanDA + Rucio
would run it — the engine walks the plan's data flow and every leaf job is a task of the plan
(:class:`~swfflow.drive.flow_run.FlowRun`). A stream input's files are fed one per tick by
:class:`~swfflow.drive.local_run.StreamFeeder`; outputs are copied into ``outdir``."""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.assemble import Settings, assemble
from swfflow.drive.local_run import StreamFeeder
from swfflow.drive.store import DriverStore
from swfflow.errors import ConfigError, UnsupportedFeature
from swfflow.pipeline import compile_loaded
from swfflow.state import sqlite_engine

log = logging.getLogger("swfflow.run")
STATE_DB = Path(".swfflow") / "state.db"
# pchain steps: their payload is prun/phpo itself, which only a PanDA worker runs
PANDA_ONLY_KINDS = frozenset({"prun", "phpo", "junction"})
REHEARSE_ENV = "SWFFLOW_REHEARSE"  # the conformance hook's switch for --rehearse


def run_plan_locally(workflow: ir.Workflow, inputs: dict[str, Any], outdir: Path, *,
                     jobs: int, attempts: int | None, no_container: bool, run: str,
                     profile_path: str | None, quiet: bool,
                     rehearse: bool = False) -> dict[str, Any]:
    """The workflow's output object, its files copied into ``outdir``."""
    # a stream's default (a Snakefile's input files) when the inputs do not list its files
    streams = {name: inputs.get(name, _default_files(workflow, name))
               for name in workflow.stream_inputs()}
    for name, files in streams.items():
        if files is not None and not (isinstance(files, list) and all(
                isinstance(f, dict) and f.get("class") == "File" for f in files)):
            raise ConfigError(f"stream input {name!r} must be a list of Files, not "
                              f"{json.dumps(files)[:60]}", where=workflow.source_path or None,
                              hint=f"give `{name}:` as a list of {{class: File, location: …}}")
        if not files:
            raise ConfigError(f"stream input {name!r} has no files",
                              where=workflow.source_path or None,
                              hint=f"list the run's STF files under `{name}:` in the inputs "
                                   "file (a DAQ run without STFs is the bridge's business)")
    plan = compile_loaded(workflow, inputs, profile_path, run)
    native = [t.step for t in plan.tasks if t.payload.get("kind") in PANDA_ONLY_KINDS]
    if native:
        raise UnsupportedFeature(
            f"step {native[0]} is a PanDA-native {next(t.kind for t in plan.tasks if t.step == native[0])} step: it runs "
            "only on PanDA", where=workflow.source_path or None,
            hint="submit it with `swfflow submit`; `swfflow compile` shows its task parameters")
    workdir = outdir / ".swfflow"
    engine = sqlite_engine(outdir / STATE_DB, durable=False)  # a rerun redoes what is lost
    settings = Settings(executor="local", catalog="local", workdir=workdir, jobs=jobs,
                        attempts=attempts, no_container=no_container, rehearse=rehearse,
                        sandbox=Path(workflow.source_path).resolve().parent
                        if workflow.source_path else None)
    with ExitStack() as stack:  # the executor is shut down however the run ends
        backends = assemble(settings, engine=engine, stack=stack, plan=plan, workflow=workflow,
                            source=workflow.source_path or "")
        flow = backends.flow_run(plan, DriverStore(engine), source_path=workflow.source_path,
                                 on_tick=StreamFeeder(plan, backends.catalog, streams),
                                 stop_on_failure=True)
        try:
            outputs = flow.run()
        except KeyboardInterrupt:
            log.warning("interrupted: state saved in %s; run the same command to resume",
                        outdir / STATE_DB)
            raise
    return relocate(outputs, outdir, workdir)


def _default_files(workflow: ir.Workflow, name: str) -> Any:
    from swfflow.runtime.files import absolute_locations
    port = workflow.inputs[name].port
    base = Path(workflow.source_path).resolve().parent if workflow.source_path else Path.cwd()
    return absolute_locations(port.default, base) if port.has_default else None


def relocate(outputs: dict[str, Any], outdir: Path, workdir: Path) -> dict[str, Any]:
    """Copy the output files out of the job directories into ``outdir`` (cwltool's own
    relocation, so names, secondary files and checksums follow its rules)."""
    from cwltool.process import relocateOutputs
    from cwltool.stdfsaccess import StdFsAccess

    outdir.mkdir(parents=True, exist_ok=True)
    return relocateOutputs(outputs, str(outdir), {str(workdir)}, "copy", StdFsAccess(""))


def run_workflow_file(path: str | Path, inputs: dict[str, Any] | None, outdir: str | Path, *,
                      no_container: bool = False, jobs: int | None = None,
                      attempts: int | None = 1, rehearse: bool | None = None) -> dict[str, Any]:
    """A CWL file run once with ``inputs`` as cwl-runner runs it (one attempt per job by
    default): what the conformance hook and library callers use. ``rehearse`` (default:
    ``$SWFFLOW_REHEARSE`` is 1) runs every job as a pilot would (``swfflow run --rehearse``)."""
    import os

    from swfflow.frontends.cwl import load_workflow
    from swfflow.runtime.files import describe_files

    inputs = describe_files(inputs or {})
    workflow = load_workflow(path, inputs)
    return run_plan_locally(workflow, inputs, Path(outdir).resolve(),
                            jobs=jobs or os.cpu_count() or 1, attempts=attempts,
                            no_container=no_container, run="local", profile_path=None,
                            quiet=True, rehearse=rehearse if rehearse is not None
                            else os.environ.get(REHEARSE_ENV) == "1")
