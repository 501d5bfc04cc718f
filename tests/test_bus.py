"""The bus: in-process and real ActiveMQ (STOMP) behave the same way."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from swfflow.errors import ConfigError
from swfflow.stream.bus import MAX_REDELIVERIES, MemoryBroker, open_bus
from swfflow.stream.messages import StartRun, StfGen


class Collector:
    """A handler that records bodies and acks (or nacks the first ``nack_first`` deliveries)."""

    def __init__(self, *, ack: bool = True, nack_first: int = 0):
        self.bodies: list[str] = []
        self.redelivered: list[bool] = []
        self.ack, self.nack_left = ack, nack_first
        self.lock = threading.Lock()

    def __call__(self, delivery):
        with self.lock:
            if self.nack_left > 0:
                self.nack_left -= 1
                delivery.nack()
                return
            self.bodies.append(delivery.message().run_id)
            self.redelivered.append(delivery.redelivered)
        if self.ack:
            delivery.ack()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.bodies) < count:
            time.sleep(0.01)
        return list(self.bodies)


def memory_url() -> str:
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", pytest.param("stomp", marks=pytest.mark.services)])
def bus_url(request):
    if request.param == "memory":
        return memory_url()
    return request.getfixturevalue("stomp_url")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_topic_multicast_in_order(bus_url):
    topic = f"/topic/{unique('t')}"
    first, second = Collector(), Collector()
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, first)
        consumer.subscribe(topic, second, ack="auto")
        time.sleep(0.2 if bus_url.startswith("stomp") else 0)  # SUBSCRIBE reaches the broker
        with open_bus(bus_url) as producer:
            for run in range(250):
                producer.publish(topic, StartRun(run_id=str(run)))
        expected = [str(run) for run in range(250)]
        assert first.wait_for(250) == expected
        assert second.wait_for(250) == expected


def test_queue_is_anycast(bus_url):
    queue = f"/queue/{unique('q')}"
    a, b = Collector(), Collector()
    with open_bus(bus_url) as producer:
        for run in range(40):
            producer.publish(queue, StartRun(run_id=str(run)))
    with open_bus(bus_url) as consumer:
        consumer.subscribe(queue, a)
        consumer.subscribe(queue, b)
        deadline = time.monotonic() + 20
        while len(a.bodies) + len(b.bodies) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(a.bodies + b.bodies, key=int) == [str(run) for run in range(40)]


def test_durable_subscription_keeps_messages_while_offline(bus_url):
    topic, name = f"/topic/{unique('d')}", unique("durable")
    with open_bus(bus_url) as consumer:
        early = Collector()
        consumer.subscribe(topic, early, durable_name=name)
        time.sleep(0.2 if bus_url.startswith("stomp") else 0)
        with open_bus(bus_url) as producer:
            producer.publish(topic, StartRun(run_id="1"))
        assert early.wait_for(1) == ["1"]
    with open_bus(bus_url) as producer:  # consumer offline now
        for run in ("2", "3", "4"):
            producer.publish(topic, StartRun(run_id=run))
    late = Collector()
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, late, durable_name=name)
        assert late.wait_for(3) == ["2", "3", "4"]
        time.sleep(0.3)
        assert late.bodies == ["2", "3", "4"]  # nothing twice


def test_forgotten_durable_subscription_keeps_nothing(bus_url):
    """forget() deletes the durable subscription: what is published afterwards is not kept
    for its name (a bench's one-off subscription must not pile up messages in the broker)."""
    topic, name = f"/topic/{unique('f')}", unique("forget")
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, Collector(), durable_name=name).forget()
    with open_bus(bus_url) as producer:
        producer.publish(topic, StartRun(run_id="1"))
    late = Collector()
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, late, durable_name=name)
        time.sleep(0.2 if bus_url.startswith("stomp") else 0)
        with open_bus(bus_url) as producer:
            producer.publish(topic, StartRun(run_id="2"))
        assert late.wait_for(1) == ["2"]
        time.sleep(0.3)
        assert late.bodies == ["2"]  # "1" was published while no subscription existed


def test_unacked_messages_are_redelivered_on_resubscribe(bus_url):
    topic, name = f"/topic/{unique('r')}", unique("durable")
    silent = Collector(ack=False)
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, silent, durable_name=name)
        time.sleep(0.2 if bus_url.startswith("stomp") else 0)
        with open_bus(bus_url) as producer:
            for run in ("1", "2", "3"):
                producer.publish(topic, StartRun(run_id=run))
        assert silent.wait_for(3) == ["1", "2", "3"]
    again = Collector()
    with open_bus(bus_url) as consumer:
        consumer.subscribe(topic, again, durable_name=name)
        assert again.wait_for(3) == ["1", "2", "3"]


def test_nack_redelivers(bus_url):
    queue = f"/queue/{unique('n')}"
    handler = Collector(nack_first=2)
    with open_bus(bus_url) as bus:
        bus.subscribe(queue, handler)
        bus.publish(queue, StartRun(run_id="7"))
        assert handler.wait_for(1) == ["7"]
        assert handler.redelivered == [True]


def test_handler_exception_nacks_and_memory_dead_letters_after_max():
    url = memory_url()
    calls = []

    def broken(delivery):
        calls.append(delivery.redelivered)
        raise RuntimeError("boom")

    with open_bus(url) as bus:
        bus.subscribe("/queue/poison", broken)
        bus.publish("/queue/poison", {"msg_type": "start_run", "run_id": "1"})
        assert bus.wait_idle(5)
    assert len(calls) == MAX_REDELIVERIES + 1 and calls[1:] == [True] * MAX_REDELIVERIES
    assert len(MemoryBroker.named(url.split("//")[1]).dead_letters) == 1


def test_memory_handles_with_one_name_share_a_broker():
    url = memory_url()
    got = Collector()
    with open_bus(url) as consumer, open_bus(url) as producer:
        consumer.subscribe("/topic/epictopic", got)
        producer.publish("/topic/epictopic", StfGen(run_id="5", filename="swf.5.000001.stf"))
        assert got.wait_for(1) == ["5"]
    with open_bus(memory_url()) as other:
        assert other.broker is not MemoryBroker.named(url.split("//")[1])


@pytest.mark.parametrize("destination", ["epictopic", "/exchange/x", "/topic/"])
def test_bare_destinations_are_rejected(destination):
    with open_bus(memory_url()) as bus, pytest.raises(ConfigError, match="destination"):
        bus.publish(destination, {"msg_type": "start_run", "run_id": "1"})


@pytest.mark.parametrize("url", ["amqp://host:5672", "stomp://hostonly", "kafka://x"])
def test_bad_broker_urls(url):
    with pytest.raises(ConfigError):
        open_bus(url)


def test_bad_ack_mode():
    with open_bus(memory_url()) as bus, pytest.raises(ConfigError, match="ack"):
        bus.subscribe("/topic/x", print, ack="client")


@pytest.mark.services
def test_stomp_publish_headers_and_persistence(stomp_url):
    queue = f"/queue/{unique('h')}"
    seen = []
    with open_bus(stomp_url) as bus:
        bus.publish(queue, StartRun(run_id="42", namespace="ns1"))
    with open_bus(stomp_url) as bus:
        bus.subscribe(queue, lambda d: (seen.append(d.headers), d.ack()))
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen and seen[0]["persistent"] == "true"
    assert seen[0]["msg_type"] == "start_run" and seen[0]["run_id"] == "42"
    assert seen[0]["namespace"] == "ns1"


@pytest.mark.services
def test_stomp_unreachable_broker_is_a_clear_error(monkeypatch):
    from swfflow.errors import ServiceError
    from swfflow.stream import stomp_bus

    monkeypatch.setattr(stomp_bus, "CONNECT_DEADLINE_S", 0.5)
    with pytest.raises(ServiceError, match="cannot connect"):
        open_bus("stomp://127.0.0.1:1").publish("/topic/x", {"a": 1})


@pytest.mark.services
def test_stomp_reconnects_after_connection_loss(stomp_url):
    """Cut the publisher's and the subscriber's sockets mid-stream: nothing is lost."""
    import socket

    topic, name = f"/topic/{unique('c')}", unique("durable")
    got = Collector()
    with open_bus(stomp_url) as consumer, open_bus(stomp_url) as producer:
        subscription = consumer.subscribe(topic, got, durable_name=name)
        time.sleep(0.2)
        for run in range(50):
            producer.publish(topic, StartRun(run_id=str(run)))
        got.wait_for(50)
        for link in (producer._publisher, subscription.link):
            link.conn.transport.socket.shutdown(socket.SHUT_RDWR)
        time.sleep(0.5)
        for run in range(50, 100):
            producer.publish(topic, StartRun(run_id=str(run)))
        deadline = time.monotonic() + 20
        while len(set(got.bodies)) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        received = list(got.bodies)
    assert set(received) == {str(run) for run in range(100)}  # duplicates allowed, no loss
