"""Where the bridge's deliveries come from: a broker subscription or a recorded log.

Both put :class:`~swfflow.stream.bus.Delivery` objects into the bridge's inbox, so a replayed
log goes through exactly the handling a live broker does.

**Late acks.** The bridge acks a message only when its effect is committed, which for an STF
is after the batched attach — long after the bus's receiver thread handed it over. So it
subscribes with ``late_ack=True`` (client-individual: each message acked on its own, from the
bridge thread). An ack that cannot be sent (connection lost) is dropped by the bus: the broker
redelivers the message and the bridge recognises it as done.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from swfflow.errors import ConfigError
from swfflow.stream.bus import MAX_REDELIVERIES, Bus, Delivery, Subscription

if TYPE_CHECKING:
    from swfflow.stream.bridge.core import Bridge

log = logging.getLogger("swfflow.bridge")
# unacked messages the broker may hand the bridge (acks wait for the attach): room for the
# batches in flight, the next one filling, and our own stf_ready coming back
PREFETCH = 4000


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
            _replay_one(bridge, f"replay:{path.name}", line.strip(),
                        {"message-id": f"{path.name}:{number}"}, attempt=0)
    bridge.source_done.set()
    return count


def _replay_one(bridge: Bridge, source: str, body: str, headers: dict[str, str],
                attempt: int) -> None:
    """Queue one logged message; a nack (handling failed) queues it again, as a broker would
    redeliver it, up to MAX_REDELIVERIES times."""
    def nack() -> None:
        if attempt < MAX_REDELIVERIES:
            _replay_one(bridge, source, body, headers, attempt + 1)
        else:
            log.error("giving up on %s after %d attempts", headers["message-id"], attempt + 1)

    bridge.inbox.put(Delivery(source, body, headers, attempt > 0, ack=_noop, nack=nack))


def subscribe(bridge: Bridge, bus: Bus, destination: str, durable_name: str) -> Subscription:
    """A durable, client-individual, late-ack subscription feeding the bridge's inbox."""
    return bus.subscribe(destination, bridge.inbox.put, durable_name=durable_name,
                         late_ack=True, prefetch=PREFETCH)
