"""The stream bridge's persistent state: runs, STF files, processed messages, dead letters.

Any SQLAlchemy URL: ``sqlite:///bridge.db`` (default, WAL mode) or ``postgresql://…`` for
production. Everything the bridge must not forget across a crash is here, and every write is
keyed (run; run + file; message id; message digest) so replaying a write changes nothing:

- ``br_runs``: one row per run: DAQ state, the bridge's phase (see :data:`RUN_PHASES`), the
  STF count announced by end_run, what was missing when the run was closed anyway;
- ``br_files``: one row per STF, recorded *before* it is attached (``attached_at`` NULL), so a
  restart attaches exactly the recorded-but-unattached ones; ``ready_sent`` makes the
  ``stf_ready`` emission at-least-once;
- ``br_messages``: ids of messages whose effect is complete (duplicates are acked at once);
  not for stf_gen, whose effect is keyed by its ``br_files`` row (half the writes of a flood);
- ``br_dead``: messages that can never be processed, with the reason;
- ``br_holds``: with the profile's ``bridge.pause_tasks_on_pause``, whether the run's tasks
  should be paused (``pause_run``) or running (``resume_run``), when that was last applied, and
  which tasks the bridge paused (only those are resumed).

The driver's own tables (``drv_*``) and the local executor's (``exec_*``) live in the same
database, so ``swfflow status --run N`` can join them (:func:`run_status`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from swfflow.stream.tables import (  # noqa: F401 (the phases and tables: re-exported)
    DEAD, FILES, HOLD_PAUSED, HOLD_RUNNING, HOLDS, MAX_DEAD_BODY, MESSAGES, METADATA, OPEN_PHASES,
    PHASE_ANNOUNCED, PHASE_CLOSED, PHASE_DONE, PHASE_ENDING, PHASE_FAILED, PHASE_PREPARED,
    RUN_PHASES, RUNS, migrate)


MAX_DEAD_REASON = 4096


def storable(text: str) -> str:
    """Any text as every database takes it: lone surrogates (JSON "\\ud800") escaped, and
    NUL, which PostgreSQL refuses in text, shown as \\x00."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    return (items[i:i + size] for i in range(0, len(items), size))


@dataclass(frozen=True)
class StfRow:
    run_id: str
    filename: str
    sequence: int | None
    size: int
    adler32: str
    pfn: str | None
    msg_id: str | None
    gen_at: float
    attached_at: float | None
    ready_sent: bool
    meta_at: float | None = None


class BridgeStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        METADATA.create_all(engine)
        migrate(engine)

    # --- messages -------------------------------------------------------------------------
    def processed(self, msg_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(MESSAGES.c.msg_id)
                                .where(MESSAGES.c.msg_id == msg_id)).first() is not None

    def mark_processed(self, messages: Iterable[tuple[str, str, str | None]], conn=None) -> None:
        """(msg_id, msg_type, run_id) rows; existing ids are left alone."""
        rows = list(messages)
        if not rows:
            return
        if conn is None:
            with self.engine.begin() as own:
                self.mark_processed(rows, own)
            return
        known = set(conn.execute(select(MESSAGES.c.msg_id).where(
            MESSAGES.c.msg_id.in_([r[0] for r in rows]))).scalars())
        now = time.time()
        fresh = {r[0]: r for r in rows if r[0] not in known}
        if fresh:
            conn.execute(MESSAGES.insert(), [
                {"msg_id": m, "msg_type": t, "run_id": r, "processed_at": now}
                for m, t, r in fresh.values()])

    def dead_letter(self, body: str, reason: str, msg_type: str | None = None,
                    run_id: str | None = None) -> bool:
        """Record an unprocessable message; False if this exact body was recorded before."""
        digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            with self.engine.begin() as conn:
                conn.execute(DEAD.insert().values(
                    digest=digest, received_at=time.time(),
                    msg_type=storable(msg_type or "")[:64] or None,
                    run_id=storable(run_id or "")[:64] or None,
                    reason=storable(reason)[:MAX_DEAD_REASON],
                    body=storable(body[:MAX_DEAD_BODY])))
        except IntegrityError:
            return False
        return True

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(DEAD).order_by(DEAD.c.received_at)).all()
        return [dict(r._mapping) for r in rows]

    # --- runs -----------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
        return dict(row._mapping) if row else None

    def runs(self, phases: Sequence[str] | None = None) -> list[dict[str, Any]]:
        query = select(RUNS).order_by(RUNS.c.created_at, RUNS.c.run_id)
        if phases is not None:
            query = query.where(RUNS.c.phase.in_(list(phases)))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def add_run(self, run_id: str, stream_did: str, *, namespace: str | None,
                daq_state: str | None, daq_substate: str | None, container: str | None) -> bool:
        """Record an announced run; False if it was known already (nothing changes)."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(RUNS.insert().values(
                    run_id=run_id, namespace=namespace, phase=PHASE_ANNOUNCED,
                    daq_state=daq_state, daq_substate=daq_substate, stream_did=stream_did,
                    container=container, message="", created_at=now, updated_at=now))
        except IntegrityError:
            return False
        return True

    def update_run(self, run_id: str, conn=None, **values: Any) -> None:
        if conn is None:
            with self.engine.begin() as own:
                self.update_run(run_id, own, **values)
            return
        conn.execute(RUNS.update().where(RUNS.c.run_id == run_id)
                     .values(updated_at=time.time(), **values))

    # --- pausing a run's tasks -------------------------------------------------------------
    def hold(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(HOLDS).where(HOLDS.c.run_id == run_id)).first()
        return dict(row._mapping) if row else None

    def holds_to_keep(self, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The holds the bridge must still act on: not yet applied, or paused (a task
        submitted while the run is paused is paused too)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(HOLDS).where(HOLDS.c.run_id.in_(list(run_ids)))).all()
        return [dict(r._mapping) for r in rows
                if r.applied_at is None or r.wanted == HOLD_PAUSED]

    def want_hold(self, run_id: str, wanted: str) -> dict[str, Any]:
        """Ask for the run's tasks to be ``wanted``; the row (applied_at None: work to do).
        Asking for what is already applied changes nothing."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(select(HOLDS).where(HOLDS.c.run_id == run_id)).first()
            if row is None:
                conn.execute(HOLDS.insert().values(run_id=run_id, wanted=wanted, paused=[],
                                                   message="", updated_at=now))
            elif row.wanted != wanted:
                conn.execute(HOLDS.update().where(HOLDS.c.run_id == run_id).values(
                    wanted=wanted, applied_at=None, updated_at=now))
        return self.hold(run_id)  # type: ignore[return-value]

    def applied_hold(self, run_id: str, wanted: str, paused: Sequence[str],
                     message: str) -> dict[str, Any]:
        """``wanted`` is applied: ``paused`` are the tasks the bridge holds paused now."""
        with self.engine.begin() as conn:
            conn.execute(HOLDS.update().where(HOLDS.c.run_id == run_id,
                                              HOLDS.c.wanted == wanted).values(
                applied_at=time.time(), paused=sorted(paused), message=message,
                updated_at=time.time()))
        return self.hold(run_id)  # type: ignore[return-value]

    # --- files ----------------------------------------------------------------------------
    def file(self, run_id: str, filename: str) -> StfRow | None:
        return self.files({(run_id, filename)}).get((run_id, filename))

    def files(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StfRow]:
        """The recorded STFs among ``keys`` ((run, filename) pairs): one query per run."""
        by_run: dict[str, list[str]] = {}
        for run_id, filename in keys:
            by_run.setdefault(run_id, []).append(filename)
        found: dict[tuple[str, str], StfRow] = {}
        with self.engine.connect() as conn:
            for run_id, names in by_run.items():
                for chunk in _chunks(names, 500):  # bound the IN list (SQLite's variable cap)
                    for row in conn.execute(select(FILES).where(FILES.c.run_id == run_id,
                                                                FILES.c.filename.in_(chunk))):
                        found[(row.run_id, row.filename)] = StfRow(**row._mapping)
        return found

    def add_files(self, rows: Sequence[StfRow]) -> list[StfRow]:
        """Record STFs to attach, in one transaction; the rows that were new (a (run,
        filename) known already is left as it is)."""
        if not rows:
            return []
        try:
            with self.engine.begin() as conn:
                conn.execute(FILES.insert(), [vars(row) for row in rows])
            return list(rows)
        except IntegrityError:  # some were known: one by one (rare: redelivery after a crash)
            pass
        fresh = []
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(FILES.insert().values(**vars(row)))
            except IntegrityError:
                continue
            fresh.append(row)
        return fresh

    def drop_file(self, run_id: str, filename: str) -> None:
        """Forget a recorded STF that can never be attached (its message is dead-lettered)."""
        with self.engine.begin() as conn:
            conn.execute(FILES.delete().where(FILES.c.run_id == run_id,
                                              FILES.c.filename == filename,
                                              FILES.c.attached_at.is_(None)))

    def unattached(self, run_ids: Sequence[str] | None = None) -> list[StfRow]:
        query = select(FILES).where(FILES.c.attached_at.is_(None))
        if run_ids is not None:
            query = query.where(FILES.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(FILES.c.gen_at)).all()
        return [StfRow(**r._mapping) for r in rows]

    def mark_attached(self, rows: Sequence[StfRow], with_metadata: bool = False) -> float:
        """Attached in the catalog (``with_metadata``: its metadata set by the same call), in
        one transaction. (An stf_gen's effect is keyed by its file row, not by its message
        id: br_messages is not written for STFs.)"""
        now = time.time()
        self._set_where(rows, attached_at=now, **({"meta_at": now} if with_metadata else {}))
        return now

    def without_metadata(self, run_ids: Sequence[str], limit: int) -> list[StfRow]:
        """Attached STFs of these runs whose metadata is not set yet, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(FILES).where(
                FILES.c.run_id.in_(list(run_ids)), FILES.c.attached_at.is_not(None),
                FILES.c.meta_at.is_(None)).order_by(FILES.c.attached_at).limit(limit)).all()
        return [StfRow(**r._mapping) for r in rows]

    def mark_metadata(self, rows: Sequence[StfRow]) -> None:
        self._set_where(rows, meta_at=time.time())

    def _set_where(self, rows: Sequence[StfRow], **values: Any) -> None:
        """Set ``values`` on the rows' STFs, one transaction, one UPDATE per run and 500."""
        with self.engine.begin() as conn:
            for run_id in {r.run_id for r in rows}:
                names = [r.filename for r in rows if r.run_id == run_id]
                for chunk in _chunks(names, 500):
                    conn.execute(FILES.update().where(FILES.c.run_id == run_id,
                                                      FILES.c.filename.in_(chunk))
                                 .values(**values))

    def not_announced(self, limit: int = 1000) -> list[StfRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(FILES).where(FILES.c.attached_at.is_not(None),
                                                    FILES.c.ready_sent.is_(False))
                                .order_by(FILES.c.attached_at).limit(limit)).all()
        return [StfRow(**r._mapping) for r in rows]

    def mark_announced(self, rows: Sequence[StfRow]) -> None:
        self._set_where(rows, ready_sent=True)

    def file_counts(self, run_id: str) -> tuple[int, int]:
        """(recorded, attached) STFs of a run."""
        return self.file_counts_all(run_id)[:2]

    def file_counts_all(self, run_id: str) -> tuple[int, int, int]:
        """(recorded, attached, with metadata set) STFs of a run."""
        with self.engine.connect() as conn:
            total, attached, meta = conn.execute(
                select(func.count(), func.count(FILES.c.attached_at), func.count(FILES.c.meta_at))
                .where(FILES.c.run_id == run_id)).one()
        return int(total), int(attached), int(meta)

    def sequences(self, run_id: str) -> set[int]:
        with self.engine.connect() as conn:
            return {s for s in conn.execute(select(FILES.c.sequence).where(
                FILES.c.run_id == run_id, FILES.c.attached_at.is_not(None))).scalars()
                if s is not None}

    def latencies(self, run_id: str | None = None) -> list[float]:
        """stf_gen received → attached, seconds, for every attached STF."""
        query = select(FILES.c.gen_at, FILES.c.attached_at).where(
            FILES.c.attached_at.is_not(None))
        if run_id is not None:
            query = query.where(FILES.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [a - g for g, a in conn.execute(query).all()]
