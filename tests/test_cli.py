"""The CLI's contract: help, exit codes, one clear message and no traceback for user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click


def swfflow(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_help_lists_the_commands():
    result = swfflow("--help")
    assert result.returncode == 0
    for command in ("compile", "dag"):
        assert command in result.stdout


def _sections(text: str) -> dict[str, list[str]]:
    """--help's sections: heading → the first word of each of its lines."""
    sections: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            heading = sections.setdefault(line[:-1], [])
        elif line.startswith("  ") and not line.startswith("   ") and sections:
            heading.append(line.split()[0])
    return sections


def test_help_groups_commands_by_task_with_one_example_each():
    from swfflow.cli import COMMANDS, GROUPS

    sections = _sections(swfflow("--help").stdout)
    shown = [heading for heading in sections if heading not in ("Usage", "Options")]
    assert shown == [GROUPS[g][0] for g in ("author", "run", "operate")]
    for group in ("author", "run", "operate"):
        heading, example = GROUPS[group]
        words = sections[heading]
        expected = [name for name, row in COMMANDS.items() if row[2:] == (group,)]
        assert [w for w in words if w != "e.g."] == expected
        assert words.count("e.g.") == 1
        assert f"  e.g. {example}" in swfflow("--help").stdout
    assert {"compile", "dag", "template"} <= set(sections[GROUPS["author"][0]])
    assert {"run", "job", "daqsim"} <= set(sections[GROUPS["run"][0]])
    assert {"submit", "status", "kill", "retry", "bridge", "services"} <= \
        set(sections[GROUPS["operate"][0]])


def test_each_group_example_parses_as_a_command_of_its_group():
    """The examples cannot rot: each names a command of its group with options it has."""
    from swfflow.cli import COMMANDS, GROUPS, cli

    for group, (_, example) in GROUPS.items():
        if not example:
            continue
        prog, name, *args = example.split()
        assert prog == "swfflow" and COMMANDS[name][2] == group
        command = cli.get_command(click.Context(cli), name)
        with command.make_context(name, args) as ctx:  # parses, runs nothing
            assert ctx.params


def test_a_command_without_a_group_is_listed_under_other(monkeypatch):
    from click.testing import CliRunner

    from swfflow import cli

    monkeypatch.setitem(cli.COMMANDS, "extra", ("swfflow.commands.compile:dag_cmd",
                                                "A row added without a group."))
    monkeypatch.setitem(cli.COMMANDS, "odd", ("swfflow.commands.compile:dag_cmd",
                                              "A row with an unknown group.", "nowhere"))
    result = CliRunner().invoke(cli.cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert _sections(result.output)[cli.GROUPS["other"][0]] == ["extra", "odd"]


def test_missing_workflow_is_exit_2_with_where_and_hint(tmp_path):
    result = swfflow("compile", str(tmp_path / "nope.cwl"))
    assert result.returncode == 2
    assert "nope.cwl" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_file_kind_is_exit_2(tmp_path):
    path = tmp_path / "workflow.txt"
    path.write_text("hello")
    result = swfflow("compile", str(path))
    assert result.returncode == 2
    assert "cannot tell what kind of workflow" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_mode_reports_invalid_with_exit_2(tmp_path):
    result = swfflow("compile", "--check", str(tmp_path / "missing.cwl"))
    assert result.returncode == 2
    assert "invalid" in result.stderr


def test_bad_profile_is_exit_2(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("defaults: {cores: -1}\n")
    wf = tmp_path / "missing.cwl"
    result = swfflow("compile", str(wf), "--profile", str(profile))
    assert result.returncode == 2
    assert "defaults.cores" in result.stderr and str(profile) in result.stderr
    assert "Traceback" not in result.stderr


def test_run_runs_a_snakefile(tmp_path):
    """Each rule's task runs Snakemake on its job (swfflow snakemake-job, found on PATH)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("rule hello:\n    output: 'hello.txt'\n    shell: 'echo hi > {output}'\n")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run([sys.executable, "-m", "swfflow.cli", "run", str(snakefile),
                             "--outdir", str(tmp_path / "out"), "-q"], capture_output=True,
                            text=True, check=False, timeout=300,
                            env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hello.txt").read_text() == "hi\n"


def test_a_file_that_is_not_a_plan_is_exit_2_for_submit_and_bridge(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"plan_version": 99}')
    log = tmp_path / "log.jsonl"
    log.write_text("")
    for args in (["submit", str(bad), "--run", "1", "--state", str(tmp_path / "s")],
                 ["bridge", str(bad), "--replay", str(log), "--state",
                  f"sqlite:///{tmp_path / 'b.db'}"]):
        result = swfflow(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "not a swfflow plan" in result.stderr and "swfflow compile" in result.stderr
        assert "Traceback" not in result.stderr


CONFIGURED_SNAKEFILE = '''\
STEPS = str(config.get("steps", "a")).split(",")

rule all:
    input: [f"{s}.txt" for s in STEPS]

rule a:
    output: "a.txt"
    shell: "touch {output}"

rule b:
    output: "b.txt"
    shell: "touch {output}"
'''


def test_dag_reads_config_like_compile(tmp_path):
    """`dag --config` reaches the Snakefile's config, as `compile --config` does."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(CONFIGURED_SNAKEFILE)
    plain = swfflow("dag", str(snakefile), cwd=tmp_path)
    configured = swfflow("dag", str(snakefile), "--config", "steps=a,b", cwd=tmp_path)
    assert plain.returncode == 0 and configured.returncode == 0, plain.stderr + configured.stderr
    assert 'n_a["a"]' in plain.stdout and 'n_b["b"]' not in plain.stdout
    assert 'n_a["a"]' in configured.stdout and 'n_b["b"]' in configured.stdout
    compiled = swfflow("compile", str(snakefile), "--config", "steps=a,b", "--json", cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert {"a", "b"} <= {task["key"] for task in json.loads(compiled.stdout)["tasks"]}


def test_dag_rejects_a_bad_config_pair_like_compile(tmp_path):
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(CONFIGURED_SNAKEFILE)
    for command in ("dag", "compile"):
        result = swfflow(command, str(snakefile), "--config", "steps", cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "--config 'steps' is not KEY=VALUE" in result.stderr
        assert "Traceback" not in result.stderr


def test_compile_output_makes_its_folder_or_says_why_not(tmp_path):
    workflow = str(Path(__file__).resolve().parents[1] / "examples" / "calib.cwl")
    made = swfflow("compile", workflow, "-q", "-o", "new/sub/plan.json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads((tmp_path / "new/sub/plan.json").read_text())["workflow"] == "calib"
    (tmp_path / "file").write_text("")
    blocked = swfflow("compile", workflow, "-o", "file/plan.json", cwd=tmp_path)
    assert blocked.returncode == 2 and "cannot write the plan" in blocked.stderr
    assert "file/plan.json" in blocked.stderr and "Traceback" not in blocked.stderr


def test_a_snakefile_over_an_empty_folder_draws_and_compiles(tmp_path):
    """The STF chain before any STF arrived: no per-STF jobs, the merge still there (was an
    IndexError traceback)."""
    snakefile = str(Path(__file__).resolve().parents[1] / "Snakefile")
    (tmp_path / "empty").mkdir()
    for command in ("dag", "compile"):
        result = swfflow(command, snakefile, "--config", f"stf_dir={tmp_path / 'empty'}",
                         cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "merge" in result.stdout and "stf_reco" not in result.stdout
        assert "Traceback" not in result.stderr
