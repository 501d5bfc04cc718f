"""The bridge loop: messages in, idempotent effects out, acks only when the effect is done.

One thread does everything (deliveries arrive in :attr:`Bridge.inbox` from a bus or a replay
file), so the store, the drivers and the executor need no locks, and per-run message order is
kept. The one exception is the catalog call attaching a batch of STFs: it runs in a thread of
its own (:mod:`.work`), so the next batch is received and recorded meanwhile; its outcome is
committed and acked by the bridge thread. Every message is handled in two halves:

1. **record** (``HANDLERS``, fast, local): the intent goes into the state store, keyed by run,
   file or message id, and the delivery waits on the effect it asked for;
2. **effect** (:mod:`.work`): reconcilers read the store and do the slow part against Rucio and
   PanDA (create datasets and submit tasks, attach STFs in batches, close the run, follow the
   tasks), each behind its own retry gate. When an effect is committed, the deliveries waiting
   on it are acked.

So a crash at any point loses nothing (unacked messages come back; recorded intents are
resumed from the store) and duplicates nothing (every record and every effect is keyed).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swfflow.backends.base import Catalog, Executor
from swfflow.drive.driver import Driver, ExpressionRunner, Prepare
from swfflow.drive.store import DriverStore
from swfflow.errors import ConfigError
from swfflow.plan.model import RUN, Plan
from swfflow.stream.bridge.backoff import Backoff
from swfflow.stream.bridge.intake import Rejected, file_facts, peek
from swfflow.stream.bus import Delivery
from swfflow.stream.messages import (EPIC_TOPIC, EndRun, Envelope, MessageError, RunImminent,
                                     StfGen, UnknownMessageType, parse_message)
from swfflow.stream.store import (HOLD_PAUSED, HOLD_RUNNING, OPEN_PHASES, PHASE_ANNOUNCED,
                                  PHASE_DONE, PHASE_ENDING, PHASE_FAILED, PHASE_PREPARED,
                                  BridgeStore, StfRow)

log = logging.getLogger("swfflow.bridge")
WAKE_UP = None  # an inbox item that only wakes the loop (Bridge.wake)
Publish = Callable[[str, Envelope], None]


@dataclass
class BridgeConfig:
    namespace: str | None = None  # only this testbed namespace (messages without one pass)
    batch_size: int = 500  # attach when this many STFs wait …
    batch_ms: float = 50.0  # … or when the oldest has waited this long
    attach_parallel: int = 2  # attach calls at once (catalogs with a client per thread)
    # register STFs without their run/sequence metadata and set it once nothing waits to be
    # attached: per-file metadata is Rucio's slow path (about 4x an attach, measured)
    defer_metadata: bool = True
    metadata_batch: int = 200  # STFs per metadata call (bounds how long it holds a slot)
    tick_s: float = 1.0  # follow the runs' tasks this often
    end_timeout_s: float = 120.0  # after end_run, wait this long for announced-but-missing STFs
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    destination: str = EPIC_TOPIC  # where stf_ready goes
    sender: str = "swfflow-bridge"
    emit_ready: bool = True
    rse: str | None = None  # where STF replicas are registered (catalog default if None)


@dataclass
class Waiter:
    delivery: Delivery
    msg_id: str
    msg_type: str
    run_id: str | None


class Bridge:
    def __init__(self, template: Plan, catalog: Catalog, executor: Executor, engine: Any, *,
                 config: BridgeConfig | None = None, publish: Publish | None = None,
                 prepare: Prepare | None = None, run_expression: ExpressionRunner | None = None,
                 attach_catalog: Catalog | None = None):
        streams = [d for d in template.datasets if d.role == "stream"]
        if len(streams) != 1:
            raise ConfigError(
                f"workflow {template.workflow} has {len(streams)} stream inputs; the bridge "
                "attaches a run's STFs to exactly one",
                where=template.source, hint="mark one File[] input with swf:stream: true")
        self.template, self.stream_template = template, streams[0].did
        self.catalog, self.executor = catalog, executor
        # STFs are attached from a thread of their own: a catalog client of its own there
        # (None: the same one, for catalogs that are thread-safe)
        self.attach_catalog: Catalog | None = attach_catalog
        self.config = config or BridgeConfig()
        self.publish, self.prepare, self.run_expression = publish, prepare, run_expression
        self.store, self.driver_store = BridgeStore(engine), DriverStore(engine)
        self.inbox: queue.Queue[Delivery | None] = queue.Queue()
        self.waiters: dict[tuple[str, ...], list[Waiter]] = defaultdict(list)
        self.runs: dict[str, dict[str, Any]] = {}  # open runs (store rows, kept in sync)
        # the profile's bridge.pause_tasks_on_pause (absent in plans compiled before it)
        self.pause_tasks = bool((template.profile.get("bridge") or {})
                                .get("pause_tasks_on_pause", False))
        self.holds: dict[str, dict[str, Any]] = {}  # br_holds rows still to act on
        self.drivers: dict[str, Driver] = {}
        self.pending: list[StfRow] = []  # recorded, not attached
        # STFs received in the current drain, recorded together (one commit) at its end
        self.unrecorded: dict[tuple[str, str], StfRow] = {}
        self.counters: Counter[str] = Counter()
        self.last_error = ""  # the last unexpected error while handling a message
        self.source_done = threading.Event()
        self.stop_event = threading.Event()
        gate = lambda name: Backoff(name, self.config.retry_initial_s, self.config.retry_max_s)
        self.gates = {name: gate(name) for name in
                      ("prepare", "attach", "metadata", "close", "follow", "announce", "hold")}
        from swfflow.stream.bridge.work import Work

        self.work = Work(self)

    # --- the loop -------------------------------------------------------------------------
    def resume(self) -> None:
        """Load every open run and every recorded-but-unattached STF from the store."""
        for row in self.store.runs(OPEN_PHASES):
            self.runs[row["run_id"]] = row
        self.pending = self.store.unattached(list(self.runs))
        self.holds = {h["run_id"]: h for h in self.store.holds_to_keep(list(self.runs))}
        if self.runs:
            log.info("resuming %d open run(s) %s with %d STF(s) to attach", len(self.runs),
                     ", ".join(self.runs), len(self.pending))

    def run(self, until: Callable[[Bridge], bool] | None = None) -> None:
        """Handle deliveries and do the work until ``stop()`` or ``until(self)`` is true."""
        self.resume()
        while not self.stop_event.is_set():
            self._drain(timeout=self.work.idle_wait())
            self.work.step()
            if until is not None and until(self):
                break
        self.work.flush_now()  # its catalog threads are joined: no wake-up comes after it
        with self.inbox.mutex:  # leave only deliveries behind, not wake-ups
            kept = [item for item in self.inbox.queue if item is not WAKE_UP]
            self.inbox.queue.clear()
            self.inbox.queue.extend(kept)

    def stop(self) -> None:
        self.stop_event.set()
        self.wake()

    def wake(self) -> None:
        """Wake the loop now (from any thread): an empty item in the inbox, which the loop
        takes and skips; a catalog call does it when it is done."""
        self.inbox.put(WAKE_UP)

    def _drain(self, timeout: float) -> None:
        """Handle what is in the inbox (waiting up to ``timeout`` for the first one), at most
        one batch, so a flood never starves the work. A delivery taken out of the inbox is
        always handled: one taken and dropped would stay unacked in the broker, unseen until
        the next reconnect (issue 6: every 501st STF of a flood went missing that way)."""
        try:
            delivery = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        try:
            limit = max(1, self.config.batch_size)
            for taken in range(1, limit + 1):
                if delivery is not WAKE_UP:
                    self.handle(delivery)
                if taken == limit:
                    return
                try:
                    delivery = self.inbox.get_nowait()
                except queue.Empty:
                    return
        finally:
            self.record_files()

    def record_files(self) -> None:
        """Commit the STFs received in this drain, all in one transaction: one commit (one
        fsync) per drain instead of one per message is most of the flood rate. Nothing was
        acked for them yet; if the commit fails, their messages are nacked and come again."""
        rows = list(self.unrecorded.values())
        self.unrecorded.clear()
        if not rows:
            return
        try:
            known = self.store.files((r.run_id, r.filename) for r in rows)
            self.pending.extend(self.store.add_files([r for r in rows
                                                      if (r.run_id, r.filename) not in known]))
        except Exception as exc:  # the store unreachable or locked: never lost, never silent
            self.counters["errors"] += 1
            self.last_error = f"recording {len(rows)} STF(s): " \
                f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.exception("recording %d STF(s) failed; their messages will be redelivered",
                          len(rows))
            for row in rows:
                for waiter in self.waiters.pop(("file", row.run_id, row.filename), []):
                    waiter.delivery.nack()
            return
        # redeliveries: acked now if attached already, else when their pending row is
        self.counters["duplicates"] += len(known)
        self.release(*(("file", *key) for key, row in known.items()
                       if row.attached_at is not None))

    @property
    def idle(self) -> bool:
        """Nothing received is still waiting for its effect."""
        return (not self.deliveries_waiting() and not self.pending
                and not self.unrecorded and not any(self.waiters.values()))

    def deliveries_waiting(self) -> bool:
        """Anything in the inbox but wake-ups (:meth:`wake`)."""
        with self.inbox.mutex:
            return any(item is not WAKE_UP for item in self.inbox.queue)

    def open_runs(self) -> list[str]:
        return list(self.runs)

    # --- record: one handler per message type ---------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        self.counters["received"] += 1
        try:
            message = parse_message(delivery.body)
        except UnknownMessageType:
            self.counters["ignored"] += 1  # other agents' traffic on the shared topic
            delivery.ack()
            return
        except MessageError as exc:
            self._dead(delivery, str(exc), *peek(delivery.body))
            return
        namespace = self.config.namespace
        if namespace and message.namespace and message.namespace != namespace:
            self.counters["other_namespace"] += 1
            delivery.ack()
            return
        if message.msg_type in NO_EFFECT:  # nothing to record: no store round trip
            self.counters["no_effect"] += 1
            delivery.ack()
            return
        if message.msg_type not in KEYED_BY_FILE and self.store.processed(message.msg_id):
            self.counters["duplicates"] += 1
            delivery.ack()
            return
        waiter = Waiter(delivery, message.msg_id, message.msg_type, message.run_id)
        try:
            HANDLERS[message.msg_type](self, message, waiter)
        except Rejected as exc:
            self._dead(delivery, str(exc), message.msg_type, message.run_id)
        except Exception as exc:  # the store unreachable, a bug: never lost, never silent
            self.counters["errors"] += 1
            self.last_error = f"{message.msg_type} run {message.run_id}: " \
                f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.exception("handling %s of run %s failed; it will be redelivered",
                          message.msg_type, message.run_id)
            for waiters in self.waiters.values():  # not half-registered
                if waiter in waiters:
                    waiters.remove(waiter)
            delivery.nack()

    def _dead(self, delivery: Delivery, reason: str, msg_type: str | None,
              run_id: str | None) -> None:
        self.store.dead_letter(delivery.body, reason, msg_type, run_id)
        self.counters["dead_letters"] += 1
        log.warning("dead letter (%s run %s): %s", msg_type, run_id, reason.splitlines()[0])
        delivery.ack()

    def done(self, waiter: Waiter) -> None:
        """The effect of this message is already in the store: mark it and ack."""
        if waiter.msg_type not in KEYED_BY_FILE:
            self.store.mark_processed([(waiter.msg_id, waiter.msg_type, waiter.run_id)])
        waiter.delivery.ack()

    def wait_for(self, key: tuple[str, ...], waiter: Waiter) -> None:
        self.waiters[key].append(waiter)

    def release(self, *keys: tuple[str, ...]) -> None:
        """The effects ``keys`` are committed: every message waiting on them is done (one
        transaction for all of them, then the acks)."""
        waiting = [w for key in keys for w in self.waiters.pop(key, [])]
        self.store.mark_processed([(w.msg_id, w.msg_type, w.run_id) for w in waiting
                                   if w.msg_type not in KEYED_BY_FILE])
        for waiter in waiting:
            waiter.delivery.ack()

    def known_run(self, run_id: str) -> dict[str, Any]:
        row = self.runs.get(run_id) or self.store.run(run_id)
        if row is None:
            raise Rejected(f"unknown run {run_id}: no run_imminent was received for it")
        return row

    def update_run(self, run_id: str, **values: Any) -> None:
        self.store.update_run(run_id, **values)
        if run_id in self.runs:
            self.runs[run_id].update(values)
            if values.get("phase") in (PHASE_DONE, PHASE_FAILED):
                del self.runs[run_id]
                self.drivers.pop(run_id, None)

    def on_run_imminent(self, message: RunImminent, waiter: Waiter) -> None:
        run_id = message.run_id
        did = self.stream_template.replace(RUN, run_id)
        if self.store.add_run(run_id, did, namespace=message.namespace,
                              daq_state=message.state, daq_substate=message.substate,
                              container=message.container):
            self.runs[run_id] = self.store.run(run_id)
            log.info("run %s announced: stream dataset %s", run_id, did)
        row = self.known_run(run_id)
        if row["phase"] == PHASE_ANNOUNCED:
            self.wait_for(("prepared", run_id), waiter)
        else:
            self.done(waiter)

    def on_daq_state(self, message: Envelope, waiter: Waiter) -> None:
        self.known_run(message.run_id)
        self.update_run(message.run_id, daq_state=getattr(message, "state", None),
                        daq_substate=getattr(message, "substate", None))
        self.done(waiter)

    def on_pause_or_resume(self, message: Envelope, waiter: Waiter) -> None:
        """The DAQ state is recorded; with ``pause_tasks_on_pause`` the run's tasks are paused
        (resumed) by the ``hold`` reconciler, and the message is acked once they are."""
        run = self.known_run(message.run_id)
        self.update_run(message.run_id, daq_state=getattr(message, "state", None),
                        daq_substate=getattr(message, "substate", None))
        if not self.pause_tasks or run["phase"] not in OPEN_PHASES:
            self.done(waiter)
            return
        wanted = HOLD_PAUSED if message.msg_type == "pause_run" else HOLD_RUNNING
        hold = self.store.want_hold(message.run_id, wanted)
        if hold["applied_at"] is not None:  # already so (a redelivery)
            self.done(waiter)
            return
        self.holds[message.run_id] = hold
        self.wait_for(("hold", message.run_id), waiter)

    def on_stf_gen(self, message: StfGen, waiter: Waiter) -> None:
        run = self.known_run(message.run_id)
        key = (message.run_id, message.filename)
        if key in self.unrecorded:  # a duplicate within this drain
            self.wait_for(("file", *key), waiter)
            return
        if run["phase"] not in OPEN_PHASES or run["closed_at"] is not None:
            if self.store.file(*key) is not None:  # attached before the close: a redelivery
                self.counters["duplicates"] += 1
                self.done(waiter)
                return
            raise Rejected(f"run {message.run_id} is already closed; STF {message.filename} "
                           "arrived too late to be attached")
        # whether it is known already (a redelivery) is looked up for the whole drain at once
        size, checksum, pfn = file_facts(message, run.get("container"))
        row = StfRow(run_id=message.run_id, filename=message.filename,
                     sequence=message.sequence, size=size, adler32=checksum, pfn=pfn,
                     msg_id=message.msg_id, gen_at=time.time(), attached_at=None,
                     ready_sent=False)
        self.unrecorded[key] = row  # committed with the rest of this drain (record_files)
        self.wait_for(("file", *key), waiter)

    def on_end_run(self, message: EndRun, waiter: Waiter) -> None:
        run = self.known_run(message.run_id)
        if run["phase"] not in OPEN_PHASES or run["closed_at"] is not None:
            self.done(waiter)
            return
        values: dict[str, Any] = {}
        if message.total_stf_files is not None:
            values["total_stf_files"] = message.total_stf_files
        if run["end_seen_at"] is None:
            values["end_seen_at"] = time.time()
        if run["phase"] == PHASE_PREPARED:
            values["phase"] = PHASE_ENDING
        if values:
            self.update_run(message.run_id, **values)
        self.wait_for(("closed", message.run_id), waiter)

HANDLERS: dict[str, Callable[[Bridge, Any, Waiter], None]] = {
    "run_imminent": Bridge.on_run_imminent,
    "start_run": Bridge.on_daq_state,
    "pause_run": Bridge.on_pause_or_resume,
    "resume_run": Bridge.on_pause_or_resume,
    "stf_gen": Bridge.on_stf_gen,
    "end_run": Bridge.on_end_run,
}
# what we (or a data agent) announced: nothing to do, acked at once (our own stf_ready come
# back on the shared topic, one per STF: recording them would double the flood's commits)
NO_EFFECT = frozenset({"stf_ready"})
# whose effect is keyed by their br_files row (run, file name), not by their message id
KEYED_BY_FILE = frozenset({"stf_gen"})
