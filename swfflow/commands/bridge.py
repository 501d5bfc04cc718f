"""``swfflow bridge``: DAQ run messages drive the compiled workflow, one instance per run."""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path

import click

from swfflow.assemble import names
from swfflow.errors import ConfigError, RunFailed, ServiceError
from swfflow.stream.messages import EPIC_TOPIC


@click.command("bridge", context_settings={"show_default": True})
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--inputs", "inputs", type=click.Path(dir_okay=False), default=None,
              help="Workflow parameters (YAML/JSON) other than the stream input.")
@click.option("--broker", default=None, metavar="URL",
              help="stomp://[user:pass@]host:port (ActiveMQ) or memory://NAME. "
                   "Required unless --replay.")
@click.option("--replay", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Feed this recorded message log (JSON lines, `swfflow daqsim --record`) "
                   "instead of a broker subscription.")
@click.option("--backend", type=click.Choice(names("executor")), default="local",
              help="Where tasks run: this machine, PanDA (see --panda-url), or nowhere "
                   "(dryrun: the tasks that would be submitted are recorded in "
                   "WORKDIR/dryrun-tasks.jsonl). ExpressionTool steps are evaluated here.")
@click.option("--panda-url", default=None, metavar="URL",
              help="PanDA server for --backend panda [default: $PANDA_URL_SSL, else "
                   "$PANDA_URL]; auth from panda-client's usual environment.")
@click.option("--catalog", type=click.Choice(names("catalog")), default="local",
              help="Where datasets live: the state database, or Rucio ($RUCIO_CONFIG).")
@click.option("--state", default="sqlite:///bridge-state/bridge.db", metavar="URL",
              help="State store: sqlite:///FILE or postgresql://user@host/db.")
@click.option("--namespace", default=None,
              help="Only messages of this testbed namespace (messages without one pass).")
@click.option("--destination", default=EPIC_TOPIC, help="Topic to subscribe to.")
@click.option("--subscription", default=None,
              help="Durable subscription name [default: swfflow-bridge-<workflow>-<ns>].")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
              envvar="SWFFLOW_PROFILE", help="Profile YAML (scopes, names, defaults).")
@click.option("--rucio-config", type=click.Path(dir_okay=False), envvar="RUCIO_CONFIG",
              help="rucio.cfg for --catalog rucio.")
@click.option("--rse", default=None, help="RSE where STF replicas are registered "
              "[default: the catalog's, DAQ_DISK for Rucio].")
@click.option("--site-down", "sites_down", multiple=True, metavar="RSE",
              help="An E1 site (of the profile's bridge.sites) that is down: no copies go "
                   "to it until the bridge runs without this; it then catches up. Repeatable.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bridge-work"),
              help="Job directories (--backend local) and ExpressionTool steps' scratch.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=2,
              help="Jobs at once (--backend local).")
@click.option("--no-container", is_flag=True, help="Run tools on the host (--backend local).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500,
              help="Attach when this many STFs wait…")
@click.option("--batch-ms", type=click.FloatRange(min=0), default=50.0,
              help="…or when the oldest waited this many milliseconds.")
@click.option("--attach-parallel", type=click.IntRange(min=1), default=2,
              help="Attach calls in flight at once (Rucio: one client each).")
@click.option("--end-timeout", type=click.FloatRange(min=0), default=120.0,
              help="Seconds to wait after end_run for STFs it announced but that never came; "
                   "then the run is closed and the missing ones recorded.")
@click.option("--tick", type=click.FloatRange(min=0.05), default=1.0,
              help="Seconds between task status polls.")
@click.option("--no-ready", is_flag=True, help="Do not emit stf_ready after each attach.")
@click.option("--exit-after", type=click.IntRange(min=1), default=None, metavar="N",
              help="Exit once N runs are finished (done or failed) and nothing is pending; "
                   "exit code 1 if a run failed (also for --replay).")
@click.option("--subscribe-only", is_flag=True,
              help="Create the durable subscription and exit: from then on the broker keeps "
                   "every message for the bridge, started later.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary when exiting.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def bridge_cmd(workflow, inputs, broker, replay, backend, panda_url, catalog, state, namespace,
               destination, subscription, profile_path, rucio_config, rse, sites_down, workdir,
               jobs,
               no_container, batch_size, batch_ms, attach_parallel, end_timeout, tick, no_ready,
               exit_after, subscribe_only, as_json, quiet):
    """Drive WORKFLOW (CWL, Snakefile or plan.json) from ePIC DAQ messages: for every run a
    fresh instance — run_imminent creates the datasets and submits the streaming tasks,
    stf_gen attaches each STF (batched) and emits stf_ready, end_run closes the run dataset
    once every announced STF is in, then merges and fits are released.

    Messages are acked only once their effect is stored; a restart resumes every open run.
    Stop with Ctrl-C or SIGTERM (pending STFs are attached first).

    Several bridges on the same --state and subscription: one is active, the others wait as
    standbys and take over when it stops or dies (docs/bridge.md, "Two bridges").

    \b
    Examples:
      swfflow bridge examples/calib.cwl --broker stomp://127.0.0.1:61613 --subscribe-only
      swfflow bridge examples/calib.cwl --broker stomp://127.0.0.1:61613 \\
          --catalog rucio --state sqlite:///bridge.db --namespace alice-dev
      swfflow bridge plan.json --backend panda --catalog rucio --broker stomp://host:61613 \\
          --panda-url https://pandaserver.example:25443/server/panda \\
          --state postgresql://swf@dbhost/swfflow
      swfflow bridge examples/calib.cwl --replay run.jsonl --exit-after 1 --json
      swfflow status --run 100012 --state sqlite:///bridge.db --json
    """
    from swfflow.stream.bridge.setup import (Setup, default_subscription, dumps, prepare_bridge,
                                             summary)
    from swfflow.stream.bridge.leader import Handover, become_active, fenced
    from swfflow.stream.bridge.sources import replay as replay_log, subscribe
    from swfflow.stream.bus import open_bus

    if broker is None and replay is None:
        raise ConfigError("no message source", hint="give --broker URL or --replay FILE")
    if subscribe_only:
        _subscribe_only(workflow, inputs, profile_path, broker, destination,
                        subscription, namespace)
        return
    if panda_url is not None and backend != "panda":
        raise ConfigError(f"--panda-url {panda_url} is for --backend panda, not {backend}",
                          hint="add --backend panda, or drop --panda-url")
    _logging(quiet)
    setup = Setup(workflow=workflow, inputs=inputs, profile=profile_path, catalog=catalog,
                  backend=backend, state=state, workdir=workdir, jobs=jobs,
                  no_container=no_container, rucio_config=rucio_config, panda_url=panda_url,
                  options=dict(namespace=namespace, batch_size=batch_size, batch_ms=batch_ms,
                               attach_parallel=attach_parallel,
                               end_timeout_s=end_timeout, tick_s=tick, rse=rse,
                               sites_down=tuple(sites_down), emit_ready=not no_ready))
    stopper = _Stopper()
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(broker)) if broker else None
        prepared = prepare_bridge(setup, stack, publish=bus.publish if bus else None)
        name = subscription or default_subscription(prepared.template, namespace)
        stopper.install()
        # issue 15: one active bridge per subscription; the others wait here (standby)
        watch = become_active(prepared.engine, name, stack, stopper.event)
        if watch is None:
            click.echo(f"standby bridge stopped before it became active for {name}")
            return
        bridge = prepared.build(stack)
        stopper.bridge = bridge
        watch.on_lost = bridge.fence
        if stopper.event.is_set():  # a signal while it was taking over
            bridge.stop()
        subscription_ = None
        if replay is not None:
            replay_log(bridge, replay)  # queues the whole log; handled by bridge.run
        else:
            subscription_ = subscribe(bridge, bus, destination, name)
        handover = Handover(bridge, subscription_, watch)
        stack.callback(handover)
        until = _until(exit_after, replay is not None)
        bridge.run(until=fenced(until, watch, bridge))
        handover()  # a standby may take over now, while this one winds down
        report = summary(bridge)
    if bridge.fenced:
        raise ServiceError(f"this bridge lost the bridge lock of {name} ({watch.failure}) "
                           "and stopped, leaving its work to the bridge that is active now",
                           where=state, hint="start it again: it waits as a standby")
    if as_json:
        click.echo(dumps(report))
    else:
        counters = report["counters"]
        click.echo(f"bridge stopped: {counters.get('received', 0)} messages, "
                   f"{counters.get('attached', 0)} STFs attached, "
                   f"{counters.get('dead_letters', 0)} dead letters; "
                   f"{len(report['runs'])} run(s) in {state}")
    if until is not None:  # a bounded bridge (replay, --exit-after) reports failed runs
        _fail_on_failed_runs(report["runs"], workflow, state)


def _fail_on_failed_runs(runs: list[dict], workflow: str, state: str) -> None:
    """A bounded bridge exits 0 only when every run is done: 1 when one failed, or is still
    open (stopped by a signal before it finished)."""
    from swfflow.stream.store import PHASE_DONE, PHASE_FAILED

    failed = [run for run in runs if run["phase"] == PHASE_FAILED]
    unfinished = [run for run in runs if run["phase"] not in (PHASE_DONE, PHASE_FAILED)]
    if not failed and not unfinished:
        return
    reasons = [f"run {run['run']}: {run.get('message') or 'failed'}" for run in failed] + \
        [f"run {run['run']}: not finished (phase {run['phase']})" for run in unfinished]
    verb = " or ".join(word for word, runs_of in (("failed", failed),
                                                  ("not finished", unfinished)) if runs_of)
    first = (failed or unfinished)[0]["run"]
    raise RunFailed(f"{len(failed) + len(unfinished)} of {len(runs)} run(s) {verb}: "
                    f"{'; '.join(reasons)}", where=workflow,
                    hint=f"swfflow status --state {state} --run {first} shows each task "
                         "and why" + ("; run the bridge again to finish the open runs"
                                      if unfinished else ""))


def _subscribe_only(workflow, inputs, profile_path, broker, destination, subscription,
                    namespace) -> None:
    from swfflow.pipeline import load_template
    from swfflow.stream.bridge.setup import default_subscription
    from swfflow.stream.bus import open_bus

    if broker is None:
        raise ConfigError("--subscribe-only needs --broker URL", hint="a replay needs none")
    name = subscription or default_subscription(
        load_template(workflow, inputs, profile_path)[0], namespace)
    with open_bus(broker) as bus:  # late ack, never acked: nothing received here is lost
        bus.subscribe(destination, lambda delivery: None, durable_name=name,
                      late_ack=True).close()
    click.echo(f"durable subscription {name} on {broker}: messages wait for "
               f"`swfflow bridge {workflow} --broker {broker}`")


def _until(exit_after: int | None, replaying: bool):
    from swfflow.stream.store import PHASE_DONE, PHASE_FAILED

    def finished(bridge) -> bool:
        if not bridge.idle:
            return False
        if exit_after is not None:
            return len(bridge.store.runs((PHASE_DONE, PHASE_FAILED))) >= exit_after
        # a replay ends when the log is read and every run it opened is finished
        return replaying and bridge.source_done.is_set() and not bridge.runs

    return finished if (exit_after is not None or replaying) else None


class _Stopper:
    """SIGTERM/SIGINT: a standby stops waiting; an active bridge stops after pending work."""

    def __init__(self):
        import threading

        self.event = threading.Event()
        self.bridge = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)

    def stop(self, signum, frame) -> None:
        self.event.set()
        if self.bridge is not None:
            self.bridge.stop()
        try:
            logging.getLogger("swfflow.bridge").warning("signal %d: stopping after pending "
                                                        "work", signum)
        except Exception:  # noqa: BLE001 - the signal came mid-import (rich's, at start):
            pass  # an error raised here would break that import; stopping matters, not this


def _logging(quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, console=Console(stderr=True))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s",
                        force=True)
    logging.getLogger("swfflow").setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("cwltool").setLevel(logging.ERROR)
