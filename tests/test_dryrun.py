"""``--backend dryrun`` and the backend table (swfflow.assemble): a new executor is one file
plus one row, offered by ``swfflow submit`` and ``swfflow bridge`` and built by nobody else."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swfflow.assemble import BACKENDS, Settings, assemble, build_executor, executor_at
from swfflow.backends.base import Executor, TaskState
from swfflow.backends.dryrun import RECORD, DryRunExecutor
from swfflow.backends.local_catalog import LocalCatalog
from swfflow.errors import ConfigError
from swfflow.pipeline import build_plan
from swfflow.state import sqlite_engine
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay
from swfflow.stream.store import PHASE_DONE
from tests.bridge_support import recorded, setup_for

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT / "examples" / "calib.cwl"


def _tasks(run: str = "7"):
    return build_plan(str(CALIB), None, None, run).tasks


def test_submits_are_recorded_once_by_name_and_nothing_runs(tmp_path):
    executor = DryRunExecutor(tmp_path / RECORD)
    assert isinstance(executor, Executor)
    tasks = [t for t in _tasks() if t.params]
    ids = [executor.submit(t) for t in tasks]
    assert ids == [str(i) for i in range(1, len(tasks) + 1)]
    assert executor.submit(tasks[0]) == "1"  # idempotent by task name
    lines = [json.loads(line) for line in (tmp_path / RECORD).read_text().splitlines()]
    assert [(e["event"], e["name"], e["params"]) for e in lines] == \
        [("submit", t.name, t.params) for t in tasks]
    assert executor.task_outputs("1") == {}


def test_status_is_decided_by_the_record_and_the_catalog(tmp_path):
    catalog = LocalCatalog(sqlite_engine(tmp_path / "state.db"))
    executor = DryRunExecutor(tmp_path / RECORD, catalog)
    streaming = next(t for t in _tasks() if t.params.get("runUntilClosed"))
    merge = next(t for t in _tasks() if t.params and not t.params.get("runUntilClosed"))
    catalog.create_dataset(streaming.params["dsForIN"])
    first, second = executor.submit(streaming), executor.submit(merge)
    states = lambda: {k: s.state for k, s in executor.status([first, second, "99"]).items()}
    assert states() == {first: TaskState.RUNNING, second: TaskState.SUCCEEDED,
                        "99": TaskState.UNKNOWN}
    catalog.close_dataset(streaming.params["dsForIN"])
    assert states()[first] is TaskState.SUCCEEDED
    executor.kill(second)
    assert executor.status([second])[second].raw == "aborted"
    executor.retry(second)
    assert states()[second] is TaskState.SUCCEEDED
    # a new executor over the same record (another process) sees the same
    assert DryRunExecutor(tmp_path / RECORD, catalog).status([second])[second].state \
        is TaskState.SUCCEEDED


def test_the_table_builds_it_on_the_local_catalog(tmp_path):
    assert BACKENDS["executor"]["dryrun"] == "swfflow.backends.dryrun:build"
    settings = Settings(executor="dryrun", workdir=tmp_path)
    assert settings.catalog_name == "local"
    assert Settings(executor="panda").catalog_name == "rucio"
    with contextlib.ExitStack() as stack:
        backends = assemble(settings, engine=sqlite_engine(tmp_path / "s.db"), stack=stack,
                            plan=build_plan(str(CALIB), None, None, "7"), source=str(CALIB))
    assert isinstance(backends.executor, DryRunExecutor)
    assert isinstance(backends.catalog, LocalCatalog)
    assert backends.prepare is None and backends.run_expression is not None
    assert backends.attach_catalog is None  # the local catalog takes one client
    assert backends.executor.url == f"dryrun:{tmp_path.resolve() / RECORD}"
    again = executor_at(backends.executor.url, Settings())
    assert isinstance(again, DryRunExecutor) and again.path == backends.executor.path
    with pytest.raises(ConfigError, match="unknown executor 'nope'"):
        build_executor(Settings(executor="nope"))


def _swfflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_swfflow_submit_backend_dryrun_contacts_no_server(tmp_path):
    done = _swfflow("submit", str(CALIB), "--run", "7", "--backend", "dryrun",
                    "--state", "st", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    record = tmp_path / "st" / RECORD
    assert report["panda_url"] == f"dryrun:{record.resolve()}"
    submitted = [json.loads(line) for line in record.read_text().splitlines()]
    assert {e["key"] for e in submitted} == {t["key"] for t in report["tasks"] if t["task_id"]}
    assert {e["key"] for e in submitted} >= {"reconstruct"}  # streaming tasks: at start
    killed = _swfflow("kill", "calib:7", "--state", "st", "--json", cwd=tmp_path)
    assert killed.returncode == 0, killed.stderr
    assert json.loads(killed.stdout)["state"] == "killed"
    assert json.loads(record.read_text().splitlines()[-1])["event"] == "kill"


def test_swfflow_bridge_backend_dryrun_follows_a_run_to_the_end(tmp_path):
    log, _ = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, backend="dryrun"), stack)
        replay(bridge, log)
        deadline = time.monotonic() + 90
        bridge.run(until=lambda b: time.monotonic() > deadline or (
            b.idle and b.source_done.is_set() and b.store.runs()
            and all(r["phase"] == PHASE_DONE for r in b.store.runs())))
        assert [r["phase"] for r in bridge.store.runs()] == [PHASE_DONE], \
            [r["message"] for r in bridge.store.runs()]
        run_id = bridge.store.runs()[0]["run_id"]
        names = [t.name for t in bridge.template.instantiate(run_id).tasks if t.params]
    events = [json.loads(line) for line in (tmp_path / "work" / RECORD).read_text()
              .splitlines()]
    assert sorted(e["name"] for e in events if e["event"] == "submit") == sorted(names)


def test_the_commands_offer_every_executor_of_the_table():
    from swfflow.commands.bridge import bridge_cmd
    from swfflow.commands.submit import submit_cmd

    choices = lambda cmd: next(p.type.choices for p in cmd.params if p.name == "backend")
    assert list(choices(bridge_cmd)) == list(BACKENDS["executor"])
    assert "dryrun" in choices(submit_cmd) and "local" not in choices(submit_cmd)
