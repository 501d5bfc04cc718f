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
from pathlib import Path
from typing import TYPE_CHECKING

from swfflow.backends.base import CommandRefused
from swfflow.drive.driver import FINAL, Driver, TaskPhase
from swfflow.stream.bridge.backoff import is_permanent
from swfflow.stream.bridge.lanes import AttachLanes
from swfflow.stream.messages import StfReady
from swfflow.stream.store import (HOLD_PAUSED, PHASE_ANNOUNCED, PHASE_CLOSED, PHASE_DONE,
                                  PHASE_ENDING, PHASE_FAILED, PHASE_PREPARED, StfRow)

if TYPE_CHECKING:
    from swfflow.stream.bridge.core import Bridge

log = logging.getLogger("swfflow.bridge")
FOLLOWED = (PHASE_PREPARED, PHASE_ENDING, PHASE_CLOSED)


class Work(AttachLanes):
    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self.last_follow = 0.0
        self.unannounced = True  # check the store for attached-but-unannounced STFs
        self.init_lanes()  # attach and metadata calls, in threads of their own (lanes.py)
        self.unpausable: set[str] = set()  # tasks whose pause the backend refused: not again

    # --- scheduling -----------------------------------------------------------------------
    def idle_wait(self) -> float:
        """How long the loop may block waiting for a message before work is due."""
        config, now = self.bridge.config, time.monotonic()
        wait = config.tick_s - (now - self.last_follow)
        # a catalog call wakes the loop when it is done (AttachLanes._wake); the batch timer
        # counts only while a slot is free to take the batch
        if self.bridge.pending and len(self.in_flight) < self._slots():
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
        self.stop_lanes()

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


def _missing(seen: set[int], total: int) -> list[int]:
    first = 0 if 0 in seen else 1  # the legacy simulator counted from 0
    return sorted(set(range(first, first + total)) - seen)


def _url(pfn: str | None) -> str | None:
    if not pfn:
        return None
    # abspath, not resolve(): no filesystem calls per announced STF
    return pfn if "://" in pfn else Path(os.path.abspath(pfn)).as_uri()
