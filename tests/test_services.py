"""The local real services: ActiveMQ (STOMP) and the Rucio server, and their CLI."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from pathlib import Path

import pytest
import stomp

from swfflow import services
from swfflow.cli import main
from swfflow.services.state import choose_port

pytestmark = pytest.mark.services


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("stomp://").rsplit(":", 1)
    return host, int(port)


class _Collector(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.arrived = threading.Event()

    def on_message(self, frame) -> None:
        self.bodies.append(frame.body)
        self.arrived.set()


def _connect(url: str, listener: stomp.ConnectionListener | None = None) -> stomp.Connection11:
    host, port = _host_port(url)
    conn = stomp.Connection11([(host, port)], vhost=host, auto_content_length=False)
    if listener:
        conn.set_listener("collect", listener)
    conn.connect("swfflow", "swfflow", wait=True)
    return conn


def test_stomp_url_is_a_working_activemq(stomp_url: str) -> None:
    assert stomp_url.startswith("stomp://127.0.0.1:")
    queue = f"/queue/swfflow.test.{uuid.uuid4().hex[:8]}"
    collector = _Collector()
    consumer = _connect(stomp_url, collector)
    consumer.subscribe(queue, id="1", ack="auto")
    producer = _connect(stomp_url)
    producer.send(queue, '{"msg_type": "stf_gen"}', headers={"persistent": "true"})
    assert collector.arrived.wait(10), "message not delivered by the broker"
    assert collector.bodies == ['{"msg_type": "stf_gen"}']
    producer.disconnect()
    consumer.disconnect()


def test_up_is_idempotent_and_status_json_reports_it(stomp_url: str, services_dir: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = services.status(["activemq"], state=services_dir)[0]
    again = services.up(["activemq"], state=services_dir)[0]
    assert again.pid == before.pid and again.port == before.port and again.healthy
    main(["services", "status", "activemq", "--json", "--dir", str(services_dir)])
    report = json.loads(capsys.readouterr().out)
    (broker,) = report["services"]
    assert broker["name"] == "activemq" and broker["healthy"] is True
    assert broker["pid"] == before.pid and f":{broker['port']}" in stomp_url


def test_choose_port_avoids_a_taken_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        chosen = choose_port(taken)
        assert chosen != taken
    assert choose_port(chosen) == chosen  # free again: kept


def test_broker_keeps_persistent_messages_across_restart_and_stops(tmp_path: Path,
                                                                   capsys) -> None:
    """A private broker: persistent (KahaDB) messages survive down/up; down makes it unhealthy."""
    state = tmp_path / "svc"
    try:
        (first,) = services.up(["activemq"], state=state)
        queue = "/queue/swfflow.test.persist"
        producer = _connect(first.url)
        producer.send(queue, "kept", headers={"persistent": "true"})
        producer.disconnect(receipt="bye")
        assert services.down(["activemq"], state=state) == {"activemq": True}
        (stopped,) = services.status(["activemq"], state=state)
        assert not stopped.healthy and stopped.pid is None
        with pytest.raises(SystemExit) as exited:
            main(["services", "status", "activemq", "--dir", str(state)])
        assert exited.value.code == 1
        (second,) = services.up(["activemq"], state=state)
        assert second.healthy and second.port == first.port and second.pid != first.pid
        collector = _Collector()
        consumer = _connect(second.url, collector)
        consumer.subscribe(queue, id="1", ack="auto")
        assert collector.arrived.wait(15), "persistent message lost across restart"
        assert collector.bodies == ["kept"]
        consumer.disconnect()
    finally:
        services.purge(state)
    assert not state.exists()


@pytest.mark.slow
def test_rucio_gets_an_empty_database_per_session(tmp_path: Path, capsys) -> None:
    """A private Rucio server: same session id → same database; a new id → an empty one;
    purge drops the database."""
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.services.rucio_server import client_config, database_name
    from swfflow.services.state import ServiceHome, run_checked

    state = tmp_path / "svc"
    home = ServiceHome(state, "rucio")
    did = "swf:kept.until.next.session"

    def databases() -> str:
        return run_checked(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc",
                            "select datname from pg_database"], what="list databases")

    try:
        (first,) = services.up(["rucio"], state=state, fresh_session="one")
        assert first.healthy and first.url.startswith("http://127.0.0.1:")
        assert RucioCatalog.from_config(client_config(home)).create_dataset(did) is True
        (same,) = services.up(["rucio"], state=state, fresh_session="one")
        assert same.pid == first.pid
        assert RucioCatalog.from_config(client_config(home)).dataset_exists(did)
        (fresh,) = services.up(["rucio"], state=state, fresh_session="two")
        assert fresh.healthy and fresh.pid != first.pid
        assert not RucioCatalog.from_config(client_config(home)).dataset_exists(did)
        main(["services", "status", "rucio", "--json", "--dir", str(state)])
        (reported,) = json.loads(capsys.readouterr().out)["services"]
        assert reported["healthy"] and reported["port"] == fresh.port
        assert database_name(home) in databases().split()
        main(["services", "down", "--dir", str(state)])  # `down` drops the database…
        assert database_name(home) not in databases().split()
        assert "rucio: stopped" in capsys.readouterr().out
        main(["services", "down", "--dir", str(state)])  # … once: a second down just says so
        assert "rucio: was not running" in capsys.readouterr().out
    finally:
        services.purge(state)
    assert database_name(home) not in databases().split()


_LONG = "/tmp/" + "a-rather-deep-folder/" * 6 + "services"


def _fake_statuses(root) -> list:
    from swfflow.services.state import ServiceStatus

    return [ServiceStatus("activemq", True, pid=11, port=61999, url="stomp://127.0.0.1:61999"),
            ServiceStatus("rucio", True, pid=12, port=8099, url="http://127.0.0.1:8099",
                          detail=f"RUCIO_CONFIG={root}/rucio/client/rucio.cfg")]


@pytest.mark.parametrize("command", ["up", "env"])
def test_up_and_env_print_the_client_settings_unwrapped(command, monkeypatch, capsys) -> None:
    """The one thing a user must copy (RUCIO_CONFIG) is one line however long the path."""
    monkeypatch.setattr(services, command if command == "up" else "status",
                        lambda *args, state, **kwargs: _fake_statuses(state))
    main(["services", command, "--dir", _LONG])
    lines = capsys.readouterr().out.splitlines()
    assert f"export RUCIO_CONFIG={_LONG}/rucio/client/rucio.cfg" in lines
    assert "export SWFFLOW_BROKER=stomp://127.0.0.1:61999" in lines
    assert any(line.startswith("next: eval") for line in lines) == (command == "up")


def test_env_exits_1_naming_what_is_not_running(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["services", "env", "--dir", str(tmp_path / "none")])
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "not running: activemq, rucio" in captured.err
