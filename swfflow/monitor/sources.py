"""Where the monitor reads: ``--state URL`` (a bridge's store) or ``--outdir D`` (a
``swfflow run`` / ``swfflow submit`` working directory), resolved once into an engine and a
submissions folder, with one clear error when there is nothing to read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from swfflow.errors import RunFailed
from swfflow.monitor.collect import collect
from swfflow.monitor.model import Status

STATE_DIR = ".swfflow"
STATE_DB = "state.db"
SUBMIT_DB = "submit.db"  # swfflow.submission.STATE_FILE (not imported: that pulls the driver)


@dataclass
class Source:
    engine: Engine | None
    submissions: Path | None
    label: str
    panda_monitor: str | None = None  # BigPanDA's base URL: task links for PanDA tasks

    def read(self, run: str | None = None, *, detail: bool = True,
             refresh_live: bool = False, instance: str | None = None) -> Status:
        return collect(self.engine, run, detail=detail, submissions=self.submissions,
                       refresh_live=refresh_live, instance=instance,
                       panda_monitor=self.panda_monitor)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def upgraded(engine: Engine) -> Engine:
    """The store with the columns this swfflow reads (the executor's timings): a store an
    earlier swfflow wrote gets them, empty, as any swfflow opening it would add them."""
    from swfflow.backends.local_tables import JOBS, TASKS
    from swfflow.state import add_missing_columns

    add_missing_columns(engine, (TASKS, JOBS))
    return engine


def open_source(state_url: str | None, outdir: str | Path) -> Source:
    from swfflow.state import sqlite_engine, state_engine

    if state_url:
        return Source(upgraded(state_engine(state_url)), None, state_url)
    state = Path(outdir) / STATE_DIR
    db = state / STATE_DB
    submissions = state if (state / SUBMIT_DB).is_file() else None
    if not db.is_file() and submissions is None:
        raise RunFailed(f"no swfflow state under {outdir}", where=str(db),
                        hint="run `swfflow run ... --outdir DIR` (or `swfflow submit` there) "
                             "first, then `swfflow status` (or `monitor`) --outdir DIR; for a "
                             "bridge give --state URL")
    return Source(upgraded(sqlite_engine(db)) if db.is_file() else None, submissions,
                  str(outdir))
