"""Stream bridge, fast: replayed logs and the in-process bus, local catalog + local executor.

The same handling runs against real ActiveMQ and Rucio in test_bridge_e2e.py.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from click.testing import CliRunner

from swfflow.cli import cli
from swfflow.errors import ServiceError
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay, subscribe
from swfflow.stream.bus import open_bus
from swfflow.stream.messages import EPIC_TOPIC, parse_message
from swfflow.stream.status import run_status
from swfflow.stream.store import PHASE_CLOSED, PHASE_DONE
from tests.bridge_support import OUTPUT_SCOPE, lines, pg_database, recorded, setup_for, simulate

RUN = "100010"
STREAM = f"group.daq:swf.{RUN}.run"


def run_until(bridge, condition, timeout=90.0):
    deadline = time.monotonic() + timeout
    bridge.run(until=lambda b: condition(b) or time.monotonic() > deadline)
    assert condition(bridge), (dict(bridge.counters), bridge.store.runs(),
                               {k: g.last_error for k, g in bridge.gates.items()})


def all_closed(bridge) -> bool:
    """Every STF attached and every run dataset closed (tasks may still run)."""
    runs = bridge.store.runs()
    return bool(runs) and bridge.idle and bridge.source_done.is_set() and all(
        r["phase"] in (PHASE_CLOSED, PHASE_DONE) for r in runs)


def all_done(bridge) -> bool:
    runs = bridge.store.runs()
    return bool(runs) and bridge.idle and bridge.source_done.is_set() and all(
        r["phase"] == PHASE_DONE for r in runs)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def state_url(request, tmp_path):
    """The bridge's state store: SQLite in tmp, or a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"
        return
    with pg_database() as url:
        yield url


def test_replay_drives_a_run_to_the_end(tmp_path, state_url):
    log, sim = recorded(tmp_path)
    published = []
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, state=state_url), stack,
                              publish=lambda dest, msg: published.append((dest, msg)))
        assert replay(bridge, log) == 11
        run_until(bridge, all_done)
        catalog = bridge.catalog
        files = catalog.list_files(STREAM)
        assert sorted(f.name for f in files) == [f"swf.{RUN}.{i:06d}.stf" for i in range(1, 7)]
        buffer = tmp_path / "buffer" / f"swf.{RUN}.run"
        from swfflow.checksum import adler32_file
        for record in files:  # the real size and adler32 of the real file
            assert record.size == 4096
            assert record.adler32 == adler32_file(buffer / record.name)
            # the run/sequence metadata, set after the attach (defer_metadata)
            assert record.meta == {"run_number": int(RUN),
                                   "sequence": int(record.name.split(".")[2])}
        assert not catalog.is_open(STREAM)
        summary = catalog.list_files(f"{OUTPUT_SCOPE}:swf.stfsum.{RUN}.merge.summary")
        text = open(summary[0].pfn).read()
        assert sorted(line.split()[-1].rsplit("/", 1)[-1] for line in text.splitlines()
                      if line.strip().endswith(".stf")) == [f.name for f in
                                                             sorted(files, key=lambda f: f.name)]
    # one per-file stf_ready per STF, on the ePIC topic, with the checksum Rucio got
    assert [d for d, _ in published] == [EPIC_TOPIC] * 6
    ready = sorted(published, key=lambda p: p[1].sequence)
    assert [m.filename for _, m in ready] == sorted(f.name for f in files)
    assert all(m.per_file and m.checksum for _, m in ready)
    status = run_status(state_url, RUN)["runs"][0]
    assert (status["phase"], status["stf_announced"], status["stf_attached"],
            status["stf_metadata_set"]) == ("done", 6, 6, 6)
    assert status["daq_state"] == "run" and status["daq_substate"] == "physics"
    assert [t["phase"] for t in status["tasks"]] == ["succeeded", "succeeded"]
    assert sim.stf_files == 6


def test_duplicates_and_a_second_replay_change_nothing(tmp_path, state_url):
    log, _ = recorded(tmp_path)
    doubled = tmp_path / "doubled.jsonl"
    body = lines(log)
    doubled.write_text("\n".join(body[:5] + body[2:5] + body[5:] + body) + "\n")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, state=state_url), stack)
        replay(bridge, doubled)
        run_until(bridge, all_done)
        first = sorted((f.did, f.adler32) for f in bridge.catalog.list_files(STREAM))
        # copies arriving while the first is still in flight wait on the same effect
        assert bridge.counters["received"] == 11 + 3 + 11
        assert bridge.counters["attached"] == 6
    with contextlib.ExitStack() as stack:  # a new bridge on the same store: the same log again
        bridge = build_bridge(setup_for(tmp_path, state=state_url), stack)
        replay(bridge, log)
        run_until(bridge, lambda b: b.idle and b.source_done.is_set())
        assert bridge.counters["duplicates"] == 11 and not bridge.counters["attached"]
        assert sorted((f.did, f.adler32) for f in bridge.catalog.list_files(STREAM)) == first
        executor_tasks = bridge.executor.job_rows
        rows = bridge.driver_store.load(f"{bridge.template.workflow}:{RUN}")
        assert {k: r["task_id"] for k, r in rows.items()} == \
            {"sizes": "1", "merge": "2"}  # no task submitted twice
        assert executor_tasks("3") == []


BAD_MESSAGES = {
    "not json": "this is not json",
    "no msg_type": json.dumps({"run_id": RUN}),
    "path separator": json.dumps({"msg_type": "stf_gen", "run_id": RUN,
                                  "filename": "../etc/passwd", "size": 1, "checksum": "ad:1"}),
    "shell characters": json.dumps({"msg_type": "stf_gen", "run_id": RUN,
                                    "filename": "a.stf;rm -rf ~", "size": 1,
                                    "checksum": "ad:1"}),
    "unknown run": json.dumps({"msg_type": "stf_gen", "run_id": "999", "filename":
                               "swf.999.000001.stf", "size": 1, "checksum": "ad:1"}),
    "no size and no file": json.dumps({"msg_type": "stf_gen", "run_id": RUN,
                                       "filename": f"swf.{RUN}.000099.stf"}),
}


def test_bad_messages_go_to_dead_letters_and_the_run_goes_on(tmp_path):
    log, _ = recorded(tmp_path)
    body = lines(log)
    mixed = tmp_path / "mixed.jsonl"
    # the bad ones arrive in the middle of the run (after run_imminent)
    mixed.write_text("\n".join(body[:3] + list(BAD_MESSAGES.values()) + body[3:]) + "\n")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path), stack)
        replay(bridge, mixed)
        run_until(bridge, all_closed)
        dead = bridge.store.dead_letters()
        assert len(dead) == len(BAD_MESSAGES)
        reasons = {d["body"]: d["reason"] for d in dead}
        assert "not JSON" in reasons["this is not json"]
        assert "msg_type" in reasons[BAD_MESSAGES["no msg_type"]]
        assert "unsafe or invalid file name" in reasons[BAD_MESSAGES["path separator"]]
        assert "unsafe or invalid file name" in reasons[BAD_MESSAGES["shell characters"]]
        assert "unknown run 999" in reasons[BAD_MESSAGES["unknown run"]]
        assert "no size/checksum" in reasons[BAD_MESSAGES["no size and no file"]]
        assert len(bridge.catalog.list_files(STREAM)) == 6  # the valid run is unaffected


def test_namespace_filter_drops_other_namespaces(tmp_path):
    log, _ = recorded(tmp_path, namespace="bob-dev")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, namespace="alice-dev"), stack)
        replay(bridge, log)
        run_until(bridge, lambda b: b.idle and b.source_done.is_set())
        assert bridge.counters["other_namespace"] == 11
        assert bridge.store.runs() == [] and bridge.store.dead_letters() == []


def test_end_run_waits_for_announced_stfs_then_records_the_missing(tmp_path):
    log, _ = recorded(tmp_path)
    body = lines(log)
    lost = [b for b in body if json.loads(b).get("sequence") == 4]
    gappy = tmp_path / "gappy.jsonl"
    gappy.write_text("\n".join(b for b in body if b not in lost) + "\n")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, end_timeout_s=1.0), stack)
        replay(bridge, gappy)
        started = time.monotonic()
        run_until(bridge, lambda b: (b.store.run(RUN) or {}).get("phase") in
                  (PHASE_CLOSED, PHASE_DONE))
        assert time.monotonic() - started >= 1.0  # it did wait for the missing STF
        row = bridge.store.run(RUN)
        assert row["missing"] == [4] and "1 of 6 announced STF(s) missing" in row["message"]
        assert not bridge.catalog.is_open(STREAM)
        assert len(bridge.catalog.list_files(STREAM)) == 5


def test_late_stf_after_the_end_waits_and_closes_complete(tmp_path):
    """STF 6 arrives after end_run (out of order): the close waits for it."""
    log, _ = recorded(tmp_path)
    body = lines(log)
    last_stf, end = body[-2], body[-1]
    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("\n".join(body[:-2] + [end, last_stf]) + "\n")
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path), stack)
        replay(bridge, swapped)
        run_until(bridge, all_closed)
        assert bridge.store.run(RUN)["missing"] == []
        assert len(bridge.catalog.list_files(STREAM)) == 6


class FlakyCatalog:
    """The real local catalog, unreachable for its first ``failures`` attach calls."""

    def __init__(self, catalog, failures):
        self.catalog, self.failures = catalog, failures

    def __getattr__(self, name):
        return getattr(self.catalog, name)

    def add_files(self, *args, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise ServiceError("Rucio server down (injected)")
        return self.catalog.add_files(*args, **kwargs)


def test_catalog_outage_holds_acks_until_attached_then_drains(tmp_path):
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus("memory://outage"))
        bridge = build_bridge(setup_for(tmp_path, retry_initial_s=0.05), stack)
        bridge.catalog = FlakyCatalog(bridge.catalog, failures=4)
        subscribe(bridge, bus, EPIC_TOPIC, "bridge-test")
        simulate(tmp_path, bus=bus)
        broker = bus.broker
        # while attaching fails, nothing of the STFs is acked
        run_until(bridge, lambda b: b.gates["attach"].failures >= 2, timeout=20)
        unacked = [s.unacked for s in bus._subscriptions][0]
        assert sum(parse_message(i.body).msg_type == "stf_gen" for i in unacked.values()) == 6
        run_until(bridge, lambda b: all(r["phase"] == PHASE_DONE for r in b.store.runs())
                  and b.idle)
        assert not [s.unacked for s in bus._subscriptions][0]
        assert not broker.dead_letters
        assert len(bridge.catalog.list_files(STREAM)) == 6


def test_restart_resumes_recorded_stfs_without_loss_or_duplicates(tmp_path):
    log, _ = recorded(tmp_path)
    body = lines(log)
    with contextlib.ExitStack() as stack:  # "crash": Rucio down, stopped with 4 STFs recorded
        bridge = build_bridge(setup_for(tmp_path, retry_initial_s=10.0), stack)
        replay_part = tmp_path / "part.jsonl"
        replay_part.write_text("\n".join(body[:7]) + "\n")
        bridge.catalog = FlakyCatalog(bridge.catalog, failures=10**6)
        replay(bridge, replay_part)
        run_until(bridge, lambda b: not b.deliveries_waiting() and len(b.pending) == 3,
                  timeout=20)
        assert bridge.store.file_counts(RUN) == (3, 0)
        bridge.work.flush_now = lambda: None  # like kill -9: no shutdown flush
    with contextlib.ExitStack() as stack:  # restart; the unacked messages come again
        bridge = build_bridge(setup_for(tmp_path), stack)
        replay(bridge, log)
        run_until(bridge, all_closed)
        assert bridge.store.file_counts(RUN) == (6, 6)
        assert len(bridge.catalog.list_files(STREAM)) == 6


def test_no_wake_up_is_left_in_the_inbox_after_the_loop(tmp_path):
    """A catalog call wakes the loop by queueing an empty delivery when it is done; the shutdown
    flush's own call (failing here) must not leave one behind to be taken for a delivery."""
    log, _ = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, batch_ms=60_000.0, retry_initial_s=10.0),
                              stack)
        bridge.catalog = FlakyCatalog(bridge.catalog, failures=10**6)
        replay(bridge, log)
        bridge.run(until=lambda b: len(b.pending) == 6)  # no attach yet: the batch is young
        assert bridge.gates["attach"].total_failures == 1  # the flush tried, and failed
        assert bridge.inbox.empty() and not bridge.deliveries_waiting()


def test_cli_replay_json_and_status(tmp_path):
    log, _ = recorded(tmp_path)
    state = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(cli, [
        "bridge", str(setup_for(tmp_path).workflow), "--replay", str(log), "--state", state,
        "--workdir", str(tmp_path / "w"), "--no-container", "--tick", "0.2", "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["counters"]["attached"] == 6
    assert [r["phase"] for r in report["runs"]] == ["done"]


def test_cli_replay_exits_non_zero_when_a_run_failed(tmp_path, capsys):
    """A bounded bridge (--replay, --exit-after) whose run failed exits 1 and says which."""
    from swfflow.cli import main
    from tests.bridge_support import WORKFLOW

    failing = tmp_path / "failing.cwl"
    failing.write_text(WORKFLOW.read_text().replace("baseCommand: [wc, -c]",
                                                    "baseCommand: [\"false\"]"))
    log, _ = recorded(tmp_path)
    state = f"sqlite:///{tmp_path / 'cli.db'}"
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", str(failing), "--replay", str(log), "--state", state, "--exit-after",
              "1", "--workdir", str(tmp_path / "w"), "--no-container", "--tick", "0.2", "-q"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "1 of 1 run(s) failed: run 100010" in err and "swfflow status" in err
    assert "Traceback" not in err


def test_subscribe_only_makes_the_broker_keep_messages_for_the_bridge(tmp_path, capsys):
    """README demo: `--subscribe-only` first, so the DAQ's first messages wait for the bridge."""
    from swfflow.cli import main
    from tests.bridge_support import PROFILE, WORKFLOW

    url = f"memory://subscribe-only-{tmp_path.name}"
    main(["bridge", str(WORKFLOW), "--profile", str(PROFILE), "--broker", url,
          "--namespace", "demo", "--subscribe-only"])
    out = capsys.readouterr().out
    name = out.split()[2]
    assert out.startswith("durable subscription swfflow-bridge-") and name.endswith("-demo")
    got = []
    with open_bus(url) as bus:
        bus.publish(EPIC_TOPIC, '{"msg_type": "start_run", "run_id": "100010"}')
        subscription = bus.subscribe(EPIC_TOPIC, lambda d: (got.append(d.body), d.ack()),
                                     durable_name=name)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        subscription.forget()
    assert got == ['{"msg_type": "start_run", "run_id": "100010"}']


@pytest.mark.parametrize("args, message", [
    ([], "no message source"),
    (["--replay", "/nonexistent.jsonl"], "cannot read the replay log"),
    (["--replay", "{tmp}/x.jsonl", "--state", "nonsense"], "not a database URL"),
])
def test_cli_errors_are_clear(tmp_path, capsys, args, message):
    from swfflow.cli import main

    (tmp_path / "x.jsonl").write_text("")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--state" not in args:  # never the default store in the working directory
        args += ["--state", f"sqlite:///{tmp_path / 'state.db'}"]
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", str(setup_for(tmp_path).workflow), *args,
              "--workdir", str(tmp_path / "w")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_unexpected_error_while_handling_is_recorded_and_the_message_retried(tmp_path):
    """Errors in the bridge thread never vanish: counted, in the summary, message redelivered."""
    from sqlalchemy.exc import OperationalError

    from swfflow.stream.bridge.setup import summary

    log, _ = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path), stack)
        real_add_files, failures = bridge.store.add_files, [1]

        def add_files_once_locked(rows):
            if failures[0]:
                failures[0] -= 1
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            return real_add_files(rows)

        bridge.store.add_files = add_files_once_locked
        replay(bridge, log)
        run_until(bridge, all_closed)
        assert bridge.counters["errors"] == 1
        assert bridge.store.file_counts(RUN) == (6, 6)  # the failed stf_gen(s) came again
        errors = summary(bridge)["errors"]
        assert errors["handling"]["failures"] == 1
        assert "database is locked" in errors["handling"]["last_error"]


@pytest.mark.services
def test_a_permanent_rucio_refusal_fails_the_run_visibly(tmp_path, rucio_env):
    """A scope the real Rucio server does not have: no endless retries; the run is failed with
    the reason (store and status) and its waiting messages are dead letters saying why."""
    import dataclasses

    from tests.bridge_support import first_run_number

    run = str(first_run_number())
    log, _ = recorded(tmp_path, first_run=int(run))
    profile = tmp_path / "profile.yaml"
    profile.write_text("scopes:\n  output: user.nosuchscope\n")
    setup = dataclasses.replace(setup_for(tmp_path, catalog="rucio",
                                          rucio_config=rucio_env["RUCIO_CONFIG"]),
                                profile=str(profile))
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup, stack)
        replay(bridge, log)
        run_until(bridge, lambda b: b.idle and b.source_done.is_set() and
                  (b.store.run(run) or {}).get("phase") == "failed", timeout=60)
        assert bridge.gates["prepare"].total_failures == 0  # refused once, not retried
        row = bridge.store.run(run)
        assert "prepare failed permanently" in row["message"]
        assert "ScopeNotFound" in row["message"] or "nosuchscope" in row["message"]
        dead = [d["msg_type"] for d in bridge.store.dead_letters()]
        # what waited on the run's effects; state changes (start/pause/resume) are recorded
        assert dead.count("run_imminent") == 1 and dead.count("stf_gen") == 6
        assert set(dead) <= {"run_imminent", "stf_gen", "end_run"}
        status = run_status(setup.state, run)["runs"][0]
        assert status["phase"] == "failed" and status["message"] == row["message"]


def test_a_backlog_larger_than_a_batch_is_handled_whole(tmp_path):
    """issue 6: the loop took a delivery out of the inbox after its batch was full and never
    handled it (every batch_size+1-th message lost until a redelivery). A replayed log puts
    its whole backlog in the inbox at once: with batches of 4, all 30 STFs still attach."""
    text = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,30", stf_interval: 1}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""
    log, sim = recorded(tmp_path, text=text)
    assert sim.stf_files == 30
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, batch_size=4), stack)
        assert replay(bridge, log) == 33  # imminent, start, 30 STFs, end
        run_until(bridge, all_closed, timeout=30)
        status = run_status(f"sqlite:///{tmp_path / 'state' / 'bridge.db'}", RUN)["runs"][0]
        assert (status["stf_announced"], status["stf_recorded"], status["stf_attached"],
                status["missing"]) == (30, 30, 30, [])
        assert len(bridge.catalog.list_files(STREAM)) == 30


@pytest.mark.parametrize("defer", [True, False])
def test_metadata_is_set_after_the_attach_or_with_it(tmp_path, defer):
    """defer_metadata: the attach carries no metadata and a later call sets it (Rucio's slow
    path, off the attach path); without it, the attach carries it. Either way a run is done
    only with every STF's metadata set."""
    from swfflow.backends.local_catalog import LocalCatalog

    attached: list[dict] = []  # the metadata each STF was attached with
    set_later: list[dict] = []  # and what was set afterwards

    class Watched(LocalCatalog):
        def add_files(self, dataset, files, **kw):
            if dataset == STREAM:
                attached.extend(dict(f.meta) for f in files)
            return super().add_files(dataset, files, **kw)

        def set_file_metadata(self, files):
            set_later.extend(dict(f.meta) for f in files)
            return super().set_file_metadata(files)

    log, _ = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, defer_metadata=defer), stack)
        bridge.catalog = bridge.attach_catalog = Watched(bridge.catalog.engine)
        replay(bridge, log)
        run_until(bridge, all_done)
        metas = sorted((f.meta["sequence"], f.meta["run_number"])
                       for f in bridge.catalog.list_files(STREAM))
    assert metas == [(i, int(RUN)) for i in range(1, 7)]
    assert len(attached) == 6
    with_meta = attached if not defer else set_later
    assert sorted(m["sequence"] for m in with_meta) == list(range(1, 7))
    assert (attached if defer else set_later) == ([{}] * 6 if defer else [])


def test_a_store_from_before_meta_at_is_migrated(tmp_path):
    """A state database written before the meta_at column existed gets it (NULL: metadata
    to set), and its runs go on."""
    import sqlite3

    from swfflow.stream.store import BridgeStore
    from swfflow.state import state_engine

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE br_files (run_id VARCHAR(64) NOT NULL, filename VARCHAR(255) "
                 "NOT NULL, sequence INTEGER, size INTEGER NOT NULL, adler32 VARCHAR(8) NOT "
                 "NULL, pfn TEXT, msg_id VARCHAR(64), gen_at FLOAT NOT NULL, attached_at FLOAT,"
                 " ready_sent BOOLEAN NOT NULL, PRIMARY KEY (run_id, filename))")
    conn.execute("INSERT INTO br_files VALUES ('7', 'swf.7.000001.stf', 1, 10, '0000000b', "
                 "NULL, 'm1', 1.0, 2.0, 1)")
    conn.commit()
    conn.close()
    engine = state_engine(f"sqlite:///{path}")
    store = BridgeStore(engine)
    (row,) = store.without_metadata(["7"], 10)
    assert (row.filename, row.attached_at, row.meta_at) == ("swf.7.000001.stf", 2.0, None)
    store.mark_metadata([row])
    assert store.without_metadata(["7"], 10) == []
    assert store.file_counts_all("7") == (1, 1, 1)
    engine.dispose()


def test_a_backlog_of_whole_batches_still_gets_its_metadata(tmp_path):
    """Regression: when the last attach of a backlog took a full batch, the metadata lane
    waited for a smaller one that never came, so the run never got done. With a batch size
    of 1 every attach takes a full batch."""
    log, _ = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, batch_size=1), stack)
        replay(bridge, log)
        run_until(bridge, all_done, timeout=30)
        assert bridge.store.file_counts_all(RUN) == (6, 6, 6)
