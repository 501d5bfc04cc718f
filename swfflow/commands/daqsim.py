"""``swfflow daqsim``: simulate the ePIC DAQ from a YAML schedule."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import timezone
from pathlib import Path

import click

from swfflow.daqsim.runs import RunCounter
from swfflow.daqsim.schedule import load_schedule, parse_size
from swfflow.daqsim.sim import (
    DEFAULT_STF_INTERVAL_S,
    DEFAULT_STF_SIZE,
    DaqSimulator,
    SimConfig,
    SimSummary,
)
from swfflow.errors import ConfigError
from swfflow.stream.bus import check_destination, open_bus
from swfflow.stream.messages import EPIC_TOPIC

PROGRESS_REFRESH_S = 0.1


def _size(ctx, param, value):
    try:
        return int(parse_size(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(context_settings={"show_default": True})
@click.argument("schedule", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--broker", default="memory://", metavar="URL",
              help="stomp://[user:pass@]host:port (ActiveMQ) or memory:// (in-process).")
@click.option("--destination", default=EPIC_TOPIC, help="Where messages go.")
@click.option("--namespace", envvar="SWFFLOW_NAMESPACE", default=None,
              help="Testbed namespace stamped on every message [default: $SWFFLOW_NAMESPACE, "
                   "else your user name, as the testbed's agents do].")
@click.option("--sender", default="swfflow-daqsim", help="Sender name stamped on every message.")
@click.option("--buffer", "buffer", type=click.Path(file_okay=False, path_type=Path),
              default=Path("daq-buffer"), help="DAQ buffer directory for STF files.")
@click.option("--fast", is_flag=True, help="Run as fast as possible (no real-time pacing).")
@click.option("--factor", type=click.FloatRange(min=0, min_open=True), default=1.0,
              help="Real-time pacing: wall seconds per simulated second (0.01 = 100x faster).")
@click.option("--seed", type=int, default=None, help="Random seed (STF jitter, sizes, content).")
@click.option("--stf-interval", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_STF_INTERVAL_S,
              help="Default seconds between STFs (entries may override).")
@click.option("--stf-size", default=str(DEFAULT_STF_SIZE), callback=_size,
              help="Default STF size (4096, 200MB, 2GiB); large files are sparse.")
@click.option("--run-counter", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run-number counter file [default: $SWFFLOW_STATE_DIR/run-counter or "
                   "~/.local/state/swfflow/run-counter].")
@click.option("--start-time", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
              default=None, help="Simulated clock origin (UTC if no zone) [default: now].")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Append every emitted message to this file as one JSON line (replayable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def daqsim_cmd(schedule, broker, destination, namespace, sender, buffer, fast, factor, seed,
               stf_interval, stf_size, run_counter, start_time, record, as_json, quiet):
    """Simulate the ePIC DAQ from SCHEDULE (a YAML list of state/substate/span entries).

    Emits run_imminent, start_run, pause_run, resume_run, stf_gen and end_run to the broker
    and writes real STF files (sparse beyond their header) into --buffer.

    \b
    Examples:
      swfflow daqsim schedules/example.yaml --fast
      swfflow daqsim schedules/physics-day.yaml --fast --stf-size 2GB \\
          --broker stomp://admin:admin@127.0.0.1:61613 --namespace alice-dev
      swfflow daqsim schedules/example.yaml --factor 0.1 --record run.jsonl
    """
    plan = load_schedule(schedule)  # bad schedule: ScheduleError, exit 2, before any side effect
    check_destination(destination)
    if fast and factor != 1.0:
        raise ConfigError("--fast and --factor exclude each other",
                          hint="--fast ignores the clock; --factor paces it")
    if start_time is not None and start_time.tzinfo is None:
        start_time = start_time.replace(tzinfo=timezone.utc)
    config = SimConfig(buffer=buffer, namespace=namespace or user_namespace(), sender=sender,
                       destination=destination, fast=fast, factor=factor, seed=seed,
                       stf_interval=(stf_interval, stf_interval), stf_size=(stf_size, stf_size),
                       start_time=start_time)
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(broker))
        sink = stack.enter_context(open(record, "a", encoding="utf-8")) if record else None
        progress = None if (quiet or as_json) else stack.enter_context(_Progress(plan.duration_s))
        simulator = DaqSimulator(plan, config, bus, RunCounter(run_counter), record=sink,
                                 progress=progress.update if progress else None)
        summary = simulator.simulate()
    _report(summary, as_json)
    if summary.interrupted:
        raise click.exceptions.Exit(130)


def user_namespace() -> str:
    """This user's name as a testbed namespace (letters, digits and ``._@-``)."""
    import getpass
    import re

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no USER/LOGNAME
        name = ""
    name = re.sub(r"[^A-Za-z0-9._@-]", "-", name).lstrip("._@-")[:128]
    return name or "swfflow"


def _report(summary: SimSummary, as_json: bool) -> None:
    data = summary.as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    runs = ", ".join(f"{run['run_id']} ({run['stf_files']} STFs)" for run in data["runs"])
    click.echo(f"simulated {data['simulated_s']:.0f} s in {data['wall_s']:.2f} s: "
               f"{data['messages_total']} messages, {data['stf_files']} STF files; "
               f"runs: {runs or 'none'}; seed {data['seed']}")


class _Progress:
    """A rich progress bar over simulated time, refreshed at most every 0.1 s."""

    def __init__(self, total_s: float):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]daqsim"), BarColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("daqsim", total=total_s, status="")
        self.last = 0.0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc_info):
        self.progress.stop()

    def update(self, now: float, summary: SimSummary) -> None:
        wall = time.monotonic()
        if wall - self.last < PROGRESS_REFRESH_S:
            return
        self.last = wall
        run = summary.runs[-1].run_id if summary.runs else "-"
        status = (f"t={now:,.0f}s run {run} STFs {summary.stf_files} "
                  f"msgs {sum(summary.messages.values())}")
        self.progress.update(self.task, completed=now, status=status)
