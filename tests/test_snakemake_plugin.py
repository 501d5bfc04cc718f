"""The swfpanda executor plugin and the 'panda' profile, against the PanDA contract server
(the real panda-client talks to it) with a runner that executes every JEDI job of a task
through the plugin's own worker entry point."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from snakemake_executor_plugin_swfpanda import job_outcome
from snakemake_executor_plugin_swfpanda.tasks import WaveJob, decode_jobs, wave_task
from swfflow.backends.base import FileRecord, TaskState, TaskStatus
from swfflow.checksum import adler32_file
from swfflow.plan.profile import load_profile
from swfflow.testing.panda_runner import RunReport
from swfflow.testing.panda_server import PandaContractServer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "snakemake"


class WorkerRunner:
    """Runs each JEDI job of a swfpanda task as a pilot would: the task's job command with
    ``${FIRSTEVENT}`` = the job index, in ``workdir`` (a shared file system)."""

    lanes = 2

    def __init__(self, workdir: Path, catalog: Any = None):
        self.workdir = workdir
        self.catalog = catalog  # a RucioCatalog: job logs go to the task's log dataset
        self.runs: dict[int, dict[str, Any]] = {}
        self.started: list[dict[str, Any]] = []

    def start(self, task_id: int, params: Mapping[str, Any]) -> None:
        command = params["jobParameters"][0]["value"]
        n_jobs = int(params["nEvents"])
        run = {"name": params["taskName"], "codes": [None] * n_jobs, "stopped": False,
               "log_ds": params["log"]["dataset"]}
        if self.catalog is not None:
            self.catalog.create_dataset(run["log_ds"])
        self.runs[task_id] = run
        self.started.append({"task_id": task_id, "params": dict(params)})
        for lane in range(self.lanes):  # JEDI jobs run in parallel, like pilots on 2 slots
            threading.Thread(target=self._run, args=(run, command, range(lane, n_jobs, self.lanes)),
                             daemon=True).start()

    def _run(self, run: dict[str, Any], command: str, indexes: range) -> None:
        for index in indexes:
            if run["stopped"]:
                run["codes"][index] = -9
                continue
            argv = shlex.split(command.replace("${FIRSTEVENT}", str(index)))
            argv[0:3] = [sys.executable, "-m", argv[2]]  # python3 of the image = the test venv
            log = self.workdir / "pilot-logs" / f"{run['name']}.{index}.log"
            log.parent.mkdir(exist_ok=True)
            with log.open("wb") as sink:
                code = subprocess.call(argv, cwd=self.workdir, stdout=sink, stderr=sink)
            if self.catalog is not None:  # as a pilot does: the job's log into Rucio
                scope = run["log_ds"].split(":")[0]
                self.catalog.add_files(run["log_ds"], [FileRecord(
                    f"{scope}:{log.name}", log.stat().st_size, adler32_file(log), str(log))])
            run["codes"][index] = code

    def poll(self, task_id: int) -> RunReport:
        codes = self.runs[task_id]["codes"]
        done = sum(c == 0 for c in codes)
        failed = sum(c not in (0, None) for c in codes)
        if None in codes:
            return RunReport("running", n_files=len(codes), n_files_finished=done,
                             n_files_failed=failed)
        state = "succeeded" if not failed else "partial" if done else "failed"
        if self.catalog is not None and self.catalog.is_open(self.runs[task_id]["log_ds"]):
            self.catalog.close_dataset(self.runs[task_id]["log_ds"])
        return RunReport(state, n_files=len(codes), n_files_finished=done, n_files_failed=failed,
                         message="" if not failed else f"{failed} job(s) failed")

    def stop(self, task_id: int, how: str) -> None:
        self.runs[task_id]["stopped"] = True

    def retry(self, task_id: int, params: Mapping[str, Any]) -> None:
        self.start(task_id, params)


@pytest.fixture
def panda_env(tmp_path, rucio_catalog):
    """A contract server with the worker runner (job logs into the real Rucio server), an
    installed 'panda' profile in a temporary XDG config folder, and the environment snakemake
    runs with."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner = WorkerRunner(workdir, rucio_catalog)
    with PandaContractServer(runner=runner, tick_s=0.05) as server:
        env = {**os.environ, **server.env(), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
        installed = subprocess.run([sys.executable, "-m", "swfflow.cli", "profile", "install"],
                                   env=env, capture_output=True, text=True)
        assert installed.returncode == 0, installed.stderr
        assert (tmp_path / "xdg" / "snakemake" / "panda" / "config.yaml").is_file()
        yield server, runner, workdir, env


# the test Rucio server's scope for workflow outputs (the default profile says user.swf)
SCOPE = "user.swfflow"


def snakemake(env: dict, workdir: Path, snakefile: Path, *args: str,
              timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "panda", "-s", str(snakefile),
         "-d", str(workdir), "--seconds-between-status-checks", "1", "--latency-wait", "2",
         f"--swfpanda-scope={SCOPE}", *args], env=env, capture_output=True, text=True,
        timeout=timeout)


@pytest.mark.slow
@pytest.mark.services
def test_profile_runs_the_stf_chain_on_panda(panda_env, rucio_catalog):
    server, runner, workdir, env = panda_env
    result = snakemake(env, workdir, ROOT / "Snakefile", "--config",
                       f"stf_dir={ROOT / 'examples' / 'data'}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = workdir / "results"
    stfs = sorted(p.stem for p in (ROOT / "examples" / "data").glob("*.stf"))
    for stf in stfs:
        reco = json.loads((results / "stf_reco" / f"{stf}.reco.json").read_text())
        assert reco  # real payload output
        assert (results / "fast_skim" / f"{stf}.skim.json").is_file()
    merged = json.loads((results / "merge" / "merge.merged.json").read_text())
    assert len(merged["sources"]) == len(stfs)
    assert (results / "calib_fit" / "calib_fit.constants.json").is_file()
    # one PanDA task per rule per wave: the 4 reco jobs went as ONE task of 4 JEDI jobs
    tasks = {t["params"]["taskName"].split(".")[-2]: t["params"] for t in runner.started}
    assert set(tasks) == {"stf_reco", "fast_skim", "merge", "calib_fit"}
    assert tasks["stf_reco"]["nEvents"] == len(stfs) and tasks["stf_reco"]["noInput"] is True
    assert tasks["stf_reco"]["ramCount"] == 2000 and tasks["stf_reco"]["baseWalltime"] == 1800
    assert tasks["stf_reco"]["container_name"] == "docker://python:3.11-slim"
    assert tasks["calib_fit"]["ramCount"] == 4000 and tasks["stf_reco"]["maxAttempt"] == 1
    assert tasks["stf_reco"]["site"] == load_profile().site
    statuses = [c for c in server.calls if "get_tasks_detailed_info_since" in c]
    assert statuses, "the plugin polled PanDA"
    # every JEDI job left its log in the task's (closed) Rucio log dataset, checksums intact
    for params in tasks.values():
        log_ds = params["log"]["dataset"]
        assert log_ds.startswith(f"{SCOPE}:") and not rucio_catalog.is_open(log_ds)
        files = rucio_catalog.list_files(log_ds)
        assert len(files) == params["nEvents"]
        for record in files:
            local = workdir / "pilot-logs" / record.name
            assert record.adler32 == adler32_file(local) and record.size == local.stat().st_size


@pytest.mark.slow
@pytest.mark.services
def test_failing_rule_is_retried_then_reported(panda_env):
    server, runner, workdir, env = panda_env
    result = snakemake(env, workdir, DATA / "retry" / "Snakefile", "--keep-going")
    assert result.returncode != 0
    assert (workdir / "flaky.txt").read_text().strip() == "ok"  # second attempt succeeded
    assert (workdir / "broken.attempts").read_text().count("attempt") == 2  # 1 retry
    names = [t["params"]["taskName"] for t in runner.started]
    assert sum(n.split(".")[-2] == "flaky" for n in names) == 2  # one task per attempt
    assert sum(n.split(".")[-2] == "broken" for n in names) == 2
    assert "PanDA task" in result.stderr and "JEDI status failed" in result.stderr
    assert "Error in rule broken" in result.stderr


def test_dry_run_works_offline(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
           "PANDA_URL_SSL": "http://127.0.0.1:9/server/panda",
           "PANDA_URL": "http://127.0.0.1:9/server/panda"}
    subprocess.run([sys.executable, "-m", "swfflow.cli", "profile", "install"], env=env,
                   check=True, capture_output=True)
    result = snakemake(env, tmp_path, ROOT / "Snakefile", "-n", "--config",
                       f"stf_dir={ROOT / 'examples' / 'data'}")
    assert result.returncode == 0, result.stderr
    assert "stf_reco" in result.stdout + result.stderr
    assert "This was a dry-run" in result.stdout + result.stderr


def test_profile_without_panda_configured_stops_naming_the_variables(tmp_path):
    """README's `snakemake --profile panda` with no PanDA set: one message, no request to
    panda-client's default (CERN's production server)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANDA_URL")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    subprocess.run([sys.executable, "-m", "swfflow.cli", "profile", "install"], env=env,
                   check=True, capture_output=True)
    result = snakemake(env, tmp_path, ROOT / "Snakefile", "--config",
                       f"stf_dir={ROOT / 'examples' / 'data'}", timeout=120)
    assert result.returncode != 0
    assert "PANDA_URL_SSL and PANDA_URL are unset" in result.stderr, result.stderr[-3000:]
    assert "pandaserver.cern.ch" not in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()  # nothing ran


def test_dry_submit_writes_task_json(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-m", "swfflow.cli", "profile", "install"], env=env,
                   check=True, capture_output=True)
    out = tmp_path / "tasks"
    result = snakemake(env, tmp_path, ROOT / "Snakefile", "--config",
                       f"stf_dir={ROOT / 'examples' / 'data'}", "--immediate-submit",
                       "--notemp", f"--swfpanda-dry-submit-dir={out}", "--swfpanda-site=MY_SITE",
                       "--swfpanda-nickname=alice")
    assert result.returncode == 0, result.stderr[-3000:]
    written = {p.name.split(".")[-3]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(written) == {"stf_reco", "fast_skim", "merge", "calib_fit"}
    reco = written["stf_reco"]
    assert reco["site"] == "MY_SITE" and reco["userName"] == "alice"
    assert reco["taskName"].startswith("alice.snakemake.")
    assert reco["nEvents"] == 4
    command = reco["jobParameters"][0]["value"]
    jobs = decode_jobs(command.split("--jobs ", 1)[1])
    assert len(jobs) == 4 and all("--target-jobs" in j and "stf_reco:" in j for j in jobs)
    assert not (tmp_path / "results").exists()  # nothing ran


# --- pure parts ------------------------------------------------------------------------------
def test_wave_task_takes_the_largest_resources():
    jobs = [WaveJob(1, "a", threads=2, mem_mb=3000, runtime_min=10, container="img:1"),
            WaveJob(2, "b", threads=1, mem_mb=5000, disk_mb=700, runtime_min=30)]
    spec = wave_task(load_profile(), "swf.snakemake.x.r.w1", "r", jobs)
    p = spec.params
    assert (p["coreCount"], p["ramCount"], p["workDiskCount"], p["baseWalltime"]) == (2, 2500, 700, 1800)
    assert p["container_name"] == "docker://img:1" and p["nEvents"] == 2 and p["nEventsPerJob"] == 1
    assert spec.payload["jobids"] == [1, 2]
    assert decode_jobs(p["jobParameters"][0]["value"].split("--jobs ")[1]) == ["a", "b"]


class _Job:
    def __init__(self, outputs):
        self.output = outputs


@pytest.mark.parametrize("raw, state, ends, ok", [
    ("running", TaskState.RUNNING, False, None),
    ("pending", TaskState.WAITING, False, None),
    ("aborting", TaskState.FAILING, False, None),
    ("done", TaskState.SUCCEEDED, True, True),
    ("failed", TaskState.FAILED, True, False),
    ("broken", TaskState.FAILED, True, False),
    ("aborted", TaskState.FAILED, True, False),
    ("exhausted", TaskState.EXHAUSTED, True, False),
])
def test_every_jedi_end_state_ends_the_job(raw, state, ends, ok):
    outcome = job_outcome(TaskStatus("1", state, raw, ""), _Job([]))
    assert (outcome is not None) == ends
    if ends:
        assert (outcome == "") == ok


def test_partial_task_decides_per_job_by_outputs(tmp_path):
    made = tmp_path / "made"
    made.write_text("x")
    status = TaskStatus("1", TaskState.PARTIAL, "finished", "1 failed")
    assert job_outcome(status, _Job([str(made)])) == ""
    assert "missing" in job_outcome(status, _Job([str(tmp_path / "absent")]))


def test_unknown_status_fails_after_the_alert_threshold():
    early = TaskStatus("1", TaskState.UNKNOWN, "weird", "")
    late = TaskStatus("1", TaskState.UNKNOWN, "weird", "JEDI status 'weird' (5 polls); see x")
    assert job_outcome(early, _Job([])) is None
    assert "5 polls" in job_outcome(late, _Job([]))


@pytest.mark.slow
def test_cancel_kills_the_panda_tasks(tmp_path):
    """Ctrl-C on snakemake: the plugin kills its running tasks (they end aborted)."""
    import signal
    import time

    from swfflow.testing.panda_runner import StateMachineRunner

    (tmp_path / "Snakefile").write_text('''
rule all:
    input: expand("out/{i}.txt", i=range(3))
rule slow:
    output: "out/{i}.txt"
    shell: "sleep 1000"
''')
    with PandaContractServer(runner=StateMachineRunner(run_s=3600), tick_s=0.05) as server:
        env = {**os.environ, **server.env()}
        proc = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "--executor", "swfpanda", "--jobs", "10",
             "--seconds-between-status-checks", "1", "-s", str(tmp_path / "Snakefile"),
             "-d", str(tmp_path)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not any(t.status == "running" for t in server.store.tasks.values()):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
            assert len(server.store.tasks) == 1  # 3 jobs of one rule: one task
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(t.status != "aborted" for t in server.store.tasks.values()):
            assert time.monotonic() < deadline, [t.status for t in server.store.tasks.values()]
            time.sleep(0.1)
        assert "task/kill" in server.calls
