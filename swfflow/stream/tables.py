"""The stream bridge's tables and run phases (the rows :mod:`swfflow.stream.store` reads and
writes; what each table keeps is described there), and the migration of a store written by an
earlier swfflow."""

from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table,
                        Text)
from sqlalchemy.engine import Engine

# the bridge's view of a run, in order
PHASE_ANNOUNCED = "announced"  # run_imminent recorded; datasets and tasks not yet created
PHASE_PREPARED = "prepared"  # datasets exist, streaming tasks submitted
PHASE_ENDING = "ending"  # end_run seen: waiting until every announced STF is attached
PHASE_CLOSED = "closed"  # run dataset closed: tasks drain, complete steps released
PHASE_DONE = "done"
PHASE_FAILED = "failed"
RUN_PHASES = (PHASE_ANNOUNCED, PHASE_PREPARED, PHASE_ENDING, PHASE_CLOSED, PHASE_DONE,
              PHASE_FAILED)
OPEN_PHASES = RUN_PHASES[:4]  # a restarted bridge resumes these

METADATA = MetaData()
RUNS = Table(
    "br_runs", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("namespace", String(128)),
    Column("phase", String(16), nullable=False),
    Column("daq_state", String(32)),
    Column("daq_substate", String(32)),
    Column("stream_did", String(255), nullable=False),
    Column("container", Text),  # the DAQ's STF directory (run_imminent), for files w/o file_url
    Column("total_stf_files", Integer),  # as announced by end_run (None: not said)
    Column("end_seen_at", Float),
    Column("closed_at", Float),
    Column("missing", JSON),  # STFs announced but never attached when the run was closed
    Column("message", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
FILES = Table(
    "br_files", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("filename", String(255), primary_key=True),
    Column("sequence", BigInteger),
    Column("size", BigInteger, nullable=False),  # STFs of more than 2 GiB
    Column("adler32", String(8), nullable=False),
    Column("pfn", Text),
    Column("msg_id", String(64)),
    Column("gen_at", Float, nullable=False),  # when the bridge received stf_gen
    Column("attached_at", Float),  # NULL: recorded, not attached yet
    Column("ready_sent", Boolean, nullable=False, default=False),
    Column("meta_at", Float),  # NULL: its run/sequence metadata not yet set in the catalog
)
MESSAGES = Table(
    "br_messages", METADATA,
    Column("msg_id", String(64), primary_key=True),
    Column("msg_type", String(32), nullable=False),
    Column("run_id", String(64)),
    Column("processed_at", Float, nullable=False),
)
DEAD = Table(
    "br_dead", METADATA,
    Column("digest", String(64), primary_key=True),  # sha256 of the body: idempotent
    Column("received_at", Float, nullable=False),
    Column("msg_type", String(64)),
    Column("run_id", String(64)),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False),
)
HOLDS = Table(
    "br_holds", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("wanted", String(16), nullable=False),  # HOLD_PAUSED | HOLD_RUNNING
    Column("applied_at", Float),  # NULL: not yet done for every task
    Column("paused", JSON, nullable=False, default=list),  # task ids the bridge paused
    Column("message", Text, nullable=False, default=""),  # refusals, e.g. no production role
    Column("updated_at", Float, nullable=False),
)
# the butterfly (issue 15): each STF's copy at each E1 site, and per run and site the running
# checksum of what the site holds, compared with the DAQ's at run end
REPLICAS = Table(
    "br_replicas", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("filename", String(255), primary_key=True),
    Column("rse", String(64), primary_key=True),
    Column("adler32", String(8), nullable=False),  # of the copy, read back at the site
    Column("copied_at", Float, nullable=False),
)
SITE_SUMS = Table(
    "br_site_sums", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("rse", String(64), primary_key=True),
    Column("files", Integer, nullable=False, default=0),
    Column("checksum", String(16), nullable=False),  # transfer.fold over (name, adler32)
    Column("checked_at", Float),  # compared with the DAQ's at run end (NULL: not yet)
    Column("alarm", Text),  # NULL: equal; else what differs (the files named)
    Column("updated_at", Float, nullable=False),
)
SITES = Table(
    "br_sites", METADATA,
    Column("rse", String(64), primary_key=True),
    Column("down", Boolean, nullable=False, default=False),
    Column("reason", Text),  # profile, CLI, or the failed health checks
    Column("updated_at", Float, nullable=False),
)
RUN_SITES = Table(  # where each run's processing goes (profile bridge.site_policy)
    "br_run_sites", METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("rse", String(64), nullable=False),
    Column("queue", String(128), nullable=False),
    Column("chosen_at", Float, nullable=False),
)
LEADERS = Table(  # which bridge holds the bridge lock of a subscription (stream/bridge/leader)
    "br_leaders", METADATA,
    Column("name", String(255), primary_key=True),  # the lock: the durable subscription
    Column("holder", String(255), nullable=False),  # host:pid
    Column("pid", Integer, nullable=False),
    Column("since", Float, nullable=False),
)
HOLD_PAUSED, HOLD_RUNNING = "paused", "running"
MAX_DEAD_BODY = 65536


# columns made wider since: an older store's are altered (PostgreSQL's INTEGER is 32-bit;
# SQLite's INTEGER holds 64 bits whatever the declaration, so it needs nothing)
WIDENED = {"br_files": ("size", "sequence")}


def migrate(engine: Engine) -> None:
    """Bring a store written by an earlier swfflow up to these tables: the columns added
    since (all nullable), and the columns widened since."""
    add_missing_columns(engine)
    widen_columns(engine)


def add_missing_columns(engine: Engine) -> None:
    """Stores written by an earlier swfflow lack columns added since (all nullable)."""
    from sqlalchemy import inspect, text

    for table in (FILES,):
        present = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def widen_columns(engine: Engine) -> None:
    """32-bit integer columns of an older PostgreSQL store become 64-bit (an STF of more than
    2 GiB could not be recorded). One ALTER per column, only where it is still narrow."""
    from sqlalchemy import inspect, text

    if engine.dialect.name != "postgresql":
        return
    for table, names in WIDENED.items():
        narrow = [c["name"] for c in inspect(engine).get_columns(table)
                  if c["name"] in names and isinstance(c["type"], Integer)
                  and not isinstance(c["type"], BigInteger)]
        for name in narrow:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN {name} TYPE BIGINT"))
