"""The task parameters the planner writes where real JEDI read them differently than meant
(issue 14, reference/panda-server.md "Seen when submitting swfflow's own compiled plans").
The real server's view of the same fields is checked in test_panda_real.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from swfflow.errors import ConfigError
from swfflow.plan import jedi

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calib_tasks() -> dict:
    from swfflow.frontends import load_any
    from swfflow.plan.planner import compile_workflow
    from swfflow.plan.profile import load_profile

    plan = compile_workflow(load_any(str(ROOT / "examples" / "calib.cwl"), {}), {},
                            load_profile(None), "100123")
    return {task.key: task.params for task in plan.tasks if task.params}


@pytest.mark.parametrize(("image", "expected"), [
    ("python:3.11-slim", "docker://python:3.11-slim"),
    ("docker://epic/eic_xl:25.01", "docker://epic/eic_xl:25.01"),
    ("oras://ghcr.io/x/y:1", "oras://ghcr.io/x/y:1"),
])
def test_container_name_carries_its_scheme(image, expected):
    assert jedi.container_url(image) == expected


def test_compiled_container_names_are_docker_urls(calib_tasks):
    assert {p["container_name"] for p in calib_tasks.values()} == {"docker://python:3.11-slim"}


def test_outputs_and_logs_name_their_container(calib_tasks):
    for params in calib_tasks.values():
        outputs = [i for i in params["jobParameters"] if i.get("param_type") == "output"]
        assert outputs
        for item in [*outputs, params["log"]]:
            assert item["container"] == item["dataset"], item


def test_scouting_is_off(calib_tasks):
    assert all(p["skipScout"] is True for p in calib_tasks.values())
    assert jedi.split_fields(jedi.Split(master=None, n_jobs=2))["skipScout"] is True


def test_a_gather_is_not_capped_by_the_default_maximum(calib_tasks):
    merge = calib_tasks["merge"]
    assert merge["nFilesPerJob"] == 1000 and merge["nMaxFilesPerJob"] >= 1000
    assert calib_tasks["reconstruct"]["nMaxFilesPerJob"] == 200  # per-file tasks keep it


def test_more_files_per_job_than_the_maximum_is_refused_naming_the_step():
    split = jedi.Split(master="s:d", files_per_job=500, max_files_per_job=200)
    with pytest.raises(ConfigError) as caught:
        jedi.split_fields(split, step="validate/checksum")
    message = str(caught.value)
    assert "validate/checksum" in message and "500" in message and "200" in message


def test_compiling_a_step_with_too_many_files_per_job_fails(tmp_path):
    import shutil

    from swfflow.frontends import load_any
    from swfflow.plan.planner import compile_workflow

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    workflow = tmp_path / "examples" / "calib.cwl"
    source = workflow.read_text()
    assert "swf:Sizing: {filesPerJob: 1}" in source
    workflow.write_text(source.replace("swf:Sizing: {filesPerJob: 1}",
                                       "swf:Sizing: {filesPerJob: 500, maxFilesPerJob: 200}"))
    with pytest.raises(ConfigError, match=r"step 'reconstruct': 500 files per job .* 200"):
        compile_workflow(load_any(str(workflow), {}), {}, None, "1")


def test_jobs_run_with_the_profiles_trans_path(calib_tasks):
    """Without transPath JEDI gives jobs runGen and passes `swfflow job …` as its arguments."""
    assert {p["transPath"] for p in calib_tasks.values()} == {"/usr/bin/env"}
    assert all(p["jobParameters"][0]["value"].startswith("swfflow job ")
               for p in calib_tasks.values())


def test_walltime_is_a_fixed_base_walltime(calib_tasks):
    """JEDI reads `walltime` per MB of input and ignores walltimeUnit: the step's walltime
    goes into baseWalltime with a zero, scout-proof HS06 cpuTime."""
    for params in calib_tasks.values():
        assert "walltime" not in params and "walltimeUnit" not in params
        assert (params["cpuTime"], params["cpuTimeUnit"]) == (0, "HS06sPerEventFixed")
    # the tools' ToolTimeLimit (examples/tools/*.cwl)
    assert {k: calib_tasks[k]["baseWalltime"] for k in ("reconstruct", "merge", "fit")} == \
        {"reconstruct": 1800, "merge": 600, "fit": 1200}
