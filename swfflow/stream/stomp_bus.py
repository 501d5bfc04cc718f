"""STOMP transport (ActiveMQ, stomp.py): the :class:`~swfflow.stream.bus.Bus` over a broker.

Reliability choices (``reference/activemq.md`` §4, testbed-protocol.md §9 item 10):

* every SEND is ``persistent: true``; every ``CONFIRM_EVERY``-th carries an (asynchronous)
  receipt request, and sends not yet covered by a receipt are kept and re-sent after a reconnect (at-least-once:
  consumers deduplicate by ``msg_id``);
* ``close()`` ends with DISCONNECT + receipt and waits for it, so everything published before
  is in the broker when ``close()`` returns;
* each subscription has its own connection; a durable one uses its name as ``client-id``
  (ActiveMQ keys durable topic subscriptions by client-id + ``activemq.subscriptionName``);
* lost connections are re-established with exponential backoff and subscriptions restored.
"""

from __future__ import annotations

import itertools
from collections import deque
import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable
from urllib.parse import SplitResult, unquote

import stomp
import stomp.exception

from swfflow.errors import ConfigError, ServiceError
from swfflow.stream.bus import (
    Bus,
    Delivery,
    Handler,
    MAX_REDELIVERIES,
    Subscription,
    check_ack_mode,
    check_destination,
    encode,
)

log = logging.getLogger(__name__)

CONFIRM_EVERY = 200
DEFAULT_PREFETCH = 100  # unacked messages the broker hands one subscription
MAX_UNCONFIRMED = 20000  # publishers block beyond this many sends without a receipt
RECEIPT_TIMEOUT_S = 30.0
CONNECT_DEADLINE_S = 30.0
BACKOFF_INITIAL_S, BACKOFF_MAX_S = 0.2, 10.0


def _noop() -> None:
    pass


def _reason(host: str, port: int, exc: BaseException) -> str:
    """Why connecting failed, in words. stomp.py's ConnectFailedException carries no text (the
    socket's own error is only logged), so an empty one is explained by probing the port."""
    if str(exc):
        return str(exc)
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as probe:
        return (f"TCP connection to {host}:{port} failed: "
                f"{probe.strerror or str(probe) or type(probe).__name__}")
    return (f"{host}:{port} accepts TCP connections but did not complete the STOMP handshake "
            "(not a STOMP port, or the broker refused the CONNECT)")


class _Link(stomp.ConnectionListener):
    """One STOMP connection that reconnects itself and restores its subscription."""

    def __init__(self, bus: StompBus, client_id: str):
        self.bus, self.client_id = bus, client_id
        self.lock = threading.RLock()
        self.receipts: dict[str, tuple[threading.Event, Callable[[], None] | None]] = {}
        self.closing = False
        self.subscription: StompSubscription | None = None
        self.broker_error = ""  # the ERROR frame's message, if the broker refused CONNECT
        self.conn = self._new_connection()
        self._connect_with_backoff()

    # connection management
    def _new_connection(self) -> stomp.Connection11:
        conn = stomp.Connection11([(self.bus.host, self.bus.port)], heartbeats=self.bus.heartbeats,
                                  vhost=self.bus.host, auto_content_length=False,
                                  reconnect_attempts_max=1)
        conn.set_listener("swfflow", self)
        return conn

    def _connect_with_backoff(self) -> None:
        deadline = time.monotonic() + CONNECT_DEADLINE_S
        delay = BACKOFF_INITIAL_S
        while True:
            try:
                self._connect_once(deadline)
                break
            except (stomp.exception.ConnectFailedException, OSError) as exc:
                self._drop_connection()
                if self.closing or time.monotonic() + delay > deadline:
                    raise ServiceError(
                        f"cannot connect to the STOMP broker {self.bus.host}:{self.bus.port} "
                        f"as {self.client_id!r}: {_reason(self.bus.host, self.bus.port, exc)}",
                        hint="is ActiveMQ running (`swfflow services up`)? Are the user, "
                             "password and port right? Is another consumer using this "
                             "durable subscription name?",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        if self.subscription:
            self.subscription.send_subscribe()

    def _connect_once(self, deadline: float) -> None:
        """CONNECT and wait for CONNECTED until ``deadline``. stomp.py's own wait has no bound:
        a port that accepts TCP but never answers (not a broker, a hung one) blocked forever."""
        self.broker_error = ""
        self.conn.connect(self.bus.user, self.bus.passcode, wait=False,
                          headers={"client-id": self.client_id})
        while not self.conn.is_connected():
            if self.conn.transport.connection_error:
                raise stomp.exception.ConnectFailedException(
                    f"the broker refused CONNECT: {self.broker_error or 'no reason given'}")
            if time.monotonic() > deadline:
                raise stomp.exception.ConnectFailedException(
                    f"no answer to CONNECT within {CONNECT_DEADLINE_S:g} s (not a STOMP port, "
                    "or the broker is hung)")
            time.sleep(0.02)

    def _drop_connection(self) -> None:
        """Close a connection that never got CONNECTED and start the next try on a new one
        (its listener removed first: its disconnect must not start a reconnect)."""
        self.conn.remove_listener("swfflow")
        try:
            self.conn.transport.disconnect_socket()
        except Exception:  # never connected: nothing to close
            pass
        self.conn = self._new_connection()

    def reconnect(self) -> None:
        with self.lock:
            if self.closing or self.conn.is_connected():
                return
            log.warning("STOMP connection %s lost; reconnecting", self.client_id)
            try:
                self.conn.disconnect()
            except Exception:  # the old socket is already gone
                pass
            self.conn = self._new_connection()
            self._connect_with_backoff()

    def on_disconnected(self) -> None:
        if not self.closing:
            threading.Thread(target=self._reconnect_quietly, daemon=True).start()

    def _reconnect_quietly(self) -> None:
        try:
            self.reconnect()
            self.bus.resend_unconfirmed(self)
        except ServiceError as exc:
            log.error("%s", exc)

    def on_receipt(self, frame) -> None:
        event, callback = self.receipts.pop(frame.headers.get("receipt-id", ""), (None, None))
        if callback:
            callback()
        if event:
            event.set()

    def on_error(self, frame) -> None:
        self.broker_error = frame.headers.get("message", frame.body)
        log.error("STOMP error from broker (%s): %s", self.client_id,
                  frame.headers.get("message", frame.body))

    def on_message(self, frame) -> None:
        if self.subscription:
            self.subscription.dispatch(frame)

    def expect_receipt(self, callback: Callable[[], None] | None = None
                       ) -> tuple[str, threading.Event]:
        receipt, event = uuid.uuid4().hex, threading.Event()
        self.receipts[receipt] = (event, callback)
        return receipt, event

    def close(self) -> bool:
        """Disconnect with a receipt; True if the broker confirmed everything sent before."""
        with self.lock:
            self.closing = True
            if not self.conn.is_connected():
                return False
            receipt, event = self.expect_receipt()
            self.conn.disconnect(receipt=receipt)
            confirmed = event.wait(RECEIPT_TIMEOUT_S)
        return confirmed


class StompSubscription(Subscription):
    def __init__(self, link: _Link, destination: str, handler: Handler, durable_name: str | None,
                 ack: str, *, late_ack: bool = False, prefetch: int | None = None):
        self.link, self.destination, self.handler = link, destination, handler
        self.durable_name, self.ack_mode = durable_name, ack
        self.late_ack, self.prefetch = late_ack, prefetch or DEFAULT_PREFETCH
        self.id = "1"
        link.subscription = self
        self.send_subscribe()

    def send_subscribe(self) -> None:
        headers = {"activemq.prefetchSize": str(self.prefetch)}
        if self.durable_name:
            headers["activemq.subscriptionName"] = self.durable_name
        self.link.conn.subscribe(self.destination, id=self.id, ack=self.ack_mode, headers=headers)

    def dispatch(self, frame) -> None:
        """Run the handler; a nack re-runs it (ActiveMQ turns a STOMP NACK into a dead letter
        at once), and only after MAX_REDELIVERIES is the message NACKed to the DLQ."""
        headers = dict(frame.headers)
        message_id, subscription = headers.get("message-id", ""), headers.get("subscription", "")
        body = frame.body if isinstance(frame.body, str) else frame.body.decode("utf-8")
        conn = self.link.conn
        if self.ack_mode != "client-individual":
            self._call(Delivery(self.destination, body, headers, False, _noop, _noop))
            return
        if self.late_ack:
            self._dispatch_late(conn, body, headers, attempt=0)
            return
        outcome: list[str] = []
        for attempt in range(MAX_REDELIVERIES + 1):
            delivery = Delivery(self.destination, body, headers,
                                attempt > 0 or headers.get("redelivered") == "true",
                                ack=lambda: outcome.append("ack"),
                                nack=lambda: outcome.append("nack"))
            self._call(delivery)
            if outcome[-1:] != ["nack"]:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))
        if outcome[-1:] == ["ack"]:
            conn.ack(message_id, subscription)
        elif outcome:  # nacked every time: to the dead-letter queue
            conn.nack(message_id, subscription)
        # neither: stays unacked, redelivered by the broker after a reconnect

    def _dispatch_late(self, conn: stomp.Connection11, body: str, headers: dict[str, str],
                       attempt: int) -> None:
        """Hand the delivery over; its ack/nack reach the broker whenever they are called.

        Settled on the connection it came from: after a reconnect that connection is gone, the
        broker redelivers the message anyway, so a late ack is dropped (consumers deduplicate).
        A nack re-runs the handler after a pause, as in :meth:`dispatch`."""
        message_id, subscription = headers.get("message-id", ""), headers.get("subscription", "")

        def settle(frame: Callable[[str, str], None]) -> None:
            try:
                frame(message_id, subscription)
            except (stomp.exception.NotConnectedException, OSError):
                log.info("settling %s lost with its connection; the broker redelivers it",
                         message_id)

        def nack() -> None:
            if attempt >= MAX_REDELIVERIES:  # nacked every time: to the dead-letter queue
                settle(conn.nack)
                return
            timer = threading.Timer(min(0.05 * 2**attempt, 1.0), self._dispatch_late,
                                    (conn, body, headers, attempt + 1))
            timer.daemon = True
            timer.start()

        self._call(Delivery(self.destination, body, headers,
                            attempt > 0 or headers.get("redelivered") == "true",
                            ack=lambda: settle(conn.ack), nack=nack))

    def _call(self, delivery: Delivery) -> None:
        try:
            self.handler(delivery)
        except Exception:
            log.exception("handler failed for message %s on %s; nacking it",
                          delivery.headers.get("message-id"), self.destination)
            delivery.nack()

    def close(self) -> None:
        link = self.link
        if link.conn.is_connected():
            try:
                link.conn.unsubscribe(id=self.id)  # keeps a durable subscription alive
            except stomp.exception.NotConnectedException:
                pass
        link.subscription = None
        link.close()

    def forget(self) -> None:
        """ActiveMQ deletes a durable topic subscription on an UNSUBSCRIBE that names it, once
        its consumer is gone (a plain UNSUBSCRIBE first)."""
        link = self.link
        link.subscription = None  # not restored by a reconnect meanwhile
        if link.conn.is_connected():
            try:
                link.conn.unsubscribe(id=self.id)
                if self.durable_name:
                    link.conn.unsubscribe(
                        id=self.id, headers={"activemq.subscriptionName": self.durable_name})
            except stomp.exception.NotConnectedException:
                pass
        link.close()


class StompBus(Bus):
    def __init__(self, host: str, port: int, *, user: str | None = None,
                 passcode: str | None = None, client_id: str | None = None,
                 heartbeats: tuple[int, int] = (30000, 30000)):
        self.host, self.port, self.user, self.passcode = host, port, user, passcode
        self.heartbeats = heartbeats
        self.client_id = client_id or f"swfflow-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._publisher: _Link | None = None
        self._subscriptions: list[StompSubscription] = []
        self._counter = itertools.count(1)
        self._unconfirmed: deque[tuple[int, str, str, dict[str, str]]] = deque()
        self._sequence = itertools.count(1)
        self._last_receipt = threading.Event()
        self._confirm_lock = threading.RLock()
        self.published = 0

    def _publisher_link(self) -> _Link:
        if self._publisher is None:
            self._publisher = _Link(self, self.client_id)
        return self._publisher

    def publish(self, destination, message, *, headers=None) -> None:
        body, out_headers = encode(message, headers)
        check_destination(destination)
        link = self._publisher_link()
        with self._confirm_lock:
            sequence = next(self._sequence)
            self._unconfirmed.append((sequence, destination, body, out_headers))
            if sequence % CONFIRM_EVERY == 0:
                # asynchronous receipt: a receipted SEND makes ActiveMQ sync its store, so never
                # wait for one here; the receipt only releases the copies kept for re-sending
                receipt, self._last_receipt = link.expect_receipt(
                    lambda: self._confirmed(sequence))
                out_headers = {**out_headers, "receipt": receipt}
            self._send(link, destination, body, out_headers)
            self.published += 1
            backlog = len(self._unconfirmed)
        if backlog > MAX_UNCONFIRMED and not self._last_receipt.wait(RECEIPT_TIMEOUT_S):
            raise ServiceError(f"the broker has not confirmed {backlog} messages "
                               f"within {RECEIPT_TIMEOUT_S:.0f} s", hint="is the broker healthy?")

    def _confirmed(self, sequence: int) -> None:
        with self._confirm_lock:
            while self._unconfirmed and self._unconfirmed[0][0] <= sequence:
                self._unconfirmed.popleft()

    def _send(self, link: _Link, destination: str, body: str, headers: dict[str, str]) -> None:
        for attempt in range(2):
            try:
                link.conn.send(destination, body, headers=headers)
                return
            except (stomp.exception.NotConnectedException, OSError):
                if attempt:
                    raise
                link.reconnect()

    def resend_unconfirmed(self, link: _Link) -> None:
        """After a reconnect: send again what the broker may not have stored (duplicates OK)."""
        if link is not self._publisher:
            return
        with self._confirm_lock:
            for _, destination, body, headers in self._unconfirmed:
                clean = {k: v for k, v in headers.items() if k != "receipt"}
                self._send(link, destination, body, clean)

    def subscribe(self, destination, handler, *, durable_name=None, ack="client-individual",
                  late_ack=False, prefetch=None):
        check_destination(destination)
        check_ack_mode(ack)
        client_id = durable_name or f"{self.client_id}-sub{next(self._counter)}"
        subscription = StompSubscription(_Link(self, client_id), destination, handler,
                                         durable_name, ack, late_ack=late_ack,
                                         prefetch=prefetch)
        self._subscriptions.append(subscription)
        return subscription

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        if self._publisher is not None:
            pending = len(self._unconfirmed)
            confirmed = self._publisher.close()
            self._publisher = None
            if not confirmed and pending:
                raise ServiceError(
                    f"the broker {self.host}:{self.port} did not confirm the last {pending} "
                    "messages before disconnect; they may be lost",
                    hint="check the broker log; re-run with --record to keep a copy",
                )
            self._unconfirmed.clear()


def open_stomp(parts: SplitResult, query: dict[str, str], client_id: str | None) -> StompBus:
    """The bus of a ``stomp://[user:pass@]host:port[?heartbeat=MS&client_id=ID]`` URL
    (:func:`swfflow.stream.bus.open_bus`)."""
    if not parts.hostname or not parts.port:
        raise ConfigError(f"broker URL {parts.geturl()!r} needs a host and a port",
                          hint="e.g. stomp://127.0.0.1:61613 or stomp://admin:admin@host:61613")
    heartbeat = int(query.get("heartbeat", "30000"))
    return StompBus(parts.hostname, parts.port,
                    user=unquote(parts.username) if parts.username else None,
                    passcode=unquote(parts.password) if parts.password else None,
                    client_id=client_id or query.get("client_id"),
                    heartbeats=(heartbeat, heartbeat))
