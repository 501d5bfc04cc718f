"""The butterfly (issue 15, part 2): every attached STF is copied from the DAQ buffer to each
E1 site (``bridge.sites`` in the profile, e.g. E1_BNL_DISK and E1_JLAB_DISK), the copy's adler32
read back and compared with the DAQ's, and the copy registered as a replica at that site.

Archiving never waits for processing: this runs off the attach path, one thread per site, so a
slow or dead site delays neither the attach nor the other site. A site is **down** when the
profile or the CLI says so (``sites_down``) or after ``site_failures_down`` failed copies in a
row (the health check); a health-failed site is tried again every ``site_retry_s`` and, when
it answers, catches up on every STF it missed (closed and done runs included).

Per run and site a **running checksum** (:func:`swfflow.stream.transfer.fold`) is kept in the
store; once a run is closed and a site holds all its STFs, it is compared with the DAQ's. A
copy whose adler32 differs, or a site sum that differs, is an alarm (``swfflow status``) and a
dead letter naming the file. Everything here runs on the bridge thread except the copies.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from swfflow.backends.base import Catalog, FileRecord
from swfflow.stream.bridge.config import BridgeConfig
from swfflow.stream.replica_store import ReplicaStore
from swfflow.stream.store import BridgeStore, StfRow
from swfflow.stream.transfer import LocalTransfer, Transfer

log = logging.getLogger("swfflow.bridge")
REASON_CONFIG = "marked down (profile or --site-down)"


@dataclass
class Outcome:
    """What one site's copy batch did (made in its thread, judged on the bridge thread)."""

    copied: list[tuple[StfRow, str]]  # verified and registered: (STF, adler32 of the copy)
    corrupt: list[tuple[StfRow, str]]  # the copy's adler32 differs from the DAQ's
    error: Exception | None = None  # the site (copy or registration) failed


class Butterfly:
    def __init__(self, store: BridgeStore, config: BridgeConfig, counters: Counter[str], *,
                 catalog: Callable[[], Catalog], wake: Callable[[], None],
                 transfer: Transfer | None = None):
        self.bridge_store, self.config, self.counters = store, config, counters
        self.store = ReplicaStore(store.engine)
        self.catalog, self.wake = catalog, wake
        self.transfer = transfer or LocalTransfer()
        self.sites = tuple(config.sites)
        self.pool: ThreadPoolExecutor | None = None
        self.clients: dict[str, Catalog] = {}
        self.in_flight: dict[str, Future] = {}
        self.failures: Counter[str] = Counter()  # failed copy batches in a row, per site
        self.retry_at: dict[str, float] = {}  # health-failed sites: when to try again
        self.due_at = 0.0  # look for STFs to copy (set by attaches; a timer for catch-up)
        self.checked_at = 0.0
        for rse in self.sites:
            if rse in config.sites_down:
                self.store.set_site(rse, True, REASON_CONFIG)
            elif self.store.sites().get(rse, {}).get("reason") == REASON_CONFIG:
                self.store.set_site(rse, False, "")  # no longer configured down

    @property
    def enabled(self) -> bool:
        return bool(self.sites)

    def attached(self) -> None:
        """New STFs are attached: copy them now."""
        self.due_at = 0.0

    def up(self) -> list[str]:
        """The sites to copy to now: not down, or health-failed and due for another try (a
        site a previous bridge found down is tried at once)."""
        sites, now = self.store.sites(), time.monotonic()
        for rse in self.sites:
            site = sites.get(rse, {})
            if site.get("down") and site.get("reason") != REASON_CONFIG:
                self.retry_at.setdefault(rse, now)
        return [rse for rse in self.sites if not sites.get(rse, {}).get("down")
                or (rse in self.retry_at and now >= self.retry_at[rse])]

    # --- the loop's step ----------------------------------------------------------------------
    def step(self) -> None:
        if not self.enabled:
            return
        self._collect()
        now = time.monotonic()
        if now >= self.due_at:
            self.due_at = now + self.config.site_retry_s  # catch-up timer when nothing is new
            for rse in self.up():
                if rse not in self.in_flight:
                    self._start(rse)
        if now - self.checked_at >= self.config.tick_s:
            self.checked_at = now
            self.compare_runs()

    def stop(self, wait: bool = True) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=wait)
            self._collect()
            self.pool = None

    def _start(self, rse: str) -> None:
        rows = self.store.missing_at(rse, self.config.replicate_batch)
        if not rows:
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max(1, len(self.sites)),
                                           thread_name_prefix="bridge-butterfly")
        if rse not in self.clients:
            self.clients[rse] = self.catalog().for_thread()
        future = self.pool.submit(copy_batch, self.clients[rse], self.transfer, rse, rows)
        future.add_done_callback(lambda _f: self.wake())
        self.in_flight[rse] = future

    def _collect(self) -> None:
        for rse, future in list(self.in_flight.items()):
            if not future.done():
                continue
            del self.in_flight[rse]
            outcome: Outcome = future.result()  # never raises: errors are in the outcome
            if outcome.copied:
                self.store.add_copies(rse, outcome.copied)
                self.counters[f"replicated_{rse}"] += len(outcome.copied)
                self.due_at = 0.0  # there may be more
            for row, adler in outcome.corrupt:
                self._alarm(row.run_id, rse, f"copy of {row.filename} at {rse} has adler32 "
                            f"{adler}, the DAQ's is {row.adler32}", row)
            if outcome.error is None:
                self._healthy(rse)
            else:
                self._failed(rse, outcome.error)

    def _healthy(self, rse: str) -> None:
        self.failures[rse] = 0
        if self.retry_at.pop(rse, None) is not None:
            self.store.set_site(rse, False, "")
            log.warning("site %s is back: catching up on the STFs it missed", rse)

    def _failed(self, rse: str, error: Exception) -> None:
        self.failures[rse] += 1
        self.counters["site_errors"] += 1
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if self.failures[rse] >= self.config.site_failures_down:
            if rse not in self.retry_at:
                log.error("site %s marked down after %d failed copies: %s", rse,
                          self.failures[rse], reason)
            self.store.set_site(rse, True, f"health check: {self.failures[rse]} failed "
                                           f"copies in a row, last: {reason}")
            self.retry_at[rse] = time.monotonic() + self.config.site_retry_s
        else:
            self.due_at = time.monotonic() + min(self.config.site_retry_s, 1.0)

    # --- run end: the running checksums ------------------------------------------------------
    def compare_runs(self) -> None:
        """For each closed run, compare each site's running checksum with the DAQ's once the
        site holds every STF (a site that is down is compared when it has caught up)."""
        down = {rse for rse, site in self.store.sites().items() if site["down"]}
        live = [rse for rse in self.sites if rse not in down]  # the others: when caught up
        for run_id in self.store.unchecked(live):
            count, expected, files = self.store.daq_sum(run_id)
            sums = self.store.sums(run_id)
            for rse in live:
                site = sums.get(rse)
                if site is not None and site["checked_at"] is not None:
                    continue
                held = site["files"] if site else 0
                if held < count:
                    continue  # still copying (or the site is down): not yet
                alarm = None
                if site is not None and site["checksum"] != expected or held != count:
                    copies = self.store.copies(run_id, rse)
                    wrong = sorted(n for n in set(files) | set(copies)
                                   if files.get(n) != copies.get(n))
                    alarm = (f"running checksum at {rse} differs from the DAQ's "
                             f"({site['checksum'] if site else '-'} != {expected}): "
                             f"{', '.join(wrong[:10]) or 'no single file differs'}")
                    self._alarm(run_id, rse, alarm, None, wrong)
                self.store.checked(run_id, rse, alarm)
                if alarm is None:
                    log.info("run %s: %d STF(s) at %s, running checksum %s equals the DAQ's",
                             run_id, count, rse, expected)

    def _alarm(self, run_id: str, rse: str, reason: str, row: StfRow | None,
               files: list[str] | None = None) -> None:
        """An alarm in the run's status and a dead letter naming the file(s)."""
        self.counters["replica_alarms"] += 1
        log.error("run %s: %s", run_id, reason)
        body = json.dumps({"alarm": "replica", "run_id": run_id, "rse": rse,
                           "files": files if files is not None else [row.filename],
                           "adler32": row.adler32 if row else None}, sort_keys=True)
        self.bridge_store.dead_letter(body, reason, "replica", run_id)


def copy_batch(catalog: Catalog, transfer: Transfer, rse: str,
               rows: list[tuple[StfRow, str]]) -> Outcome:
    """In a site's thread: copy each STF (with its DID) to its place at ``rse``, verify,
    register the good copies in one call. Never raises: the outcome carries the error."""
    copied: list[tuple[StfRow, str]] = []
    corrupt: list[tuple[StfRow, str]] = []
    dids = {(row.run_id, row.filename): did for row, did in rows}
    try:
        paths = catalog.replica_paths(rse, sorted(set(dids.values())))
        for row, did in rows:
            if not row.pfn:
                corrupt.append((row, "(no source file)"))
                continue
            adler = transfer.copy(row.pfn, paths[did])
            (copied if adler == row.adler32 else corrupt).append((row, adler))
        if copied:
            catalog.add_replicas(rse, [FileRecord(did=dids[(r.run_id, r.filename)],
                                                  size=r.size, adler32=a) for r, a in copied])
    except Exception as exc:  # noqa: BLE001 - judged on the bridge thread (a site failure)
        return Outcome([], corrupt, exc)
    return Outcome(copied, corrupt)
