"""The deliveries the bridge holds: each waits on the effect its message asked for (a key such
as ``("file", run, name)`` or ``("closed", run)``), is acked once that effect is committed, and
goes to the dead letters, acked, when it can never be. The one place a delivery is settled."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

from swfflow.stream.bus import MAX_REDELIVERIES, Delivery
from swfflow.stream.store import BridgeStore

log = logging.getLogger("swfflow.bridge")
Key = tuple[str, ...]
# a message whose handling failed this often (every delivery a bus gives it) is a dead letter
HANDLING_ATTEMPTS = MAX_REDELIVERIES + 1
MAX_TRACKED_FAILURES = 10_000  # bounds the memory of messages that failed once
# whose effect is keyed by their br_files row (run, file name), not by their message id
KEYED_BY_FILE = frozenset({"stf_gen"})


@dataclass
class Waiter:
    delivery: Delivery
    msg_id: str
    msg_type: str
    run_id: str | None


class Acks:
    def __init__(self, store: BridgeStore, counters: Counter[str]):
        self.store, self.counters = store, counters
        self.waiters: dict[Key, list[Waiter]] = defaultdict(list)
        self.failures: Counter[str] = Counter()  # body digest → handling failures so far

    def waiting(self) -> bool:
        """Some delivery still waits for its effect."""
        return any(self.waiters.values())

    def wait_for(self, key: Key, waiter: Waiter) -> None:
        self.waiters[key].append(waiter)

    def forget(self, waiter: Waiter) -> None:
        """Not waiting after all (its handling failed half-way: it is nacked)."""
        for waiters in self.waiters.values():
            if waiter in waiters:
                waiters.remove(waiter)

    def done(self, waiter: Waiter) -> None:
        """The effect of this message is already in the store: mark it and ack."""
        if waiter.msg_type not in KEYED_BY_FILE:
            self.store.mark_processed([(waiter.msg_id, waiter.msg_type, waiter.run_id)])
        waiter.delivery.ack()

    def release(self, *keys: Key) -> None:
        """The effects ``keys`` are committed: every message waiting on them is done (one
        transaction for all of them, then the acks)."""
        waiting = [w for key in keys for w in self.waiters.pop(key, [])]
        self.store.mark_processed([(w.msg_id, w.msg_type, w.run_id) for w in waiting
                                   if w.msg_type not in KEYED_BY_FILE])
        for waiter in waiting:
            waiter.delivery.ack()

    def nack(self, key: Key) -> None:
        """The effect ``key`` was not recorded: its messages come again."""
        for waiter in self.waiters.pop(key, []):
            waiter.delivery.nack()

    def dead(self, delivery: Delivery, reason: str, msg_type: str | None,
             run_id: str | None) -> None:
        """This message can never be processed: to the dead letters with the reason, acked."""
        self.store.dead_letter(delivery.body, reason, msg_type, run_id)
        self.counters["dead_letters"] += 1
        log.warning("dead letter (%s run %s): %s", msg_type, run_id, reason.splitlines()[0])
        delivery.ack()

    def retry(self, delivery: Delivery, reason: str, msg_type: str | None = None,
              run_id: str | None = None) -> None:
        """Handling failed unexpectedly (the store unreachable, a bug): nacked, so it comes
        again — until it failed on every delivery a bus gives a message. Then it is a dead
        letter with the reason, in our table where ``swfflow status`` shows it, instead of the
        broker's DLQ: one message that always fails never stops the others (issue 15)."""
        digest = hashlib.sha256(delivery.body.encode("utf-8", "surrogatepass")).hexdigest()
        if len(self.failures) >= MAX_TRACKED_FAILURES:
            self.failures.clear()
        self.failures[digest] += 1
        if self.failures[digest] < HANDLING_ATTEMPTS:
            delivery.nack()
            return
        del self.failures[digest]
        try:
            self.dead(delivery, f"handling failed {HANDLING_ATTEMPTS} times: {reason}",
                      msg_type, run_id)
        except Exception:  # the store is down: it comes again (from the broker, or its DLQ)
            log.exception("recording a dead letter failed")
            delivery.nack()

    def dead_on(self, key: Key, reason: str) -> None:
        """Every message waiting on the effect ``key``, which will never be, is a dead letter."""
        for waiter in self.waiters.pop(key, []):
            self.dead(waiter.delivery, reason, waiter.msg_type, waiter.run_id)

    def dead_for_run(self, run_id: str, reason: str) -> None:
        """Every message waiting on an effect of the run is a dead letter (the run failed)."""
        for key in [k for k in self.waiters if k[1] == run_id]:
            self.dead_on(key, reason)
