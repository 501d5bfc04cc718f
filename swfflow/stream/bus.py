"""The message bus: one small interface, two transports.

``open_bus(url)`` returns a :class:`Bus`:

* ``stomp://[user:pass@]host:port[?client_id=NAME&heartbeat=MS]`` — ActiveMQ over STOMP
  (:mod:`swfflow.stream.stomp_bus`): persistent sends, heart-beats, reconnect with backoff,
  receipts so nothing is lost on close, durable topic subscriptions.
* ``memory://[name]`` — an in-process broker with the same semantics (topics multicast, queues
  anycast, durable topic subscriptions keep messages while their subscriber is away, unacked
  messages are redelivered on re-subscribe). Handles opened with the same name share one broker,
  so a simulator and a bridge in one process talk to each other.

Consumers get a :class:`Delivery` and must call ``ack()`` (done) or ``nack()`` (redeliver) when
subscribed with ``ack="client-individual"`` (the default: at-least-once). A handler that raises
is nacked for it. Make handlers idempotent: redelivery means duplicates.

By default the handler settles each delivery before it returns (over STOMP, what it called by
then is what the broker gets). With ``late_ack=True`` the handler may keep the delivery and call ``ack()``/``nack()`` later, from
any thread — e.g. once the message's effect is committed elsewhere; until then the message is
unacked (redelivered after a reconnect). ``prefetch`` bounds how many unacked messages the
broker hands one subscription.
"""

from __future__ import annotations

import abc
import importlib
import itertools
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import SplitResult, parse_qs, urlsplit

from swfflow.errors import ConfigError
from swfflow.stream.messages import Envelope, Message, parse_message, to_json

log = logging.getLogger(__name__)

ACK_MODES = ("client-individual", "auto")
MAX_REDELIVERIES = 6  # ActiveMQ's default redelivery policy, then the dead-letter queue
_DESTINATION_PREFIXES = ("/topic/", "/queue/")


class Delivery:
    """One delivered message: its body, headers, and the ack/nack callbacks."""

    def __init__(self, destination: str, body: str, headers: dict[str, str], redelivered: bool,
                 ack: Callable[[], None], nack: Callable[[], None]):
        self.destination = destination
        self.body = body
        self.headers = headers
        self.redelivered = redelivered
        self._ack, self._nack = ack, nack
        self.settled = False

    def message(self) -> Message:
        """The body parsed into a typed message (raises MessageError)."""
        return parse_message(self.body)

    def ack(self) -> None:
        if not self.settled:
            self.settled = True
            self._ack()

    def nack(self) -> None:
        if not self.settled:
            self.settled = True
            self._nack()


Handler = Callable[[Delivery], None]


class Subscription(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None:
        """Stop consuming. A durable subscription keeps collecting messages for its name."""

    @abc.abstractmethod
    def forget(self) -> None:
        """Stop consuming and delete a durable subscription in the broker with what it holds
        (else a broker keeps every later message for it: benches and one-off consumers)."""


class Bus(abc.ABC):
    """publish / subscribe / close: all swfflow needs from a broker."""

    @abc.abstractmethod
    def publish(self, destination: str, message: Envelope | dict[str, Any] | str | bytes,
                *, headers: dict[str, str] | None = None) -> None: ...

    @abc.abstractmethod
    def subscribe(self, destination: str, handler: Handler, *, durable_name: str | None = None,
                  ack: str = "client-individual", late_ack: bool = False,
                  prefetch: int | None = None) -> Subscription:
        """Deliver messages of ``destination`` to ``handler`` (see the module docstring for
        ``ack``, ``late_ack`` and ``prefetch``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush what was published (confirmed by the broker) and drop every subscription."""

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def encode(message: Envelope | dict[str, Any] | str | bytes,
           headers: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Body text and headers for a message; typed messages also get selector headers."""
    out_headers = {"persistent": "true"}
    if isinstance(message, Envelope):
        body = to_json(message)
        out_headers.update(msg_type=message.msg_type, run_id=message.run_id)  # type: ignore[attr-defined]
        if message.namespace:
            out_headers["namespace"] = message.namespace
    elif isinstance(message, dict):
        body = json.dumps(message, separators=(",", ":"))
    elif isinstance(message, bytes):
        body = message.decode("utf-8")
    else:
        body = message
    out_headers.update(headers or {})
    return body, out_headers


def check_destination(destination: str) -> str:
    if not destination.startswith(_DESTINATION_PREFIXES) or len(destination) <= 7:
        raise ConfigError(
            f"bad destination {destination!r}",
            hint="destinations start with /topic/ (multicast) or /queue/ (anycast), "
                 "e.g. /topic/epictopic",
        )
    return destination


def check_ack_mode(ack: str) -> str:
    if ack not in ACK_MODES:
        raise ConfigError(f"unknown ack mode {ack!r}", hint=f"use one of {', '.join(ACK_MODES)}")
    return ack


# URL scheme → "module:opener" (imported on first use; an opener takes the split URL, its query
# and the client id): the STOMP bus imports this module, never the other way round
BUSES = {
    "memory": "swfflow.stream.bus:open_memory",
    "stomp": "swfflow.stream.stomp_bus:open_stomp",
}


def open_bus(url: str, *, client_id: str | None = None) -> Bus:
    """A bus for ``stomp://[user:pass@]host:port`` or ``memory://[name]``."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme not in BUSES:
        raise ConfigError(f"unsupported broker URL {url!r}",
                          hint="use stomp://host:port (ActiveMQ) or memory:// (in-process)")
    module, attribute = BUSES[parts.scheme].split(":")
    return getattr(importlib.import_module(module), attribute)(parts, query, client_id)


def open_memory(parts: SplitResult, query: dict[str, str], client_id: str | None) -> Bus:
    return MemoryBus(MemoryBroker.named(parts.netloc or "default"))


# --- the in-process broker -------------------------------------------------------------------

@dataclass
class _Item:
    message_id: str
    destination: str
    body: str
    headers: dict[str, str]
    deliveries: int = 0


@dataclass
class _Mailbox:
    """Messages waiting for one consumer group: a queue, a durable or a plain topic subscriber."""

    pending: deque[_Item] = field(default_factory=deque)
    attached: int = 0  # live subscriptions reading from it


class MemoryBroker:
    """Broker state shared by every :class:`MemoryBus` handle opened with the same name."""

    _registry: dict[str, MemoryBroker] = {}
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.queues: dict[str, _Mailbox] = {}
        self.durables: dict[tuple[str, str], _Mailbox] = {}
        self.topic_listeners: dict[str, list[_Mailbox]] = {}
        self.dead_letters: list[_Item] = []
        self.busy = 0
        self._ids = itertools.count(1)

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        with cls._registry_lock:
            return cls._registry.setdefault(name, cls())

    def publish(self, destination: str, body: str, headers: dict[str, str]) -> None:
        with self.condition:
            item_id = f"mem-{next(self._ids)}"
            if destination.startswith("/queue/"):
                targets = [self.queues.setdefault(destination, _Mailbox())]
            else:
                targets = list(self.topic_listeners.get(destination, []))
                targets += [box for (dest, _), box in self.durables.items()
                            if dest == destination and box.attached == 0]
            for box in targets:
                box.pending.append(_Item(item_id, destination, body, dict(headers)))
            self.condition.notify_all()

    def mailbox(self, destination: str, durable_name: str | None) -> _Mailbox:
        """The mailbox a new subscription reads from (caller holds the condition)."""
        if destination.startswith("/queue/"):
            box = self.queues.setdefault(destination, _Mailbox())
        elif durable_name:
            box = self.durables.setdefault((destination, durable_name), _Mailbox())
            if box.attached:
                raise ConfigError(f"durable subscription {durable_name!r} is already in use",
                                  hint="one live consumer per durable subscription name")
            self.topic_listeners.setdefault(destination, []).append(box)
        else:
            box = _Mailbox()
            self.topic_listeners.setdefault(destination, []).append(box)
        box.attached += 1
        return box

    def detach(self, destination: str, box: _Mailbox) -> None:
        box.attached -= 1
        listeners = self.topic_listeners.get(destination, [])
        if box in listeners:
            listeners.remove(box)

    def idle(self) -> bool:
        attached = [*self.queues.values(), *self.durables.values(),
                    *itertools.chain.from_iterable(self.topic_listeners.values())]
        return self.busy == 0 and not any(box.pending for box in attached if box.attached)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every attached subscription has handled everything sent to it."""
        with self.condition:
            return self.condition.wait_for(self.idle, timeout)


class MemoryBus(Bus):
    """A client handle on a :class:`MemoryBroker`; each subscription runs its own thread."""

    def __init__(self, broker: MemoryBroker):
        self.broker = broker
        self._subscriptions: list[_MemorySubscription] = []

    def publish(self, destination, message, *, headers=None) -> None:
        body, out_headers = encode(message, headers)
        self.broker.publish(check_destination(destination), body, out_headers)

    def subscribe(self, destination, handler, *, durable_name=None, ack="client-individual",
                  late_ack=False, prefetch=None):
        # deliveries settle through the broker's lock, from any thread: late acks need nothing
        # more here; there is no prefetch window to bound in-process
        subscription = _MemorySubscription(self.broker, check_destination(destination), handler,
                                           durable_name, check_ack_mode(ack))
        self._subscriptions.append(subscription)
        return subscription

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.broker.wait_idle(timeout)

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()


class _MemorySubscription(Subscription):
    def __init__(self, broker: MemoryBroker, destination: str, handler: Handler,
                 durable_name: str | None, ack: str):
        self.broker, self.destination, self.handler, self.ack_mode = broker, destination, handler, ack
        self.unacked: dict[str, _Item] = {}
        self.closed = False
        with broker.condition:
            self.box = broker.mailbox(destination, durable_name)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"memory-bus {destination}")
        self.thread.start()

    def _run(self) -> None:
        condition = self.broker.condition
        while True:
            with condition:
                condition.wait_for(lambda: self.closed or self.box.pending)
                if self.closed:
                    return
                item = self.box.pending.popleft()
                item.deliveries += 1
                if self.ack_mode == "client-individual":
                    self.unacked[item.message_id] = item
                self.broker.busy += 1
            delivery = Delivery(item.destination, item.body,
                                {**item.headers, "message-id": item.message_id},
                                item.deliveries > 1,
                                ack=lambda item=item: self._settle(item, requeue=False),
                                nack=lambda item=item: self._settle(item, requeue=True))
            try:
                self.handler(delivery)
            except Exception:
                log.exception("handler failed for message %s on %s; nacking it",
                              item.message_id, item.destination)
                delivery.nack()
            finally:
                with condition:
                    self.broker.busy -= 1
                    condition.notify_all()

    def _settle(self, item: _Item, *, requeue: bool) -> None:
        with self.broker.condition:
            if self.unacked.pop(item.message_id, None) is None or not requeue:
                return
            if item.deliveries > MAX_REDELIVERIES:
                self.broker.dead_letters.append(item)
            else:
                self.box.pending.appendleft(item)
            self.broker.condition.notify_all()

    def close(self) -> None:
        with self.broker.condition:
            if self.closed:
                return
            self.closed = True
            # dispatched but unacked messages go back for the next subscriber of this mailbox
            for item in sorted(self.unacked.values(), key=lambda i: int(i.message_id[4:]),
                               reverse=True):
                self.box.pending.appendleft(item)
            self.unacked.clear()
            self.broker.detach(self.destination, self.box)
            self.broker.condition.notify_all()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def forget(self) -> None:
        self.close()
        with self.broker.condition:
            for key in [k for k, box in self.broker.durables.items() if box is self.box]:
                del self.broker.durables[key]
