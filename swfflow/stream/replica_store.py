"""The butterfly's state (issue 15, part 2), next to the bridge store in the same database:
which STF has a verified copy at which E1 site (``br_replicas``), the per-run running checksum
of each site and its comparison with the DAQ's at run end (``br_site_sums``), and which sites
are down and why (``br_sites``). Every write is keyed (run, file, site), so a replayed write
changes nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from swfflow.stream.store import StfRow
from swfflow.stream.tables import (
    FILES,
    METADATA,
    PHASE_FAILED,
    REPLICAS,
    RUNS,
    SITE_SUMS,
    SITES,
)
from swfflow.stream.transfer import EMPTY_SUM, fold, running_checksum


class ReplicaStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        METADATA.create_all(engine)

    # --- copies -----------------------------------------------------------------------------
    def missing_at(self, rse: str, limit: int) -> list[tuple[StfRow, str]]:
        """Attached STFs without a copy at ``rse`` (each with its DID), oldest first, of any
        run not failed: a site that was down catches up on closed and done runs too."""
        query = (select(FILES, RUNS.c.stream_did).join(RUNS, RUNS.c.run_id == FILES.c.run_id)
                 .outerjoin(REPLICAS, and_(REPLICAS.c.run_id == FILES.c.run_id,
                                           REPLICAS.c.filename == FILES.c.filename,
                                           REPLICAS.c.rse == rse))
                 .where(FILES.c.attached_at.is_not(None), REPLICAS.c.rse.is_(None),
                        RUNS.c.phase != PHASE_FAILED)
                 .order_by(FILES.c.attached_at).limit(limit))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        fields = StfRow.__dataclass_fields__
        return [(StfRow(**{k: r._mapping[k] for k in fields}),
                 f"{r.stream_did.split(':', 1)[0]}:{r.filename}") for r in rows]

    def add_copies(self, rse: str, copies: Sequence[tuple[StfRow, str]]) -> None:
        """Verified copies ((STF, adler32 of the copy)) at ``rse``, and the site's running
        checksum of each run, in one transaction. A copy recorded before is left alone."""
        now = time.time()
        with self.engine.begin() as conn:
            known = {(r.run_id, r.filename) for r in conn.execute(
                select(REPLICAS.c.run_id, REPLICAS.c.filename).where(
                    REPLICAS.c.rse == rse,
                    REPLICAS.c.filename.in_([row.filename for row, _ in copies])))}
            fresh = [(row, adler) for row, adler in copies
                     if (row.run_id, row.filename) not in known]
            if not fresh:
                return
            conn.execute(REPLICAS.insert(), [
                {"run_id": row.run_id, "filename": row.filename, "rse": rse,
                 "adler32": adler, "copied_at": now} for row, adler in fresh])
            for run_id in sorted({row.run_id for row, _ in fresh}):
                self._fold(conn, run_id, rse,
                           [(row.filename, adler) for row, adler in fresh if row.run_id == run_id],
                           now)

    def _fold(self, conn, run_id: str, rse: str, pairs: list[tuple[str, str]], now: float) -> None:
        row = conn.execute(select(SITE_SUMS).where(SITE_SUMS.c.run_id == run_id,
                                                   SITE_SUMS.c.rse == rse)).first()
        total = row.checksum if row else EMPTY_SUM
        for filename, adler in pairs:
            total = fold(total, filename, adler)
        values = {"files": (row.files if row else 0) + len(pairs), "checksum": total,
                  "updated_at": now}
        if row is None:
            conn.execute(SITE_SUMS.insert().values(run_id=run_id, rse=rse, **values))
        else:
            conn.execute(SITE_SUMS.update().where(SITE_SUMS.c.run_id == run_id,
                                                  SITE_SUMS.c.rse == rse)
                         .values(checked_at=None, **values))

    def copies(self, run_id: str, rse: str) -> dict[str, str]:
        """file name → adler32 of its copy at ``rse``."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(REPLICAS.c.filename, REPLICAS.c.adler32).where(
                REPLICAS.c.run_id == run_id, REPLICAS.c.rse == rse)).all())

    # --- running checksums ------------------------------------------------------------------
    def sums(self, run_id: str) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(SITE_SUMS).where(SITE_SUMS.c.run_id == run_id)).all()
        return {r.rse: dict(r._mapping) for r in rows}

    def daq_sum(self, run_id: str) -> tuple[int, str, dict[str, str]]:
        """What the DAQ produced for the run: attached STFs, their running checksum, and
        each file's adler32."""
        with self.engine.connect() as conn:
            files = dict(conn.execute(select(FILES.c.filename, FILES.c.adler32).where(
                FILES.c.run_id == run_id, FILES.c.attached_at.is_not(None))).all())
        return len(files), running_checksum(sorted(files.items())), files

    def unchecked(self, rses: Sequence[str]) -> list[str]:
        """Closed or done runs whose sites are not all compared yet."""
        query = select(RUNS.c.run_id).where(RUNS.c.phase.in_(("closed", "done")))
        with self.engine.connect() as conn:
            runs = [r for (r,) in conn.execute(query).all()]
            checked = {(r.run_id, r.rse) for r in conn.execute(
                select(SITE_SUMS.c.run_id, SITE_SUMS.c.rse).where(
                    SITE_SUMS.c.checked_at.is_not(None)))}
        return [run for run in runs if any((run, rse) not in checked for rse in rses)]

    def checked(self, run_id: str, rse: str, alarm: str | None) -> None:
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(SITE_SUMS.update().where(
                SITE_SUMS.c.run_id == run_id, SITE_SUMS.c.rse == rse).values(
                checked_at=now, alarm=alarm, updated_at=now)).rowcount
            if not done:  # a run without a single STF: the empty sum
                conn.execute(SITE_SUMS.insert().values(run_id=run_id, rse=rse, files=0,
                                                       checksum=EMPTY_SUM, checked_at=now,
                                                       alarm=alarm, updated_at=now))

    # --- sites ------------------------------------------------------------------------------
    def set_site(self, rse: str, down: bool, reason: str = "") -> None:
        now = time.time()
        with self.engine.begin() as conn:
            if conn.execute(SITES.update().where(SITES.c.rse == rse).values(
                    down=down, reason=reason, updated_at=now)).rowcount:
                return
            try:
                conn.execute(SITES.insert().values(rse=rse, down=down, reason=reason,
                                                   updated_at=now))
            except IntegrityError:  # another bridge inserted it meanwhile
                pass

    def sites(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.rse: dict(r._mapping) for r in conn.execute(select(SITES)).all()}
