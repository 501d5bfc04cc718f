"""``swfflow status``: the one status model (:mod:`swfflow.monitor.model`) in a terminal, once
or live (``--watch``), or as JSON (``--json``) for scripts."""

from __future__ import annotations

import time

import click

from swfflow.errors import ConfigError


@click.command("status")
@click.option("--outdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="The --outdir of a `swfflow run` (or where `swfflow submit` ran).")
@click.option("--state", "state_url", default=None, metavar="URL",
              help="A bridge's state store (sqlite:///… or postgresql://…) instead of --outdir.")
@click.option("--run", "run_number", default=None, help="Only this run.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the status model as JSON (the same as the monitor's /api/v1/status).")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between redraws with --watch.")
@click.option("--until-done", is_flag=True,
              help="With --watch: stop once every run and instance is finished.")
@click.option("--no-refresh", is_flag=True,
              help="Do not poll PanDA for submitted instances (show what was last recorded).")
def status_cmd(outdir: str, state_url: str | None, run_number: str | None, as_json: bool,
               watch: bool, interval: float, until_done: bool, no_refresh: bool) -> None:
    """Show each run, task and job: state, jobs done/all, failures, elapsed and ETA, and each
    task's error in full below its table.

    \b
    Examples:
      swfflow status --outdir out                 # a `swfflow run --outdir out`
      swfflow status --state sqlite:///bridge.db --run 100010
      swfflow status --state sqlite:///bridge.db --watch --until-done
      swfflow status --outdir out --json | jq '.instances[].tasks[].phase'
    """
    from rich.console import Console
    from rich.live import Live

    from swfflow.monitor.render import finished, render
    from swfflow.monitor.sources import open_source

    if as_json and watch:
        raise ConfigError("--json and --watch do not go together",
                          hint="poll `swfflow status --json` from the script instead")
    source = open_source(state_url, outdir)
    read = lambda: source.read(run_number, refresh_live=not no_refresh)
    try:
        if as_json:
            click.echo(read().model_dump_json(indent=2))
            return
        console = Console()
        if not watch:
            console.print(render(read()))
            return
        with Live(render(read()), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    status = read()
                    live.update(render(status), refresh=True)
                    if until_done and finished(status):
                        break
            except KeyboardInterrupt:
                pass
    finally:
        source.close()
