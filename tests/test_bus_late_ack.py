"""Late acks: a handler keeps its deliveries and settles them later, from another thread —
the same on the in-process bus and on real ActiveMQ (STOMP)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from swfflow.stream.bus import open_bus


@pytest.fixture(params=["memory", pytest.param("stomp", marks=pytest.mark.services)])
def bus_url(request):
    if request.param == "memory":
        return f"memory://{uuid.uuid4().hex}"
    return request.getfixturevalue("stomp_url")


class Keeper:
    """A handler that keeps every delivery unsettled (the bridge's way)."""

    def __init__(self):
        self.deliveries = []
        self.lock = threading.Lock()

    def __call__(self, delivery):
        with self.lock:
            self.deliveries.append(delivery)

    def wait_for(self, count: int, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            assert time.monotonic() < deadline, f"{len(self.deliveries)} of {count} delivered"
            time.sleep(0.01)
        return list(self.deliveries)


def settle_from_another_thread(deliveries, action: str) -> None:
    worker = threading.Thread(target=lambda: [getattr(d, action)() for d in deliveries])
    worker.start()
    worker.join(10)


def test_late_acks_from_another_thread_settle_only_those(bus_url):
    queue = f"/queue/late-{uuid.uuid4().hex[:8]}"
    with open_bus(bus_url) as producer:
        for body in ("one", "two", "three"):
            producer.publish(queue, body)
    with open_bus(bus_url) as consumer:
        keeper = Keeper()
        consumer.subscribe(queue, keeper, late_ack=True, prefetch=10)
        delivered = keeper.wait_for(3)
        time.sleep(0.3)  # returning from the handler settled nothing: no redelivery yet
        assert len(keeper.deliveries) == 3
        settle_from_another_thread([d for d in delivered if d.body != "two"], "ack")
    with open_bus(bus_url) as consumer:  # the unacked one comes back, and only it
        again = Keeper()
        consumer.subscribe(queue, again, late_ack=True)
        (back,) = again.wait_for(1)
        assert back.body == "two" and back.redelivered
        back.ack()
        time.sleep(0.3)
        assert len(again.deliveries) == 1


def test_a_late_nack_redelivers_to_the_handler(bus_url):
    queue = f"/queue/late-nack-{uuid.uuid4().hex[:8]}"
    with open_bus(bus_url) as bus:
        keeper = Keeper()
        bus.subscribe(queue, keeper, late_ack=True)
        bus.publish(queue, "retry me")
        (first,) = keeper.wait_for(1)
        assert not first.redelivered
        settle_from_another_thread([first], "nack")
        first_again = keeper.wait_for(2)[1]
        assert first_again.body == "retry me" and first_again.redelivered
        first_again.ack()
        time.sleep(0.3)
        assert len(keeper.deliveries) == 2
