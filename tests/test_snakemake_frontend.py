"""Snakemake front end: DAG adapter contract, lowering to the IR, plan equivalence with CWL,
pchain dialect, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swfflow import ir
from swfflow.errors import WorkflowError
from swfflow.frontends import load_any
from swfflow.frontends.snakemake import load_workflow
from swfflow.frontends.snakemake_dag import build_dag
from swfflow.plan.compare import plan_shape
from swfflow.plan.planner import compile_workflow

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "snakemake"
STF_DIR = str(ROOT / "examples" / "data")


def swfflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --- the adapter over Snakemake's private API ------------------------------------------------
def test_dag_adapter_contract():
    """Every Snakemake attribute the adapter reads, on the templated example (pinned 9.27)."""
    dag = build_dag(ROOT / "examples" / "templated" / "Snakefile")
    assert dag.targets == ["all"]
    assert set(dag.rules) == {"all", "reco", "check", "skim", "merge_reco", "merge_checks", "calib"}
    check = dag.rules["check"]
    assert check.wildcard_names == ("stf",)
    assert check.input_patterns == {"stf": True, "manifest": False}
    assert check.resources == {"mem_mb": 500, "disk_mb": 500, "runtime": 10}
    assert check.container == "docker://python:3.11-slim"
    assert check.retries == 1 and check.threads == 1
    assert check.params["swf_mode"] == "stream" and check.params["fail_on_mismatch"] is True
    assert check.where.endswith("rules/check.smk:3")
    assert "checksum" in check.shell and not check.norun and not check.is_checkpoint
    assert dag.rules["all"].norun
    jobs = [j for j in dag.jobs if j.rule == "check"]
    assert len(jobs) == 3
    assert all(set(j.inputs) == {"stf", "manifest"} and len(j.inputs["stf"]) == 1 for j in jobs)
    assert {j.wildcards["stf"] for j in jobs} == {"swf.100042.00000%d" % i for i in (1, 2, 3)}
    merge = next(j for j in dag.jobs if j.rule == "merge_checks")
    assert sorted(merge.parents) == sorted(j.jobid for j in jobs)
    assert len(merge.inputs["parts"]) == 3


def test_skipped_dag_checks_still_run_when_they_can_fire(tmp_path):
    """The adapter skips Snakemake's directory-output check only when no rule has a
    directory() output: with one, an output inside it is still refused."""
    from snakemake.dag import DAG
    assert callable(DAG.check_directory_outputs) and callable(DAG.update_conda_envs)
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "d", "d/x.txt"

rule d:
    output: directory("d")
    shell: "mkdir -p {output}"

rule x:
    output: "d/x.txt"
    shell: "touch {output}"
''')
    with pytest.raises(WorkflowError, match="child to another output"):
        load_workflow(tmp_path / "Snakefile")


def test_adapter_keeps_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_dag(ROOT / "examples" / "templated" / "Snakefile")
    assert Path.cwd() == tmp_path


# --- lowering --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def top() -> ir.Workflow:
    return load_workflow(ROOT / "Snakefile", config={"stf_dir": STF_DIR})


def test_top_level_snakefile_in_the_ir(top):
    assert [s.name for s in top.steps] == ["fast_skim", "stf_reco", "merge", "calib_fit"]
    reco = top.step("stf_reco")
    assert reco.scatter == ir.Scatter(("stf",))
    assert reco.streaming_inputs == ("stf",)
    assert reco.resources == ir.Resources(None, 2000, 4000, 1800)
    assert reco.container == ir.Container("python:3.11-slim", True)
    assert reco.retries == 3
    assert reco.command[:3] == ("python3", "{param:payload}", "reco")
    assert "{in:stf}" in reco.command and "{out:reco}" in reco.command
    assert top.inputs["stf"].stream and top.inputs["stf"].port.type == "File[]"
    assert len(top.inputs["stf"].port.default) == 4
    assert [(lk.src_step, lk.dst_step, lk.mode) for lk in top.links()] == [
        ("merge", "calib_fit", ir.EdgeMode.COMPLETE), ("stf_reco", "merge", ir.EdgeMode.COMPLETE)]
    assert top.step("merge").inputs["parts"].kind is ir.PortKind.FILES
    assert top.outputs["constants"].sources == (ir.Source("calib_fit", "constants"),)
    assert top.step("stf_reco").inputs["threshold"].default == 16


def test_load_any_dispatches_snakefiles_and_inputs_are_config():
    wf = load_any(ROOT / "Snakefile", {"stf_dir": STF_DIR, "results": "out"})
    assert len(wf.inputs["stf"].port.default) == 4


def test_default_and_explicit_edge_modes(tmp_path):
    (tmp_path / "raw").mkdir()
    for i in (1, 2):
        (tmp_path / "raw" / f"f{i}.stf").write_bytes(b"x")
    (tmp_path / "Snakefile").write_text('''
IDS = glob_wildcards("raw/{i}.stf").i
rule all:
    input: "sum.txt", "sum2.txt"
rule reco:
    input: "raw/{i}.stf"
    output: "reco/{i}.txt"
    shell: "cp {input} {output}"
rule qa:
    input: "reco/{i}.txt"
    output: "qa/{i}.txt"
    shell: "cp {input} {output}"
rule total:
    input: expand("qa/{i}.txt", i=IDS)
    output: "sum.txt"
    shell: "cat {input} > {output}"
rule running_total:
    input: expand("reco/{i}.txt", i=IDS)
    output: "sum2.txt"
    params: swf_mode="stream", swf_files_per_job=5
    threads: 4
    resources: mem_mb=8000, runtime=90
    shell: "cat {input} > {output}"
''')
    wf = load_workflow(tmp_path / "Snakefile")
    modes = {(lk.src_step, lk.dst_step): lk.mode for lk in wf.links()}
    assert modes == {("reco", "qa"): ir.EdgeMode.STREAM, ("qa", "total"): ir.EdgeMode.COMPLETE,
                     ("reco", "running_total"): ir.EdgeMode.STREAM}
    step = wf.step("running_total")
    assert step.sizing.files_per_job == 5
    assert step.resources == ir.Resources(4, 8000, None, 5400)
    plan = compile_workflow(wf)
    task = {t.key: t for t in plan.tasks}
    assert task["qa"].params["noWaitParent"] is True
    assert task["running_total"].params["nFilesPerJob"] == 5
    assert task["running_total"].params["ramCount"] == 2000  # per core
    assert task["total"].release == "parents_done"


def test_wildcards_without_input_files_scatter_over_values(tmp_path):
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: expand("sim/{seed}.out", seed=[1, 2, 3])
rule sim:
    output: "sim/{seed}.out"
    shell: "echo {wildcards.seed} > {output}"
''')
    plan = compile_workflow(load_workflow(tmp_path / "Snakefile"))
    assert [t.key for t in plan.tasks] == ["sim.0", "sim.1", "sim.2"]
    assert [t.params["noInput"] for t in plan.tasks] == [True] * 3


# --- the same chain in CWL and Snakemake -----------------------------------------------------
def _compose(spec: Path, outdir: Path) -> Path:
    result = swfflow("template", "compose", str(spec), "-o", str(outdir), "--json")
    assert result.returncode == 0, result.stderr
    return next(outdir.glob("*.cwl"))


def test_top_level_snakefile_plan_equals_the_cwl_version(tmp_path, top):
    cwl = _compose(DATA / "stf-chain" / "spec.yaml", tmp_path)
    cwl_plan = compile_workflow(load_any(cwl))
    smk_plan = compile_workflow(top)
    assert plan_shape(smk_plan) == plan_shape(cwl_plan)
    assert len(smk_plan.tasks) == 4
    assert plan_shape(smk_plan)["stf_reco"]["input"] == "stream"
    assert plan_shape(smk_plan)["merge"]["parents"] == [("stf_reco", "complete")]


def test_templated_example_snakefile_and_cwl_give_equivalent_plans():
    folder = ROOT / "examples" / "templated"
    cwl_plan = compile_workflow(load_any(folder / "ecal-prompt.cwl"))
    smk_plan = compile_workflow(load_any(folder / "Snakefile"))
    assert plan_shape(smk_plan) == plan_shape(cwl_plan)
    assert len(smk_plan.tasks) == 6


# --- pchain dialect --------------------------------------------------------------------------
def test_pchain_snakemake_dialect():
    plan = compile_workflow(load_any(DATA / "pchain" / "Snakefile"))
    tasks = {t.key: t for t in plan.tasks}
    assert set(tasks) == {"seeds", "pedestals", "gains", "combine"}
    assert all(t.kind == "prun" for t in tasks.values())
    assert tasks["pedestals"].params["dsForIN"] == "user.swf.noise.run000123"
    assert tasks["seeds"].params.get("noInput") is True
    assert tasks["gains"].payload["native"]["sources"] == {"opt_inDS": ["seeds/outDS"]}
    assert sorted(p.key for p in tasks["combine"].parents) == ["gains", "pedestals"]
    assert tasks["gains"].params["container_name"] == "docker://python:3.11-slim"
    assert tasks["gains"].params["nGBPerJob"] == 5


def test_pchain_rule_with_unknown_option(tmp_path):
    (tmp_path / "x.smk").write_text('''
rule all:
    input: "a_out"
rule a:
    output: "a_out"
    params: opt_exec="echo", opt_bogus=1
    shell: "prun"
''')
    with pytest.raises(WorkflowError, match="opt_bogus") as err:
        load_workflow(tmp_path / "x.smk")
    assert err.value.where.endswith("x.smk:4")


# --- bad input -------------------------------------------------------------------------------
def test_a_checkpoint_compiles():
    workflow = load_workflow(DATA / "checkpoint" / "minimal.smk")
    assert {s.name for s in workflow.steps} == {"split", "done"}


@pytest.mark.parametrize("name, exit_code, text", [
    ("nested_checkpoint.smk", 33, "checkpoint 'second' has jobs only after another"),
    ("mode.smk", 2, "swf_mode='sometimes'"),
    ("syntax.smk", 2, "Snakemake could not build the job graph"),
    ("missing_input.smk", 2, "missing_input.smk:4: Snakemake could not build the job graph: "
                             "Missing input files for rule a"),
    ("name_error.smk", 2, "name_error.smk:6: Snakemake could not build the job graph: "
                          "name 'undefined_name' is not defined"),
])
def test_bad_snakefiles_exit_cleanly(name, exit_code, text, tmp_path):
    result = swfflow("compile", str(DATA / "bad" / name), "-o", str(tmp_path / "p.json"))
    assert result.returncode == exit_code, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_compile_cli_with_config(tmp_path):
    out = tmp_path / "plan.json"
    result = swfflow("compile", "Snakefile", "--config", f"stf_dir={STF_DIR}", "--config",
                     f"results={tmp_path / 'r'}", "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    plan = json.loads(out.read_text())
    assert [t["key"] for t in plan["tasks"]] == ["fast_skim", "stf_reco", "merge", "calib_fit"]
    assert plan["inputs"]["results"] == str(tmp_path / "r")
