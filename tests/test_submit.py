"""`swfflow submit / kill / retry` and the status of a submission: the real CLI in a subprocess,
the real panda-client against the PanDA contract server, the real Rucio server.

The end-to-end test is issue 4's "Done means": examples/calib.cwl compiled and submitted, STF
files fed into the OPEN run dataset, the dataset closed, the merge released only after that, and
every output registered in Rucio with the adler32 of the real file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from swfflow.backends.base import FileRecord
from swfflow.checksum import adler32_file

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT / "examples" / "calib.cwl"
STFS = sorted((ROOT / "examples" / "data").glob("*.stf"))
PROFILE = "scopes: {stream: group.daq, output: user.swfflow}\nuser: swf\n"


def _run_number() -> str:
    return str(random.randrange(10**6, 10**7))


def _swfflow(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=kwargs.pop("timeout", 120),
                          cwd=kwargs.pop("cwd", None), **kwargs)


def _env(server, rucio_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA_", "SWFFLOW_STATE"))}
    return {**env, **server.env(), **rucio_env}


def _wait(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def _server_tasks(server, plan) -> dict[str, object]:
    """The contract server's tasks of a plan instance, by plan task key."""
    keys = {t.name: t.key for t in plan.tasks}
    return {keys[t.taskName]: t for t in list(server.store.tasks.values())
            if t.taskName in keys}


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(PROFILE)
    return path


# --- the PanDA double running real jobs (local executor over the real Rucio server) ----------

@pytest.fixture(scope="module")
def real_panda(rucio_catalog, tmp_path_factory):
    """A contract server whose accepted tasks run for real; yields (server, plans it serves)."""
    from swfflow.backends.local_catalog import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.drive.payload import LocalPayloads
    from swfflow.frontends import load_any
    from swfflow.testing.panda_runner import (ExecutorRunner, LocalPathCatalog,
                                              specs_from_plans)
    from swfflow.testing.panda_server import PandaContractServer

    work = tmp_path_factory.mktemp("panda-real")
    plans: list = []
    prepare = LocalPayloads(load_any(CALIB, {}))
    local = LocalExecutor(LocalPathCatalog(rucio_catalog), sqlite_engine(work / "jedi.db"),
                          work / "pilot", jobs=2)
    runner = ExecutorRunner(local, lambda params: prepare(specs_from_plans(plans)(params)))
    try:
        with PandaContractServer(runner=runner, tick_s=0.1) as server:
            yield server, plans
    finally:
        local.shutdown()


def _unique(stf: Path, run: str) -> str:
    """An STF file name of this run (file DIDs are global in Rucio: one name, one file)."""
    return f"run{run}_{stf.name.split('_', 1)[1]}"


def _stf_record(path: Path, run: str, sequence: int) -> FileRecord:
    return FileRecord(did=f"group.daq:{path.name}", size=path.stat().st_size,
                      adler32=adler32_file(path), pfn=str(path),
                      meta={"run_number": int(run), "sequence": sequence})


@pytest.mark.services
@pytest.mark.slow
def test_calib_submitted_streamed_closed_and_registered(real_panda, rucio_env, rucio_catalog,
                                                        profile, tmp_path):
    from swfflow.commands.compile import build_plan
    from swfflow.submission import submitted_status

    server, plans = real_panda
    run = _run_number()
    plan = build_plan(str(CALIB), None, str(profile), run)
    plans.append(plan)  # what the pilots would get from the task's job parameters
    stream = next(d.did for d in plan.datasets if d.role == "stream")
    state = tmp_path / "state"
    env = _env(server, rucio_env)
    follower = subprocess.Popen(
        [sys.executable, "-m", "swfflow.cli", "submit", str(CALIB), "--run", run,
         "--profile", str(profile), "--state", str(state), "--follow", "--poll", "0.3",
         "--timeout", "150", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the DAQ: STF files arrive in the open run dataset while the workflow runs
        _wait(lambda: "reconstruct" in _server_tasks(server, plan), 60, "reconstruct submitted")
        assert rucio_catalog.is_open(stream)
        data = tmp_path / "daq"
        data.mkdir()
        files = [Path(shutil.copy(stf, data / _unique(stf, run))) for stf in STFS]
        rucio_catalog.add_files(stream, [_stf_record(f, run, i) for i, f in enumerate(files[:2])])
        reco = _server_tasks(server, plan)["reconstruct"]
        _wait(lambda: reco.nFilesFinished >= 2, 90, "the first two STFs reconstructed")
        assert reco.status == "running"  # runUntilClosed: the open dataset keeps it running
        assert "merge" not in _server_tasks(server, plan)  # not while the run is open
        rucio_catalog.add_files(stream, [_stf_record(f, run, i + 2)
                                         for i, f in enumerate(files[2:])])
        time.sleep(1.0)  # a few driver polls with the run still open
        assert "merge" not in _server_tasks(server, plan)
        closed_at = datetime.now(timezone.utc).replace(tzinfo=None)
        rucio_catalog.close_dataset(stream)  # end of run
        out, err = follower.communicate(timeout=150)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    report = json.loads(out)
    assert report["state"] == "done" and report["instance"] == f"calib:{run}"
    assert {t["key"]: t["phase"] for t in report["tasks"]} == {
        t.key: "succeeded" for t in plan.tasks}
    # every task exactly once on the server; the merge released only after the close
    tasks = _server_tasks(server, plan)
    assert sorted(tasks) == sorted(t.key for t in plan.tasks)
    assert [t.taskName for t in server.store.tasks.values()].count(plan.task("merge").name) == 1
    assert tasks["merge"].creationDate >= closed_at
    assert tasks["reconstruct"].creationDate < closed_at
    assert tasks["reconstruct"].nFilesFinished == len(STFS)
    # every output registered in Rucio, closed, with the adler32 of the real file
    outputs = [d for d in plan.datasets if d.role == "output"]
    for spec in outputs:
        assert not rucio_catalog.is_open(spec.did), spec.did
        records = rucio_catalog.list_files(spec.did)
        assert records, f"{spec.did} is empty"
        for record in records:
            path = Path(record.pfn.removeprefix("file://localhost"))
            assert record.adler32 == adler32_file(path) and record.size == path.stat().st_size
    for spec in outputs:
        expected = len(STFS) if spec.producer in ("reconstruct", "fast_qa") else 1
        assert len(rucio_catalog.list_files(spec.did)) == expected, spec.did
    constants = rucio_catalog.list_files(plan.task("fit").outputs["constants"])[0]
    assert Path(constants.pfn.removeprefix("file://localhost")).read_text().strip()

    # a re-run of the same submission (after a crash, say) finds everything, duplicates nothing
    before = len(server.store.tasks)
    again = _swfflow(["submit", str(CALIB), "--run", run, "--profile", str(profile),
                      "--state", str(state), "--json"], env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["state"] == "done" and len(server.store.tasks) == before
    # what `swfflow status` shows for it, refreshed from PanDA
    status = submitted_status(state, run, panda_url=server.url)
    (inst,) = status["instances"]
    assert inst["state"] == "done" and inst["panda_url"] == server.url
    assert {t["key"]: t["task_id"] for t in inst["tasks"]} == {
        step: str(t.jediTaskID) for step, t in tasks.items()}
