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
from tests.bridge_support import wait_for

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
    from swfflow.state import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.drive.payload import LocalPayloads
    from swfflow.frontends import load_any
    from swfflow.backends.local_paths import LocalPathCatalog
    from swfflow.testing.panda_runner import ExecutorRunner, specs_from_plans
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
                                                        profile, tmp_path, capsys):
    from swfflow.pipeline import build_plan

    server, plans = real_panda
    run = _run_number()
    plan = build_plan(str(CALIB), None, str(profile), run)
    plans.append(plan)  # what the pilots would get from the task's job parameters
    stream = next(d.did for d in plan.datasets if d.role == "stream")
    state = tmp_path / "work" / ".swfflow"  # where `swfflow status --outdir work` looks
    env = _env(server, rucio_env)
    follower = subprocess.Popen(
        [sys.executable, "-m", "swfflow.cli", "submit", str(CALIB), "--run", run,
         "--profile", str(profile), "--state", str(state), "--follow", "--poll", "0.3",
         "--timeout", "150", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the DAQ: STF files arrive in the open run dataset while the workflow runs
        wait_for(lambda: "reconstruct" in _server_tasks(server, plan), 60,
                 "reconstruct submitted", every=0.2)
        assert rucio_catalog.is_open(stream)
        data = tmp_path / "daq"
        data.mkdir()
        files = [Path(shutil.copy(stf, data / _unique(stf, run))) for stf in STFS]
        rucio_catalog.add_files(stream, [_stf_record(f, run, i) for i, f in enumerate(files[:2])])
        reco = _server_tasks(server, plan)["reconstruct"]
        wait_for(lambda: reco.nFilesFinished >= 2 or reco.status in ("failed", "broken"), 90,
                 "the first two STFs reconstructed", every=0.2)
        assert reco.nFilesFinished >= 2, (reco.status, reco.errorDialog)
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
    status = _swfflow(["status", "--outdir", str(tmp_path / "work"), "--run", run, "--json"],
                      env)
    assert status.returncode == 0, status.stderr
    (inst,) = json.loads(status.stdout)["submitted"]
    assert inst["state"] == "done" and inst["panda_url"] == server.url
    assert {t["key"]: t["task_id"] for t in inst["tasks"]} == {
        step: str(t.jediTaskID) for step, t in tasks.items()}


# --- kill, retry, failures: the contract server's state machine (no payloads run) ------------

@pytest.fixture(scope="module")
def slow_panda():
    """Tasks run for a minute: long enough to be killed."""
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    with PandaContractServer(runner=StateMachineRunner(run_s=60), tick_s=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def flaky_panda():
    """Tasks end quickly; every merge fails its first attempt."""
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    runner = StateMachineRunner(run_s=0.3, outcomes={r"\.merge$": ["failed", "succeeded"]})
    with PandaContractServer(runner=runner, tick_s=0.05) as server:
        yield server


def _plan(profile: Path, run: str):
    from swfflow.pipeline import build_plan

    return build_plan(str(CALIB), None, str(profile), run)


@pytest.mark.services
def test_kill_then_retry_a_whole_instance(slow_panda, rucio_env, profile, tmp_path):
    run, state = _run_number(), str(tmp_path / "state")
    plan = _plan(profile, run)
    env = _env(slow_panda, rucio_env)
    submitted = _swfflow(["submit", str(CALIB), "--run", run, "--profile", str(profile),
                          "--state", state, "--json"], env)
    assert submitted.returncode == 0, submitted.stderr
    phases = {t["key"]: t["phase"] for t in json.loads(submitted.stdout)["tasks"]}
    # released at once: the streaming step and its pipelined child; the rest waits
    assert {phases["reconstruct"], phases["fast_qa"]} <= {"submitted", "running"}
    assert {phases[k] for k in ("merge", "fit", "validate/checksum")} == {"pending"}

    killed = _swfflow(["kill", run, "--state", state, "--json"], env)  # the run number will do
    assert killed.returncode == 0, killed.stderr
    report = json.loads(killed.stdout)
    assert report["state"] == "killed"
    phases = {t["key"]: t["phase"] for t in report["tasks"]}
    assert phases["reconstruct"] == phases["fast_qa"] == "failed"
    assert {phases[k] for k in ("merge", "fit", "validate/checksum", "validate/integrity")} == {
        "blocked"}
    tasks = _server_tasks(slow_panda, plan)
    assert sorted(tasks) == ["fast_qa", "reconstruct"]  # nothing else was ever submitted
    wait_for(lambda: all(t.status == "aborted" for t in tasks.values()), 10, "tasks aborted",
             every=0.2)

    retried = _swfflow(["retry", f"calib:{run}", "--state", state, "--json"], env)
    assert retried.returncode == 0, retried.stderr
    phases = {t["key"]: t["phase"] for t in json.loads(retried.stdout)["tasks"]}
    assert phases["reconstruct"] in ("submitted", "running") and phases["merge"] == "pending"
    # JEDI does not retry an aborted task: it re-executes it under the same id
    assert all("toincexec" in t.history for t in tasks.values())
    assert sorted(_server_tasks(slow_panda, plan)) == ["fast_qa", "reconstruct"]
    assert len(slow_panda.store.tasks) == len({t.taskName for t in
                                               slow_panda.store.tasks.values()})


@pytest.fixture(scope="module")
def flaky_real_panda(rucio_catalog, tmp_path_factory):
    """Like real_panda (the jobs really run), but every merge ends failed on its first attempt:
    its outputs exist, so a retry that succeeds leaves a complete run."""
    from swfflow.state import sqlite_engine
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.drive.payload import LocalPayloads
    from swfflow.frontends import load_any
    from swfflow.backends.local_paths import LocalPathCatalog
    from swfflow.testing.panda_runner import ExecutorRunner, FailFirst, specs_from_plans
    from swfflow.testing.panda_server import PandaContractServer

    work = tmp_path_factory.mktemp("panda-flaky")
    plans: list = []
    prepare = LocalPayloads(load_any(CALIB, {}))
    local = LocalExecutor(LocalPathCatalog(rucio_catalog), sqlite_engine(work / "jedi.db"),
                          work / "pilot", jobs=2)
    runner = FailFirst(ExecutorRunner(local, lambda p: prepare(specs_from_plans(plans)(p))),
                       r"\.merge$")
    try:
        with PandaContractServer(runner=runner, tick_s=0.1) as server:
            yield server, plans
    finally:
        local.shutdown()


@pytest.mark.services
@pytest.mark.slow
def test_failed_merge_is_reported_then_retried_alone(flaky_real_panda, rucio_env,
                                                     rucio_catalog, profile, tmp_path):
    from swfflow.pipeline import build_plan

    server, plans = flaky_real_panda
    run, state = _run_number(), str(tmp_path / "state")
    plan = build_plan(str(CALIB), None, str(profile), run)
    plans.append(plan)
    env = _env(server, rucio_env)
    started = _swfflow(["submit", str(CALIB), "--run", run, "--profile", str(profile),
                        "--state", state], env)
    assert started.returncode == 0, started.stderr
    # the DAQ: the run's STFs arrive, then the run ends
    stream = next(d.did for d in plan.datasets if d.role == "stream")
    data = tmp_path / "daq"
    data.mkdir()
    files = [Path(shutil.copy(stf, data / _unique(stf, run))) for stf in STFS]
    rucio_catalog.add_files(stream, [_stf_record(f, run, i) for i, f in enumerate(files)])
    rucio_catalog.close_dataset(stream)

    common = ["--state", state, "--follow", "--poll", "0.2", "--timeout", "120"]
    failed = _swfflow(["submit", str(CALIB), "--run", run, "--profile", str(profile), *common],
                      env, timeout=180)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    error = failed.stderr[failed.stderr.index("swfflow: error:"):]
    assert f"swf.calib.{run}.merge" in error and "simulated failed" in error
    assert "not started because of it: fit, validate/checksum, validate/integrity" in error
    merge_output = plan.task("merge").outputs["merged"]
    assert rucio_catalog.is_open(merge_output)  # kept open for the retry

    retried = _swfflow(["retry", f"calib:{run}", *common, "--json"], env, timeout=180)
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["state"] == "done"
    tasks = _server_tasks(server, plan)
    assert sorted(tasks) == sorted(t.key for t in plan.tasks)  # each exactly once
    assert "toretry" in tasks["merge"].history
    assert not any("toretry" in t.history for k, t in tasks.items() if k != "merge")
    assert not rucio_catalog.is_open(merge_output)


@pytest.mark.services
def test_rejected_task_names_the_task_and_the_servers_message(flaky_panda, rucio_env, profile,
                                                              tmp_path):
    run = _run_number()
    plan = json.loads(_plan(profile, run).to_json())
    reco = next(t for t in plan["tasks"] if t["key"] == "reconstruct")
    del reco["params"]["vo"]  # the server refuses to register a task without a VO
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    result = _swfflow(["submit", str(plan_file), "--state", str(tmp_path / "state")],
                      _env(flaky_panda, rucio_env))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"PanDA rejected task swf.calib.{run}.reconstruct: failed to register task "
            "(code 4)") in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.services
def test_unreachable_panda_is_one_clear_error(rucio_env, profile, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}/server/panda"
    env = {**_env_without_panda(), **rucio_env, "PANDA_URL_SSL": url, "PANDA_URL": url}
    result = _swfflow(["submit", str(CALIB), "--run", _run_number(), "--profile", str(profile),
                       "--state", str(tmp_path / "state"), "--attempts", "2"], env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("swfflow: error:")]
    assert url in line and "get_tasks_detailed_info_since" in line and "2 attempt(s)" in line


@pytest.mark.services
def test_unreachable_rucio_is_one_clear_error(rucio_env, profile, tmp_path):
    import configparser

    parser = configparser.ConfigParser()
    parser.read(rucio_env["RUCIO_CONFIG"])
    host = f"http://127.0.0.1:{_free_port()}"
    parser["client"]["rucio_host"] = parser["client"]["auth_host"] = host
    config = tmp_path / "rucio.cfg"
    with config.open("w") as fh:
        parser.write(fh)
    env = {**_env_without_panda(), "RUCIO_CONFIG": str(config),
           "PANDA_URL_SSL": "http://127.0.0.1:1/server/panda"}
    result = _swfflow(["submit", str(CALIB), "--run", _run_number(), "--profile", str(profile),
                       "--state", str(tmp_path / "state"), "--attempts", "2"], env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("swfflow: error:")]
    assert host in line and "add_dataset" in line


def _env_without_panda() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PANDA_", "RUCIO_", "SWFFLOW_STATE"))}


# --- bad input: exit 2, one message, nothing contacted -------------------------------------

@pytest.mark.parametrize("args, message", [
    (["submit", str(CALIB)], "--run N is missing"),
    (["kill", "calib:1", "--state", "{tmp}/nothing"], "no submitted workflows under"),
    (["retry", "1", "--state", "{tmp}/nothing"], "no submitted workflows under"),
])
def test_bad_input_is_exit_2_without_traceback(args, message, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _swfflow(args, _env_without_panda())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_instantiated_plan_with_another_run_is_refused(profile, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(_plan(profile, "1234567").to_json())
    result = _swfflow(["submit", str(plan_file), "--run", "7654321"], _env_without_panda(),
                      cwd=tmp_path)
    assert result.returncode == 2
    assert "the plan is for run 1234567, not 7654321" in result.stderr
    assert not (tmp_path / ".swfflow").exists()  # refused before anything was recorded


def test_unknown_instance_lists_the_known_ones(tmp_path):
    from swfflow.errors import ConfigError
    from swfflow.submission import SubmissionStore

    store = SubmissionStore(tmp_path)
    store.record("calib:1", "http://p", "http://r", "calib.cwl")
    store.record("calib:2", "http://p", "http://r", "calib.cwl")
    assert store.find("2") == "calib:2" and store.find("calib:1") == "calib:1"
    with pytest.raises(ConfigError, match="known instances: calib:1, calib:2"):
        store.find("3")
