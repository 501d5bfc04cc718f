"""The job sandbox (backends/panda_sandbox.py, pilot/sandbox.py): packed reproducibly from the
workflow folder + plan.json, shipped to PanDA's cache the way prun ships one, named in the task
parameters the way prun names it, fetched and unpacked by the pilot. Against the contract
double here; tests/test_pilot_real.py runs the same against the real panda-server + JEDI."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CALIB = ROOT / "examples" / "calib.cwl"
# JEDI's RefinerUtils.get_sandbox_name: the constant that names a task's sandbox
JEDI_SANDBOX_ITEM = re.compile(r"^-a ([^ ]+)$")


def calib_plan(run: int = 5):
    from swfflow.frontends import load_any
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile

    return compile_workflow(load_any(str(CALIB), {}), {}, load_profile(None), str(run))


def tar_members(tarball: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_sandbox_is_the_folder_and_the_plan_and_the_same_bytes_every_time(tmp_path):
    from swfflow.backends.panda_sandbox import pack, sandbox_name

    folder = tmp_path / "wf"
    (folder / "tools" / "__pycache__").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "wf.cwl").write_text("cwlVersion: v1.2\n")
    (folder / "tools" / "run.sh").write_text("#!/bin/sh\n")
    (folder / "tools" / "run.sh").chmod(0o755)
    (folder / "tools" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (folder / ".git" / "HEAD").write_text("ref\n")
    (folder / ".env").write_text("SECRET=1\n")
    (folder / "plan.json").write_text('{"stale": true}')

    first = pack(folder, '{"run": "7"}')
    members = tar_members(first)
    assert sorted(members) == ["plan.json", "tools/run.sh", "wf.cwl"]
    assert members["tools/run.sh"].mode == 0o755 and members["wf.cwl"].mode == 0o644
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.extractfile("plan.json").read() == b'{"run": "7"}'
    (folder / "wf.cwl").touch()  # a newer time changes nothing
    again = pack(folder, '{"run": "7"}')
    assert again == first and sandbox_name(again) == sandbox_name(first)
    assert sandbox_name(pack(folder, '{"run": "8"}')) != sandbox_name(first)
    assert sandbox_name(first).startswith("sources.")  # the server's sandbox size limit


def test_an_oversized_folder_is_one_clear_error(tmp_path, monkeypatch):
    from swfflow.backends import panda_sandbox
    from swfflow.errors import ConfigError

    (tmp_path / "big.dat").write_bytes(b"x" * 2048)
    monkeypatch.setattr(panda_sandbox, "MAX_BYTES", 1024)
    with pytest.raises(ConfigError, match="over 0 MB .at big.dat") as raised:
        panda_sandbox.pack(tmp_path, "{}")
    assert "folder of its own" in raised.value.hint


def test_task_parameters_name_the_sandbox_as_prun_does():
    from swfflow.backends.panda_sandbox import with_sandbox

    params = {"jobParameters": [{"type": "constant", "value": "swfflow job --task t"}]}
    once = with_sandbox(params, "sources.swfflow.a.tar.gz", "https://panda:25443")
    twice = with_sandbox(once, "sources.swfflow.b.tar.gz", "https://panda:25443")
    assert twice["sourceURL"] == "https://panda:25443"
    assert [i["value"] for i in twice["jobParameters"]] == [
        "--sourceURL ${SURL}", "-a sources.swfflow.b.tar.gz", "swfflow job --task t"]
    names = [m.group(1) for i in twice["jobParameters"]
             if (m := JEDI_SANDBOX_ITEM.match(i["value"]))]
    assert names == ["sources.swfflow.b.tar.gz"]
    assert params["jobParameters"][0]["value"] == "swfflow job --task t"  # not changed in place


def test_the_pilot_splits_rungens_options_from_the_command():
    from swfflow.pilot.job import JobSpec
    from swfflow.pilot.sandbox import Sandbox, split_options

    assert split_options(["--sourceURL", "http://h:1", "-a", "s.tgz", "swfflow", "-a", "x"]) \
        == (Sandbox("http://h:1", "s.tgz"), ["swfflow", "-a", "x"])
    assert split_options(["swfflow", "job"]) == (Sandbox(), ["swfflow", "job"])
    job = JobSpec.from_dispatch({
        "PandaID": 1, "transformation": "/usr/bin/env",
        "jobPars": "--sourceURL http://h:1 -a s.tgz swfflow job --task 'a b'"})
    sandbox, argv = job.command()
    assert sandbox.url == "http://h:1/cache/s.tgz"
    assert argv == ["/usr/bin/env", "swfflow", "job", "--task", "a b"]


@pytest.fixture()
def double():
    from swfflow.testing.panda_server import PandaContractServer

    with PandaContractServer() as panda:
        yield panda


def test_shipped_through_the_double_and_fetched_by_the_pilot(double, tmp_path):
    """Uploaded once, as soon as the flow starts (or by the first task inserted); a run-time
    instance gets a plan that holds it; an expression task (no job parameters) passes
    unchanged; the pilot unpacks what was sent."""
    from swfflow.backends.panda import PandaExecutor
    from swfflow.pilot.sandbox import fetch, split_options

    plan = calib_plan()
    executor = PandaExecutor(double.url, attempts=1)
    ship = executor.for_plan(plan, str(CALIB))
    executor.shutdown()  # waits for the early upload
    assert double.calls.count("file_server/upload_cache_file") == 1
    tasks = [ship(task) for task in plan.tasks if task.params]
    names = {t.params["jobParameters"][1]["value"] for t in tasks}
    assert len(names) == 1
    (name,) = (n.removeprefix("-a ") for n in names)
    assert all(t.params["sourceURL"] == double.url.removesuffix("/server/panda") for t in tasks)
    first = executor.submit(tasks[0])
    executor.submit(tasks[1])
    assert double.calls.count("file_server/upload_cache_file") == 1
    with double.store.lock:
        sent = double.store.tasks[int(first)].params
    assert sent["jobParameters"][:2] == tasks[0].params["jobParameters"][:2]

    # a second submitter of the same plan finds the server's identical file (reuseSandbox)
    # and sends nothing; a task found by name is not submitted again
    again = PandaExecutor(double.url, attempts=1)
    again_ship = again.for_plan(plan, str(CALIB))
    assert again.submit(again_ship(plan.tasks[0])) == first
    again.submit(again_ship(tasks[2]))
    again.shutdown()
    assert double.calls.count("file_server/upload_cache_file") == 1
    assert double.calls.count("file_server/validate_cache_file") == 2

    instance = dataclasses.replace(plan.tasks[0], key="reconstruct.0", name="x.reconstruct.0")
    shipped = ship(instance)
    assert shipped.params["jobParameters"][1]["value"] != f"-a {name}"
    expression = dataclasses.replace(plan.tasks[0], params={})
    assert ship(expression) is expression

    workdir = tmp_path / "job"
    workdir.mkdir()
    jobpars = " ".join(i["value"] for i in tasks[0].params["jobParameters"][:2])
    sandbox, rest = split_options(jobpars.replace("${SURL}", tasks[0].params["sourceURL"])
                                  .split())
    assert rest == [] and fetch(sandbox, workdir)
    assert json.loads((workdir / "plan.json").read_text())["run"] == "5"
    assert (workdir / "calib.cwl").read_bytes() == CALIB.read_bytes()
    assert not (workdir / name).exists()  # the tarball is gone once unpacked


def test_a_missing_or_hostile_sandbox_fails_the_job_not_the_pilot(double, tmp_path):
    from swfflow.pilot.sandbox import Sandbox, SandboxError, fetch

    base = double.url.removesuffix("/server/panda")
    with pytest.raises(SandboxError, match="HTTP 404"):
        fetch(Sandbox(base, "sources.missing.tar.gz"), tmp_path)
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    double.cache.files["sources.evil.tar.gz"] = evil.getvalue()
    (tmp_path / "job").mkdir()
    with pytest.raises(SandboxError, match="cannot unpack"):
        fetch(Sandbox(base, "sources.evil.tar.gz"), tmp_path / "job")
    assert not (tmp_path / "escaped").exists()
    with pytest.raises(SandboxError, match="no --sourceURL"):
        fetch(Sandbox(None, "sources.x.tar.gz"), tmp_path)
