"""Per-site replication of each run (the bridge's butterfly, issue 15): each E1 site's copied
STF count and running checksum, as the bridge records them (``br_site_sums``), compared with
the DAQ's — the running checksum of the run's attached STFs — at the time of reading.

The DAQ's checksum is a digest per file (:func:`swfflow.stream.transfer.fold`), so the database
cannot compute it: it is computed only when a site holds as many STFs as were attached (if the
counts differ the site cannot match) and kept per (store, run, attached count) — attaching only
adds files, so the same count means the same files — so a monitor polling a finished run reads
its files once, not once a second.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from swfflow.monitor.model import SiteReplication
from swfflow.stream.transfer import running_checksum

DAQ_SUMS_KEPT = 4096  # (store, run, count) entries: a few per run is plenty


class DaqSums:
    """The DAQ's running checksum of a run's attached STFs, remembered by attached count."""

    def __init__(self) -> None:
        self.kept: OrderedDict[tuple[str, str, int], str] = OrderedDict()

    def of(self, conn: Connection, wanted: dict[str, int]) -> dict[str, str]:
        """run → checksum, for each run of ``wanted`` (run → attached count); one query for
        all runs not remembered."""
        from swfflow.stream.tables import FILES

        store = str(conn.engine.url)
        out = {run: self.kept[(store, run, n)] for run, n in wanted.items()
               if (store, run, n) in self.kept}
        missing = [run for run in wanted if run not in out]
        if missing:
            pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for run, filename, adler in conn.execute(
                    select(FILES.c.run_id, FILES.c.filename, FILES.c.adler32).where(
                        FILES.c.run_id.in_(missing), FILES.c.attached_at.is_not(None))):
                pairs[run].append((filename, adler))
            for run in missing:
                # the count read now: files attached since the caller counted show here too
                count, total = len(pairs[run]), running_checksum(pairs[run])
                self.kept[(store, run, count)] = total
                if count == wanted[run]:
                    out[run] = total
        while len(self.kept) > DAQ_SUMS_KEPT:
            self.kept.popitem(last=False)
        return out


DAQ_SUMS = DaqSums()


def site_replication(conn: Connection, attached: dict[str, int]
                     ) -> dict[str, list[SiteReplication]]:
    """run → its sites' replication, for the runs of ``attached`` (run → attached STFs)."""
    from sqlalchemy import inspect

    from swfflow.stream.tables import SITE_SUMS, SITES

    if not inspect(conn).has_table(SITE_SUMS.name):  # a store of a bridge before the butterfly
        return {}
    sums = [row for row in conn.execute(select(SITE_SUMS).order_by(SITE_SUMS.c.rse))
            if row.run_id in attached]
    sites: dict[str, Any] = ({row.rse: row for row in conn.execute(select(SITES))}
                             if inspect(conn).has_table(SITES.name) else {})
    daq = DAQ_SUMS.of(conn, {row.run_id: attached[row.run_id] for row in sums
                             if row.files == attached[row.run_id]})
    out: dict[str, list[SiteReplication]] = defaultdict(list)
    for row in sums:
        site = sites.get(row.rse)
        expected = daq.get(row.run_id)
        out[row.run_id].append(SiteReplication(
            rse=row.rse, files=row.files, checksum=row.checksum,
            daq_files=attached[row.run_id], daq_checksum=expected,
            matches_daq=expected is not None and expected == row.checksum,
            checked=row.checked_at is not None, alarm=row.alarm,
            down=bool(site.down) if site else False,
            down_reason=(site.reason or None) if site else None))
    return out
