"""Where the bridge's deliveries come from: a broker subscription or a recorded log.

Both put :class:`~swfflow.stream.bus.Delivery` objects into the bridge's inbox, so a replayed
log goes through exactly the handling a live broker does.

**Late acks over STOMP.** The bridge acks a message only when its effect is committed, which
for an STF is after the batched attach — long after the STOMP receiver thread handed it over.
:class:`~swfflow.stream.stomp_bus.StompSubscription` acks when its handler returns, so the
bridge subscribes through :class:`LateAckSubscription`, which leaves the ack to the delivery
(client-individual: each message acked on its own, from the bridge thread; stomp.py serialises
socket writes). An ack that cannot be sent (connection lost) is simply dropped: the broker
redelivers the message and the bridge recognises it as done.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import stomp.exception

from swfflow.errors import ConfigError
from swfflow.stream.bus import Bus, Delivery, MemoryBus, Subscription

if TYPE_CHECKING:
    from swfflow.stream.bridge.core import Bridge

log = logging.getLogger("swfflow.bridge")
PREFETCH = 1000  # unacked messages the broker may hand the bridge: bounds one attach batch


def _noop() -> None:
    pass


def replay(bridge: Bridge, path: str | Path) -> int:
    """Feed a JSON-lines message log (``swfflow daqsim --record``) into the bridge; the count.

    Blank lines are skipped; any other line is a message body, valid or not (invalid ones end
    in the dead-letter table, exactly as from a broker)."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read the replay log: {exc.strerror}", where=str(path),
                          hint="give a file written by `swfflow daqsim --record FILE`") from None
    count = 0
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            count += 1
            bridge.inbox.put(Delivery(f"replay:{path.name}", line.strip(),
                                      {"message-id": f"{path.name}:{number}"}, False,
                                      ack=_noop, nack=_noop))
    bridge.source_done.set()
    return count


def subscribe(bridge: Bridge, bus: Bus, destination: str, durable_name: str) -> Subscription:
    """A durable, client-individual subscription whose deliveries go to the bridge's inbox."""
    if isinstance(bus, MemoryBus):  # in-process: its deliveries can be acked from any thread
        return bus.subscribe(destination, bridge.inbox.put, durable_name=durable_name)
    return _stomp_late_ack(bus, destination, bridge.inbox.put, durable_name)


def _stomp_late_ack(bus, destination: str, handler, durable_name: str) -> Subscription:
    from swfflow.stream.bus import check_destination
    from swfflow.stream.stomp_bus import StompSubscription, _Link

    class LateAckSubscription(StompSubscription):
        def send_subscribe(self) -> None:
            self.link.conn.subscribe(self.destination, id=self.id, ack="client-individual",
                                     headers={"activemq.prefetchSize": str(PREFETCH),
                                              "activemq.subscriptionName": durable_name})

        def dispatch(self, frame) -> None:
            headers = dict(frame.headers)
            conn = self.link.conn
            message_id, subscription = headers.get("message-id", ""), headers.get("subscription", "")
            body = frame.body if isinstance(frame.body, str) else frame.body.decode("utf-8")

            def ack() -> None:
                try:
                    conn.ack(message_id, subscription)
                except (stomp.exception.NotConnectedException, OSError):
                    log.info("ack of %s lost with its connection; it will be redelivered",
                             message_id)

            handler(Delivery(self.destination, body, headers,
                             headers.get("redelivered") == "true", ack=ack, nack=_noop))

    check_destination(destination)
    subscription = LateAckSubscription(_Link(bus, durable_name), destination, handler,
                                       durable_name, "client-individual")
    bus._subscriptions.append(subscription)  # closed with the bus
    return subscription
