"""Poison messages (issue 15, part 3): no body, however malformed, may crash the parser or the
bridge. Every one the parser refuses becomes a dead letter with the reason and the raw body,
is acked, and the bridge goes on with the valid run it is in the middle of.

Generated with hypothesis: valid bodies of each type with one field replaced by something bad
(wrong types, huge numbers, control and unicode strings, path and shell payloads), truncated
JSON, random bytes and random JSON. 10,000 go through the parser; a few hundred through a
replayed bridge and through real ActiveMQ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay, subscribe
from swfflow.stream.bus import open_bus
from swfflow.stream.messages import (
    EPIC_TOPIC,
    MAX_INT32,
    MAX_INT64,
    MessageError,
    UnknownMessageType,
    parse_message,
    validate_filename,
)
from swfflow.stream.store import PHASE_DONE
from tests.bridge_support import lines, recorded, setup_for, simulate

RUN = "100010"
STF = f"swf.{RUN}.000001.stf"
VALID = {  # one valid body per type (of the run the tests' simulator makes)
    "run_imminent": {"run_id": RUN, "state": "beam", "substate": "not_ready",
                     "container": "/data/buffer", "dataset": f"swf.{RUN}.run"},
    "start_run": {"run_id": RUN, "state": "run", "substate": "physics"},
    "pause_run": {"run_id": RUN, "state": "run", "substate": "standby", "reason": "x"},
    "resume_run": {"run_id": RUN, "state": "run", "substate": "physics"},
    "stf_gen": {"run_id": RUN, "filename": STF, "sequence": 1, "size_bytes": 10,
                "checksum": "0000000b", "file_url": f"file:///data/{STF}",
                "timestamp": "2026-03-02T14:00:42Z", "start": "20260302140040",
                "end": "2026-03-02T14:00:42Z", "state": "run", "substate": "physics"},
    "end_run": {"run_id": RUN, "total_stf_files": 6, "total_files": 6},
    "stf_ready": {"run_id": RUN, "filename": STF, "checksum": "ad:11", "size": 10},
}
FIELDS = sorted({k for body in VALID.values() for k in body} |
                {"msg_id", "namespace", "timestamp", "ts", "schema_version", "msg_type",
                 "simulation_tick", "req_id", "size", "total_files"})
PAYLOADS = [  # paths and shell
    "../../etc/passwd", "/etc/passwd", "a/b.stf", "..", ".", "~", "file:///etc/shadow",
    "$(rm -rf ~)", "`id`", "a.stf; rm -rf /", "a.stf && reboot", "| cat /etc/passwd",
    "a.stf\nb.stf", "a\x00b.stf", "' OR 1=1 --", "${RUN}", "%2e%2e%2fetc", "\\\\host\\share",
    "file:///data/%00/x.stf", "file://[::1/x.stf", "con", "-rf", "a" * 300,
]
HUGE = [10**19, 2**63, 2**64, 10**300, -(10**300), 1e308, -1e308, 2**31, -1, 1e-320,
        float("inf"), float("-inf"), float("nan"), 253402300800, -62135596801]

bad_values = st.one_of(
    st.sampled_from(PAYLOADS + HUGE),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(),
    st.text(max_size=40),  # any unicode, control characters and lone surrogates included
    st.text(st.characters(categories=["Cc", "Cs", "Zs", "So"]), min_size=1, max_size=20),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(),
                                                         max_size=3),
)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() |
                           st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def mutated(draw) -> str:
    """A valid body of some type with one to three fields replaced by bad values (or gone)."""
    msg_type = draw(st.sampled_from(sorted(VALID)))
    body = {"msg_type": msg_type, **VALID[msg_type]}
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        if draw(st.integers(0, 9)) == 0:
            body.pop(field, None)
        else:
            body[field] = draw(bad_values)
    return json.dumps(body)


@st.composite
def truncated(draw) -> str:
    msg_type = draw(st.sampled_from(sorted(VALID)))
    text = json.dumps({"msg_type": msg_type, **VALID[msg_type]})
    return text[:draw(st.integers(0, len(text) - 1))]


malformed = st.one_of(
    mutated(), mutated(), mutated(), truncated(),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "replace")),  # as a bus decodes
    json_values.map(json.dumps),
    st.sampled_from(["[" * 100_000, "{\"a\":" * 50_000, "1" * 5000, "", " ", "null",
                     '{"msg_type": "stf_gen", "run_id": "1", "timestamp": 1' + "0" * 500 + "}"]),
)


def rejected(body: str) -> bool:
    """The parser refuses it (an unknown msg_type is ignored by the bridge, not refused)."""
    try:
        parse_message(body)
    except UnknownMessageType:
        return False
    except MessageError:
        return True
    return False


def storable(text: str | None, limit: int) -> bool:
    return text is None or (len(text) <= limit and text.isprintable())


def test_the_parser_raises_only_message_errors_for_10000_malformed_messages():
    seen: list[int] = []

    @settings(max_examples=10_000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(malformed, st.booleans())
    def parse(body: str, as_bytes: bool) -> None:
        seen.append(1)
        try:
            message = parse_message(body.encode("utf-8", "surrogatepass") if as_bytes else body)
        except MessageError as exc:  # the one allowed outcome besides a valid message
            assert str(exc) and str(exc).encode("utf-8")  # printable, no lone surrogates
            return
        # what parses is safe to use and to store
        if getattr(message, "filename", None) is not None:
            assert validate_filename(message.filename) == message.filename
        for number, top in (("sequence", MAX_INT32), ("total_stf_files", MAX_INT32),
                            ("size_bytes", MAX_INT64)):
            value = getattr(message, number, None)
            assert value is None or 0 <= value <= top
        for text, limit in (("state", 32), ("substate", 32), ("msg_id", 64),
                            ("container", 4096), ("file_url", 4096)):
            assert storable(getattr(message, text, None), limit), (text, message)
        assert message.timestamp.tzinfo is not None

    parse()
    assert len(seen) >= 10_000


def collect(count: int, keep) -> list[str]:
    """``count`` distinct generated malformed bodies that ``keep`` accepts (reproducible)."""
    bodies: dict[str, None] = {}

    @settings(max_examples=count * 3, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(malformed)
    def gather(body: str) -> None:
        if len(bodies) < count and keep(body):
            bodies[body] = None

    gather()
    assert len(bodies) >= count // 2, len(bodies)
    return list(bodies)


def one_line(body: str) -> bool:
    """Survives a JSON-lines log unchanged (replay reads lines, stripped, as UTF-8)."""
    return ("\n" not in body and "\r" not in body and body == body.strip() and body
            and body.encode("utf-8", "replace").decode("utf-8") == body)


def run_until(bridge, condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    bridge.run(until=lambda b: condition(b) or time.monotonic() > deadline)
    assert condition(bridge), (dict(bridge.counters), bridge.store.runs(),
                               {k: g.last_error for k, g in bridge.gates.items()})


def digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def check_dead(bridge, bad: list[str]) -> None:
    dead = {d["digest"]: d for d in bridge.store.dead_letters()}
    assert set(dead) == {digest(body) for body in bad}  # every one, and nothing else
    for row in dead.values():
        assert row["reason"] and len(row["body"]) <= 65536
    assert bridge.counters["errors"] == 0, bridge.last_error
    assert bridge.counters["dead_letters"] == len(bad)


def test_a_replayed_bridge_dead_letters_every_malformed_message_and_goes_on(tmp_path):
    bad = collect(400, lambda b: one_line(b) and rejected(b))
    log, _ = recorded(tmp_path)
    body = lines(log)
    poisoned = tmp_path / "poisoned.jsonl"
    # in the middle of a run: after run_imminent and start_run, before its STFs
    poisoned.write_text("\n".join(body[:2] + bad + body[2:]) + "\n", encoding="utf-8")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path), stack)
        assert replay(bridge, poisoned) == len(body) + len(bad)
        run_until(bridge, lambda b: b.idle and b.source_done.is_set() and
                  (b.store.run(RUN) or {}).get("phase") == PHASE_DONE)
        check_dead(bridge, bad)
        assert bridge.store.file_counts_all(RUN) == (6, 6, 6)


def probe_seen_or(end: float):
    return lambda b: b.counters["ignored"] > 0 or time.monotonic() > end


def wait_until_subscribed(bridge, bus, timeout=30.0) -> None:
    """The subscription is made on a connection of its own: messages sent before the broker
    has it are not kept for it. A probe (a type the bridge ignores) shows when it is there."""
    deadline = time.monotonic() + timeout
    while not bridge.counters["ignored"]:
        assert time.monotonic() < deadline, "the bridge's subscription never became active"
        bus.publish(EPIC_TOPIC, '{"msg_type": "subscription_probe", "run_id": "1"}')
        bridge.run(until=probe_seen_or(time.monotonic() + 0.5))


@pytest.mark.services
def test_malformed_messages_through_activemq_are_dead_letters_and_the_run_completes(
        tmp_path, stomp_url):
    # what a STOMP frame can carry: UTF-8 text (lone surrogates cannot be sent)
    bad = collect(150, lambda b: b.encode("utf-8", "replace").decode("utf-8") == b
                  and rejected(b))
    namespace = f"poison-{tmp_path.name}"[:60]
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(stomp_url))
        bridge = build_bridge(setup_for(tmp_path, namespace=namespace), stack,
                              publish=bus.publish)
        subscribe(bridge, bus, EPIC_TOPIC, f"bridge-{namespace}")
        wait_until_subscribed(bridge, bus)
        for body in bad:
            bus.publish(EPIC_TOPIC, body)
        simulate(tmp_path, bus=bus, namespace=namespace)
        # other tests share the topic: only our run and our bad bodies count
        ours = {digest(body) for body in bad}
        deadline = time.monotonic() + 180
        bridge.run(until=lambda b: time.monotonic() > deadline or b.idle and
                   (b.store.run(RUN) or {}).get("phase") == PHASE_DONE and
                   sum(d["digest"] in ours for d in b.store.dead_letters()) == len(bad))
        dead = [d for d in bridge.store.dead_letters() if d["digest"] in ours]
        missing = ours - {d["digest"] for d in dead}
        assert not missing, (dict(bridge.counters), [b for b in bad if digest(b) in missing])
        assert len(dead) == len(bad) and all(d["reason"] for d in dead)
        assert bridge.counters["errors"] == 0, bridge.last_error
        assert bridge.store.file_counts_all(RUN) == (6, 6, 6)


def test_a_message_whose_handling_always_fails_becomes_a_dead_letter(tmp_path):
    """A valid message that makes the bridge fail every time (here: its store lookup) is
    retried as often as a bus redelivers, then dead-lettered with the reason; the run goes
    on. (A single failure is only retried: test_bridge.py, the unexpected-error test.)"""
    from swfflow.stream.bridge.acks import HANDLING_ATTEMPTS

    log, _ = recorded(tmp_path)
    body = lines(log)
    start = json.loads(body[1])
    assert start["msg_type"] == "start_run"
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path), stack)
        real = bridge.store.processed

        def processed(msg_id):
            if msg_id == start["msg_id"]:
                raise RuntimeError("injected: this message always breaks the handling")
            return real(msg_id)

        bridge.store.processed = processed
        replay(bridge, log)
        run_until(bridge, lambda b: b.idle and b.source_done.is_set() and
                  (b.store.run(RUN) or {}).get("phase") == PHASE_DONE)
        (dead,) = bridge.store.dead_letters()
        assert dead["body"] == body[1] and dead["msg_type"] == "start_run"
        assert f"handling failed {HANDLING_ATTEMPTS} times" in dead["reason"]
        assert "injected" in dead["reason"]
        assert bridge.counters["errors"] == HANDLING_ATTEMPTS
        assert bridge.store.file_counts_all(RUN) == (6, 6, 6)
