"""``swfflow run``: run a workflow on this machine (``swfflow status`` shows its state:
:mod:`swfflow.commands.status`).

Every workflow is compiled into a plan and the plan runs over the local backends, as PanDA +
Rucio would run it (:mod:`swfflow.run_plan`): the engine walks the plan's data flow and
submits each leaf job as a task of the plan to the local executor. A workflow with a stream
input (``swf:stream: true``) has its input files attached one by one to the open run dataset,
streaming steps consume them while it is open, merges are released when it closes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from swfflow.errors import SwfflowError

STATE_DIR = ".swfflow"


def run_for_cwltest(processfile: str, jobfile: str | None, basedir: str,
                    outdir: str) -> tuple[int, dict[str, Any] | None]:
    """The cwltest hook: run one conformance test in process; (exit code, output object)."""
    from swfflow.frontends.cwl import load_inputs
    from swfflow.run_plan import run_workflow_file

    def local(path: str) -> str:
        if path.startswith("file://"):
            from urllib.parse import unquote, urlparse
            parsed = urlparse(path)  # keep "#name": a process inside a packed document
            return unquote(parsed.path) + (f"#{parsed.fragment}" if parsed.fragment else "")
        return str(Path(basedir) / path) if not Path(path).is_absolute() else path

    logging.getLogger("cwltool").setLevel(logging.ERROR)
    try:
        inputs = load_inputs(local(jobfile)) if jobfile else {}
        return 0, run_workflow_file(local(processfile), inputs, outdir, no_container=True)
    except SwfflowError as exc:
        print(f"swfflow: error: {exc}", file=sys.stderr)
        return exc.exit_code, None


@click.command("run")
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.argument("inputs", required=False, type=click.Path(dir_okay=False))
@click.option("--outdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where outputs go; the state store lives in OUTDIR/.swfflow/.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Jobs run at once (default: the number of cores).")
@click.option("--attempts", type=click.IntRange(min=1), default=None,
              help="Attempts per job before its step fails (default: the step's swf:Retry, "
                   "else the profile's retries + 1).")
@click.option("--no-container", is_flag=True,
              help="Never use a container: a DockerRequirement hint runs on the host, a "
                   "requirement fails.")
@click.option("--run", "run_number", default="local", show_default=True,
              help="Run number used in dataset and task names (stream workflows).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
              help="Profile YAML (names, scopes, defaults).")
@click.option("--rehearse", is_flag=True,
              help="Run every job as a PanDA pilot would: the task's jobParameters as JEDI "
                   "expands them (`swfflow job ...`), as a subprocess in a job directory "
                   "with the task's sandbox and the input files under their dataset names; "
                   "outputs registered as JEDI names them. Slower; what passes here ran with "
                   "the task parameters PanDA gets.")
@click.option("-q", "--quiet", is_flag=True, help="No progress, only errors.")
def run_cmd(workflow: str, inputs: str | None, outdir: str, jobs: int | None,
            attempts: int | None,
            no_container: bool, run_number: str, profile_path: str | None,
            rehearse: bool, quiet: bool) -> None:
    """Run WORKFLOW (CWL) with INPUTS (YAML/JSON) on this machine; print the CWL output
    object as JSON on stdout (cwl-runner compatible: exit 33 = unsupported feature).

    \b
    Examples:
      swfflow run examples/calib.cwl examples/calib-inputs.yml --outdir out
      swfflow run wf.cwl job.yml --jobs 2 --no-container
      swfflow status --outdir out
    Running again with the same --outdir resumes: finished jobs whose outputs still match
    their checksums are not run again. Ctrl-C stops cleanly.
    """
    import os

    from swfflow.frontends import kind_of, load_any, load_inputs_file

    _logging(quiet)
    out = Path(outdir).resolve()
    values = load_inputs_file(inputs)
    ir_workflow = load_any(workflow, values)
    from swfflow.run_plan import run_plan_locally
    result = run_plan_locally(ir_workflow, values, out, jobs=jobs or os.cpu_count() or 1,
                              attempts=attempts, no_container=no_container,
                              run=run_number, profile_path=profile_path, quiet=quiet,
                              rehearse=rehearse)
    if kind_of(workflow) == "snakemake":  # what snakemake deletes once the run needs it no more
        from swfflow.commands.snakemake_job import delete_temp_outputs
        delete_temp_outputs(Path(workflow).resolve().parent)
    click.echo(json.dumps(result, indent=2, sort_keys=True))


def _logging(quiet: bool) -> None:
    from rich.logging import RichHandler
    handler = RichHandler(show_path=False, show_time=False,
                          console=__import__("rich.console").console.Console(stderr=True))
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, handlers=[handler],
                        format="%(message)s", force=True)
    logging.getLogger("cwltool").setLevel(logging.ERROR if quiet else logging.WARNING)
    logging.getLogger("swfflow").setLevel(logging.ERROR if quiet else logging.INFO)
