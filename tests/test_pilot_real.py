"""swfflow's pilot against the real panda-server 1.0.4 + JEDI (``panda_server`` fixture) and
this run's Rucio: JEDI's jobs for the calib plan's streaming task are taken through the real
pilot API, run (``/usr/bin/env swfflow job …`` as JEDI expanded it), their outputs uploaded
to the queue's RSE and registered in Rucio with adler32, and PanDA's adder finishes them; closing the run's dataset lets JEDI finish the task."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from swfflow.services import postgres
from tests.test_panda_real import (
    CALIB,
    RUNS,
    activated,
    attach_stf,
    compiled_tasks,
    jedi_row,
    open_run,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def shipped(url: str, run: int):
    """An executor on ``url`` and the calib plan's tasks for ``run`` as ``submit`` and the
    bridge send them: naming their sandbox (examples/ + plan.json), which the executor
    uploads to the server's cache with the first task it inserts."""
    from swfflow.backends.panda import PandaExecutor
    from swfflow.frontends import load_any
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile

    plan = compile_workflow(load_any(str(CALIB), {}), {}, load_profile(None), str(run))
    executor = PandaExecutor(url, attempts=3, backoff_s=0.5)
    ship = executor.for_plan(plan, str(CALIB))
    return executor, {task.key: ship(task) for task in plan.tasks if task.params}


@pytest.fixture()
def pilot_env(monkeypatch, rucio_env):
    """`swfflow` on PATH for the jobs' /usr/bin/env; Rucio's client from the run's config."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RUCIO_CONFIG", rucio_env["RUCIO_CONFIG"])


def archived(database: str, panda_id: int) -> dict:
    sql = ("select jobstatus || '|' || coalesce(transexitcode, '') || '|' || piloterrorcode "
           f"from doma_panda.jobsarchived4 where pandaid = {int(panda_id)}")
    found = postgres.psql(sql, "read jobsarchived4", database=database)
    if not found:
        return {}
    status, exit_code, pilot_error = found.split("|")
    return {"status": status, "exit": exit_code, "pilot_error": pilot_error}


def serve(url: str, tmp_path: Path, queue: str, **options):
    from swfflow.pilot.api import PilotAPI
    from swfflow.pilot.loop import PilotSettings, serve

    settings = PilotSettings(queue=queue, workdir=tmp_path / "pilot", idle_timeout_s=90,
                             poll_s=1, **options)
    return serve(PilotAPI(url), settings, log=lambda _msg: None)


# JEDI's daemons act on their own cycles (watchdog, post-processor: once a minute); one in a
# few runs a cycle is missed and the task stays in its state past the wait. Run again from the
# start (a new task) before calling it a failure; a systematic fault fails every attempt.
@pytest.mark.flaky(reruns=2)
def test_pilot_runs_jedis_jobs_and_registers_outputs(panda_server, rucio_catalog, pilot_env,
                                                     tmp_path, monkeypatch):
    """The jobs fetch their sandbox (the workflow folder + plan.json) from the server's cache:
    the pilot runs where no workflow folder exists, and is given none."""
    from swfflow.checksum import adler32_file

    run = next(RUNS)
    executor, tasks = shipped(panda_server["url"], run)
    task = tasks["reconstruct"]
    sandbox_name = task.params["jobParameters"][1]["value"].removeprefix("-a ")
    monkeypatch.chdir(tmp_path)  # nothing of the repository's around the pilot
    open_run(rucio_catalog, task)
    attach_stf(rucio_catalog, task, 2)
    task_id = executor.submit(task)
    for sequence in (1, 2):
        activated(panda_server["database"], task_id,
                  f"{task.params['dsForIN'].split(':')[1]}.{sequence:06d}.stf")

    # other tests leave jobs on the same queue: take this task's only
    outcomes = serve(panda_server["url"], tmp_path, task.params["site"], max_jobs=2,
                     task_id=int(task_id))
    assert [o.state for o in outcomes] == ["finished", "finished"], outcomes
    for outcome in outcomes:  # the job folder holds the unpacked sandbox, not the tarball
        (job_dir,) = (tmp_path / "pilot").glob(f"{outcome.panda_id}.*")
        assert (job_dir / "plan.json").is_file() and (job_dir / "tools" / "reco.cwl").is_file()
        assert not (job_dir / sandbox_name).exists()
    assert json.loads((job_dir / "plan.json").read_text())["run"] == str(run)

    output = next(i for i in task.params["jobParameters"] if i.get("param_type") == "output")
    files = {f.name: f for f in rucio_catalog.list_files(output["dataset"])}
    assert len(files) == 2, files
    for record in files.values():
        path = Path(record.pfn.removeprefix("file://localhost"))
        assert "E1_BNL_DISK" in str(path) and adler32_file(path) == record.adler32
    reported = {lfn: meta for o in outcomes for lfn, meta in (o.report or {}).items()}
    assert {name: reported[name]["adler32"] for name in files} == \
        {name: record.adler32 for name, record in files.items()}
    for outcome in outcomes:
        job = wait_for("PanDA's adder never finished the job",
                       lambda pid=outcome.panda_id: archived(panda_server["database"], pid))
        assert job == {"status": "finished", "exit": "0", "pilot_error": "0"}, job

    # the end of the run closes its dataset: JEDI finishes the task once its jobs are done
    rucio_catalog.close_dataset(task.params["dsForIN"])
    wait_for("JEDI never finished the task", lambda: jedi_row(
        panda_server["database"], task_id).get("status") == "done", timeout=360)
    status = executor.status([task_id])[task_id]
    assert (status.state.value, status.raw, status.n_jobs_done) == ("succeeded", "done", 2)


def test_a_failing_payload_is_reported_failed_with_its_exit_code(panda_server, rucio_catalog,
                                                                 pilot_env, tmp_path):
    from swfflow.backends.panda import PandaExecutor

    task = compiled_tasks(next(RUNS))["reconstruct"]
    task = dataclasses.replace(task, params={**task.params, "transPath": "/bin/false",
                                             "site": "JLAB_PanDA_1", "maxAttempt": 1})
    open_run(rucio_catalog, task)
    task_id = PandaExecutor(panda_server["url"], attempts=3, backoff_s=0.5).submit(task)
    activated(panda_server["database"], task_id,
              task.params["dsForIN"].split(":")[1] + ".000001.stf")

    (outcome,) = serve(panda_server["url"], tmp_path, "JLAB_PanDA_1", max_jobs=1,
                       task_id=int(task_id))
    assert (outcome.state, outcome.exit_code) == ("failed", 1)
    job = wait_for("PanDA's adder never failed the job",
                   lambda: archived(panda_server["database"], outcome.panda_id))
    assert (job["status"], job["exit"]) == ("failed", "1"), job


def test_dispatch_fields_become_a_job_spec():
    """The scope of an output comes from its dataset's DID (JEDI's own guess from the name,
    "user.swf:swf", is no Rucio scope)."""
    from swfflow.pilot.job import JobSpec

    job = JobSpec.from_dispatch({
        "PandaID": 7, "attemptNr": 2, "transformation": "/usr/bin/env",
        "jobPars": "swfflow job --task reco -i \"['a.stf']\"", "inFiles": "a.stf",
        "scopeIn": "group.daq", "outFiles": "h.1.hist,l.1.log.tgz", "logFile": "l.1.log.tgz",
        "realDatasets": "user.swf:swf.c.1.reco.hist,user.swf:swf.c.1.reco.log",
        "scopeOut": "user.swf:swf", "ddmEndPointOut": "E1_BNL_DISK,E1_BNL_DISK",
        "maxWalltime": 3600})
    assert job.inputs == ("group.daq:a.stf",)
    assert [(o.lfn, o.scope, o.is_log) for o in job.outputs] == [
        ("h.1.hist", "user.swf", False), ("l.1.log.tgz", "user.swf", True)]
    assert job.argv() == ["/usr/bin/env", "swfflow", "job", "--task", "reco", "-i", "['a.stf']"]
    with pytest.raises(ValueError, match="runGen"):
        dataclasses.replace(job, transformation="https://x/trf/user/runGen-00-00-02").argv()


def test_an_unreachable_server_is_one_clear_error(tmp_path, monkeypatch, capsys):
    from swfflow.cli import main

    monkeypatch.setenv("RUCIO_CONFIG", str(tmp_path / "unused.cfg"))
    with pytest.raises(SystemExit) as exited:
        main(["pilot", "--queue", "BNL_PanDA_1", "--url", "http://127.0.0.1:9/server/panda",
              "--workdir", str(tmp_path), "--idle-timeout", "0"])
    err = capsys.readouterr().err
    assert exited.value.code not in (0, None)
    assert "did not answer acquire_jobs" in err and "Traceback" not in err
    assert "swfflow services status" in err  # the hint
