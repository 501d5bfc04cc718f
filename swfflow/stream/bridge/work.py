"""The effect half of the bridge: reconcilers that bring Rucio and PanDA to what the store says.

Each reconciler reads the store (through :class:`~swfflow.stream.bridge.runs.OpenRuns`, the
in-memory view of open runs and pending STFs), does idempotent calls, commits the result, then
releases the deliveries waiting on it (:class:`~swfflow.stream.bridge.acks.Acks`). The catalog
calls run in :class:`~swfflow.stream.bridge.lanes.AttachLanes`. Everything is handed in when a
:class:`Work` is made: it holds no reference to the loop.
A failure (server down, timeout) leaves the store as it was; the reconciler's gate backs off
and the same work is tried again later — or by the next bridge process after a crash.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from swfflow.backends.base import Catalog, CommandRefused, Executor
from swfflow.stream.bridge.acks import Acks
from swfflow.stream.bridge.backoff import Backoff, is_permanent
from swfflow.stream.bridge.config import BridgeConfig
from swfflow.stream.bridge.lanes import AttachLanes, LaneHooks
from swfflow.stream.bridge.runs import OpenRuns
from swfflow.stream.messages import Envelope, StfReady
from swfflow.stream.store import (HOLD_PAUSED, PHASE_ANNOUNCED, PHASE_CLOSED, PHASE_DONE,
                                  PHASE_ENDING, PHASE_FAILED, PHASE_PREPARED, BridgeStore,
                                  StfRow)

log = logging.getLogger("swfflow.bridge")
FOLLOWED = (PHASE_PREPARED, PHASE_ENDING, PHASE_CLOSED)
# a run's flow has submitted what may start now once it has had nothing but waiting to do
# for this long
SUBMITTED_QUIET_S = 0.2


class Work:
    def __init__(self, runs: OpenRuns, acks: Acks, store: BridgeStore, config: BridgeConfig,
                 gates: dict[str, Backoff], counters: Counter[str], *,
                 executor: Callable[[], Executor], catalog: Callable[[], Catalog],
                 wake: Callable[[], None],
                 publish: Callable[[str, Envelope], None] | None):
        self.runs, self.acks, self.store, self.config = runs, acks, store, config
        # the backends as the loop holds them when a call is made (tests swap in wrappers)
        self.gates, self.executor, self.publish = gates, executor, publish
        self.last_follow = 0.0
        self.followed = False  # the first follow opens every open run's flow (a second or more)
        self.unannounced = True  # check the store for attached-but-unannounced STFs
        self.unpausable: set[str] = set()  # tasks whose pause the backend refused: not again
        # attach and metadata calls, in threads of their own
        self.lanes = AttachLanes(runs, acks, store, config, gates, counters, catalog=catalog,
                                 wake=wake, hooks=LaneHooks(fail_run=self.fail_run,
                                                            reject=self.reject,
                                                            attached=self._announce_due))

    def _announce_due(self) -> None:
        self.unannounced = True

    # --- scheduling -----------------------------------------------------------------------
    def idle_wait(self) -> float:
        """How long the loop may block waiting for a message before work is due."""
        config, now = self.config, time.monotonic()
        wait = config.tick_s - (now - self.last_follow)
        # a catalog call wakes the loop when it is done (AttachLanes wake); the batch timer
        # counts only while a slot is free to take the batch
        if self.runs.pending and self.lanes.free_slot():
            oldest = self.runs.pending[0].gen_at  # pending is in arrival order
            wait = min(wait, config.batch_ms / 1000 - (time.time() - oldest))
        return min(0.25, max(0.002, wait))

    def step(self) -> None:
        self._guarded("prepare", self.prepare_runs)
        if self.runs.holds:
            self._guarded("hold", self.hold_tasks)
        self.lanes.collect_attached()
        if self.gates["attach"].ready():  # its outcome (ok/fail) comes from collecting
            self.lanes.attach()
        if self.gates["metadata"].ready():
            self._guarded("metadata", self.lanes.set_metadata)
        self._guarded("announce", self.announce)
        self._guarded("close", self.close_runs)
        if time.monotonic() - self.last_follow >= self.config.tick_s and self._may_follow():
            self.last_follow, self.followed = time.monotonic(), True
            self._guarded("follow", self.follow)

    def _may_follow(self) -> bool:
        """Not before the first attach is committed: after a restart or a takeover the STFs
        the previous bridge left are attached first, processing is followed after (req 4.7:
        archiving never waits for processing)."""
        return self.followed or not any(f.kind == "attach" for f in self.lanes.in_flight)

    def flush_now(self) -> None:
        """On shutdown: attach what is pending at once (errors leave it for the next start)."""
        self.lanes.collect_attached(wait=True)
        if self.gates["attach"].ready():
            self.lanes.attach(force=True)
            self.lanes.collect_attached(wait=True)
        self._guarded("announce", self.announce)
        self.lanes.stop()

    def _guarded(self, name: str, action) -> None:
        gate = self.gates[name]
        if not gate.ready():
            return
        try:
            action()
        except Exception as exc:  # a server down, a timeout: try again later
            gate.fail(exc)
        else:
            gate.ok()

    # --- run_imminent: datasets + streaming tasks -----------------------------------------
    def prepare_runs(self) -> None:
        for run_id, row in list(self.runs.rows.items()):
            if row["phase"] != PHASE_ANNOUNCED:
                continue
            # the flow's start creates the run's datasets; its tasks are submitted as the
            # flow reaches them (the streaming ones at once: runUntilClosed)
            if not self._for_run("prepare", run_id, lambda: self.runs.flow(run_id).tick()):
                continue
            phase = PHASE_ENDING if row["end_seen_at"] is not None else PHASE_PREPARED
            self.runs.update(run_id, phase=phase)
            self.acks.release(("prepared", run_id))
            log.info("run %s prepared: datasets created, its flow started", run_id)

    # --- pause_run / resume_run: the run's tasks (profile bridge.pause_tasks_on_pause) ------
    def hold_tasks(self) -> None:
        """Pause the submitted, not-final tasks of the runs that should be paused (and any task
        submitted while they are), resume the ones the bridge paused when they should run."""
        for run_id, hold in list(self.runs.holds.items()):
            row = self.runs.rows.get(run_id)
            if row is None:  # done or failed meanwhile: nothing left to hold
                del self.runs.holds[run_id]
                self.acks.release(("hold", run_id))
                continue
            # once prepared, and the flow has submitted what may start now: a pause must
            # find the run's tasks (later ones are paused as they come)
            if row["phase"] in FOLLOWED and self.runs.flow(run_id).idle(SUBMITTED_QUIET_S):
                self._hold_run(run_id, hold)

    def _hold_run(self, run_id: str, hold: dict) -> None:
        pausing = hold["wanted"] == HOLD_PAUSED
        paused = set(hold["paused"] or ())
        if pausing:
            live = set(self.runs.flow(run_id).live_task_ids())
            targets = sorted(live - paused - self.unpausable)
            if not targets and hold["applied_at"] is not None:
                return
        else:
            targets = sorted(paused)
        act = self.executor().pause if pausing else self.executor().resume
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
        hold = self.store.applied_hold(run_id, hold["wanted"], sorted(paused),
                                       "; ".join(refused))
        if pausing:
            self.runs.holds[run_id] = hold
        else:
            del self.runs.holds[run_id]
        self.acks.release(("hold", run_id))
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
        log.error("run %s failed: %s", run_id, reason)
        self.runs.update(run_id, phase=PHASE_FAILED, message=reason)
        self.runs.drop_pending(lambda r: r.run_id != run_id)
        self.acks.dead_for_run(run_id, f"run {run_id} failed: {reason}")

    def reject(self, rows: list[StfRow], reason: str) -> None:
        """These STFs can never be attached: forgotten, their messages dead letters."""
        dropped = {(r.run_id, r.filename) for r in rows}
        for row in rows:
            self.store.drop_file(row.run_id, row.filename)
            self.acks.dead_on(("file", row.run_id, row.filename), reason)
        self.runs.drop_pending(lambda r: (r.run_id, r.filename) not in dropped)

    def announce(self) -> None:
        """stf_ready (per-file variant) for every attached STF not yet announced."""
        config = self.config
        if not self.unannounced:
            return
        if not (config.emit_ready and self.publish):
            self.unannounced = False
            return
        rows = self.store.not_announced()
        for row in rows:
            namespace = (self.runs.rows.get(row.run_id) or {}).get("namespace") \
                or config.namespace
            self.publish(config.destination, StfReady(
                namespace=namespace, sender=config.sender,
                processed_by=config.sender, run_id=row.run_id, filename=row.filename,
                sequence=row.sequence, size_bytes=row.size, checksum=row.adler32,
                file_url=_url(row.pfn)))
        if rows:
            self.store.mark_announced(rows)
        self.unannounced = len(rows) >= 1000

    # --- end_run: close once every announced STF is attached ------------------------------
    def close_runs(self) -> None:
        for run_id, row in list(self.runs.rows.items()):
            if row["phase"] != PHASE_ENDING or any(r.run_id == run_id for r in self.runs.pending):
                continue
            total = row["total_stf_files"]
            _, attached = self.store.file_counts(run_id)
            missing: list[int] = []
            waited = time.time() - row["end_seen_at"]
            if total is not None and attached < total:
                if waited < self.config.end_timeout_s:
                    continue  # STFs announced by end_run have not all arrived yet
                missing = _missing(self.store.sequences(run_id), total)
            if not self._for_run("close", run_id, lambda: self.runs.flow(run_id).close_streams()):
                continue
            short = total - attached if total is not None else 0
            message = (f"closed after waiting {waited:.0f} s with {short} of {total} announced "
                       "STF(s) missing") if short > 0 else ""
            self.runs.update(run_id, phase=PHASE_CLOSED, closed_at=time.time(),
                             missing=missing, message=message)
            if message:
                log.warning("run %s %s", run_id, message)
            self.acks.release(("closed", run_id))

    # --- following the tasks --------------------------------------------------------------
    def follow(self) -> None:
        for run_id, row in list(self.runs.rows.items()):
            if row["phase"] not in FOLLOWED:
                continue
            outcome: list[bool] = []
            if not self._for_run("follow", run_id,
                                 lambda: outcome.append(self.runs.flow(run_id).tick())):
                continue
            flow, finished = self.runs.flow(run_id), outcome[0]
            if finished and row["phase"] == PHASE_CLOSED:
                _, attached, with_meta = self.store.file_counts_all(run_id)
                if with_meta < attached:  # done means its STFs' metadata is set too
                    self.lanes.metadata_due = True
                    continue
                stuck = flow.problems()
                failed = flow.error is not None or bool(stuck)
                why = f"failed or blocked: {', '.join(stuck)}" if stuck else \
                    str(flow.error).splitlines()[0] if flow.error else row["message"]
                self.runs.update(run_id, phase=PHASE_FAILED if failed else PHASE_DONE,
                                 message=why)
                log.info("run %s %s", run_id, "failed" if failed else "done")


def _missing(seen: set[int], total: int) -> list[int]:
    first = 0 if 0 in seen else 1  # the legacy simulator counted from 0
    return sorted(set(range(first, first + total)) - seen)


def _url(pfn: str | None) -> str | None:
    if not pfn:
        return None
    # abspath, not resolve(): no filesystem calls per announced STF
    return pfn if "://" in pfn else Path(os.path.abspath(pfn)).as_uri()
