"""The catalog half of the bridge's work: attaching recorded STFs in batches, several calls
at once, and setting their run/sequence metadata afterwards (a lane of its own, because
per-file metadata is Rucio's slow path). A collaborator of
:class:`~swfflow.stream.bridge.work.Work`, given everything it touches when it is made.

Catalog calls run in threads of their own (``config.attach_parallel`` at once, each with its
own catalog client); their outcome is committed and acked by the bridge thread, which alone
touches the store and the acks.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from swfflow.backends.base import Catalog, FileRecord
from swfflow.errors import ConfigError
from swfflow.stream.bridge.acks import Acks
from swfflow.stream.bridge.backoff import Backoff, is_permanent
from swfflow.stream.bridge.butterfly import Butterfly
from swfflow.stream.bridge.config import BridgeConfig
from swfflow.stream.bridge.runs import OpenRuns
from swfflow.stream.store import PHASE_ENDING, PHASE_PREPARED, BridgeStore, StfRow

MAX_ATTACH_PER_FLUSH = 5000  # bounds one flush's latency when a backlog drains
ATTACHABLE = (PHASE_PREPARED, PHASE_ENDING)  # run phases whose STFs can be attached


@dataclass
class LaneHooks:
    """What the lanes report back to the reconcilers that own the runs."""

    fail_run: Callable[[str, str], None]  # (run, reason): the run can never complete
    reject: Callable[[list[StfRow], str], None]  # these STFs can never be attached
    attached: Callable[[], None]  # some STFs were attached: there is stf_ready to send


class AttachLanes:
    """attach / set_metadata / collect_attached, in threads of their own."""

    def __init__(self, runs: OpenRuns, acks: Acks, store: BridgeStore, config: BridgeConfig,
                 gates: dict[str, Backoff], counters: Counter[str], *,
                 catalog: Callable[[], Catalog], wake: Callable[[], None], hooks: LaneHooks):
        self.runs, self.acks, self.store, self.config = runs, acks, store, config
        self.gates, self.counters, self.hooks = gates, counters, hooks
        self.catalog = catalog  # the catalog the attach threads use (each a twin of it)
        self.wake = wake  # wakes the bridge loop (from an attach thread)
        self.attacher: ThreadPoolExecutor | None = None  # started on first use
        self.idle_catalogs: list = []
        self.in_flight: list[InFlight] = []
        self.attaching: set[tuple[str, str]] = set()  # (run, filename) of the calls in flight
        self.metadata_due = True  # look for attached STFs whose metadata is not set yet
        # the copies to the E1 sites, after the attach and never in its way (issue 15)
        self.butterfly = Butterfly(store, config, counters, catalog=catalog, wake=wake)

    def stop(self) -> None:
        if self.attacher is not None:
            self.attacher.shutdown(wait=True)
            self.attacher, self.idle_catalogs = None, []
        self.butterfly.stop()

    def attach(self, force: bool = False) -> None:
        """Start attaching the ready STFs: a batch per free slot (config.attach_parallel)."""
        config, rows = self.config, self.runs.rows
        while self.free_slot():
            ready = [r for r in self.runs.pending
                     if (r.run_id, r.filename) not in self.attaching
                     and rows.get(r.run_id, {}).get("phase") in ATTACHABLE]
            if not ready:
                return
            young = time.time() - ready[0].gen_at < config.batch_ms / 1000
            if not force and young and len(ready) < config.batch_size:
                return
            # one slot takes a batch while others are busy; alone, it takes the backlog
            limit = config.batch_size if self.in_flight or self._slots() > 1 \
                else MAX_ATTACH_PER_FLUSH
            by_run: dict[str, list[StfRow]] = defaultdict(list)
            for row in ready[:max(1, limit)]:
                by_run[row.run_id].append(row)
            batches = [(rows[run_id]["stream_did"], batch) for run_id, batch in by_run.items()]
            keys = {(r.run_id, r.filename) for rows in by_run.values() for r in rows}
            catalog = self._take_catalog()
            future = self.attacher.submit(_attach_batches, catalog, batches, config.rse,
                                          not config.defer_metadata)
            future.add_done_callback(self._done)
            self.in_flight.append(InFlight("attach", future, catalog, keys))
            self.attaching |= keys

    def set_metadata(self) -> None:
        """With defer_metadata: set the run/sequence metadata of attached STFs, a batch at a
        time in a free slot, only while nothing is waiting to be attached."""
        config = self.config
        # a full batch in flight means a backlog is draining: metadata waits till it is done
        draining = any(f.kind == "attach" and len(f.keys) >= config.batch_size
                       for f in self.in_flight)
        if not (config.defer_metadata and self.metadata_due) or draining \
                or not self.free_slot() \
                or any(f.kind == "metadata" for f in self.in_flight) \
                or any((r.run_id, r.filename) not in self.attaching for r in self.runs.pending):
            return
        rows = self.store.without_metadata(list(self.runs.rows), config.metadata_batch)
        if not rows:
            self.metadata_due = False
            return
        scopes = {run_id: row["stream_did"].split(":", 1)[0]
                  for run_id, row in self.runs.rows.items()}
        records = [_record(scopes[r.run_id], r, with_meta=True) for r in rows
                   if r.run_id in scopes]
        catalog = self._take_catalog()
        future = self.attacher.submit(_catch, catalog.set_file_metadata, records)
        future.add_done_callback(self._done)
        self.in_flight.append(InFlight("metadata", future, catalog, set(), rows))

    def _done(self, _done: Future) -> None:
        """From the attach thread: the loop collects the outcome at once (no polling while a
        call is in flight)."""
        self.wake()

    def free_slot(self) -> bool:
        """Another catalog call may start now."""
        return len(self.in_flight) < self._slots()

    def _slots(self) -> int:
        """Concurrent attach calls: several only for catalogs that give a client per thread."""
        return max(1, self.config.attach_parallel) if self.catalog().parallel_clients else 1

    def _take_catalog(self):
        if self.attacher is None:
            self.attacher = ThreadPoolExecutor(self._slots(), thread_name_prefix="bridge-attach")
            first = self.catalog()
            self.idle_catalogs = [first] + [first.for_thread() for _ in range(self._slots() - 1)]
        return self.idle_catalogs.pop()

    def collect_attached(self, wait: bool = False) -> None:
        """Commit the outcome of the attach calls that are done: per run, mark attached and
        ack, or reject, fail the run, or back off (the rows stay pending)."""
        gate, transient, collected = self.gates["attach"], None, False
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
                        self.hooks.reject(rows, f"cannot attach to {did}: {error.what}")
                    elif is_permanent(error):
                        self.hooks.fail_run(run_id, f"attach failed permanently: "
                                      f"{type(error).__name__}: {str(error).splitlines()[0]}")
                    else:
                        transient = error
                except Exception as exc:  # the store: rows stay pending, attached again
                    transient = exc
        if transient is not None:
            gate.fail(transient)
        elif collected:
            gate.ok()
        self.butterfly.step()

    def _metadata_set(self, rows: list[StfRow], error: Exception | None) -> None:
        gate = self.gates["metadata"]
        try:
            if error is None:
                self.store.mark_metadata(rows)
            elif is_permanent(error):
                for run_id in sorted({r.run_id for r in rows} & set(self.runs.rows)):
                    self.hooks.fail_run(run_id, f"setting STF metadata failed permanently: "
                                  f"{type(error).__name__}: {str(error).splitlines()[0]}")
            else:
                raise error
        except Exception as exc:  # a server or the store down: the rows are tried again
            gate.fail(exc)
        else:
            gate.ok()

    def _attached(self, run_id: str, rows: list[StfRow]) -> None:
        if run_id not in self.runs.rows:  # failed meanwhile: its messages are dead letters
            return
        self.store.mark_attached(rows, with_metadata=not self.config.defer_metadata)
        self.metadata_due = True
        done = {(r.run_id, r.filename) for r in rows}
        self.runs.drop_pending(lambda r: (r.run_id, r.filename) not in done)
        self.acks.release(*(("file", run_id, row.filename) for row in rows))
        self.counters["attached"] += len(rows)
        self.hooks.attached()
        self.butterfly.attached()


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


