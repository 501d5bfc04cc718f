"""examples/calib.cwl end to end through the real panda-server 1.0.4 + JEDI and this run's
Rucio, driven by `swfflow submit --follow`: the streaming task reads the run's open Rucio
dataset, JEDI makes a job per STF as the files are attached, swfflow's pilot runs them with
the sandbox the submission shipped (it has no workflow folder of its own), the dataset is
closed, the merge, fit and validation tasks are released and run, and every output is in
Rucio with the adler32 of its file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from swfflow.backends.base import FileRecord
from swfflow.checksum import adler32_file
from swfflow.services import postgres
from tests.test_panda_real import CALIB, RUNS, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

STFS = sorted((CALIB.parent / "data").glob("*.stf"))
FOLLOW_TIMEOUT_S = 1500  # four task generations, each waiting on JEDI's daemon cycles


def named_tasks(database: str, pattern: str, after: int = 0) -> dict[int, str]:
    """JEDI task id → task name, of the tasks named like the SQL ``pattern`` (ids > after)."""
    sql = ("select jeditaskid || '|' || taskname from doma_panda.jedi_tasks "
           f"where taskname like '{pattern}' and jeditaskid > {int(after)}")
    rows = postgres.psql(sql, "read jedi_tasks", database=database).splitlines()
    return {int(i): name for i, name in (row.split("|", 1) for row in rows)}


def instance_tasks(database: str, run: str) -> dict[int, str]:
    return named_tasks(database, f"swf.calib.{int(run)}.%")


def last_task_id(database: str) -> int:
    found = postgres.psql("select coalesce(max(jeditaskid), 0) from doma_panda.jedi_tasks",
                          "read jedi_tasks", database=database)
    return int(found or 0)


class Pilots(threading.Thread):
    """swfflow's pilot serving only the tasks ``tasks()`` names (other tests share the queues):
    one acquire per task and round on each queue, each job run as ``swfflow pilot`` runs it."""

    def __init__(self, url: str, tasks, queues: list[str], workdir: Path):
        super().__init__(daemon=True, name="pilots")
        from swfflow.pilot.api import PilotAPI
        from swfflow.pilot.loop import rucio_client

        self.api, self.rucio = PilotAPI(url), rucio_client()
        self.tasks, self.queues, self.workdir = tasks, queues, workdir
        self.outcomes: list = []
        self.stop = threading.Event()

    def run(self) -> None:
        from swfflow.pilot.job import run_job

        while not self.stop.wait(1.0):
            for task_id in self.tasks():
                for queue in self.queues:
                    for data in self.api.acquire_jobs(queue, label="test", node="e2e",
                                                      task_id=task_id):
                        self.outcomes.append(run_job(self.api, data, self.workdir, self.rucio,
                                                     queue=queue, node="e2e",
                                                     log=lambda _msg: None))


# Written and run against the real server; it fails there today for two reasons found
# while writing it, both described in docs/panda.md. Not run by default (each run waits
# minutes for what does not come); delete the mark to run it.
@pytest.mark.xfail(run=False, reason="JEDI never feeds a streaming task whose run dataset was empty at its first feed, and its agents stall under load: docs/panda.md, Known problems (issue 14)")
def test_calib_through_real_jedi_with_submit(panda_server, rucio_env, rucio_catalog, tmp_path,
                                             monkeypatch):
    from swfflow.pipeline import build_plan

    run = str(next(RUNS))
    plan = build_plan(str(CALIB), None, None, run)
    stream = next(d.did for d in plan.datasets if d.role == "stream")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PANDA_")},
           **rucio_env, "PANDA_URL_SSL": panda_server["url"], "PANDA_URL": panda_server["url"],
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    monkeypatch.setenv("PATH", env["PATH"])  # the jobs' /usr/bin/env finds swfflow
    monkeypatch.chdir(tmp_path)  # the pilot: no workflow folder around
    state = tmp_path / "state"
    stderr = open(tmp_path / "submit.stderr", "w")  # noqa: SIM115 - closed at the end
    follower = subprocess.Popen(
        [sys.executable, "-m", "swfflow.cli", "submit", str(CALIB), "--run", run,
         "--state", str(state), "--follow", "--poll", "2", "--timeout",
         str(FOLLOW_TIMEOUT_S), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    pilots = Pilots(panda_server["url"], lambda: instance_tasks(panda_server["database"], run),
                    [plan.task("reconstruct").params["site"]], tmp_path / "pilot")
    pilots.start()
    try:
        wait_for("reconstruct on PanDA", lambda: plan.task("reconstruct").name in
                 instance_tasks(panda_server["database"], run).values())
        assert rucio_catalog.is_open(stream)
        data = tmp_path / "daq"
        data.mkdir()
        for sequence, stf in enumerate(STFS):  # the DAQ: files arrive while the run is open
            copy = Path(shutil.copy(stf, data / f"run{run}_{stf.name.split('_', 1)[1]}"))
            rucio_catalog.add_files(stream, [FileRecord(
                did=f"group.daq:{copy.name}", size=copy.stat().st_size,
                adler32=adler32_file(copy), pfn=str(copy))])
            time.sleep(2)
        wait_for("the STFs reconstructed while the run is open", lambda: sum(
            o.state == "finished" for o in pilots.outcomes) >= len(STFS), timeout=300)
        names = instance_tasks(panda_server["database"], run).values()
        assert plan.task("merge").name not in names  # not before the end of the run
        rucio_catalog.close_dataset(stream)
        out, _ = follower.communicate(timeout=FOLLOW_TIMEOUT_S + 60)
    finally:
        pilots.stop.set()
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
        stderr.close()
    assert follower.returncode == 0, (tmp_path / "submit.stderr").read_text()[-6000:]
    report = json.loads(out)
    assert report["state"] == "done", report
    assert {t["key"]: t["phase"] for t in report["tasks"]} == {
        t.key: "succeeded" for t in plan.tasks if t.params}
    failed = [o for o in pilots.outcomes if o.state != "finished"]
    assert not failed, failed
    for spec in (d for d in plan.datasets if d.role == "output"):
        records = rucio_catalog.list_files(spec.did)
        expected = len(STFS) if spec.producer in ("reconstruct", "fast_qa") else 1
        assert len(records) == expected, (spec.did, records)
        for record in records:
            path = Path(record.pfn.removeprefix("file://localhost"))
            assert record.adler32 == adler32_file(path) and record.size == path.stat().st_size
    constants = rucio_catalog.list_files(plan.task("fit").outputs["constants"])[0]
    assert Path(constants.pfn.removeprefix("file://localhost")).read_text().strip()
