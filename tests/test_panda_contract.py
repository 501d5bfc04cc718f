"""The PanDA contract server, exercised through the real panda-client (``pandaclient.Client``).

Each assertion is about a shape or a behaviour of the real server (pandaserver
``api/v1/task_api.py`` and the DBProxy methods behind it) that swfflow relies on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from swfflow.backends.panda_client import load_client, point_client_at
from swfflow.testing.panda_runner import StateMachineRunner
from swfflow.testing.panda_server import PandaContractServer
from swfflow.testing.panda_tasks import refine_problems


def task_params(name: str, **extra) -> dict:
    params = {
        "taskName": name, "uniqueTaskName": True, "userName": "someone", "vo": "wlcg",
        "prodSourceLabel": "test", "taskPriority": 900, "architecture": "", "transUses": "",
        "transHome": None, "processingType": "swfflow", "taskType": "prod",
        "noInput": True, "nEvents": 1, "nEventsPerJob": 1,
        "jobParameters": [{"type": "constant", "value": "swfflow job --task a"}],
        "log": {"type": "template", "param_type": "log", "dataset": "user.swf:x.log",
                "value": "x.log.$JEDITASKID.${SN}.log.tgz"},
    }
    params.update(extra)
    return params


@pytest.fixture(scope="module")
def server():
    runner = StateMachineRunner(run_s=0.15, outcomes={r"\.fails$": ["failed", "succeeded"]})
    with PandaContractServer(runner=runner, tick_s=0.02) as srv:
        yield srv


@pytest.fixture
def client(server):
    module = load_client()
    point_client_at(module, server.url, f"http://127.0.0.1:{server.port}/api/v1")
    return module


def submit(client, name: str, **extra) -> int:
    status, (code, message) = client.insertTaskParams(task_params(name, **extra))
    assert (status, code) == (0, 0), message
    return int(message.rsplit("=", 1)[1])


def wait_status(client, task_id: int, wanted: set[str], timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, value = client.getTaskStatus(task_id)
        if value in wanted or time.monotonic() > deadline:
            assert value in wanted, f"task {task_id} is {value}, expected one of {wanted}"
            return value
        time.sleep(0.02)


def test_is_alive_and_unknown_paths(client, server):
    assert client.hello() == (0, "")
    assert client.getTaskStatus("not-a-number") == (255, None)  # success false → 255
    # a path the server does not serve is an HTTP error, which panda-client reports as 255
    assert client.killJobs([1])[0] == 255


def test_submit_answers_with_the_real_message_and_id(client, server):
    status, (code, message) = client.insertTaskParams(task_params("c.submit.1"))
    assert (status, code) == (0, 0)
    assert message.startswith("succeeded. new jediTaskID=")
    task_id = int(message.rsplit("=", 1)[1])
    task = server.store.get(task_id)
    # the server fills the user from the credential and forces analysis type and priority
    assert (task.userName, task.params["taskType"], task.params["taskPriority"]) == \
        ("swfuser", "anal", 1000)


def test_duplicate_active_name_is_code_2_with_the_existing_id(client):
    task_id = submit(client, "c.dup.2")
    status, (code, message) = client.insertTaskParams(task_params("c.dup.2"))
    assert (status, code) == (0, 2)
    assert message.startswith(f"jediTaskID={task_id} is in the ")
    assert "You can re-submit the task with new parameters" in message


def test_final_name_is_reexecuted_incrementally(client, server):
    task_id = submit(client, "c.incexec.3")
    wait_status(client, task_id, {"done"})
    status, (code, message) = client.insertTaskParams(task_params("c.incexec.3"))
    # panda-client folds the server's code 3 into 0: the message is the only difference
    assert (status, code) == (0, 0)
    assert message == (f"reactivation accepted. jediTaskID={task_id} (currently in done state) "
                       "will be re-executed with old and/or new input")
    assert wait_status(client, task_id, {"running", "done"})
    assert len([t for t in server.store.tasks.values() if t.taskName == "c.incexec.3"]) == 1


def test_without_unique_task_name_a_second_task_is_created(client):
    first = submit(client, "c.nonunique", uniqueTaskName=False)
    second = submit(client, "c.nonunique", uniqueTaskName=False)
    assert second == first + 1


def test_parent_task_name_is_resolved_or_code_11(client, server):
    parent = submit(client, "c.parent")
    child = submit(client, "c.child", parentTaskName="c.parent")
    assert server.store.get(child).parent_tid == parent
    assert client.insertTaskParams(task_params("c.orphan", parentTaskName="c.nobody")) == \
        (0, (11, 'failed to find parent with user="swfuser" name=c.nobody'))


def test_submit_missing_required_field_is_code_4(client):
    params = task_params("c.novo")
    del params["vo"]
    assert client.insertTaskParams(params) == (0, (4, "failed to register task"))


def test_bad_argument_types_get_the_servers_type_errors(server):
    import httpx

    base = f"http://127.0.0.1:{server.port}/api/v1"
    answer = httpx.post(f"{base}/task/submit", json={"task_parameters": "nope"}).json()
    assert answer == {"success": False, "data": None,
                      "message": "Type error: 'task_parameters' must be of type dict, got str."}
    answer = httpx.get(f"{base}/task/get_status", params={"task_id": "x1"}).json()
    assert answer["message"] == ("Type error: 'task_id' with value 'x1' could not be casted to "
                                 "type int from str.")
    answer = httpx.get(f"{base}/task/kill", params={"task_id": 1}).json()
    assert answer == {"success": False, "message": "expecting POST, received GET", "data": None}
    answer = httpx.get(f"{base}/task/get_status", params={"task_id": 999999}).json()
    assert answer == {"success": False, "message": "Task not found", "data": None}


def test_task_walks_jedi_states_and_details_have_real_shapes(client, server):
    task_id = submit(client, "c.walk")
    assert wait_status(client, task_id, {"done"}) == "done"
    assert server.store.get(task_id).history == ["registered", "defined", "ready", "running",
                                                 "done"]
    status, details = client.getJediTaskDetails({"jediTaskID": task_id}, True, True)
    assert status == 0
    assert set(details) >= {"inDS", "outDS", "statistics", "PandaID", "mergeStatus",
                            "mergePandaID", "status", "cliParams"}
    assert details["status"] == "done" and details["PandaID"]
    assert client.getPandaIDsWithTaskID(task_id) == (0, details["PandaID"])
    status, params = client.getTaskParamsMap(task_id)
    assert params["taskName"] == "c.walk"


def test_detailed_info_decodes_datetimes_and_filters_like_the_server(client, server):
    ids = [submit(client, f"c.filter.{i}") for i in range(3)]
    status, rows = client.get_tasks_detailed_info_since(filters={"taskName": "c.filter.1"})
    assert status == 0 and [r["jediTaskID"] for r in rows] == [ids[1]]
    assert isinstance(rows[0]["creationDate"], datetime)  # {"__datetime__": …} decoded
    # a regex filter is applied after the row limit: with n_tasks=1 only the oldest survives
    pattern = "^c\\.filter\\.(1|2)$"
    _, some = client.get_tasks_detailed_info_since(filters={"taskName": pattern}, n_tasks=1)
    _, all_ = client.get_tasks_detailed_info_since(filters={"taskName": pattern}, n_tasks=500)
    assert [r["jediTaskID"] for r in all_] == ids[1:]
    assert some == []
    future = (datetime.utcnow() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    _, none = client.get_tasks_detailed_info_since(since=future, filters={"taskName": "c.filter.1"})
    assert none == []
    assert client.get_tasks_detailed_info_since(filters={"noSuchAttribute": "1"}) == (255, None)


def test_kill_goes_through_aborting_to_aborted_and_is_then_rejected(client, server):
    task_id = submit(client, "c.kill")
    assert client.killTask(task_id) == (0, (True, 0))
    assert wait_status(client, task_id, {"aborted"}) == "aborted"
    assert server.store.get(task_id).history[-3:] == ["toabort", "aborting", "aborted"]
    ok, message = client.killTask(task_id)[1]
    assert not ok
    assert message.startswith("Command rejected: the kill command is not accepted if the task "
                              "is in aborted status")
    # kill of somebody else's or a missing task: the ownership check answers first
    assert client.killTask(987654) == (0, (False, "not the task owner or no production role"))


def test_finish_ends_the_task(client, server):
    task_id = submit(client, "c.finish")
    wait_status(client, task_id, {"running"})
    assert client.finishTask(task_id) == (0, (True, 0))
    assert wait_status(client, task_id, {"done"}) == "done"
    assert server.store.get(task_id).history[-2:] == ["finishing", "done"]


def test_retry_of_a_failed_task_runs_it_again(client):
    task_id = submit(client, "c.retry.fails")
    assert wait_status(client, task_id, {"failed"}) == "failed"
    status, (code, message) = client.retryTask(task_id)
    assert (status, code) == (0, 0)
    assert message == f"command=retry is registered for task ID {task_id}. will be executed in " \
                      "a few minutes"
    assert wait_status(client, task_id, {"done"}) == "done"  # second attempt succeeds


def test_retry_rules_follow_jedi(client, server):
    task_id = submit(client, "c.retry.rules")
    server.store.force_status(task_id, "exhausted")
    code, message = client.retryTask(task_id)[1]
    assert code == 4 and message.endswith("exhausted status and production role is missing")
    server.store.force_status(task_id, "aborted")
    assert client.retryTask(task_id)[1][0] == 4


def test_pause_and_resume_need_the_production_role(client):
    task_id = submit(client, "c.pause")
    assert client.pauseTask(task_id) == (0, (False, "production or pilot role required"))


def test_refiner_breaks_invalid_parameters_with_a_dialog(client, server):
    params = task_params("c.broken")
    del params["log"]
    params["jobParameters"] = [{"type": "template", "param_type": "output", "value": "x"}]
    status, (code, message) = client.insertTaskParams(params)
    assert code == 0
    task_id = int(message.rsplit("=", 1)[1])
    assert wait_status(client, task_id, {"broken"}) == "broken"
    dialog = server.store.get(task_id).errorDialog
    assert "log is missing" in dialog and "output template without dataset" in dialog


@pytest.mark.parametrize("mutation, problem", [
    (lambda p: p.pop("architecture"), "architecture is missing"),
    (lambda p: p.update(jobParameters=[]), "jobParameters must be a non-empty list"),
    (lambda p: p.update(jobParameters=[{"type": "shell", "value": "x"}]), "unknown type 'shell'"),
    (lambda p: p.pop("noInput"), "no input"),
    (lambda p: p["log"].update(param_type="output"), "log: param_type must be log"),
])
def test_refine_problems_table(mutation, problem):
    params = task_params("c.refine")
    assert refine_problems(params) == []
    mutation(params)
    assert any(problem in p for p in refine_problems(params)), refine_problems(params)


def test_state_file_keeps_tasks_across_restarts(tmp_path, monkeypatch):
    state = tmp_path / "tasks.json"
    with PandaContractServer(state_file=state, tick_s=0.02,
                             runner=StateMachineRunner(run_s=60)) as first:
        assert first.store.insert(task_params("c.persist"), "swfuser", None)[0] == 0
        first.store.force_status(1, "running")
    saved = json.loads(state.read_text())
    assert saved["tasks"][0]["taskName"] == "c.persist"
    with PandaContractServer(state_file=state, tick_s=0.02) as second:
        assert second.store.get(1).status == "running"
        assert second.store.insert(task_params("c.persist"), "swfuser", None)[0] == 2
        assert second.store.insert(task_params("c.other"), "swfuser", None) == \
            (0, "succeeded. new jediTaskID=2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runs_as_a_module_and_answers_panda_client(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "swfflow.testing.panda_server", "--port",
                             str(port), "--run-seconds", "0.1"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip().endswith(f"127.0.0.1:{port}/server/panda")
        url = f"http://127.0.0.1:{port}/server/panda"
        env = dict(os.environ, PANDA_URL=url, PANDA_URL_SSL=url, PANDACACHE_URL=url,
                   PANDA_BEHIND_REAL_LB="1")
        code = ("from pandaclient import Client\n"
                "print(Client.hello()[0], Client.insertTaskParams({'taskName': 'm', 'vo': 'wlcg',"
                " 'prodSourceLabel': 'test'})[1][1])")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert out.strip().endswith("0 succeeded. new jediTaskID=1")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_real_runner_breaks_a_task_no_plan_knows_and_finds_plans_in_a_directory(tmp_path, client):
    from swfflow.backends.local_catalog import LocalCatalog
    from swfflow.state import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.plan.model import Plan, TaskSpec
    from swfflow.testing.panda_runner import ExecutorRunner, specs_from_plan_dir

    engine = sqlite_engine(tmp_path / "state.db")
    local = LocalExecutor(LocalCatalog(engine), engine, tmp_path / "work", jobs=1)
    plans = tmp_path / "plans"
    plans.mkdir()
    lookup = specs_from_plan_dir(plans)
    runner = ExecutorRunner(local, lookup)
    try:
        with PandaContractServer(runner=runner, tick_s=0.02) as srv:
            point_client_at(client, srv.url, f"http://127.0.0.1:{srv.port}/api/v1")
            task_id = submit(client, "c.unplanned")
            assert wait_status(client, task_id, {"broken"}) == "broken"
            assert "no plan served by this PanDA double has a task named 'c.unplanned'" in \
                srv.store.get(task_id).errorDialog
    finally:
        local.shutdown()
    task = TaskSpec(key="k", step="k", name="c.planned", kind="command", params={})
    plan = Plan(workflow="w", source="w.cwl", run="7", profile={}, datasets=(), tasks=(task,))
    (plans / "w.7.json").write_text(plan.to_json())
    assert lookup({"taskName": "c.planned"}) == task  # dropped in while "running": found
