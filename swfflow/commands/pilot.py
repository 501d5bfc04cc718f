"""``swfflow pilot``: serve a PanDA queue's jobs on this machine (swfflow/pilot/)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("pilot")
@click.option("--queue", required=True, help="The PanDA queue to take jobs from (e.g. "
                                             "BNL_PanDA_1).")
@click.option("--url", envvar="PANDA_URL_SSL", required=True,
              help="The PanDA server (default: $PANDA_URL_SSL, as panda-client reads it).")
@click.option("--label", default="test", show_default=True,
              help="prodSourceLabel of the jobs to take (the profile's prodSourceLabel).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("pilot-work"), show_default=True,
              help="One folder per job attempt is made here.")
@click.option("--sandbox", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A folder copied into each job's folder first (development; "
                                 "a job submitted by swfflow fetches its own sandbox).")
@click.option("--task-id", type=int, default=None,
              help="Take only the jobs of this JEDI task (default: any job of the queue).")
@click.option("--max-jobs", type=click.IntRange(min=1), default=None,
              help="Stop after this many jobs (default: until the queue stays empty).")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Stop when no job came for this many seconds.")
@click.option("--heartbeat", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds between two 'running' reports of a job (PanDA fails a job whose "
                   "reports stop for its heartbeat timeout, and JEDI retries it).")
@click.option("--json", "as_json", is_flag=True, help="Print each job's outcome as JSON.")
def pilot_cmd(queue: str, url: str, label: str, workdir: Path, sandbox: Path | None,
              task_id: int | None, max_jobs: int | None, idle_timeout: float,
              heartbeat: float, as_json: bool) -> None:
    """Take jobs of a PanDA queue through PanDA's pilot API and run them here.

    For each job: fetch its sandbox from the server's cache (the workflow folder and
    plan.json that `swfflow submit` or the bridge uploaded), stage its input files in from
    Rucio ($RUCIO_CONFIG), run its command line
    (transformation + jobParameters, as JEDI expanded them: `swfflow job …`), upload its
    outputs to the queue's RSE and register them in Rucio with their adler32, then report
    the final state, exit code and output-file metadata to PanDA.

    \b
    Example (next to `swfflow services up --with panda`):
      eval "$(swfflow services env)"
      swfflow pilot --queue BNL_PanDA_1 --max-jobs 10
    """
    from swfflow.pilot.api import PilotAPI
    from swfflow.pilot.loop import PilotSettings, serve

    settings = PilotSettings(queue=queue, label=label, workdir=workdir.resolve(),
                             sandbox=sandbox.resolve() if sandbox else None,
                             max_jobs=max_jobs, idle_timeout_s=idle_timeout, task_id=task_id,
                             heartbeat_s=heartbeat)
    log = (lambda _msg: None) if as_json else (lambda msg: click.echo(msg, err=True))
    outcomes = serve(PilotAPI(url), settings, log=log)
    if as_json:
        click.echo(json.dumps([o.__dict__ for o in outcomes], indent=1))
    if any(o.state != "finished" for o in outcomes):
        raise SystemExit(1)
