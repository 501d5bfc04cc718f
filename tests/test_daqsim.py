"""DAQ simulator: schedules (and their errors), message sequence, real STF files, run numbers."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from swfflow.checksum import adler32_file
from swfflow.cli import cli, main
from swfflow.daqsim.runs import FIRST_RUN_NUMBER, RunCounter
from swfflow.daqsim.schedule import ScheduleError, load_schedule, parse_schedule
from swfflow.daqsim.sim import DaqSimulator, SimConfig
from swfflow.stream.bus import open_bus
from swfflow.stream.messages import EndRun, StfGen, parse_message

REPO = Path(__file__).resolve().parents[1]
SCHEDULES = REPO / "schedules"


def simulate(text: str, tmp_path: Path, **overrides):
    """Run a schedule in fast mode; return (messages, summary) as recorded."""
    config = SimConfig(buffer=tmp_path / "buffer", seed=7, namespace="testns",
                       start_time=datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc), **overrides)
    record = tmp_path / "record.jsonl"
    with open(record, "w") as sink:
        simulator = DaqSimulator(parse_schedule(text, "test.yaml"), config, None,
                                 RunCounter(tmp_path / "counter"), record=sink)
        summary = simulator.simulate()
    return [parse_message(line) for line in record.read_text().splitlines()], summary


def kinds(messages):
    compact = []
    for message in messages:
        if message.msg_type == "stf_gen" and compact and compact[-1][0] == "stf_gen":
            compact[-1] = ("stf_gen", compact[-1][1] + 1)
        else:
            compact.append((message.msg_type, 1))
    return [kind if count == 1 and kind != "stf_gen" else f"{kind}x{count}"
            for kind, count in compact]


# --- the shipped schedules ------------------------------------------------------------------

def test_seed_example_sequence_and_files(tmp_path):
    messages, summary = simulate((SCHEDULES / "example.yaml").read_text(), tmp_path)
    assert kinds(messages) == ["run_imminent", "start_run", "resume_run", "stf_genx30", "end_run"]
    imminent, start, resume, *stfs, end = messages
    assert (imminent.state, imminent.substate, imminent.simulation_tick) == ("beam", "not_ready", 10)
    assert (start.substate, start.simulation_tick, resume.simulation_tick) == ("standby", 30, 40)
    assert imminent.dataset == "swf.100010.run" and {m.run_id for m in messages} == {"100010"}
    assert end.total_stf_files == 30 and end.simulation_tick == 100
    assert {m.namespace for m in messages} == {"testns"}
    assert len({m.msg_id for m in messages}) == len(messages)
    assert all(m.timestamp.tzinfo is not None for m in messages)
    for sequence, stf in enumerate(stfs, start=1):
        assert isinstance(stf, StfGen) and stf.sequence == sequence
        assert stf.filename == f"swf.100010.{sequence:06d}.stf"
        path = Path(stf.file_url.removeprefix("file://"))
        assert path == tmp_path.resolve() / "buffer" / "swf.100010.run" / stf.filename
        assert path.stat().st_size == stf.size_bytes == 1_000_000
        assert adler32_file(path) == stf.checksum
        assert (stf.end - stf.start).total_seconds() == pytest.approx(2.0)
        assert stf.timestamp == stf.end
    content = Path(stfs[0].file_url.removeprefix("file://")).read_bytes()
    assert f"{zlib.adler32(content):08x}" == stfs[0].checksum
    header = content.split(b"\n")[0].decode()
    assert header.startswith("# STF run=100010 seq=1 ntf=8 state=run substate=physics start=")
    assert summary.stf_files == 30


def test_example_tools_read_simulated_stfs(tmp_path):
    """The one STF format (docs/messages.md): calibkit's reco reads what daqsim writes, up to
    the sparse hole, and the fit of the merged histograms finds a calibrated detector."""
    messages, _ = simulate((SCHEDULES / "example.yaml").read_text(), tmp_path)
    kit = [sys.executable, str(REPO / "examples/tools/bin/calibkit.py")]
    stfs = [Path(m.file_url.removeprefix("file://")) for m in messages if isinstance(m, StfGen)]
    for stf in stfs[:3]:
        subprocess.run([*kit, "reco", str(stf)], cwd=tmp_path, check=True)
    hists = sorted(tmp_path.glob("*.hist.json"))
    first = json.loads(hists[0].read_text())
    assert (first["run"], first["seq"]) == (100010, 1)
    assert sum(entry["n"] for entry in first["channels"].values()) > 8 * 16 // 2
    subprocess.run([*kit, "merge", *map(str, hists)], cwd=tmp_path, check=True)
    subprocess.run([*kit, "fit", "merged.hist.json", "ecal"], cwd=tmp_path, check=True)
    feedback = json.loads((tmp_path / "feedback.json").read_text())
    assert feedback["n_stf"] == 3 and feedback["status"] == "good"


def test_physics_day_and_stress_are_valid():
    day = load_schedule(SCHEDULES / "physics-day.yaml")
    assert day.duration_s == 24 * 3600
    assert {e.substate for e in day.entries} >= {"calib", "standby", "physics", "lumi"}
    assert any(e.new_run for e in day.entries)
    stress = load_schedule(SCHEDULES / "stress.yaml")
    assert min(e.stf_interval[0] for e in stress.entries if e.stf_interval) <= 0.02


PAUSES = """
- {state: no_beam, substate: not_ready, span: "0,0,0,0,5"}
- {state: beam,    substate: not_ready, span: "0,0,0,0,5"}
- {state: beam,    substate: ready,     span: "0,0,0,0,5"}
- {state: run,     substate: physics,   span: "0,0,0,0,10"}
- {state: run,     substate: standby,   span: "0,0,0,0,4"}
- {state: run,     substate: physics,   span: "0,0,0,0,6", stf_rate: 1}
- {state: run,     substate: calib,     span: "0,0,0,0,6", stf_interval: 3, new_run: true}
- {state: no_beam, substate: not_ready, span: "0,0,0,0,5"}
- {state: run,     substate: physics,   span: "0,0,0,0,4", stf_size: 100, stf_interval: [0.5, 1.5]}
"""


def test_transitions_pause_resume_new_run_and_beam_loss(tmp_path):
    messages, summary = simulate(PAUSES, tmp_path)
    assert kinds(messages) == [
        "run_imminent", "start_run", "stf_genx5", "pause_run", "resume_run", "stf_genx6",
        "end_run", "run_imminent", "start_run", "stf_genx2", "end_run",
        "run_imminent", "start_run", *(["stf_genx%d" % summary.runs[2].stf_files]), "end_run"]
    runs = [m.run_id for m in messages if m.msg_type == "start_run"]
    assert runs == ["100010", "100011", "100012"]
    ends = [m for m in messages if isinstance(m, EndRun)]
    assert [e.total_stf_files for e in ends] == [11, 2, summary.runs[2].stf_files]
    pause = next(m for m in messages if m.msg_type == "pause_run")
    assert pause.simulation_tick == 25 and "standby" in pause.reason
    calib = [m for m in messages if m.msg_type == "stf_gen" and m.run_id == "100011"]
    assert [m.substate for m in calib] == ["calib", "calib"]
    assert [m.sequence for m in calib] == [1, 2]  # sequences restart per run
    jittered = [m for m in messages if m.msg_type == "stf_gen" and m.run_id == "100012"]
    assert all(m.size_bytes == 100 for m in jittered)
    assert len({round((m.end - m.start).total_seconds(), 6) for m in jittered}) > 1


def test_seed_makes_runs_reproducible(tmp_path):
    def fingerprint(directory):
        messages, _ = simulate(PAUSES, directory)
        return [(m.msg_type, getattr(m, "checksum", None), m.simulation_tick) for m in messages]

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    assert fingerprint(first) == fingerprint(second)


def test_sparse_gigabyte_stfs(tmp_path):
    text = '- {state: run, substate: physics, span: "0,0,0,0,6", stf_size: 2GB}'
    messages, _ = simulate(text, tmp_path)
    stfs = [m for m in messages if isinstance(m, StfGen)]
    assert len(stfs) == 3
    for stf in stfs:
        path = Path(stf.file_url.removeprefix("file://"))
        assert path.stat().st_size == 2 * 10**9
        assert path.stat().st_blocks * 512 < 10**6
        assert adler32_file(path) == stf.checksum


def test_existing_stf_is_never_overwritten(tmp_path):
    counter = tmp_path / "counter"
    text = '- {state: run, substate: physics, span: "0,0,0,0,2"}'
    simulate(text, tmp_path)
    counter.write_text(f"{FIRST_RUN_NUMBER - 1}\n")  # someone reset the counter
    from swfflow.errors import RunFailed

    with pytest.raises(RunFailed, match="already exists"):
        simulate(text, tmp_path)


# --- bad schedules ---------------------------------------------------------------------------

BAD = {
    "malformed span": ("- {state: run, substate: physics, span: '0,0,1'}\n", 1, "span"),
    "span not numbers": ("- state: run\n  substate: physics\n  span: a,b,c,d,e\n", 1, "span"),
    "negative span": ("- {state: beam, substate: ready, span: '0,0,0,0,-5'}\n", 1, "span"),
    "zero span": ("- {state: beam, substate: ready, span: '0,0,0,0,0'}\n", 1, "zero"),
    "unknown state": ("- {state: beam, substate: ready, span: '0,0,0,0,5'}\n"
                      "- {state: warp, substate: ready, span: '0,0,0,0,5'}\n", 2, "unknown state"),
    "unknown substate": ("\n\n- {state: beam, substate: physics, span: '0,0,0,0,5'}\n", 3,
                         "unknown substate"),
    "not a list": ("state: run\nsubstate: physics\nspan: 0,0,0,0,5\n", 1, "not a list"),
    "empty": ("# nothing\n", 1, "empty"),
    "entry not a mapping": ("- run physics\n", 1, "mapping"),
    "missing key": ("- {state: run, substate: physics}\n", 1, "missing 'span'"),
    "unknown key": ("- {state: run, substate: physics, span: '0,0,0,0,5', sapn: 1}\n", 1, "sapn"),
    "bad yaml": ("- {state: run\n", 2, "YAML"),
    "stf outside run": ("- {state: beam, substate: ready, span: '0,0,0,0,5', stf_rate: 1}\n", 1,
                        "need a run"),
    "bad size": ("- {state: run, substate: physics, span: '0,0,0,0,5', stf_size: 2XB}\n", 1,
                 "stf_size"),
    "rate and interval": ("- {state: run, substate: physics, span: '0,0,0,0,5', stf_rate: 1, "
                          "stf_interval: 1}\n", 1, "either"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_schedules_give_one_clear_error(case, tmp_path):
    text, line, words = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        load_schedule(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert words in message
    assert "weeks,days,hours,minutes,seconds" in message  # the expected format
    if case not in ("not a list", "empty", "bad yaml"):
        assert "entry" in message


def test_bad_schedule_cli_exit_2_without_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("- {state: run, substate: physics, span: '1 hour'}\n")
    with pytest.raises(SystemExit) as info:
        main(["daqsim", str(path), "--fast", "--buffer", str(tmp_path / "b")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}:1: entry 1: malformed span" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()  # nothing happened before validation


def test_yaml_off_is_a_state_not_false():
    schedule = parse_schedule("- {state: off, substate: daq, span: '0,0,0,0,5'}")
    assert schedule.entries[0].state == "off"


# --- run numbers -----------------------------------------------------------------------------

def _take(path: str, count: int, queue) -> None:
    counter = RunCounter(path)
    queue.put([counter.next() for _ in range(count)])


def test_run_counter_is_unique_across_processes(tmp_path):
    path = str(tmp_path / "counter")
    queue = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(target=_take, args=(path, 40, queue))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    numbers = [n for _ in workers for n in queue.get(timeout=30)]
    for worker in workers:
        worker.join()
    assert sorted(numbers) == list(range(FIRST_RUN_NUMBER, FIRST_RUN_NUMBER + 120))


def test_run_counter_rejects_garbage(tmp_path):
    from swfflow.errors import ConfigError

    path = tmp_path / "counter"
    path.write_text("banana")
    with pytest.raises(ConfigError, match="not a run number"):
        RunCounter(path).next()


# --- the command -----------------------------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ({"SWFFLOW_NAMESPACE": "epic-dev"}, "epic-dev"),  # the configured namespace
    ({"USER": "alice smith", "LOGNAME": "alice smith"}, "alice-smith"),  # else the user's
])
def test_cli_without_namespace_stamps_one(tmp_path, monkeypatch, env, expected):
    """The reference testbed always stamps a namespace; so does daqsim without --namespace."""
    monkeypatch.delenv("SWFFLOW_NAMESPACE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    record = tmp_path / "run.jsonl"
    result = CliRunner().invoke(cli, [
        "daqsim", str(SCHEDULES / "example.yaml"), "--fast", "--quiet", "--stf-size", "4KiB",
        "--buffer", str(tmp_path / "buf"), "--run-counter", str(tmp_path / "rc"),
        "--record", str(record)])
    assert result.exit_code == 0, result.output
    namespaces = {parse_message(line).namespace for line in record.read_text().splitlines()}
    assert namespaces == {expected}


def test_cli_fast_json_record_and_memory_bus(tmp_path):
    record = tmp_path / "run.jsonl"
    result = CliRunner().invoke(cli, [
        "daqsim", str(SCHEDULES / "example.yaml"), "--fast", "--seed", "3", "--json",
        "--buffer", str(tmp_path / "buf"), "--run-counter", str(tmp_path / "rc"),
        "--record", str(record), "--namespace", "ns", "--stf-size", "4KiB",
        "--broker", "memory://cli-test",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["stf_files"] == 30 and summary["messages_total"] == 34
    assert summary["stf_bytes"] == 30 * 4096 and summary["seed"] == 3
    lines = record.read_text().splitlines()
    assert len(lines) == 34 and parse_message(lines[0]).msg_type == "run_imminent"
    assert len(list((tmp_path / "buf" / "swf.100010.run").glob("*.stf"))) == 30


def test_simulator_publishes_to_the_bus(tmp_path):
    got = []
    with open_bus("memory://sim-bus") as bus:
        bus.subscribe("/topic/epictopic", lambda d: (got.append(d.message()), d.ack()))
        config = SimConfig(buffer=tmp_path / "buf", seed=1)
        DaqSimulator(load_schedule(SCHEDULES / "example.yaml"), config, bus,
                     RunCounter(tmp_path / "rc")).simulate()
        assert bus.wait_idle(10)
    assert kinds(got) == ["run_imminent", "start_run", "resume_run", "stf_genx30", "end_run"]


def test_realtime_factor_paces_the_clock(tmp_path):
    import time

    text = '- {state: run, substate: physics, span: "0,0,0,0,2", stf_interval: 0.5}'
    started = time.perf_counter()
    messages, summary = simulate(text, tmp_path, fast=False, factor=0.1)
    elapsed = time.perf_counter() - started
    assert 0.15 <= elapsed < 2.0  # 2 simulated seconds at 0.1 wall s per simulated s
    assert summary.stf_files == 4


@pytest.mark.parametrize("args, words", [
    (["--fast", "--factor", "2"], "exclude"),
    (["--stf-size", "lots"], "stf_size"),
    (["--destination", "epictopic"], "destination"),
    (["--broker", "kafka://x"], "broker URL"),
])
def test_cli_bad_options(args, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["daqsim", str(SCHEDULES / "example.yaml"), "--buffer", str(tmp_path), *args])
    assert info.value.code == 2
    assert words in capsys.readouterr().err


def test_record_replays_into_a_bus(tmp_path):
    from swfflow.daqsim.record import read_record, replay
    from swfflow.stream.messages import MessageError

    messages, _ = simulate((SCHEDULES / "example.yaml").read_text(), tmp_path)
    record = tmp_path / "record.jsonl"
    assert [m.msg_id for m in read_record(record)] == [m.msg_id for m in messages]
    got = []
    with open_bus("memory://replay") as bus:
        bus.subscribe("/topic/epictopic", lambda d: (got.append(d.message()), d.ack()))
        assert replay(record, bus) == 34
        assert bus.wait_idle(10)
    assert [(m.msg_id, m.msg_type) for m in got] == [(m.msg_id, m.msg_type) for m in messages]
    record.write_text(record.read_text() + '{"msg_type": "stf_gen", "run_id": 1, "filename": "a/b"}\n')
    with pytest.raises(MessageError, match=r"record.jsonl:35"):
        list(read_record(record))
