"""A pilot killed mid-job (kill -9 of its whole process group: a worker node that died) stops
reporting; PanDA's watcher fails the job with "lost heartbeat" once its heartbeat timeout
has passed (production: 2 h; the test services: services/panda_db.HEARTBEAT_TIMEOUT_S), and
JEDI retries the job's file in a new job, which another pilot runs to the end. Against the
real panda-server 1.0.4 + JEDI and this run's Rucio."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from swfflow.services import postgres
from swfflow.services.panda_db import HEARTBEAT_TIMEOUT_S
from tests.test_panda_real import RUNS, activated, jobs_by_input, open_run, wait_for
from tests.test_pilot_real import pilot_env, serve, shipped  # noqa: F401 - a fixture

EC_WATCHER = 100  # pandaserver.jobdispatcher.ErrorCode: the job's heartbeat was lost


def dispatcher_error(database: str, panda_id: int) -> dict:
    sql = ("select jobstatus || '|' || coalesce(jobdispatchererrorcode, 0) || '|' || "
           "coalesce(jobdispatchererrordiag, '') from doma_panda.jobsarchived4 "
           f"where pandaid = {int(panda_id)}")
    found = postgres.psql(sql, "read jobsarchived4", database=database)
    if not found:
        return {}
    status, code, diag = found.split("|", 2)
    return {"status": status, "code": int(code), "diag": diag}


def hanging_first_attempt(task, marker) -> object:
    """The task with a command whose first attempt hangs (after leaving ``marker``) and whose
    later attempts run the real job: ``/bin/sh -c SCRIPT sh swfflow job …``."""
    script = f'if [ -e {marker} ]; then exec "$@"; fi; touch {marker}; exec sleep 900'
    items = list(task.params["jobParameters"])
    items.insert(2, {"type": "constant", "value": f"-c {shlex.quote(script)} sh"})
    return dataclasses.replace(task, params={**task.params, "transPath": "/bin/sh",
                                             "jobParameters": items})


@pytest.mark.flaky(reruns=1)
def test_a_killed_pilots_job_is_retried_by_panda(panda_server, rucio_catalog, pilot_env,
                                                 tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    database = panda_server["database"]
    marker = tmp_path / "first-attempt-started"
    executor, tasks = shipped(panda_server["url"], next(RUNS))
    task = hanging_first_attempt(tasks["reconstruct"], marker)
    queue = task.params["site"]
    open_run(rucio_catalog, task)
    lfn = task.params["dsForIN"].split(":")[1] + ".000001.stf"
    task_id = executor.submit(task)
    first = activated(database, task_id, lfn)

    pilot = subprocess.Popen(
        [sys.executable, "-c", "from swfflow.cli import main; main()", "pilot",
         "--queue", queue, "--url", panda_server["url"], "--task-id", str(task_id),
         "--max-jobs", "1", "--workdir", str(tmp_path / "doomed"), "--heartbeat", "5"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_for("the first attempt never started", marker.exists, timeout=120)
        running = jobs_by_input(database, task_id)[lfn]
        assert (running["pandaid"], running["jobstatus"]) == (first["pandaid"], "running")
    finally:
        os.killpg(pilot.pid, signal.SIGKILL)  # the node dies: pilot and payload at once
        pilot.wait(timeout=30)
    killed_at = time.monotonic()

    failed = wait_for("PanDA's watcher never failed the silent job",
                      lambda: dispatcher_error(database, first["pandaid"]),
                      timeout=HEARTBEAT_TIMEOUT_S + 480)  # its daemon runs late on a loaded machine
    assert (failed["status"], failed["code"]) == ("failed", EC_WATCHER), failed
    assert "lost heartbeat" in failed["diag"]
    assert time.monotonic() - killed_at >= HEARTBEAT_TIMEOUT_S - 15  # not before its timeout

    retry = wait_for("JEDI never retried the file", lambda: (
        job := jobs_by_input(database, task_id).get(lfn)) and job["pandaid"] != first["pandaid"]
        and job["jobstatus"] == "activated" and job, timeout=240)
    (outcome,) = serve(panda_server["url"], tmp_path, queue, max_jobs=1, task_id=int(task_id))
    assert (outcome.panda_id, outcome.state) == (retry["pandaid"], "finished"), outcome
    output = next(i for i in task.params["jobParameters"] if i.get("param_type") == "output")
    (record,) = rucio_catalog.list_files(output["dataset"])
    assert record.adler32 == outcome.report[record.name.split(":")[-1]]["adler32"]
