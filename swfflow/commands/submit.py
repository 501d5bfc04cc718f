"""``swfflow submit``, ``swfflow kill`` and ``swfflow retry``: a workflow instance on PanDA + Rucio.

The work is in :mod:`swfflow.submission`; this module parses options and renders (a rich table
or progress on stderr, ``--json`` on stdout).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import click

from swfflow.assemble import RUN_HERE, Settings, names
from swfflow.errors import RunFailed

_EXAMPLES_ENV = """
    \b
    Servers come from the usual client environment:
      PANDA_URL_SSL / PANDA_URL (+ PANDA_AUTH, PANDA_AUTH_VO, a token or X509_USER_PROXY)
      RUCIO_CONFIG (or RUCIO_HOME/etc/rucio.cfg, /opt/rucio/etc/rucio.cfg)
"""


def _server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command here shares: where the state is, the servers, retries, output."""
    options = [
        click.option("--state", "state", type=click.Path(file_okay=False), default=None,
                     help="State directory of submitted instances [env SWFFLOW_STATE; "
                          "default ./.swfflow]."),
        click.option("--panda-url", default=None,
                     help="PanDA server (default: the instance's, else $PANDA_URL_SSL, "
                          "$PANDA_URL)."),
        click.option("--rucio-config", type=click.Path(dir_okay=False), default=None,
                     help="rucio.cfg with a [client] section (default: $RUCIO_CONFIG)."),
        click.option("--attempts", type=click.IntRange(min=1), default=5, show_default=True,
                     help="Attempts per server call before giving up (exponential backoff)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the instance report as JSON on stdout."),
        click.option("-q", "--quiet", is_flag=True, help="No progress, only errors."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def _follow_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--follow", is_flag=True,
                     help="Keep driving until every task is done or failed: release merges "
                          "when their parents finish, close datasets, show progress."),
        click.option("--poll", "poll_s", type=click.FloatRange(min=0.05), default=10.0,
                     show_default=True, help="Seconds between status polls with --follow."),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None,
                     help="With --follow: give up after this many seconds (the tasks keep "
                          "running; exit 1)."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


@click.command("submit")
@click.argument("workflow", type=click.Path(dir_okay=False, exists=True))
@click.argument("inputs", required=False, type=click.Path(dir_okay=False, exists=True))
@click.option("--run", "run", metavar="N", default=None,
              help="Run number (needed unless the plan.json is instantiated).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
              envvar="SWFFLOW_PROFILE", help="Profile YAML: VO, user, label, scopes, names.")
@click.option("--backend", type=click.Choice([n for n in names("executor") if n not in RUN_HERE]),
              default="panda", show_default=True,
              help="panda: PanDA + Rucio. dryrun: record the tasks that would be submitted "
                   "in STATE/dryrun-tasks.jsonl, datasets in the state directory; nothing runs, "
                   "no server is contacted.")
@_follow_options
@_server_options
def submit_cmd(workflow: str, inputs: str | None, run: str | None, profile_path: str | None,
               backend: str, follow: bool, poll_s: float, timeout_s: float | None,
               state: str | None, panda_url: str | None, rucio_config: str | None,
               attempts: int, as_json: bool, quiet: bool) -> None:
    """Submit WORKFLOW (CWL, Snakefile, or a plan.json) for one run to PanDA + Rucio.

    Creates the run's datasets in Rucio (the stream dataset open, with its replication
    rules), submits the tasks that may start now (streaming steps, pipelined children),
    and records the instance under --state. Submitting the same instance again resumes
    it: existing tasks are found by name, never duplicated; failed ones are retried.
    With --follow it keeps driving until every task is final: merges and fits are
    released once their parents are done (after the DAQ closes the run dataset).
    ExpressionTool steps are no PanDA tasks: they are evaluated here, when released
    (so a `when` computed by one needs --follow, or a later submit, to be acted on).

    \b
    Examples:
      swfflow submit examples/calib.cwl --run 100123
      swfflow submit plan.json --follow --poll 30
      swfflow status; swfflow kill calib:100123; swfflow retry calib:100123
    """
    from swfflow import submission as sub
    from swfflow.assemble import executor_name_of
    from swfflow.pipeline import load_instance

    _logging(quiet or as_json)
    plan = load_instance(workflow, inputs, profile_path, run)
    store = sub.SubmissionStore(sub.state_dir(state))
    known = store.submissions().get(f"{plan.workflow}:{plan.run}", {}).get("panda_url")
    if known and executor_name_of(known) != backend:
        known = None  # submitted elsewhere before: --backend decides
    with contextlib.ExitStack() as stack:
        backends = sub.connect(_settings(backend, panda_url or known, rucio_config, attempts),
                               store, stack, plan=plan, source=workflow)
        flow = sub.submit(plan, store, backends, workflow)
        stack.callback(flow.detach)  # what is not followed is left to the next submit
        if follow:
            _follow(flow, backends, poll_s, timeout_s, quiet or as_json)
        _finish(store, flow.instance, backends, as_json, must_succeed=follow)


submit_cmd.help = (submit_cmd.help or "") + _EXAMPLES_ENV


@click.command("kill")
@click.argument("instance")
@_server_options
def kill_cmd(instance: str, state: str | None, panda_url: str | None, rucio_config: str | None,
             attempts: int, as_json: bool, quiet: bool) -> None:
    """Kill every task of a submitted workflow INSTANCE (WORKFLOW:RUN, or just RUN).

    Tasks not yet released are never submitted. `swfflow retry INSTANCE` (or submitting
    it again) brings the killed tasks back.
    """
    from swfflow import submission as sub

    _logging(quiet or as_json)
    store = sub.SubmissionStore(sub.state_dir(state), create=False)
    name = store.find(instance)
    executor = _executor_for(store, name, panda_url, attempts)
    killed = sub.kill_instance(store, name, executor)
    if not as_json and not quiet:
        click.echo(f"{name}: killed {len(killed)} task(s): {', '.join(killed) or '-'}", err=True)
    report = sub.instance_report(store, name, executor.last)
    _print(report, as_json)


@click.command("retry")
@click.argument("instance")
@_follow_options
@_server_options
def retry_cmd(instance: str, follow: bool, poll_s: float, timeout_s: float | None,
              state: str | None, panda_url: str | None, rucio_config: str | None, attempts: int,
              as_json: bool, quiet: bool) -> None:
    """Retry the failed tasks of a submitted workflow INSTANCE (WORKFLOW:RUN, or just RUN).

    Only failed, partial (JEDI finished), exhausted and killed tasks are retried (PanDA
    re-runs their failed inputs only); tasks they blocked are released again once they
    succeed. Succeeded tasks are left alone.
    """
    from swfflow import submission as sub
    from swfflow.assemble import executor_name_of

    _logging(quiet or as_json)
    store = sub.SubmissionStore(sub.state_dir(state), create=False)
    name = store.find(instance)
    where = store.submissions()[name]
    url = panda_url or where["panda_url"]
    with contextlib.ExitStack() as stack:
        backends = sub.connect(_settings(executor_name_of(url), url, rucio_config, attempts),
                               store, stack, plan=store.plan(name), source=where["source"])
        flow = sub.retry_instance(store, name, backends)
        stack.callback(flow.detach)
        if follow:
            _follow(flow, backends, poll_s, timeout_s, quiet or as_json)
        _finish(store, name, backends, as_json, must_succeed=follow)


# --- helpers --------------------------------------------------------------------------------

def _settings(backend: str, panda_url: str | None, rucio_config: str | None,
              attempts: int) -> Settings:
    """What the server options say (the catalog is the executor's: Rucio for PanDA)."""
    return Settings(executor=backend, panda_url=panda_url, rucio_config=rucio_config,
                    panda_attempts=attempts, rucio_attempts=attempts)


def _executor_for(store: Any, name: str, panda_url: str | None, attempts: int) -> Any:
    from swfflow import submission as sub
    from swfflow.assemble import executor_at

    url = panda_url or store.submissions()[name]["panda_url"]
    return sub.WatchedExecutor(executor_at(url, Settings(panda_attempts=attempts),
                                           engine=store.engine), store)


def _follow(flow: Any, backends: Any, poll_s: float, timeout_s: float | None,
            quiet: bool) -> None:
    from swfflow import submission as sub
    from swfflow.drive.progress import Progress

    progress = Progress(flow, enabled=not quiet, counts=_panda_counts(backends.executor))
    try:
        with progress:
            sub.follow(flow, poll_s=poll_s, on_tick=lambda _f: progress.update(),
                       timeout_s=timeout_s)
    except TimeoutError as exc:
        raise RunFailed(str(exc), hint="the tasks keep running on PanDA; `swfflow status` "
                                       "shows them, `swfflow submit` again follows them") from None
    except KeyboardInterrupt:
        logging.getLogger("swfflow.submit").warning(
            "stopped following %s; its tasks keep running on PanDA and the state is saved: "
            "submit the same way again to resume", flow.instance)
        raise


def _finish(store: Any, name: str, backends: Any, as_json: bool, *, must_succeed: bool) -> None:
    from swfflow import submission as sub

    report = sub.instance_report(store, name, backends.executor.last)
    _print(report, as_json)
    if must_succeed and report["state"] != "done":
        raise RunFailed(sub.failure_text(report), where=name,
                        hint=f"see `swfflow status`; fix, then `swfflow retry {name}`")


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    from rich.console import Console

    Console(stderr=True).print(report_table(report))


def report_table(report: dict[str, Any]) -> Any:
    """A rich table of one instance: task, PanDA id, phase, JEDI status, files, why."""
    from rich.table import Table

    table = Table(title=f"{report['instance']}  [{report['state']}]  on {report['panda_url']}",
                  title_justify="left")
    for column in ("task", "PanDA id", "state", "JEDI", "files done/all", "why"):
        table.add_column(column, overflow="fold")
    for task in report["tasks"]:
        files = "" if task["files"] is None else f"{task['files_done']}/{task['files']}"
        table.add_row(task["key"], task["task_id"] or "-", task["phase"],
                      task["jedi_status"] or "", files,
                      task["message"].splitlines()[0][:100] if task["message"] else "")
    return table


def _panda_counts(executor: Any) -> Any:
    """Progress counts from the last bulk status: input files done out of those known."""
    def counts(task_id: str | None) -> tuple[int, int | None, str]:
        status = executor.last.get(task_id or "")
        if status is None:
            return 0, None, ""
        return status.n_jobs_done, status.n_jobs or None, status.raw
    return counts


def _logging(quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, show_time=False, console=Console(stderr=True))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s",
                        force=True)
    logging.getLogger("swfflow").setLevel(logging.ERROR if quiet else logging.INFO)
    # panda-client logs each failed exchange itself; swfflow retries and reports it once
    logging.getLogger("panda-client").propagate = False
