"""``swfflow services up|down|status``: the local ActiveMQ + Rucio (+ PanDA) services."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from swfflow import services
from swfflow.errors import ServiceError
from swfflow.services.rucio_server import client_config
from swfflow.services.state import ServiceHome, ServiceStatus, state_dir

# service → (variable, its value from the state directory and the service's status): what a
# client needs, printed unwrapped by `up` and as shell exports by `env`
_EXPORTS = {
    "activemq": ("SWFFLOW_BROKER", lambda root, status: status.url),
    "rucio": ("RUCIO_CONFIG", lambda root, status: str(client_config(ServiceHome(root, "rucio")))),
}

_NAMES = click.argument("names", nargs=-1, metavar="[SERVICE]...")
_STATE = click.option("--dir", "directory", type=click.Path(file_okay=False),
                      help="State directory (default: $SWFFLOW_SERVICES_DIR or "
                           "~/.swfflow/services).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _print(statuses: list[ServiceStatus], as_json: bool, root: str) -> None:
    if as_json:
        click.echo(json.dumps({"state_dir": root, "services": [s.to_dict() for s in statuses]},
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("service", "healthy", "pid", "port", "url", "detail", title=f"services in {root}")
    for item in statuses:
        table.add_row(item.name, "[green]yes[/]" if item.healthy else "[red]no[/]",
                      str(item.pid or "-"), str(item.port or "-"), item.url or "-", item.detail)
    Console().print(table)


def _exports(statuses: list[ServiceStatus], root: Path) -> list[str]:
    """``export NAME=value`` for each healthy service (one line each, never wrapped)."""
    lines = []
    for item in statuses:
        if item.healthy and item.name in _EXPORTS:
            name, value = _EXPORTS[item.name]
            lines.append(f"export {name}={shlex.quote(value(root, item))}")
    return lines


@click.group("services")
def services_group() -> None:
    """Start, stop and check the local real services: ActiveMQ (STOMP) and a Rucio server on
    the local PostgreSQL, with three file RSEs (DAQ_DISK, E1_BNL_DISK, E1_JLAB_DISK); with
    `--with panda`, also a real panda-server + JEDI.

    \b
    Clients find them through the state directory:
      <dir>/activemq/endpoint.json   STOMP port and URL
      <dir>/rucio/client/rucio.cfg   export RUCIO_CONFIG=<that file>
      <dir>/panda/endpoint.json      export PANDA_URL_SSL=PANDA_URL=<its "api">
    or all at once: eval "$(swfflow services env)"
    """


@services_group.command("up")
@_NAMES
@_STATE
@_JSON
@click.option("--with", "with_", multiple=True, type=click.Choice(sorted(
    set(services.SERVICES) - set(services.DEFAULT))), help="Also start this service.")
@click.option("--panda-schema", type=click.Path(file_okay=False),
              help="PanDA's panda-database folder (default: $SWFFLOW_PANDA_SCHEMA, else "
                   "../shared/panda-database next to the repository).")
def up_cmd(names: tuple[str, ...], directory: str | None, as_json: bool,
           with_: tuple[str, ...], panda_schema: str | None) -> None:
    """Start the services (ActiveMQ and Rucio, or the ones named) and wait until they answer.
    Idempotent."""
    root = state_dir(directory)
    started = time.monotonic()
    statuses = services.up(names or None, state=root, with_=with_, schema=panda_schema)
    if not as_json:
        click.echo(f"ready in {time.monotonic() - started:.1f} s", err=True)
    _print(statuses, as_json, str(root))
    if not as_json:
        for line in _exports(statuses, root):
            click.echo(line)
        click.echo('next: eval "$(swfflow services env)" sets these in your shell')


@services_group.command("down")
@_NAMES
@_STATE
@click.option("--keep-data", is_flag=True, help="Keep Rucio's PostgreSQL database.")
def down_cmd(names: tuple[str, ...], directory: str | None, keep_data: bool) -> None:
    """Stop the services (all, PanDA included, or the ones named) and drop Rucio's PostgreSQL database
    (unless --keep-data). Logs and configuration stay in the directory."""
    stopped = services.down(names or None, state=directory, drop_data=not keep_data)
    for name, was_running in stopped.items():
        click.echo(f"{name}: {'stopped' if was_running else 'was not running'}")


@services_group.command("env")
@_STATE
def env_cmd(directory: str | None) -> None:
    """Print shell exports for the running services: SWFFLOW_BROKER (the STOMP URL) and
    RUCIO_CONFIG. Use: eval "$(swfflow services env)". Exit code 1 if one is not running."""
    root = state_dir(directory)
    statuses = services.status(state=root)
    for line in _exports(statuses, root):
        click.echo(line)
    down = [item.name for item in statuses if not item.healthy]
    if down:
        raise ServiceError(f"not running: {', '.join(down)}", where=str(root),
                           hint="swfflow services up")


@services_group.command("status")
@_NAMES
@_STATE
@_JSON
def status_cmd(names: tuple[str, ...], directory: str | None, as_json: bool) -> None:
    """Show each service's pid, port, URL and health. Exit code 1 if any is unhealthy."""
    root = state_dir(directory)
    statuses = services.status(names or None, state=root)
    _print(statuses, as_json, str(root))
    if not all(item.healthy for item in statuses):
        raise SystemExit(1)  # not ctx.exit: the CLI's non-standalone main() drops its code
