"""The same panda-client calls against the contract double and the real panda-server 1.0.4 +
JEDI (``panda_server``): where they answered differently, the double was changed to answer as
the real one (a new task is unknown until JEDI registered it; a second submission of its name
in that window is a new task that JEDI aborts as a duplicate; killing an unknown task; the
sandbox cache)."""

from __future__ import annotations

import itertools
import os
import time

import pytest
import requests

from swfflow.backends.panda_client import load_client, point_client_at
from tests.test_panda_contract import task_params

_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
NAMES = itertools.count(int(time.time() * 10) % 10**8 * 100 + _WORKER)
JEDI_WAIT_S = 120  # JEDI's refiner loop, on a loaded machine


@pytest.fixture(params=["double", "real"])
def server_url(request) -> str:
    if request.param == "real":
        return request.getfixturevalue("panda_server")["url"]
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    # the real server here gives the test DN the production role
    double = PandaContractServer(runner=StateMachineRunner(run_s=60), production_role=True,
                                 register_s=1.5, user="someone")
    double.start()
    request.addfinalizer(double.stop)
    return double.url


@pytest.fixture
def client(server_url):
    module = load_client()
    point_client_at(module, server_url, server_url.split("/server/")[0] + "/api/v1")
    return module


def submit(client, name: str) -> int:
    answer = client.insertTaskParams(task_params(name), properErrorCode=True)
    status, (code, message) = answer
    assert (status, code) == (0, 0) and message.startswith("succeeded. new jediTaskID="), answer
    return int(message.rsplit("=", 1)[1])


def registered_status(client, task_id: int) -> str:
    deadline = time.monotonic() + JEDI_WAIT_S
    while time.monotonic() < deadline:
        status, value = client.getTaskStatus(task_id)
        if status == 0:
            return value
        time.sleep(0.5)
    pytest.fail(f"task {task_id} never registered within {JEDI_WAIT_S} s")


def test_a_new_task_is_unknown_until_jedi_registered_it(client):
    task_id = submit(client, f"contract.{next(NAMES)}.new")
    assert client.getTaskStatus(task_id) == (255, None)
    assert client.killTask(task_id) == (0, (False, f"jediTaskID={task_id} not found"))
    status = registered_status(client, task_id)
    assert status in {"registered", "defined", "assigning", "ready", "running", "scouting"}
    assert client.killTask(task_id) == (0, (True, 0))


def test_a_duplicate_before_registration_is_a_new_task_jedi_aborts(client):
    """The real JEDI aborts the second task with "toabort since there is duplicated task ->
    jediTaskID=<first>" and leaves its name and user empty: a look-up by name never finds it
    (swfflow's executor looks a name up before it submits, so it never makes one)."""
    name = f"contract.{next(NAMES)}.dup"
    first, second = submit(client, name), submit(client, name)
    assert second != first
    deadline = time.monotonic() + JEDI_WAIT_S
    while time.monotonic() < deadline:
        status = client.getTaskStatus(second)
        if status[1] in ("toabort", "aborting", "aborted"):
            break
        time.sleep(0.5)
    assert status[0] == 0 and status[1] in ("toabort", "aborting", "aborted"), status
    assert registered_status(client, first) not in ("toabort", "aborting", "aborted")
    client.killTask(first)


def test_killing_an_unknown_task(client):
    assert client.killTask(987654321) == (0, (False, "jediTaskID=987654321 not found"))
    assert client.getTaskStatus(987654321) == (255, None)


def test_the_sandbox_cache(server_url, tmp_path):
    from swfflow.backends.panda import PandaExecutor
    from swfflow.backends.panda_sandbox import pack, sandbox_name

    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "tool.cwl").write_text(f"# {next(NAMES)}\n")
    tarball = pack(tmp_path / "wf", "{}")
    path = tmp_path / sandbox_name(tarball)
    path.write_bytes(tarball)
    executor = PandaExecutor(server_url, attempts=2, backoff_s=0.2)
    assert executor.put_in_cache(path) == path.name
    base = server_url.split("/server/")[0]
    assert requests.get(f"{base}/cache/{path.name}", timeout=30).content == tarball
    assert executor.put_in_cache(path) == path.name  # found by size and CRC: not sent again
    assert requests.get(f"{base}/cache/sources.none.tar.gz", timeout=30).status_code == 404


def test_killing_a_task_jedi_has_not_registered_yet(server_url):
    """The race swfflow's executor absorbs: the kill is given again once JEDI has the task."""
    from swfflow.backends.panda import PandaExecutor
    from swfflow.backends.panda_states import KILLED_OR_KILLING
    from swfflow.plan.model import TaskSpec

    executor = PandaExecutor(server_url, attempts=2, backoff_s=0.2, registration_wait_s=120)
    name = f"contract.{next(NAMES)}.kill"
    # the user of the test DN: the server lists a production caller's tasks of its own name
    task = TaskSpec(key="kill", step="kill", name=name, kind="command",
                    params=task_params(name, userName="swf"))
    task_id = executor.submit(task)
    executor.kill(task_id)  # at once: JEDI has not read it yet
    deadline = time.monotonic() + JEDI_WAIT_S
    while time.monotonic() < deadline:
        status = executor.status([task_id])[task_id]
        if status.raw in KILLED_OR_KILLING:  # toabort: JEDI took the kill, carries it out later
            break
        time.sleep(0.5)
    assert status.raw in KILLED_OR_KILLING, status
