"""``swfflow monitor``: the live web view, REST API and Prometheus metrics of a state store."""

from __future__ import annotations

import click


@click.command("monitor")
@click.option("--state", "state_url", default=None, metavar="URL",
              help="A bridge's state store (sqlite:///… or postgresql://…).")
@click.option("--outdir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Or the --outdir of a `swfflow run` / where `swfflow submit` ran.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on.")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.1), default=1.0,
              show_default=True, help="Seconds between reads of the store for live updates.")
@click.option("--panda-monitor", metavar="URL", envvar="SWFFLOW_PANDA_MONITOR",
              help="PanDA's monitor (e.g. https://bigpanda.cern.ch): each PanDA task links to "
                   "its page there [env SWFFLOW_PANDA_MONITOR].")
def monitor_cmd(state_url: str | None, outdir: str, host: str, port: int,
                poll_s: float, panda_monitor: str | None) -> None:
    """Serve a live web page of the runs (DAQ state timeline, task graph coloured by state,
    STF counters, dead letters, per-task jobs and log tails), the REST API /api/v1/… (OpenAPI
    at /api/v1/docs) and Prometheus /metrics, until Ctrl-C.

    \b
    Examples:
      swfflow monitor --state sqlite:///bridge.db            # then open http://127.0.0.1:8765/
      swfflow monitor --outdir out --port 9000
      curl -s localhost:8765/api/v1/runs | jq '.[].phase'
    """
    import uvicorn

    from swfflow.monitor.app import create_app
    from swfflow.monitor.sources import open_source

    _check_free(host, port)
    source = open_source(state_url, outdir)
    source.panda_monitor = panda_monitor
    try:
        click.echo(f"swfflow monitor of {source.label} on http://{host}:{port}/", err=True)
        uvicorn.run(create_app(source, poll_s=poll_s), host=host, port=port,
                    log_level="warning")
    finally:
        source.close()


def _check_free(host: str, port: int) -> None:
    """One clear error for a port in use, before the server logs its own and exits."""
    import socket

    from swfflow.errors import ConfigError

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                              hint="choose another --port (or stop what listens there)") from None
