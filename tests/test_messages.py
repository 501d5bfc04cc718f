"""Message schemas: both testbed generations parse, swfflow emits one versioned schema."""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone

import pytest

from swfflow.checksum import (
    ChecksumError,
    adler32_extend_zeros,
    adler32_file,
    normalize_adler32,
    write_sparse_file,
)
from swfflow.errors import SwfflowError
from swfflow.stream.messages import (
    SCHEMA_VERSION,
    MessageError,
    RunImminent,
    StfGen,
    StfReady,
    UnknownMessageType,
    parse_message,
    stf_filename,
    to_body,
    to_json,
    validate_filename,
)

# Bodies of reference/testbed-protocol.md §2: current runner, then the legacy simulator.
CURRENT = [
    {"msg_type": "run_imminent", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "timestamp": "2026-03-02T14:05:07.123456", "simulation_tick": 5.0, "state": "beam", "substate": "not_ready", "dataset": "swf.102363.run", "container": "/data/swf"},
    {"msg_type": "start_run", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "timestamp": "2026-03-02T14:05:15.234567", "simulation_tick": 13.1, "state": "run", "substate": "physics"},
    {"msg_type": "pause_run", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "timestamp": "2026-03-02T14:05:27.345678", "simulation_tick": 25.3, "state": "run", "substate": "standby", "reason": "Brief standby period"},
    {"msg_type": "resume_run", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "timestamp": "2026-03-02T14:05:30.456789", "simulation_tick": 28.4, "state": "run", "substate": "physics"},
    {"msg_type": "stf_gen", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "filename": "swf.102363.000001.stf", "sequence": 1, "timestamp": "2026-03-02T14:05:16.345678", "simulation_tick": 14.2, "state": "run", "substate": "physics"},
    {"msg_type": "end_run", "namespace": "alice-dev", "sender": "workflow_runner-agent-alice-7", "execution_id": "prompt_processing-alice-0044", "run_id": "102363", "timestamp": "2026-03-02T14:05:42.567890", "simulation_tick": 40.5, "total_stf_files": 10},
    {"msg_type": "stf_ready", "namespace": "alice-dev", "sender": "data-agent-alice-8", "processed_by": "data-agent-alice-8", "filename": "swf.102363.000001.stf", "run_id": "102363", "file_url": "file:///data/swf/swf.102363.run/swf.102363.000001.stf", "checksum": "ad:3915264619", "size_bytes": 191, "start": "20260302140516120001", "end": "20260302140517834512", "state": "run", "substate": "physics", "sequence": 1, "simulation_tick": 14.3},
    {"msg_type": "stf_ready", "namespace": "alice-dev", "sender": "data-agent-alice-8", "req_id": 1, "run_id": "102363", "execution_id": "prompt_processing-alice-0044"},
]
LEGACY = [
    {"msg_type": "run_imminent", "req_id": 1, "run_id": 102363, "run_conditions": {"beam_energy": "5 GeV", "magnetic_field": "1.5T", "detector_config": "physics", "bunch_structure": "216x216"}},
    {"msg_type": "start_run", "req_id": 1, "run_id": 102363, "ts": "20260302140515"},
    {"msg_type": "stf_gen", "req_id": 1, "run_id": 102363, "state": "run", "substate": "physics", "filename": "swf.102363.000000.stf", "start": "20260302140516120001", "end": "20260302140517834512", "checksum": "ad:3915264619", "size": 191},
    {"msg_type": "end_run", "req_id": 1, "run_id": 102363, "ts": "20260302140542"},
]


@pytest.mark.parametrize("body", CURRENT + LEGACY, ids=lambda b: b["msg_type"])
def test_testbed_bodies_parse_and_round_trip(body):
    message = parse_message(json.dumps(body).encode())
    assert message.msg_type == body["msg_type"]
    assert message.run_id == "102363"  # int or str: one normalized string
    assert message.timestamp.tzinfo is not None
    assert message.schema_version == 0  # the testbed is unversioned
    again = parse_message(to_json(message))
    assert again == message.model_copy(update={"schema_version": SCHEMA_VERSION})


def test_legacy_stf_gen_fields_are_normalized():
    message = parse_message(LEGACY[2])
    assert isinstance(message, StfGen)
    assert message.size_bytes == 191
    assert message.checksum == f"{3915264619:08x}" == "e95e326b"
    assert message.sequence == 0  # from the file name: legacy counts from 0
    assert message.start == datetime(2026, 3, 2, 14, 5, 16, 120001).astimezone(timezone.utc)


def test_naive_local_timestamp_becomes_utc_with_zone():
    message = parse_message(CURRENT[1])
    local = datetime(2026, 3, 2, 14, 5, 15, 234567).astimezone()
    assert message.timestamp == local and message.timestamp.utcoffset().total_seconds() == 0
    assert to_body(message)["timestamp"].endswith("Z")


def test_end_run_counts_both_spellings_and_prefers_total_stf_files():
    assert parse_message({"msg_type": "end_run", "run_id": 1, "total_files": 7}).total_stf_files == 7
    both = parse_message({"msg_type": "end_run", "run_id": 1, "total_stf_files": 9, "total_files": 0})
    assert both.total_stf_files == 9
    assert to_body(both)["total_files"] == 9  # emitted for the testbed's data agents


def test_data_ready_is_the_old_name_of_stf_ready():
    message = parse_message({"msg_type": "data_ready", "run_id": "5", "req_id": 1})
    assert isinstance(message, StfReady) and not message.per_file
    assert parse_message(CURRENT[6]).per_file


def test_emitted_schema_has_the_envelope():
    a, b = RunImminent(run_id="100010"), RunImminent(run_id="100010")
    body = to_body(a)
    assert body["schema_version"] == SCHEMA_VERSION and body["msg_type"] == "run_imminent"
    assert a.msg_id != b.msg_id and len(a.msg_id) == 32
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


def test_missing_msg_id_is_derived_stably_for_deduplication():
    assert parse_message(LEGACY[1]).msg_id == parse_message(dict(LEGACY[1])).msg_id
    assert parse_message(LEGACY[1]).msg_id != parse_message(LEGACY[3]).msg_id


@pytest.mark.parametrize("name", [
    "../etc/passwd", "a/b.stf", "a\\b", "x.stf; rm -rf /", "$(reboot).stf", "a b.stf", "`x`",
    "-rf", ".hidden", "", "a" * 256, "swf..stf", "a\nb", "a|b", "a&b", "a>b", "a*b", "a'b",
])
def test_unsafe_filenames_are_rejected(name):
    with pytest.raises(MessageError) as info:
        parse_message({"msg_type": "stf_gen", "run_id": 1, "filename": name})
    assert "filename" in str(info.value)
    with pytest.raises(ValueError):
        validate_filename(name)


def test_stf_filename_format():
    assert stf_filename(102363, 1) == "swf.102363.000001.stf"
    assert validate_filename("swf.20260302.140515.123456.run.physics.stf")


@pytest.mark.parametrize("body, field", [
    ({"msg_type": "end_run"}, "run_id"),
    ({"msg_type": "end_run", "run_id": "1/2"}, "run_id"),
    ({"msg_type": "end_run", "run_id": True}, "run_id"),
    ({"msg_type": "stf_gen", "run_id": 1}, "filename"),
    ({"msg_type": "stf_gen", "run_id": 1, "filename": "a.stf", "checksum": "xyz"}, "checksum"),
    ({"msg_type": "stf_gen", "run_id": 1, "filename": "a.stf", "size": -1}, "size"),
    ({"msg_type": "start_run", "run_id": 1, "timestamp": "yesterday"}, "timestamp"),
    ({"msg_type": "start_run", "run_id": 1, "namespace": "a b"}, "namespace"),
    ({"run_id": 1}, "msg_type"),
])
def test_bad_messages_name_the_field(body, field):
    with pytest.raises(MessageError) as info:
        parse_message(body)
    assert field in str(info.value)
    assert isinstance(info.value, SwfflowError) and info.value.exit_code == 2


@pytest.mark.parametrize("body", [b"\xff\xfe", b"{not json", b"[1, 2]", "42"])
def test_undecodable_bodies(body):
    with pytest.raises(MessageError):
        parse_message(body)


def test_unknown_type_is_distinguishable():
    with pytest.raises(UnknownMessageType):
        parse_message({"msg_type": "tf_file_registered", "run_id": "1"})


# --- checksums -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("ad:3915264619", "e95e326b"), ("ad:1", "00000001"), (1, "00000001"),
    ("620062", "00620062"), ("0x54AF0C79", "54af0c79"), ("54af0c79", "54af0c79"),
    ("adler32:65536", "00010000"), (None, None),
])
def test_normalize_adler32(value, expected):
    assert normalize_adler32(value) == expected


@pytest.mark.parametrize("value", ["ad:x", "123456789", "ad:4294967296", -1, True, "g0"])
def test_normalize_adler32_rejects(value):
    with pytest.raises(ChecksumError):
        normalize_adler32(value)


def test_adler32_file_matches_zlib_on_dense_and_sparse_files(tmp_path):
    dense = tmp_path / "dense"
    data = bytes(range(256)) * 40000 + b"tail"
    dense.write_bytes(data)
    assert adler32_file(dense) == f"{zlib.adler32(data):08x}"

    sparse = tmp_path / "sparse"
    size = 64 * 1024 * 1024 + 17
    checksum = write_sparse_file(sparse, b"header bytes\n", size)
    with open(sparse, "r+b") as handle:  # data after a hole, then another hole
        handle.seek(40 * 1024 * 1024)
        handle.write(b"middle")
    expected = zlib.adler32(sparse.read_bytes())
    assert adler32_file(sparse) == f"{expected:08x}"
    assert sparse.stat().st_blocks * 512 < 1024 * 1024  # really sparse
    assert checksum != adler32_file(sparse)  # the middle write changed it


def test_sparse_writer_checksum_matches_content(tmp_path):
    for size in (0, 5, 13, 4096, 10**7):
        path = tmp_path / f"f{size}"
        checksum = write_sparse_file(path, b"header bytes\n", size)
        content = path.read_bytes()
        assert len(content) == size
        assert checksum == f"{zlib.adler32(content):08x}" == adler32_file(path)


def test_zero_extension_is_exact_for_huge_counts():
    value = zlib.adler32(b"abc")
    assert adler32_extend_zeros(value, 0) == value
    assert adler32_extend_zeros(value, 200_000) == zlib.adler32(bytes(200_000), value)
