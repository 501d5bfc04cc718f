"""The pilot's loop: ask the queue for a job, run it, report; until a number of jobs is done
or the queue stayed empty for a while (every wait bounded)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.errors import ConfigError
from swfflow.pilot.api import JobKilled, PilotAPI
from swfflow.pilot.job import HEARTBEAT_S, Outcome, run_job


@dataclass
class PilotSettings:
    queue: str
    label: str = "test"
    workdir: Path = Path(".")
    sandbox: Path | None = None
    max_jobs: int | None = None  # None: until idle
    idle_timeout_s: float = 60.0
    poll_s: float = 2.0
    task_id: int | None = None  # serve only this JEDI task's jobs
    heartbeat_s: float = HEARTBEAT_S  # between two "running" reports of a job
    node: str = field(default_factory=socket.gethostname)


def rucio_client() -> Any:
    """Rucio's client from the environment (RUCIO_CONFIG), as the pilot's copy tool uses it."""
    from rucio.client import Client
    from rucio.common.exception import RucioException

    try:
        return Client()
    except RucioException as exc:
        raise ConfigError(f"cannot make a Rucio client: {exc}", where="swfflow pilot",
                          hint="set RUCIO_CONFIG to a rucio.cfg with an account that may "
                               "write to the queue's RSE (swfflow services env)") from None


def serve(api: PilotAPI, settings: PilotSettings, *, rucio: Any = None,
          log: Callable[[str], None] = print) -> list[Outcome]:
    outcomes: list[Outcome] = []
    idle_since = time.monotonic()
    while settings.max_jobs is None or len(outcomes) < settings.max_jobs:
        jobs = api.acquire_jobs(settings.queue, label=settings.label, node=settings.node,
                                task_id=settings.task_id)
        if not jobs:
            if time.monotonic() - idle_since > settings.idle_timeout_s:
                log(f"no job on {settings.queue} for {settings.idle_timeout_s:.0f} s: done")
                break
            time.sleep(settings.poll_s)
            continue
        rucio = rucio if rucio is not None else rucio_client()  # once there is work
        for data in jobs:
            try:
                outcomes.append(run_job(api, data, settings.workdir, rucio,
                                        queue=settings.queue, node=settings.node,
                                        sandbox=settings.sandbox,
                                        heartbeat_s=settings.heartbeat_s, log=log))
            except JobKilled as killed:
                log(f"job {killed.args[0]} was killed by PanDA")
        idle_since = time.monotonic()
    return outcomes
