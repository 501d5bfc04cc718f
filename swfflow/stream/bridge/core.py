"""The bridge loop: messages in, idempotent effects out, acks only when the effect is done.

One thread handles every message (deliveries arrive in :attr:`Bridge.inbox` from a bus or a
replay file), so per-run message order is kept. Two things run beside it: the catalog call
attaching a batch of STFs runs in a thread of its own (:mod:`.work`), so the next batch is
received and recorded meanwhile (its outcome is committed and acked by the bridge thread);
and each run's tasks are driven by the one engine of ``swfflow run`` and ``submit``
(:class:`~swfflow.drive.flow_run.FlowRun`), which walks the run's flow in threads of its own
and is followed from the loop (:meth:`~swfflow.drive.flow_run.FlowRun.tick`). Every message is handled in two halves:

1. **record** (``HANDLERS``, fast, local): the intent goes into the state store, keyed by run,
   file or message id, and the delivery waits on the effect it asked for;
2. **effect** (:mod:`.work`): reconcilers read the store and do the slow part against Rucio and
   PanDA (create datasets and submit tasks, attach STFs in batches, close the run, follow the
   tasks), each behind its own retry gate. When an effect is committed, the deliveries waiting
   on it are acked.

The loop owns its collaborators and hands each what it needs when it makes it: the open runs
(:class:`~.runs.OpenRuns`), the held deliveries (:class:`~.acks.Acks`) and the reconcilers
(:class:`~.work.Work`, whose catalog calls run in :class:`~.lanes.AttachLanes`); none of them
holds a reference back to the loop.

So a crash at any point loses nothing (unacked messages come back; recorded intents are
resumed from the store) and duplicates nothing (every record and every effect is keyed).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from dataclasses import replace

from swfflow.assemble import Backends
from swfflow.backends.base import Catalog
from swfflow.drive.flow_run import FlowRun
from swfflow.drive.instances import source_path_of
from swfflow.drive.store import DriverStore
from swfflow.errors import ConfigError
from swfflow.plan.model import RUN, Plan
from swfflow.stream.bridge import logsafe
from swfflow.stream.bridge.acks import KEYED_BY_FILE, Acks, Waiter
from swfflow.stream.bridge.backoff import Backoff, is_permanent
from swfflow.stream.bridge.config import BridgeConfig
from swfflow.stream.bridge.intake import Rejected, file_facts, peek
from swfflow.stream.bridge.placement import Placement
from swfflow.stream.bridge.runs import OpenRuns
from swfflow.stream.bridge.work import Work
from swfflow.stream.bus import Delivery
from swfflow.stream.messages import (EndRun, Envelope, RunImminent, StfGen,
                                     UnknownMessageType, parse_message)
from swfflow.stream.store import (HOLD_PAUSED, HOLD_RUNNING, OPEN_PHASES, PHASE_ANNOUNCED,
                                  PHASE_ENDING, PHASE_PREPARED, BridgeStore, StfRow)

__all__ = ["Bridge", "BridgeConfig", "HANDLERS", "Rejected", "Waiter"]

log = logging.getLogger("swfflow.bridge")
logsafe.install(log)  # messages may carry anything: log lines stay printable
WAKE_UP = None  # an inbox item that only wakes the loop (Bridge.wake)
Publish = Callable[[str, Envelope], None]


class Bridge:
    def __init__(self, template: Plan, backends: Backends, engine: Any, *,
                 config: BridgeConfig | None = None, publish: Publish | None = None):
        streams = [d for d in template.datasets if d.role == "stream"]
        if len(streams) != 1:
            raise ConfigError(
                f"workflow {template.workflow} has {len(streams)} stream inputs; the bridge "
                "attaches a run's STFs to exactly one",
                where=template.source, hint="mark one File[] input with swf:stream: true")
        self.template, self.stream_template = template, streams[0].did
        self.backends = backends
        self.catalog, self.executor = backends.catalog, backends.executor
        # STFs are attached from a thread of their own: a catalog client of its own there
        # (None: the same one, for catalogs that are thread-safe)
        self.attach_catalog: Catalog | None = backends.attach_catalog
        self.config = config or BridgeConfig()
        self.publish = publish
        self.store, self.driver_store = BridgeStore(engine), DriverStore(engine)
        self.inbox: queue.Queue[Delivery | None] = queue.Queue()
        # the profile's bridge.pause_tasks_on_pause (absent in plans compiled before it)
        self.pause_tasks = bool((template.profile.get("bridge") or {})
                                .get("pause_tasks_on_pause", False))
        # STFs received in the current drain, recorded together (one commit) at its end
        self.unrecorded: dict[tuple[str, str], StfRow] = {}
        self.counters: Counter[str] = Counter()
        self.last_error = ""  # the last unexpected error while handling a message
        self.source_done = threading.Event()
        self.stop_event = threading.Event()
        self.fenced = False  # lost the bridge lock: another bridge may be active (leader.py)
        gate = lambda name: Backoff(name, self.config.retry_initial_s, self.config.retry_max_s)
        self.gates = {name: gate(name) for name in
                      ("prepare", "attach", "metadata", "close", "follow", "announce", "hold")}
        # issue 15: which site's queue each run's tasks go to
        self.placement = Placement(engine, template.profile, self.config.sites_down)
        self.open = OpenRuns(self.store, self.new_flow)
        self.acks = Acks(self.store, self.counters)
        self.work = Work(self.open, self.acks, self.store, self.config, self.gates,
                         self.counters, executor=lambda: self.executor,
                         catalog=self.attach_catalog_now,
                         wake=self.wake, publish=publish)

    # --- what the collaborators are given ---------------------------------------------------
    def new_flow(self, run_id: str) -> FlowRun:
        """The run's instance of the plan, on the one engine (:meth:`OpenRuns.flow` starts
        it), its tasks on the queue of the site the placement policy chose for the run. A task
        that cannot be submitted because PanDA is down is tried again, with the bridge's
        backoff, until it can: processing catches up, archiving never waits."""
        plan = self.placement.place(self.template.instantiate(run_id), run_id)
        # the backends as the loop holds them now (tests swap in wrappers)
        backends = replace(self.backends, executor=self.executor, catalog=self.catalog)
        return backends.flow_run(plan, self.driver_store,
                                 source_path=source_path_of(self.template),
                                 submit_errors=self._submit_again_after)

    def _submit_again_after(self, exc: Exception) -> float | None:
        return None if is_permanent(exc) else self.config.retry_max_s / 4

    def attach_catalog_now(self) -> Catalog:
        """The catalog the attach threads start from (read when they start)."""
        return self.attach_catalog or self.catalog

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """The open runs (store rows, kept in sync)."""
        return self.open.rows

    @property
    def pending(self) -> list[StfRow]:
        """STFs recorded and not attached yet."""
        return self.open.pending

    @property
    def waiters(self) -> dict[tuple[str, ...], list[Waiter]]:
        return self.acks.waiters

    # --- the loop -------------------------------------------------------------------------
    def run(self, until: Callable[[Bridge], bool] | None = None) -> None:
        """Handle deliveries and do the work until ``stop()`` or ``until(self)`` is true."""
        self.open.resume()
        while not self.stop_event.is_set():
            self._drain(timeout=self.work.idle_wait())
            self.work.step()
            if until is not None and until(self):
                break
        if not self.fenced:  # a fenced bridge leaves the rest to the active one
            self.work.flush_now()  # its catalog threads are joined: no wake-up after it
        with self.inbox.mutex:  # leave only deliveries behind, not wake-ups
            kept = [item for item in self.inbox.queue if item is not WAKE_UP]
            self.inbox.queue.clear()
            self.inbox.queue.extend(kept)

    def stop(self) -> None:
        self.stop_event.set()
        self.wake()

    def fence(self) -> None:
        """Stop at once, without finishing pending work: this bridge lost the bridge lock,
        and another one may be active already (from any thread)."""
        self.fenced = True
        self.stop()

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
            self.open.pending.extend(self.store.add_files(
                [r for r in rows if (r.run_id, r.filename) not in known]))
        except Exception as exc:  # the store unreachable or locked: never lost, never silent
            self.counters["errors"] += 1
            self.last_error = f"recording {len(rows)} STF(s): " \
                f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.exception("recording %d STF(s) failed; their messages will be redelivered",
                          len(rows))
            for row in rows:
                self.acks.nack(("file", row.run_id, row.filename))
            return
        # redeliveries: acked now if attached already, else when their pending row is
        self.counters["duplicates"] += len(known)
        self.acks.release(*(("file", *key) for key, row in known.items()
                            if row.attached_at is not None))

    @property
    def idle(self) -> bool:
        """Nothing received is still waiting for its effect."""
        return (not self.deliveries_waiting() and not self.open.pending
                and not self.unrecorded and not self.acks.waiting())

    def deliveries_waiting(self) -> bool:
        """Anything in the inbox but wake-ups (:meth:`wake`)."""
        with self.inbox.mutex:
            return any(item is not WAKE_UP for item in self.inbox.queue)

    def open_runs(self) -> list[str]:
        return list(self.runs)

    # --- record: one handler per message type ---------------------------------------------
    def handle(self, delivery: Delivery) -> None:
        # issue 15: nothing a message does stops the loop (poison messages)
        try:
            self._handle(delivery)
        except Exception as exc:  # noqa: BLE001 - the store unreachable while deciding, a bug
            self._failed(delivery, exc, *peek(delivery.body))

    def _failed(self, delivery: Delivery, exc: Exception, msg_type, run_id) -> None:
        self.counters["errors"] += 1
        self.last_error = f"{msg_type} run {run_id}: {type(exc).__name__}: {exc}".splitlines()[0]
        log.exception("handling %s of run %s failed; it will be redelivered", msg_type, run_id)
        self.acks.retry(delivery, self.last_error, msg_type, run_id)

    def _handle(self, delivery: Delivery) -> None:
        self.counters["received"] += 1
        try:
            message = parse_message(delivery.body)
        except UnknownMessageType:
            self.counters["ignored"] += 1  # other agents' traffic on the shared topic
            delivery.ack()
            return
        except Exception as exc:  # noqa: BLE001 - a MessageError: parse_message raises no other
            self.acks.dead(delivery, str(exc), *peek(delivery.body))
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
            self.acks.dead(delivery, str(exc), message.msg_type, message.run_id)
        except Exception as exc:  # the store unreachable, a bug: never lost, never silent
            self.acks.forget(waiter)  # not half-registered
            self._failed(delivery, exc, message.msg_type, message.run_id)

    def on_run_imminent(self, message: RunImminent, waiter: Waiter) -> None:
        run_id = message.run_id
        did = self.stream_template.replace(RUN, run_id)
        if self.store.add_run(run_id, did, namespace=message.namespace,
                              daq_state=message.state, daq_substate=message.substate,
                              container=message.container):
            self.open.rows[run_id] = self.store.run(run_id)
            log.info("run %s announced: stream dataset %s", run_id, did)
        row = self.open.known(run_id)
        if row["phase"] == PHASE_ANNOUNCED:
            self.acks.wait_for(("prepared", run_id), waiter)
        else:
            self.acks.done(waiter)

    def on_daq_state(self, message: Envelope, waiter: Waiter) -> None:
        self.open.known(message.run_id)
        self.open.update(message.run_id, daq_state=getattr(message, "state", None),
                        daq_substate=getattr(message, "substate", None))
        self.acks.done(waiter)

    def on_pause_or_resume(self, message: Envelope, waiter: Waiter) -> None:
        """The DAQ state is recorded; with ``pause_tasks_on_pause`` the run's tasks are paused
        (resumed) by the ``hold`` reconciler, and the message is acked once they are."""
        run = self.open.known(message.run_id)
        self.open.update(message.run_id, daq_state=getattr(message, "state", None),
                        daq_substate=getattr(message, "substate", None))
        if not self.pause_tasks or run["phase"] not in OPEN_PHASES:
            self.acks.done(waiter)
            return
        wanted = HOLD_PAUSED if message.msg_type == "pause_run" else HOLD_RUNNING
        hold = self.store.want_hold(message.run_id, wanted)
        if hold["applied_at"] is not None:  # already so (a redelivery)
            self.acks.done(waiter)
            return
        self.open.holds[message.run_id] = hold
        self.acks.wait_for(("hold", message.run_id), waiter)

    def on_stf_gen(self, message: StfGen, waiter: Waiter) -> None:
        run = self.open.known(message.run_id)
        key = (message.run_id, message.filename)
        if key in self.unrecorded:  # a duplicate within this drain
            self.acks.wait_for(("file", *key), waiter)
            return
        if run["phase"] not in OPEN_PHASES or run["closed_at"] is not None:
            if self.store.file(*key) is not None:  # attached before the close: a redelivery
                self.counters["duplicates"] += 1
                self.acks.done(waiter)
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
        self.acks.wait_for(("file", *key), waiter)

    def on_end_run(self, message: EndRun, waiter: Waiter) -> None:
        run = self.open.known(message.run_id)
        if run["phase"] not in OPEN_PHASES or run["closed_at"] is not None:
            self.acks.done(waiter)
            return
        values: dict[str, Any] = {}
        if message.total_stf_files is not None:
            values["total_stf_files"] = message.total_stf_files
        if run["end_seen_at"] is None:
            values["end_seen_at"] = time.time()
        if run["phase"] == PHASE_PREPARED:
            values["phase"] = PHASE_ENDING
        if values:
            self.open.update(message.run_id, **values)
        self.acks.wait_for(("closed", message.run_id), waiter)

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
