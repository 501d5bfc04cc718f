"""Issue 19: a broker that cannot be reached is one clear error naming why and the command
that starts it (the hint said `services start`, the command is `services up`; the reason
was empty because stomp.py's ConnectFailedException has no text)."""

from __future__ import annotations

import socket

import pytest

from swfflow.errors import ServiceError
from swfflow.stream import stomp_bus
from swfflow.stream.bus import open_bus


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_closed_port_names_the_reason_and_the_real_command(monkeypatch):
    monkeypatch.setattr(stomp_bus, "CONNECT_DEADLINE_S", 0.5)
    port = closed_port()
    with pytest.raises(ServiceError) as caught:
        open_bus(f"stomp://127.0.0.1:{port}").publish("/topic/x", {"a": 1})
    error = caught.value
    assert f"127.0.0.1:{port}" in error.what
    assert not error.what.rstrip().endswith(":"), error.what  # the reason was empty
    assert "connection refused" in error.what.lower(), error.what
    assert "swfflow services up" in error.hint and "services start" not in error.hint


@pytest.mark.timeout(60)
def test_a_port_that_is_not_stomp_is_an_error_not_a_hang(monkeypatch):
    """Something listens but never answers CONNECT: stomp.py's own wait had no bound (this
    hung for ever); now the connect deadline holds and the reason says what happened."""
    monkeypatch.setattr(stomp_bus, "CONNECT_DEADLINE_S", 0.5)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        with pytest.raises(ServiceError) as caught:
            open_bus(f"stomp://127.0.0.1:{port}?heartbeat=0").publish("/topic/x", {"a": 1})
    assert "no answer to CONNECT within" in caught.value.what, caught.value.what
