"""The effect half of the bridge: reconcilers that bring Rucio and PanDA to what the store says.

Each reconciler reads the store (through the bridge's in-memory view of open runs and pending
STFs), does idempotent calls, commits the result, then releases the deliveries waiting on it.
A failure (server down, timeout) leaves the store as it was; the reconciler's gate backs off
and the same work is tried again later — or by the next bridge process after a crash.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from swfflow.backends.base import CommandRefused, FileRecord
from swfflow.drive.driver import FINAL, Driver, TaskPhase
from swfflow.errors import ConfigError
from swfflow.stream.bridge.backoff import is_permanent
from swfflow.stream.messages import StfReady
from swfflow.stream.store import (HOLD_PAUSED, PHASE_ANNOUNCED, PHASE_CLOSED, PHASE_DONE,
                                  PHASE_ENDING, PHASE_FAILED, PHASE_PREPARED, StfRow)

if TYPE_CHECKING:
    from swfflow.stream.bridge.core import Bridge

log = logging.getLogger("swfflow.bridge")
MAX_ATTACH_PER_FLUSH = 5000  # bounds one flush's latency when a backlog drains
ATTACH_POLL_S = 0.005  # how often the loop looks whether the attach in flight is done
ATTACHABLE = (PHASE_PREPARED, PHASE_ENDING)
FOLLOWED = (PHASE_PREPARED, PHASE_ENDING, PHASE_CLOSED)


class Work:
    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self.last_follow = 0.0
        self.unannounced = True  # check the store for attached-but-unannounced STFs
        # attach calls run in threads of their own (up to config.attach_parallel at once, each
        # with its own catalog client), so the next batch is received, recorded and acked
        # while Rucio works on these, and a server with several workers serves them at once;
        # their outcome is committed by the bridge thread (collect_attached), which alone
        # touches the store and the acks
        self.attacher: ThreadPoolExecutor | None = None  # started on first use
        self.idle_catalogs: list = []
        self.in_flight: list[InFlight] = []
        self.attaching: set[tuple[str, str]] = set()  # (run, filename) of the calls in flight
        self.metadata_due = True  # look for attached STFs whose metadata is not set yet
        self.backlog = False  # the last attach took a full batch: metadata waits till it is not
        self.unpausable: set[str] = set()  # tasks whose pause the backend refused: not again

    # --- scheduling -----------------------------------------------------------------------
    def idle_wait(self) -> float:
        """How long the loop may block waiting for a message before work is due."""
        config, now = self.bridge.config, time.monotonic()
        wait = config.tick_s - (now - self.last_follow)
        if self.in_flight:  # commit and ack their outcome soon after they are done
            wait = min(wait, ATTACH_POLL_S)
        elif self.bridge.pending:
            oldest = self.bridge.pending[0].gen_at  # pending is in arrival order
            wait = min(wait, config.batch_ms / 1000 - (time.time() - oldest))
        return min(0.25, max(0.002, wait))

    def step(self) -> None:
        self._guarded("prepare", self.prepare_runs)
        if self.bridge.holds:
            self._guarded("hold", self.hold_tasks)
        self.collect_attached()
        if self.bridge.gates["attach"].ready():  # its outcome (ok/fail) comes from collecting
            self.attach()
        if self.bridge.gates["metadata"].ready():
            self._guarded("metadata", self.set_metadata)
        self._guarded("announce", self.announce)
        self._guarded("close", self.close_runs)
        if time.monotonic() - self.last_follow >= self.bridge.config.tick_s:
            self.last_follow = time.monotonic()
            self._guarded("follow", self.follow)

    def flush_now(self) -> None:
        """On shutdown: attach what is pending at once (errors leave it for the next start)."""
        self.collect_attached(wait=True)
        if self.bridge.gates["attach"].ready():
            self.attach(force=True)
            self.collect_attached(wait=True)
        self._guarded("announce", self.announce)
        if self.attacher is not None:
            self.attacher.shutdown(wait=True)
            self.attacher, self.idle_catalogs = None, []

    def _guarded(self, name: str, action) -> None:
        gate = self.bridge.gates[name]
        if not gate.ready():
            return
        try:
            action()
        except Exception as exc:  # a server down, a timeout: try again later
            gate.fail(exc)
        else:
            gate.ok()

    # --- drivers --------------------------------------------------------------------------
    def driver(self, run_id: str) -> Driver:
        """The run's driver; a new one resumes from the driver store (tasks keep their ids)."""
        bridge = self.bridge
        driver = bridge.drivers.get(run_id)
        if driver is None:
            driver = Driver(bridge.template.instantiate(run_id), bridge.catalog,
                            bridge.executor, bridge.driver_store, prepare=bridge.prepare,
                            run_expression=bridge.run_expression)
            driver.start()  # creates the datasets (idempotent), loads saved task state
            bridge.drivers[run_id] = driver
        return driver

    # --- run_imminent: datasets + streaming tasks -----------------------------------------
    def prepare_runs(self) -> None:
        bridge = self.bridge
        for run_id, row in list(bridge.runs.items()):
            if row["phase"] != PHASE_ANNOUNCED:
                continue
            if not self._for_run("prepare", run_id, lambda: self.driver(run_id).tick()):
                continue  # tick() submitted the tasks released at start (runUntilClosed)
            driver = self.driver(run_id)
            phase = PHASE_ENDING if row["end_seen_at"] is not None else PHASE_PREPARED
            bridge.update_run(run_id, phase=phase)
            bridge.release(("prepared", run_id))
            log.info("run %s prepared: datasets created, %d task(s) submitted", run_id,
                     sum(t.task_id is not None for t in driver.tasks.values()))

    # --- pause_run / resume_run: the run's tasks (profile bridge.pause_tasks_on_pause) ------
    def hold_tasks(self) -> None:
        """Pause the submitted, not-final tasks of the runs that should be paused (and any task
        submitted while they are), resume the ones the bridge paused when they should run."""
        bridge = self.bridge
        for run_id, hold in list(bridge.holds.items()):
            row = bridge.runs.get(run_id)
            if row is None:  # done or failed meanwhile: nothing left to hold
                del bridge.holds[run_id]
                bridge.release(("hold", run_id))
                continue
            if row["phase"] in FOLLOWED:  # before that no task is submitted yet
                self._hold_run(run_id, hold)

    def _hold_run(self, run_id: str, hold: dict) -> None:
        bridge, pausing = self.bridge, hold["wanted"] == HOLD_PAUSED
        paused = set(hold["paused"] or ())
        if pausing:
            live = {t.task_id for t in self.driver(run_id).tasks.values()
                    if t.task_id is not None and t.phase not in FINAL}
            targets = sorted(live - paused - self.unpausable)
            if not targets and hold["applied_at"] is not None:
                return
        else:
            targets = sorted(paused)
        act = bridge.executor.pause if pausing else bridge.executor.resume
        refused = []
        for task_id in targets:  # a transient error propagates: the gate retries them all
            try:
                act(task_id)
            except Exception as exc:
                if not (isinstance(exc, CommandRefused) or is_permanent(exc)):
                    raise
                refused.append(f"task {task_id}: {str(exc).splitlines()[0]}")
                self.unpausable.add(task_id)
                log.warning("run %s: %s", run_id, refused[-1])
                continue
            if pausing:
                paused.add(task_id)
            else:
                paused.discard(task_id)
        # a refusal is recorded (swfflow status) and the run goes on unpaused: pausing saves
        # resources, it is never needed for the run's result
        hold = bridge.store.applied_hold(run_id, hold["wanted"], sorted(paused),
                                         "; ".join(refused))
        if pausing:
            bridge.holds[run_id] = hold
        else:
            del bridge.holds[run_id]
        bridge.release(("hold", run_id))
        if targets:
            log.info("run %s: %s task(s) %s", run_id, "paused" if pausing else "resumed",
                     ", ".join(targets))

    # --- stf_gen: batched attach ----------------------------------------------------------
    def attach(self, force: bool = False) -> None:
        """Start attaching the ready STFs: a batch per free slot (config.attach_parallel)."""
        bridge, config = self.bridge, self.bridge.config
        while len(self.in_flight) < self._slots():
            ready = [r for r in bridge.pending
                     if (r.run_id, r.filename) not in self.attaching
                     and bridge.runs.get(r.run_id, {}).get("phase") in ATTACHABLE]
            if not ready:
                return
            young = time.time() - ready[0].gen_at < config.batch_ms / 1000
            if not force and young and len(ready) < config.batch_size:
                return
            # one slot takes a batch while others are busy; alone, it takes the backlog
            limit = config.batch_size if self.in_flight or self._slots() > 1 \
                else MAX_ATTACH_PER_FLUSH
            self.backlog = len(ready) >= config.batch_size
            by_run: dict[str, list[StfRow]] = defaultdict(list)
            for row in ready[:max(1, limit)]:
                by_run[row.run_id].append(row)
            batches = [(bridge.runs[run_id]["stream_did"], rows)
                       for run_id, rows in by_run.items()]
            keys = {(r.run_id, r.filename) for rows in by_run.values() for r in rows}
            catalog = self._take_catalog()
            future = self.attacher.submit(_attach_batches, catalog, batches, config.rse,
                                          not config.defer_metadata)
            self.in_flight.append(InFlight("attach", future, catalog, keys))
            self.attaching |= keys

    def set_metadata(self) -> None:
        """With defer_metadata: set the run/sequence metadata of attached STFs, a batch at a
        time in a free slot, only while nothing is waiting to be attached."""
        bridge, config = self.bridge, self.bridge.config
        if not (config.defer_metadata and self.metadata_due) or self.backlog \
                or len(self.in_flight) >= self._slots() \
                or any(f.kind == "metadata" for f in self.in_flight) \
                or any((r.run_id, r.filename) not in self.attaching for r in bridge.pending):
            return
        rows = bridge.store.without_metadata(list(bridge.runs), config.metadata_batch)
        if not rows:
            self.metadata_due = False
            return
        scopes = {run_id: row["stream_did"].split(":", 1)[0]
                  for run_id, row in bridge.runs.items()}
        records = [_record(scopes[r.run_id], r, with_meta=True) for r in rows
                   if r.run_id in scopes]
        catalog = self._take_catalog()
        future = self.attacher.submit(_catch, catalog.set_file_metadata, records)
        self.in_flight.append(InFlight("metadata", future, catalog, set(), rows))

    def _slots(self) -> int:
        """Concurrent attach calls: several only for catalogs that give a client per thread."""
        catalog = self.bridge.attach_catalog or self.bridge.catalog
        return max(1, self.bridge.config.attach_parallel) if hasattr(catalog, "for_thread") \
            else 1

    def _take_catalog(self):
        if self.attacher is None:
            self.attacher = ThreadPoolExecutor(self._slots(), thread_name_prefix="bridge-attach")
            first = self.bridge.attach_catalog or self.bridge.catalog
            self.idle_catalogs = [first] + [first.for_thread() for _ in range(self._slots() - 1)]
        return self.idle_catalogs.pop()

    def collect_attached(self, wait: bool = False) -> None:
        """Commit the outcome of the attach calls that are done: per run, mark attached and
        ack, or reject, fail the run, or back off (the rows stay pending)."""
        gate, transient, collected = self.bridge.gates["attach"], None, False
        for entry in list(self.in_flight):
            if not (wait or entry.future.done()):
                continue
            outcomes = entry.future.result()  # never raises: the error is in the outcome
            self.in_flight.remove(entry)
            self.idle_catalogs.append(entry.catalog)
            self.attaching -= entry.keys
            if entry.kind == "metadata":
                self._metadata_set(entry.rows, outcomes)
                continue
            collected = True
            for did, rows, error in outcomes:
                run_id = rows[0].run_id
                try:
                    if error is None:
                        self._attached(run_id, rows)
                    elif isinstance(error, ConfigError):  # the dataset is closed or gone: never
                        self._reject(rows, f"cannot attach to {did}: {error.what}")
                    elif is_permanent(error):
                        self.fail_run(run_id, f"attach failed permanently: "
                                      f"{type(error).__name__}: {str(error).splitlines()[0]}")
                    else:
                        transient = error
                except Exception as exc:  # the store: rows stay pending, attached again
                    transient = exc
        if transient is not None:
            gate.fail(transient)
        elif collected:
            gate.ok()

    def _metadata_set(self, rows: list[StfRow], error: Exception | None) -> None:
        gate = self.bridge.gates["metadata"]
        try:
            if error is None:
                self.bridge.store.mark_metadata(rows)
            elif is_permanent(error):
                for run_id in sorted({r.run_id for r in rows} & set(self.bridge.runs)):
                    self.fail_run(run_id, f"setting STF metadata failed permanently: "
                                  f"{type(error).__name__}: {str(error).splitlines()[0]}")
            else:
                raise error
        except Exception as exc:  # a server or the store down: the rows are tried again
            gate.fail(exc)
        else:
            gate.ok()

    def _attached(self, run_id: str, rows: list[StfRow]) -> None:
        bridge = self.bridge
        if run_id not in bridge.runs:  # failed meanwhile: its messages are dead letters
            return
        bridge.store.mark_attached(rows, with_metadata=not bridge.config.defer_metadata)
        self.metadata_due = True
        done = {(r.run_id, r.filename) for r in rows}
        bridge.pending = [r for r in bridge.pending if (r.run_id, r.filename) not in done]
        bridge.release(*(("file", run_id, row.filename) for row in rows))
        bridge.counters["attached"] += len(rows)
        self.unannounced = True

    # --- permanent failures ---------------------------------------------------------------
    def _for_run(self, action: str, run_id: str, body) -> bool:
        """Run one run's part of an action. A transient error propagates (the action's gate
        backs off and retries); a permanent one fails this run, visibly, and the others go on.
        True if ``body`` completed."""
        try:
            body()
        except Exception as exc:
            if not is_permanent(exc):
                raise
            self.fail_run(run_id, f"{action} failed permanently: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]}")
            return False
        return True

    def fail_run(self, run_id: str, reason: str) -> None:
        """The run can never complete: its phase is failed with the reason (``swfflow status``),
        and the messages waiting on it go to the dead letters with that reason."""
        bridge = self.bridge
        log.error("run %s failed: %s", run_id, reason)
        bridge.update_run(run_id, phase=PHASE_FAILED, message=reason)
        bridge.pending = [r for r in bridge.pending if r.run_id != run_id]
        for key in [k for k in bridge.waiters if k[1] == run_id]:
            for waiter in bridge.waiters.pop(key):
                bridge._dead(waiter.delivery, f"run {run_id} failed: {reason}",
                             waiter.msg_type, waiter.run_id)

    def _reject(self, rows: list[StfRow], reason: str) -> None:
        bridge = self.bridge
        dropped = {(r.run_id, r.filename) for r in rows}
        for row in rows:
            bridge.store.drop_file(row.run_id, row.filename)
            for waiter in bridge.waiters.pop(("file", row.run_id, row.filename), []):
                bridge._dead(waiter.delivery, reason, waiter.msg_type, waiter.run_id)
        bridge.pending = [r for r in bridge.pending if (r.run_id, r.filename) not in dropped]

    def announce(self) -> None:
        """stf_ready (per-file variant) for every attached STF not yet announced."""
        bridge = self.bridge
        if not self.unannounced:
            return
        if not (bridge.config.emit_ready and bridge.publish):
            self.unannounced = False
            return
        rows = bridge.store.not_announced()
        for row in rows:
            namespace = (bridge.runs.get(row.run_id) or {}).get("namespace") \
                or bridge.config.namespace
            bridge.publish(bridge.config.destination, StfReady(
                namespace=namespace, sender=bridge.config.sender,
                processed_by=bridge.config.sender, run_id=row.run_id, filename=row.filename,
                sequence=row.sequence, size_bytes=row.size, checksum=row.adler32,
                file_url=_url(row.pfn)))
        if rows:
            bridge.store.mark_announced(rows)
        self.unannounced = len(rows) >= 1000

    # --- end_run: close once every announced STF is attached ------------------------------
    def close_runs(self) -> None:
        bridge = self.bridge
        for run_id, row in list(bridge.runs.items()):
            if row["phase"] != PHASE_ENDING or any(r.run_id == run_id for r in bridge.pending):
                continue
            total = row["total_stf_files"]
            _, attached = bridge.store.file_counts(run_id)
            missing: list[int] = []
            waited = time.time() - row["end_seen_at"]
            if total is not None and attached < total:
                if waited < bridge.config.end_timeout_s:
                    continue  # STFs announced by end_run have not all arrived yet
                missing = _missing(bridge.store.sequences(run_id), total)
            if not self._for_run("close", run_id, lambda: self.driver(run_id).close_streams()):
                continue
            short = total - attached if total is not None else 0
            message = (f"closed after waiting {waited:.0f} s with {short} of {total} announced "
                       "STF(s) missing") if short > 0 else ""
            bridge.update_run(run_id, phase=PHASE_CLOSED, closed_at=time.time(),
                              missing=missing, message=message)
            if message:
                log.warning("run %s %s", run_id, message)
            bridge.release(("closed", run_id))

    # --- following the tasks --------------------------------------------------------------
    def follow(self) -> None:
        bridge = self.bridge
        for run_id, row in list(bridge.runs.items()):
            if row["phase"] not in FOLLOWED:
                continue
            outcome: list[bool] = []
            if not self._for_run("follow", run_id,
                                 lambda: outcome.append(self.driver(run_id).tick())):
                continue
            driver, finished = self.driver(run_id), outcome[0]
            if finished and row["phase"] == PHASE_CLOSED:
                _, attached, with_meta = bridge.store.file_counts_all(run_id)
                if with_meta < attached:  # done means its STFs' metadata is set too
                    self.metadata_due = True
                    continue
                stuck = [t.spec.key for t in driver.tasks.values()
                         if t.phase in (TaskPhase.FAILED, TaskPhase.BLOCKED)]
                bridge.update_run(run_id, phase=PHASE_FAILED if stuck else PHASE_DONE,
                                  message=f"failed or blocked: {', '.join(stuck)}" if stuck
                                  else row["message"])
                log.info("run %s %s", run_id, "failed" if stuck else "done")


@dataclass
class InFlight:
    """A catalog call running in an attach thread: what it does, and what it is about."""

    kind: str  # "attach" | "metadata"
    future: Future
    catalog: Any
    keys: set[tuple[str, str]]  # (run, filename) being attached
    rows: list[StfRow] = field(default_factory=list)  # STFs whose metadata is being set


def _catch(call, *args) -> Exception | None:
    try:
        call(*args)
    except Exception as exc:  # judged by the bridge thread (collect_attached)
        return exc
    return None


def _record(scope: str, row: StfRow, with_meta: bool) -> FileRecord:
    return FileRecord(did=f"{scope}:{row.filename}", size=row.size, adler32=row.adler32,
                      pfn=row.pfn, meta=_file_meta(row) if with_meta else {})


def _attach_batches(catalog, batches: list[tuple[str, list[StfRow]]], rse: str | None,
                    with_meta: bool) -> list[tuple[str, list[StfRow], Exception | None]]:
    """In the attach thread: each run's STFs to its dataset; per run, the error if any."""
    outcomes: list[tuple[str, list[StfRow], Exception | None]] = []
    for did, rows in batches:
        scope = did.split(":", 1)[0]
        records = [_record(scope, r, with_meta) for r in rows]
        try:
            catalog.add_files(did, records, rse=rse)
        except Exception as exc:  # judged by the bridge thread (collect_attached)
            outcomes.append((did, rows, exc))
        else:
            outcomes.append((did, rows, None))
    return outcomes


def _file_meta(row: StfRow) -> dict[str, object]:
    meta: dict[str, object] = {}
    if row.run_id.isdigit():
        meta["run_number"] = int(row.run_id)
    if row.sequence is not None:
        meta["sequence"] = row.sequence
    return meta


def _missing(seen: set[int], total: int) -> list[int]:
    first = 0 if 0 in seen else 1  # the legacy simulator counted from 0
    return sorted(set(range(first, first + total)) - seen)


def _url(pfn: str | None) -> str | None:
    if not pfn:
        return None
    from pathlib import Path

    # abspath, not resolve(): no filesystem calls per announced STF
    return pfn if "://" in pfn else Path(os.path.abspath(pfn)).as_uri()
