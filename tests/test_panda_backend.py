"""The PanDA Executor against the contract server, through the real panda-client."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from swfflow.backends.base import Executor, TaskState
from swfflow.backends.panda import PandaExecutor
from swfflow.errors import ServiceError
from swfflow.plan.model import TaskSpec
from swfflow.testing.panda_runner import StateMachineRunner
from swfflow.testing.panda_server import PandaContractServer

# reference/panda.md §6, written out again here so that a change to the table in the code
# has to be a change to this test too
EXPECTED = {
    TaskState.SUBMITTED: ["registered", "defined", "assigning", "ready", "topreprocess",
                          "preprocessing", "toretry", "toincexec", "rerefine", "toreassign",
                          "reassigning"],
    TaskState.WAITING: ["pending"],
    TaskState.RUNNING: ["scouting", "scouted", "running", "throttled", "paused", "prepared",
                        "finishing", "passed"],
    TaskState.SUCCEEDED: ["done"],
    TaskState.PARTIAL: ["finished"],
    TaskState.FAILING: ["toabort", "aborting", "tobroken"],
    TaskState.FAILED: ["failed", "broken", "aborted"],
    TaskState.EXHAUSTED: ["exhausted"],
}


def spec(name: str, **extra) -> TaskSpec:
    params = {
        "taskName": name, "uniqueTaskName": True, "userName": "swf", "vo": "wlcg",
        "prodSourceLabel": "test", "taskPriority": 1000, "architecture": "", "transUses": "",
        "transHome": None, "processingType": "swfflow", "taskType": "anal",
        "noInput": True, "nEvents": 1, "nEventsPerJob": 1,
        "jobParameters": [{"type": "constant", "value": "swfflow job --task s"}],
        "log": {"type": "template", "param_type": "log", "dataset": "user.swf:s.log",
                "value": "s.log.$JEDITASKID.${SN}.log.tgz"},
    }
    params.update(extra)
    return TaskSpec(key=name, step=name.rsplit(".", 1)[-1], name=name, kind="tool",
                    params=params)


@pytest.fixture(scope="module")
def server():
    runner = StateMachineRunner(run_s=0.15, outcomes={r"\.flaky$": ["failed", "succeeded"],
                                                      r"\.slow$": ["succeeded"]})
    with PandaContractServer(runner=runner, tick_s=0.02) as srv:
        yield srv


@pytest.fixture
def executor(server):
    return PandaExecutor(server.url, attempts=3, backoff_s=0.01, max_backoff_s=0.05,
                         unknown_alert_polls=3)


def wait_state(executor, task_id: str, wanted: set[TaskState], timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        status = executor.status([task_id])[task_id]
        if status.state in wanted or time.monotonic() > deadline:
            assert status.state in wanted, status
            return status
        time.sleep(0.03)


def test_is_an_executor_and_import_is_lazy():
    assert isinstance(PandaExecutor("http://127.0.0.1:1/server/panda"), Executor)
    # importing swfflow's backend must not import panda-client (its import does DNS lookups)
    code = ("import sys, swfflow.backends.panda, swfflow.backends.panda_client as p\n"
            "print('pandaclient.Client' in sys.modules)\n"
            "p.load_client()\n"
            "import os; print(os.environ.get('PANDA_BEHIND_REAL_LB'))")
    env = {k: v for k, v in os.environ.items() if k != "PANDA_BEHIND_REAL_LB"}
    env["PANDACACHE_URL"] = "https://no-such-host.invalid/server/panda"  # would fail the lookup
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["False", "1"]


def test_submit_returns_the_id_and_resubmission_finds_it(executor, server):
    task_id = executor.submit(spec("b.submit"))
    assert server.store.get(int(task_id)).taskName == "b.submit"
    again = PandaExecutor(server.url).submit(spec("b.submit"))  # a fresh process after a crash
    assert again == task_id
    assert [t.taskName for t in server.store.tasks.values()].count("b.submit") == 1


def test_final_task_is_not_rerun_by_a_plain_resubmission(executor, server):
    task_id = executor.submit(spec("b.final"))
    wait_state(executor, task_id, {TaskState.SUCCEEDED})
    assert executor.submit(spec("b.final")) == task_id
    assert server.store.get(int(task_id)).status == "done"  # no incexec happened


def test_code_2_resolves_the_existing_task(executor, server):
    task_id = executor.submit(spec("b.code2"))
    # the name lookup only sees 90 days: an older task that is still active answers code 2
    task = server.store.get(int(task_id))
    server.store.force_status(int(task_id), "running")
    task.modificationTime -= timedelta(days=91)
    calls = len(server.calls)
    assert executor.submit(spec("b.code2")) == task_id
    assert server.calls[calls:] == ["task/get_tasks_detailed_info_since", "task/submit"]
    assert [t.taskName for t in server.store.tasks.values()].count("b.code2") == 1


def test_rejected_parameters_name_the_task_and_carry_the_servers_message(executor):
    bad = spec("b.novo")
    del bad.params["vo"]
    with pytest.raises(ServiceError) as err:
        executor.submit(bad)
    assert "b.novo" in str(err.value) and "failed to register task" in str(err.value)
    assert "code 4" in str(err.value)


def test_parameters_the_refiner_rejects_make_a_failed_task_with_the_dialog(executor):
    bad = spec("b.nolog")
    del bad.params["log"]
    task_id = executor.submit(bad)
    status = wait_state(executor, task_id, {TaskState.FAILED})
    assert status.raw == "broken" and "log is missing" in status.message


def test_every_jedi_status_maps_in_one_bulk_call(executor, server):
    names = {s: f"b.map.{s}" for statuses in EXPECTED.values() for s in statuses}
    ids = {s: executor.submit(spec(name)) for s, name in names.items()}
    for jedi_status, task_id in ids.items():
        server.store.force_status(int(task_id), jedi_status)
    calls = len(server.calls)
    result = executor.status(list(ids.values()))
    assert server.calls[calls:] == ["task/get_tasks_detailed_info_since"]  # ONE call
    got = {s: result[task_id].state for s, task_id in ids.items()}
    assert got == {s: state for state, statuses in EXPECTED.items() for s in statuses}
    assert all(result[ids[s]].raw == s for s in ids)


def test_unknown_status_stays_active_and_is_reported_after_k_polls(executor, server, caplog):
    task_id = executor.submit(spec("b.unknown"))
    server.store.force_status(int(task_id), "staging")  # a status JEDI has, swfflow's table not
    caplog.set_level(logging.WARNING, logger="swfflow.backends.panda")
    states = [executor.status([task_id])[task_id] for _ in range(4)]
    assert all(s.state is TaskState.UNKNOWN and not s.state.terminal for s in states)
    assert states[0].message == "" and "3 polls" in states[2].message
    assert "'staging'" in states[3].message
    assert len([r for r in caplog.records if "unknown to swfflow" in r.getMessage()]) == 1


def test_bulk_status_survives_server_truncation(server):
    executor = PandaExecutor(server.url, n_tasks=2, attempts=1)
    ids = [executor.submit(spec(f"b.trunc.{i}")) for i in range(5)]
    result = executor.status(ids)
    assert sorted(result) == sorted(ids)
    assert all(s.state is not TaskState.UNKNOWN for s in result.values())
    # a fresh executor knows no submission times: it still finds every task
    assert PandaExecutor(server.url, n_tasks=2).status(ids).keys() == set(ids)


def test_status_of_a_missing_task_is_unknown_not_an_error(executor):
    status = executor.status(["999999"])["999999"]
    assert status.state is TaskState.UNKNOWN and "not found" in status.message


def test_kill_then_kill_again(executor, server):
    task_id = executor.submit(spec("b.kill"))
    executor.kill(task_id)
    status = wait_state(executor, task_id, {TaskState.FAILED})
    assert status.raw == "aborted"
    executor.kill(task_id)  # already aborted: nothing to do, no error
    with pytest.raises(ServiceError, match="not the task owner"):
        executor.kill("424242")


def test_finish(executor):
    task_id = executor.submit(spec("b.finish.slow"))
    wait_state(executor, task_id, {TaskState.RUNNING})
    executor.finish(task_id)
    assert wait_state(executor, task_id, {TaskState.SUCCEEDED}).raw == "done"
    executor.finish(task_id)  # done already: no-op


def test_retry_of_a_failed_task(executor):
    task_id = executor.submit(spec("b.retry.flaky"))
    failed = wait_state(executor, task_id, {TaskState.FAILED})
    assert failed.raw == "failed" and "simulated failed" in failed.message
    executor.retry(task_id)
    assert wait_state(executor, task_id, {TaskState.SUCCEEDED}).raw == "done"


def test_retry_of_an_aborted_task_reexecutes_it(executor, server):
    task_id = executor.submit(spec("b.retry.aborted"))
    executor.kill(task_id)
    wait_state(executor, task_id, {TaskState.FAILED})
    executor.retry(task_id)  # JEDI will not retry an aborted task; incexec it is
    assert "toincexec" in server.store.get(int(task_id)).history
    assert wait_state(executor, task_id, {TaskState.SUCCEEDED}).raw == "done"


def test_retry_of_a_running_task_is_refused_with_the_servers_message(executor, server):
    task_id = executor.submit(spec("b.retry.running"))
    server.store.force_status(int(task_id), "scouting")
    with pytest.raises(ServiceError, match="not accepted if the task is in scouting status"):
        executor.retry(task_id)


def test_transient_failures_are_retried(executor, server):
    server.fail_next = 2  # two HTTP 500s, then the server answers
    task_id = executor.submit(spec("b.transient"))
    assert server.store.get(int(task_id)).taskName == "b.transient"


def test_persistent_failure_names_server_and_call(server):
    executor = PandaExecutor(server.url, attempts=3, backoff_s=0.01)
    server.fail_next = 3
    with pytest.raises(ServiceError) as err:
        executor.status(["1"])
    assert server.url in str(err.value) and "get_tasks_detailed_info_since" in str(err.value)
    assert "after 3 attempt(s)" in str(err.value)
    assert server.fail_next == 0


def test_server_down_is_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/server/panda"
    executor = PandaExecutor(url, attempts=3, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(ServiceError) as err:
        executor.submit(spec("b.down"))
    assert url in str(err.value) and "get_tasks_detailed_info_since" in str(err.value)
    assert time.monotonic() - started < 10
    assert not executor.is_alive()


def test_token_is_sent_but_never_logged_or_raised(server, monkeypatch, caplog, capsys):
    token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.U0lHTkFUVVJF"
    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.setenv("PANDA_AUTH_VO", "wlcg")
    monkeypatch.setenv("PANDA_AUTH_ID_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    executor = PandaExecutor(server.url, attempts=2, backoff_s=0.01)
    task_id = executor.submit(spec("b.token"))
    executor.status([task_id])
    server.fail_next = 2
    with pytest.raises(ServiceError) as err:
        executor.kill(task_id)
    assert token in server.tokens_seen and "wlcg" in server.origins_seen
    out = capsys.readouterr()
    for text in (caplog.text, str(err.value), out.out, out.err):
        assert token not in text


def test_no_panda_configured_is_a_config_error_not_cerns_server(monkeypatch):
    from swfflow.errors import ConfigError

    for name in ("PANDA_URL_SSL", "PANDA_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="PANDA_URL_SSL and PANDA_URL are unset") as error:
        PandaExecutor()
    assert "cern" not in error.value.what


def test_oidc_without_vo_is_a_config_error(monkeypatch):
    from swfflow.errors import ConfigError

    monkeypatch.setenv("PANDA_AUTH", "oidc")
    monkeypatch.delenv("PANDA_AUTH_VO", raising=False)
    monkeypatch.delenv("OIDC_AUTH_VO", raising=False)
    with pytest.raises(ConfigError, match="PANDA_AUTH_VO"):
        PandaExecutor("http://127.0.0.1:1/server/panda")


def test_redact_scrubs_bearer_headers_and_token_values(monkeypatch):
    from swfflow.backends.panda import redact

    monkeypatch.setenv("OIDC_AUTH_ID_TOKEN", "abcdef123456")
    text = redact("headers = {'Authorization': 'Bearer xyz.987'} and abcdef123456")
    assert "xyz.987" not in text and "abcdef123456" not in text and "***" in text


# --- end to end: the real runner (local executor over the real Rucio server) ----------------
COUNT_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'cat "$@" | wc -c > count.txt', sh]
inputs:
  raw: {type: 'File[]', inputBinding: {position: 1}}
outputs:
  count: {type: File, outputBinding: {glob: count.txt}}
"""


def _stf(directory, run: str, seq: int):
    from swfflow.backends.base import FileRecord
    from swfflow.checksum import adler32_file

    path = directory / f"swf.{run}.{seq:06d}.stf"
    path.write_bytes(os.urandom(100 + seq))
    return FileRecord(did=f"swf:{path.name}", size=path.stat().st_size,
                      adler32=adler32_file(path), pfn=str(path),
                      meta={"run_number": 1, "sequence": seq})


@pytest.mark.services
@pytest.mark.slow
def test_streaming_task_runs_for_real_through_panda_and_rucio(rucio_catalog, tmp_path):
    import uuid

    from swfflow.state import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.checksum import adler32_file
    from swfflow.plan.model import Plan, TaskInput
    from swfflow.testing.panda_runner import ExecutorRunner, specs_from_plans
    from swfflow.backends.local_paths import LocalPathCatalog

    run = uuid.uuid4().hex[:10]
    raw, out, logs = f"swf:swf.{run}.run", f"user.swfflow:{run}.count", f"user.swfflow:{run}.log"
    for did in (raw, out, logs):
        rucio_catalog.create_dataset(did)
    tool = tmp_path / "count.cwl"
    tool.write_text(COUNT_TOOL)
    base = spec(f"swf.count.{run}")
    params = dict(base.params, dsForIN=raw, nFilesPerJob=2, runUntilClosed=True)
    del params["noInput"], params["nEvents"], params["nEventsPerJob"]
    task = TaskSpec(
        key="count", step="count", name=base.name, kind="command", params=params,
        inputs=(TaskInput(port="raw", dataset=raw, master=True),), outputs={"count": out},
        log_dataset=logs,
        payload={"kind": "cwl", "step": "count", "tool_uri": tool.as_uri(),
                 "tool": {"inputs": {"raw": "File[]"}}, "job": {}, "split_port": "raw",
                 "gather_ports": {}})
    plan = Plan(workflow="count", source=str(tool), run=run, profile={}, datasets=(),
                tasks=(task,))
    local = LocalExecutor(LocalPathCatalog(rucio_catalog), sqlite_engine(tmp_path / "state.db"),
                          tmp_path / "work",
                          jobs=2)
    runner = ExecutorRunner(local, specs_from_plans([plan]))
    try:
        with PandaContractServer(runner=runner, tick_s=0.1) as srv:
            executor = PandaExecutor(srv.url, attempts=2, backoff_s=0.01)
            task_id = executor.submit(task)
            rucio_catalog.add_files(raw, [_stf(tmp_path, run, i) for i in (1, 2, 3)])

            def until(check, timeout=120.0):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    status = executor.status([task_id])[task_id]
                    if check(status):
                        return status
                    time.sleep(0.2)
                raise AssertionError(f"timeout; last status {status}")

            status = until(lambda s: s.n_jobs_done == 1)
            assert status.state is TaskState.RUNNING  # the dataset is open: one file waits
            rucio_catalog.add_files(raw, [_stf(tmp_path, run, i) for i in (4, 5)])
            until(lambda s: s.n_jobs_done == 2)
            rucio_catalog.close_dataset(raw)
            status = until(lambda s: s.state.terminal)
            assert (status.state, status.raw, status.n_jobs) == (TaskState.SUCCEEDED, "done", 3)
    finally:
        local.shutdown()
    outputs = rucio_catalog.list_files(out)
    assert len(outputs) == 3
    for record in outputs:  # registered in Rucio with the real checksum of the real file
        path = record.pfn.removeprefix("file://localhost")
        assert record.adler32 == adler32_file(path)
    contents = sorted(Path(r.pfn.removeprefix("file://localhost")).read_text().strip()
                      for r in outputs)
    assert contents == ["105", "203", "207"]  # bytes of STFs 1+2, 3+4, then 5 at close
    assert len(rucio_catalog.list_files(logs)) == 3


@pytest.mark.services
@pytest.mark.slow
def test_flow_runs_a_streaming_workflow_through_panda_and_rucio(rucio_catalog, tmp_path):
    """The one engine of `swfflow run`, with PanDA (the double, running jobs with the local executor)
    and the real Rucio server as backends: stream step while the run is open, merge after."""
    import random

    from swfflow.state import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.checksum import adler32_file
    from swfflow.drive import DriverStore, FlowRun, TaskPhase
    from swfflow.drive.payload import LocalPayloads
    from swfflow.frontends import load_any
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile
    from swfflow.testing.panda_runner import ExecutorRunner, specs_from_plans
    from swfflow.backends.local_paths import LocalPathCatalog
    from tests.test_drive import CHECK, SUM, WORKFLOW, _attach, _phases, _task_id, _tick_until

    for name, text in (("wf.cwl", WORKFLOW), ("check.cwl", CHECK), ("sum.cwl", SUM)):
        (tmp_path / name).write_text(text)
    marker = tmp_path.parent / f"{tmp_path.name}-marker"  # outside: the planner relativizes
    marker.write_text("")
    (tmp_path / "profile.yaml").write_text("scopes: {output: user.swfflow}\n")
    inputs = {"marker": str(marker)}
    workflow = load_any(tmp_path / "wf.cwl", inputs)
    plan = compile_workflow(workflow, inputs, load_profile(tmp_path / "profile.yaml"),
                            str(random.randrange(10**6, 10**7)))
    prepare = LocalPayloads(workflow)
    by_name = specs_from_plans([plan])
    local = LocalExecutor(LocalPathCatalog(rucio_catalog), sqlite_engine(tmp_path / "jedi.db"),
                          tmp_path / "pilot", jobs=2)
    runner = ExecutorRunner(local, lambda params: prepare(by_name(params)))
    flow = None
    try:
        with PandaContractServer(runner=runner, tick_s=0.1) as srv:
            executor = PandaExecutor(srv.url, attempts=2, backoff_s=0.01)
            flow = FlowRun(plan, rucio_catalog, executor,
                           DriverStore(sqlite_engine(tmp_path / "driver.db")),
                           source_path=str(tmp_path / "wf.cwl"),
                           outputs_of=executor.task_outputs, prepare=lambda task: task,
                           run_expression=lambda task, inputs: {})
            stream = next(d.did for d in plan.datasets if d.role == "stream")
            flow.start()
            for i, size in enumerate((3, 5, 7)):
                path = tmp_path / f"stf{i}.dat"
                path.write_bytes(b"x" * size)
                _attach(rucio_catalog, stream, path)
            _tick_until(flow, lambda: _task_id(flow, "check") is not None and executor.status(
                [_task_id(flow, "check")])[_task_id(flow, "check")].n_jobs_done == 3,
                timeout=120)
            assert "sum" not in _phases(flow)  # the run is still open: not released
            assert srv.store.get(int(_task_id(flow, "check"))).status == "running"
            flow.close_streams()
            _tick_until(flow, lambda: flow.finished, timeout=120)
            submitted = [t.taskName for t in srv.store.tasks.values()]
    finally:
        if flow is not None:
            flow.detach()
        local.shutdown()
    assert flow.error is None, flow.error
    assert _phases(flow) == {"check": TaskPhase.SUCCEEDED, "sum": TaskPhase.SUCCEEDED}
    assert sorted(submitted) == sorted(t.name for t in plan.tasks)  # each exactly once
    total = rucio_catalog.list_files(plan.task("sum").outputs["total"])
    assert len(total) == 1
    path = total[0].pfn.removeprefix("file://localhost")
    assert Path(path).read_text().strip() == "15" and total[0].adler32 == adler32_file(path)
