"""Recorded simulator runs (``swfflow daqsim --record FILE``): read them back and replay them.

A record holds one emitted message body per line, exactly as sent, so replaying it into a bus
reproduces the run's message stream for a bridge (or a test) without re-running the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from swfflow.stream.bus import Bus
from swfflow.stream.messages import EPIC_TOPIC, Message, MessageError, parse_message


def read_record(path: str | Path) -> Iterator[Message]:
    """Each recorded message, parsed; a bad line raises MessageError naming file and line."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield parse_message(line)
            except MessageError as exc:
                raise MessageError(exc.what, where=f"{path}:{number}", hint=exc.hint) from None


def replay(path: str | Path, bus: Bus, destination: str = EPIC_TOPIC) -> int:
    """Publish every recorded message again (same msg_id: consumers see redeliveries)."""
    count = 0
    for message in read_record(path):
        bus.publish(destination, message)
        count += 1
    return count
