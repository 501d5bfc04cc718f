"""End to end against a real ActiveMQ: `swfflow daqsim` → /topic/epictopic → a subscriber."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pytest

from swfflow.checksum import adler32_file
from swfflow.stream.bus import open_bus
from swfflow.stream.messages import EPIC_TOPIC, StfGen, parse_message

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.services


def test_daqsim_into_activemq_full_sequence_and_files(stomp_url, tmp_path):
    namespace = f"test-{uuid.uuid4().hex[:8]}"  # the topic is shared: keep only our messages
    received = []

    def handler(delivery):
        message = delivery.message()
        if message.namespace == namespace:
            received.append(message)
        delivery.ack()

    with open_bus(stomp_url) as bus:
        bus.subscribe(EPIC_TOPIC, handler)
        time.sleep(0.3)
        result = subprocess.run(
            [sys.executable, "-m", "swfflow.cli", "daqsim", str(REPO / "schedules/example.yaml"),
             "--fast", "--quiet", "--broker", stomp_url, "--namespace", namespace,
             "--buffer", str(tmp_path / "buffer"), "--run-counter", str(tmp_path / "rc"),
             "--stf-size", "64MiB", "--seed", "11"],
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while (not received or received[-1].msg_type != "end_run") and time.monotonic() < deadline:
            time.sleep(0.05)

    types = [m.msg_type for m in received]
    assert types == ["run_imminent", "start_run", "resume_run", *["stf_gen"] * 30, "end_run"]
    run_id = received[0].run_id
    assert run_id == "100010" and {m.run_id for m in received} == {run_id}
    assert received[-1].total_stf_files == 30
    ticks = [m.simulation_tick for m in received]
    assert ticks == sorted(ticks) and ticks[0] == 10 and ticks[-1] == 100
    stfs = [m for m in received if isinstance(m, StfGen)]
    assert [m.sequence for m in stfs] == list(range(1, 31))
    files = sorted((tmp_path / "buffer" / f"swf.{run_id}.run").glob("*.stf"))
    assert [f.name for f in files] == [m.filename for m in stfs]
    for stf, path in zip(stfs, files):
        assert path.stat().st_size == stf.size_bytes == 64 * 2**20
        assert adler32_file(path) == stf.checksum
    assert f"{zlib.adler32(files[0].read_bytes()):08x}" == stfs[0].checksum  # full read agrees
    assert all(parse_message(m.model_dump()) for m in received)
