"""Compiled Snakefiles run (issue 17): `swfflow run Snakefile` runs the plan through the one
engine, each rule's task running Snakemake on its named job, and writes the same files as
`snakemake --cores 2` on the same Snakefile (sha1 of every file). Checkpoints included: the
rules after one are run-time scatters over the jobs Snakemake finds once it ran."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swfflow.errors import UnsupportedFeature
from swfflow.frontends.snakemake import load_workflow
from swfflow.frontends.snakemake_checkpoints import EXPANSION_STEP
from swfflow.pipeline import build_plan

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "snakemake"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
RUN_TIMEOUT_S = 300


def digests(folder: Path) -> dict[str, str]:
    """sha1 of every file a run left in ``folder`` (Snakemake's own .snakemake/ aside)."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and ".snakemake" not in p.relative_to(folder).parts}


def run_both(source: Path, tmp_path: Path, *folders: str) -> tuple[Path, Path, dict]:
    """The workflow folder run by swfflow and by snakemake, each in its own copy."""
    ours, theirs = tmp_path / "swfflow" / source.name, tmp_path / "snakemake" / source.name
    for copy in (ours, theirs):
        copy.parent.mkdir(parents=True)
        shutil.copytree(source, copy)
        for extra in folders:
            shutil.copytree(ROOT / extra, copy / extra)
    result = subprocess.run(
        [sys.executable, "-m", "swfflow.cli", "run", "Snakefile", "--outdir",
         str(tmp_path / "out"), "--jobs", "2", "-q"], cwd=ours, env=ENV, capture_output=True,
        text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    reference = subprocess.run([str(BIN / "snakemake"), "--cores", "2", "--quiet", "all"],
                               cwd=theirs, env=ENV, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_S, check=False)
    assert reference.returncode == 0, reference.stderr[-3000:]
    return ours, theirs, json.loads(result.stdout)


def test_checkpoint_workflow_runs_like_snakemake(tmp_path):
    ours, theirs, outputs = run_both(DATA / "checkpoint", tmp_path)
    assert digests(ours) == digests(theirs)
    # the run-time width: sample a has 5 lines (3 parts), b 3 lines (2 parts)
    assert sorted(p.relative_to(ours).as_posix() for p in (ours / "post").rglob("*.txt")) == [
        "post/a/part00.txt", "post/a/part01.txt", "post/a/part02.txt",
        "post/b/part00.txt", "post/b/part01.txt"]
    assert (ours / "aggregated" / "a.txt").read_text().startswith("a-part00\nAPPLE\n")
    assert sorted(Path(f["location"]).name for f in outputs["input_0"]) == ["a.txt", "b.txt"]


def test_stf_chain_snakefile_runs_like_snakemake(tmp_path):
    source = tmp_path / "src" / "stf-chain"
    source.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", source / "Snakefile")
    ours, theirs, _ = run_both(source, tmp_path, "rules", "templates", "examples/data")
    produced = digests(ours)
    assert produced == digests(theirs)
    assert sum(name.startswith("results/stf_reco/") for name in produced) == 4
    assert "results/calib_fit/calib_fit.constants.json" in produced


def test_checkpoint_plan_shape():
    """The checkpoint maps onto run-time widths: the expansion step after the checkpoint,
    the post-checkpoint rule scattered over its output, the aggregate waiting for both."""
    workflow = load_workflow(DATA / "checkpoint" / "Snakefile")
    plan = build_plan(str(DATA / "checkpoint" / "Snakefile"), None, None, None)
    tasks = {t.key: t for t in plan.tasks}
    assert {p.key for p in tasks[EXPANSION_STEP].parents} == {"clustering"}
    intermediate = tasks["intermediate"]
    assert intermediate.payload["scatter"] == {"ports": ["snakemake_job"],
                                               "method": "dotproduct"}
    assert {p.key for p in intermediate.parents} == {EXPANSION_STEP}
    for key in ("aggregate.0", "aggregate.1"):
        assert {p.key for p in tasks[key].parents} >= {"clustering", "intermediate"}
    step = workflow.step("intermediate")
    assert step.tool["baseCommand"] == ["swfflow", "snakemake-job"]
    assert "--rule" in step.tool["arguments"] and "intermediate" in step.tool["arguments"]


def test_checkpoint_after_checkpoint_is_one_clear_error():
    with pytest.raises(UnsupportedFeature, match="checkpoint 'second' has jobs only after "
                                                 "another checkpoint ran") as err:
        load_workflow(DATA / "bad" / "nested_checkpoint.smk")
    assert err.value.where.endswith("nested_checkpoint.smk:12")
    assert err.value.exit_code == 33


def test_a_jobs_file_is_found_by_name_and_content(tmp_path):
    """The engine hands a job its copy of the file; the job's wildcards come from the file of
    the working directory with that name and content (here two share the name)."""
    from swfflow.commands.snakemake_job import wildcards_of_file
    from swfflow.errors import WorkflowError
    for sample in ("s1", "s2"):
        (tmp_path / "work" / sample).mkdir(parents=True)
        (tmp_path / "work" / sample / "reads.txt").write_text(f"reads of {sample}\n")
    copy = tmp_path / "catalog" / "reads.txt"
    copy.parent.mkdir()
    copy.write_text("reads of s2\n")
    assert wildcards_of_file(copy, "{sample}/reads.txt", tmp_path / "work") == {"sample": "s2"}
    copy.write_text("something else\n")
    with pytest.raises(WorkflowError, match="no file"):
        wildcards_of_file(copy, "{sample}/reads.txt", tmp_path / "work")
