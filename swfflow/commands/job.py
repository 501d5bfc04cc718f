"""``swfflow job``: run one PanDA job of a compiled plan on a worker node.

This is the command a compiled task's ``jobParameters`` call (docs/design.md, rule 8); the
work is done by :mod:`swfflow.worker`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from swfflow.plan.jedi import decode_values
from swfflow.worker import (
    LOG_NAME,
    REPORT_NAME,
    JobRequest,
    find_plan,
    parse_file_list,
    parse_outputs,
    parse_secondaries,
    run_job,
)


@click.command("job", context_settings={"ignore_unknown_options": True,
                                        "allow_extra_args": True})
@click.option("--task", "task_key", required=True, help="The task's key in the plan.")
@click.option("--plan", "plan_path", default=None,
              help="The compiled plan (default: $SWFFLOW_PLAN, else plan.json in the working "
                   "directory — the job's sandbox). A plan outside the workflow's folder "
                   "finds it through the source it records.")
@click.option("-i", "--inputs", "inputs", default=None,
              help="The job's input files, comma-separated (runGen's ${IN/T}).")
@click.option("--out", "outs", multiple=True, metavar="PORT=FILENAME",
              help="Name an output port's file as JEDI registers it (repeatable).")
@click.option("--values", "values", default=None, metavar="B64",
              help="The inputs the driver computed at run time (base64url JSON object of "
                   "port values; the driver adds it to the task's jobParameters).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where inputs are staged and outputs are written (default: the current "
                   "directory).")
@click.option("--no-container", is_flag=True,
              help="Run on the host even if the tool names a container (the pilot may already "
                   "run the job inside the task's container).")
@click.option("--json", "as_json", is_flag=True, help="Print the job report as JSON.")
@click.pass_context
def job_cmd(ctx: click.Context, task_key: str, plan_path: str | None, inputs: str | None,
            outs: tuple[str, ...], values: str | None, workdir: Path | None,
            no_container: bool, as_json: bool) -> None:
    """Run one PanDA job of a compiled plan on a worker node (what the task's jobParameters
    call).

    The task's CWL tool runs on the staged input files (-i, --secondaryN "f1,f2"): once per
    file when it scatters over a single File, once with the list for an array input. Each
    output port's result is moved to the file name JEDI gave with --out; several files (or
    none) for one port become a bundle tar with a manifest, which `swfflow job` unpacks again
    when a later task reads it. swfflow-job.json (exit code, adler32 and size of each output)
    and swfflow-job.log land in the working directory. Exits with the tool's exit code.

    \b
    Example (what runGen runs for the calibration's reconstruction):
      swfflow job --task reconstruct -i "run000123_stf0001.stf" \\
          --out hist=swf.calib.123.reconstruct.hist.4711._000001.hist
    """
    workdir = workdir or Path.cwd()
    if not workdir.is_dir():
        raise click.BadParameter(f"{workdir} is not a directory", param_hint="--workdir")
    request = JobRequest(task=task_key, plan=find_plan(plan_path, workdir, dict(os.environ)),
                         workdir=workdir, inputs=parse_file_list(inputs),
                         secondaries=parse_secondaries(ctx.args),
                         outputs=parse_outputs(outs), no_container=no_container,
                         values=decode_values(values) if values is not None else {})
    report = run_job(request)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    elif report.ok:
        for out in report.outputs:
            click.echo(f"{out.port}: {out.name}  adler32 {out.adler32}  {out.size} B"
                       + (f"  (bundle of {out.files})" if out.bundle else ""))
    if not report.ok:
        click.echo(f"swfflow job: task {report.task} failed ({report.status}, exit code "
                   f"{report.exit_code}); full log in {LOG_NAME}, report in {REPORT_NAME}\n"
                   f"{report.log_tail}", err=True)
    ctx.exit(report.exit_code)
