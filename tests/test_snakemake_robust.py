"""Snakemake front end robustness (issue 17, part 4): rule modules check on their own, the
pre-commit hook checks one file per call, no traceback for a Snakefile Snakemake accepts,
empty plans and rule-level loops are one-line errors, task names do not depend on the
checkout folder."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swfflow import ir
from swfflow.errors import UnsupportedFeature, WorkflowError
from swfflow.frontends.snakemake import (
    check_module,
    load_workflow,
    lower,
    workflow_name,
)
from swfflow.frontends.snakemake_dag import (
    SnakeDag,
    SnakeRule,
    build_dag,
    named_files,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def swfflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


# --- rule modules ----------------------------------------------------------------------------
@pytest.mark.parametrize("module", sorted(p.name for p in (ROOT / "rules").glob("*.smk")))
def test_every_shipped_rule_module_checks_on_its_own(module):
    result = swfflow("compile", "--check", f"rules/{module}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"rules/{module}: ok"), result.stdout
    assert "Traceback" not in result.stderr


def test_merge_module_with_no_parts_compiles_to_one_gather_task(tmp_path):
    """Was an IndexError: the glob finds no parts, so the gather's input list is empty."""
    out = tmp_path / "plan.json"
    result = swfflow("compile", "rules/merge.smk", "-q", "-o", str(out))
    assert result.returncode == 0, result.stderr
    plan = json.loads(out.read_text())
    assert [t["key"] for t in plan["tasks"]] == ["merge"]
    assert plan["workflow"] == "merge"


def test_module_check_still_refuses_what_a_compile_refuses(tmp_path):
    (tmp_path / "bad_mode.smk").write_text('''
rule reco:
    input: "raw/{stf}.stf"
    output: "reco/{stf}.json"
    params: swf_mode="sometimes"
    shell: "cp {input} {output}"
''')
    (tmp_path / "ckpt.smk").write_text('''
checkpoint split:
    input: "raw/{stf}.stf"
    output: directory("parts/{stf}")
    shell: "mkdir -p {output}"
''')
    (tmp_path / "bad_resource.smk").write_text('''
rule fit:
    input: "merged/{run}.json"
    output: "fit/{run}.json"
    resources: runtime="soon"
    shell: "cp {input} {output}"
''')
    mode = swfflow("compile", "--check", str(tmp_path / "bad_mode.smk"))
    assert mode.returncode == 2 and "bad_mode.smk:2: rule 'reco': swf_mode='sometimes'" \
        in mode.stderr, mode.stderr
    ckpt = swfflow("compile", "--check", str(tmp_path / "ckpt.smk"))  # checkpoints compile now
    assert ckpt.returncode == 0 and "ok (module" in ckpt.stdout, ckpt.stderr
    res = swfflow("compile", "--check", str(tmp_path / "bad_resource.smk"))
    assert res.returncode == 2 and "bad_resource.smk" in res.stderr, res.stderr
    for result in (mode, res):
        assert "Traceback" not in result.stderr
        assert "hint:" in result.stderr


def test_module_check_counts_its_rules():
    assert check_module(ROOT / "rules" / "stf_reco.smk") == 1


def test_a_standalone_snakefile_with_missing_inputs_is_still_an_error_when_compiled():
    result = swfflow("compile", str(ROOT / "tests/data/snakemake/bad/missing_input.smk"))
    assert result.returncode == 2
    assert "Missing input files for rule a" in result.stderr


# --- the pre-commit hook ---------------------------------------------------------------------
def test_pre_commit_hook_checks_each_file_on_its_own(tmp_path):
    """pre-commit appends every changed file to the entry; each must be a WORKFLOW, never
    the previous file's INPUTS, and one bad file fails the hook without hiding the others."""
    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    files = ["rules/merge.smk", "rules/stf_reco.smk", "tests/data/snakemake/bad/mode.smk",
             "Snakefile"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([*shlex.split(hook["entry"]), *files], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert "rules/merge.smk: ok" in result.stdout and "rules/stf_reco.smk: ok" in result.stdout
    assert "Snakefile: ok (4 tasks" in result.stdout  # checked after the bad one
    assert "mode.smk: invalid" in result.stderr and "swf_mode='sometimes'" in result.stderr


def test_pre_commit_hook_passes_file_names_as_data(tmp_path):
    """A file name with shell syntax in it is a name, not a command."""
    weird = tmp_path / "a;touch pwned;b.smk"
    shutil.copy(ROOT / "rules" / "stf_reco.smk", weird)
    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([*shlex.split(hook["entry"]), str(weird)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert not (tmp_path / "pwned").exists()
    assert result.returncode == 1  # the module needs ../templates next to it: a clean error
    assert "b.smk: invalid:" in result.stderr and "Traceback" not in result.stderr


# --- Snakefiles Snakemake accepts: compile, or refuse in one line -----------------------------
def test_update_chain_is_not_a_cycle(tmp_path):
    """Snakemake's own test_cyclic_dependency_split: `before_update` reads the file as it is,
    so the rule graph has no loop (was NetworkXUnfeasible)."""
    (tmp_path / "test.txt").write_text("old\n")
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "test.txt", "test1.txt"
rule b:
    input: before_update("test.txt")
    output: "test1.txt"
    shell: "cp {input} {output}"
rule c:
    input: "test1.txt"
    output: update("test.txt")
    shell: "echo test > {output}"
''')
    wf = load_workflow(tmp_path / "Snakefile")
    assert [(lk.src_step, lk.dst_step) for lk in wf.links()] == [("b", "c")]
    assert "input_0" in wf.inputs  # test.txt as it is


def test_rule_level_loop_is_refused_in_one_line(tmp_path):
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "a3.txt"
rule ping:
    input: lambda w: f"b{int(w.i) - 1}.txt"
    output: "a{i,[1-9]}.txt"
    shell: "cat {input} > {output}"
rule pong:
    input: "a{i}.txt"
    output: "b{i}.txt"
    shell: "cat {input} > {output}"
rule start:
    output: "a0.txt"
    shell: "echo 0 > {output}"
''')
    dry = subprocess.run([str(BIN / "snakemake"), "-n", "-c1", "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert dry.returncode == 0, dry.stderr  # Snakemake accepts it
    result = swfflow("compile", "Snakefile", cwd=tmp_path)
    assert result.returncode == 33, result.stderr
    assert "Snakefile:4: rules ping -> pong -> ping feed each other" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr


def test_empty_plan_says_why(tmp_path):
    (tmp_path / "Snakefile").write_text('''
IDS = glob_wildcards("raw/{i}.stf").i
rule all:
    input: expand("reco/{i}.txt", i=IDS)
rule reco:
    input: "raw/{i}.stf"
    output: "reco/{i}.txt"
    shell: "cp {input} {output}"
''')
    result = swfflow("compile", "Snakefile", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "nothing to run: the target 'all' needs no job with a command" in result.stderr
    assert "glob_wildcards" in result.stderr  # the hint
    assert "Traceback" not in result.stderr


def test_a_slip_of_the_lowering_names_the_rule():
    """The last line of defence: an unexpected error while lowering one rule (here: a rule
    handed over without jobs, which the lowering assumes away) is exit 33 naming the rule
    and its line, not a traceback."""
    rule = SnakeRule(name="a", where="Snakefile:4", shell="touch {output}", norun=False,
                     is_checkpoint=False, wildcard_names=(), input_patterns={},
                     params={}, threads=1, resources={}, container=None, retries=None)
    with pytest.raises(UnsupportedFeature, match="rule 'a' uses something swfflow cannot "
                                                 "lower yet") as err:
        lower(SnakeDag("Snakefile", {"a": rule}, [], []), "w")
    assert err.value.where == "Snakefile:4" and "IndexError" in err.value.what
    assert err.value.exit_code == 33


def test_jobs_of_one_rule_with_different_input_items(tmp_path):
    """Snakemake's test_ruledag: an input function gives one job three files, the others
    one (was KeyError: 'input_1')."""
    for i in range(1, 6):
        (tmp_path / f"{i}.a").write_text(str(i))
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: expand("{id}.d", id="1 2 3 4 5".split())
rule rule1:
    input: "{id}.c"
    output: "{id}.d"
    shell: "touch {output}"
rule rule2:
    input: lambda w: expand("{id}.b", id="1 2 3".split()) if w.id == "1" else f"{w.id}.b"
    output: "{id}.c"
    shell: "touch {output}"
rule rule3:
    input: "{id}.a"
    output: "{id}.b"
    shell: "touch {output}"
''')
    wf = load_workflow(tmp_path / "Snakefile")
    assert {s.name for s in wf.steps} == {"rule1", "rule2", "rule3"}
    assert {p for p in wf.step("rule2").inputs if p.startswith("input")} == {"input_0"}
    assert ("rule3", "rule2") in {(lk.src_step, lk.dst_step) for lk in wf.links()}


def test_rules_without_a_command_but_with_outputs_are_steps(tmp_path):
    """`touch()` outputs and no shell: Snakemake runs the job (it touches the file), so the
    plan has its task; an output-less `all` stays the workflow's target."""
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "b.txt"
rule a:
    output: touch("a.txt")
rule b:
    input: "a.txt"
    output: touch("b.txt")
''')
    wf = load_workflow(tmp_path / "Snakefile")
    assert [s.name for s in wf.steps] == ["a", "b"]
    assert wf.outputs["input_0"].sources == (ir.Source("b", "output_0"),)


def test_bad_snakefile_is_a_workflow_error_not_a_crash(tmp_path):
    (tmp_path / "Snakefile").write_text("rule a:\n    output: 'x'\n    shell: 'touch {output}'\n"
                                        "rule b:\n    input: undefined_name\n")
    with pytest.raises(WorkflowError, match="undefined_name"):
        load_workflow(tmp_path / "Snakefile")


# --- named and positional ports through the public Namedlist API ------------------------------
def test_positional_and_named_inputs_keep_their_ranges(tmp_path):
    for name in ("a", "b", "c1", "c2", "d"):
        (tmp_path / name).write_text(name)
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "out"
rule x:
    input: "a", "b", c=["c1", "c2"], d="d"
    output: "out"
    shell: "cat {input} > {output}"
''')
    job = next(j for j in build_dag(tmp_path / "Snakefile").jobs if j.rule == "x")
    # a run of unnamed files from the same maker (here: none) is one port
    assert job.inputs == {"input_0": ["a", "b"], "c": ["c1", "c2"], "d": ["d"]}


def test_an_expand_over_many_files_is_one_port(tmp_path):
    """`input: expand(...)` of a gather over 2,000 files made by one rule: one port, not
    2,000 (each port costs the plan a binding, a link and a payload entry)."""
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "merged.txt"
rule make:
    output: "part/{i}.txt"
    shell: "echo {wildcards.i} > {output}"
rule merge:
    input: "header.txt", expand("part/{i}.txt", i=range(2000))
    output: "merged.txt"
    shell: "cat {input} > {output}"
''')
    (tmp_path / "header.txt").write_text("h\n")
    wf = load_workflow(tmp_path / "Snakefile")
    merge = wf.step("merge")
    assert set(merge.inputs) == {"input_0", "input_1", "snakefile"}
    assert merge.inputs["input_1"].type == "File[]"
    assert [(lk.src_step, lk.dst_port) for lk in wf.links()] == [("make", "input_1")]


def test_named_ranges_with_repeated_files():
    from snakemake.iocontainers import Namedlist
    items = Namedlist(["f", "f", "g"])
    items._set_name("first", 0)
    items._set_name("rest", 1, 3)
    assert named_files(items, "input") == {"first": ["f"], "rest": ["f", "g"]}


# --- stable names ----------------------------------------------------------------------------
def _clone(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_task_names_do_not_depend_on_the_checkout_folder(tmp_path):
    repo = tmp_path / "template"
    (repo / ".git").mkdir(parents=True)
    (repo / "analysis" / "ecal").mkdir(parents=True)
    (repo / "Snakefile").write_text('rule all:\n    input: "a.txt"\nrule a:\n'
                                    '    output: "a.txt"\n    shell: "touch {output}"\n')
    shutil.copy(repo / "Snakefile", repo / "analysis" / "ecal" / "Snakefile")
    plans = []
    for clone in ("checkout-one", "other clone"):
        folder = _clone(repo, tmp_path / clone)
        for snakefile, expected in ((folder / "Snakefile", "snakemake"),
                                    (folder / "analysis" / "ecal" / "Snakefile",
                                     "analysis/ecal")):
            assert workflow_name(snakefile) == expected
        out = tmp_path / f"{clone}.json"
        result = swfflow("compile", "analysis/ecal/Snakefile", "-q", "-o", str(out), cwd=folder)
        assert result.returncode == 0, result.stderr
        plans.append(out.read_text())
    assert plans[0] == plans[1]
    names = [t["name"] for t in json.loads(plans[0])["tasks"]]
    assert names == ["swf.analysis.ecal.${RUN}.a"]


def test_outside_a_repository_the_folder_name_is_used(tmp_path):
    (tmp_path / "calib").mkdir()
    assert workflow_name(tmp_path / "calib" / "Snakefile") == "calib"
    assert workflow_name(tmp_path / "calib" / "fit.smk") == "fit"


def test_the_profile_can_name_the_workflow(tmp_path):
    profile = tmp_path / "profile.yaml"
    profile.write_text("workflow: stfchain\n")
    out = tmp_path / "plan.json"
    result = swfflow("compile", "Snakefile", "--config", f"stf_dir={ROOT / 'examples' / 'data'}",
                     "--profile", str(profile), "-q", "-o", str(out))
    assert result.returncode == 0, result.stderr
    names = {t["key"]: t["name"] for t in json.loads(out.read_text())["tasks"]}
    assert names["merge"] == "swf.stfchain.${RUN}.merge"
