"""`swfflow status`: the status model in a terminal and as JSON — of a bridge's state store
(`--state URL`) and of a local run (`--outdir D`): one line per task at 80 columns, each
error in full below the table, `--watch`, `--json` = the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from swfflow.cli import cli
from tests.bridge_support import recorded, setup_for

SWFFLOW = [sys.executable, "-m", "swfflow.cli"]

FAILING = """\
cwlVersion: v1.2
class: Workflow
inputs: {word: string}
outputs:
  out: {type: File, outputSource: a_step_with_a_rather_long_name_that_cannot_fit/out}
steps:
  first_of_several_steps_with_long_names:
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'echo "detector calibration constants for $0 are missing from the conditions database, giving up" >&2; exit 3']
      inputs: {w: {type: string, inputBinding: {position: 1}}}
      outputs: {out: {type: stdout}}
    in: {w: word}
    out: [out]
  a_step_with_a_rather_long_name_that_cannot_fit:
    run:
      class: CommandLineTool
      baseCommand: cat
      inputs: {f: {type: File, inputBinding: {position: 1}}}
      outputs: {out: {type: stdout}}
    in: {f: first_of_several_steps_with_long_names/out}
    out: [out]
"""


def _swfflow(args: list[str], cwd: Path, columns: int = 80) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    return subprocess.run(SWFFLOW + args, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)


def test_status_of_a_bridge_state_store(tmp_path):
    log, _ = recorded(tmp_path)
    state = f"sqlite:///{tmp_path / 'bridge.db'}"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "bridge", str(setup_for(tmp_path).workflow), "--replay", str(log), "--state", state,
        "--workdir", str(tmp_path / "w"), "--no-container", "--tick", "0.2", "-q"])
    assert result.exit_code == 0, result.output

    as_json = runner.invoke(cli, ["status", "--state", state, "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["version"] == 1 and report["dead_letters"] == []
    (run,) = report["runs"]
    assert run["phase"] == "done" and run["stf_attached"] == run["stf_recorded"] > 0
    assert run["tasks"] and all(t["phase"] == "succeeded" for t in run["tasks"])
    assert [e["event"] for e in run["daq_history"]][:2] == ["run_imminent", "start_run"]
    assert run["stf_processed"] == run["stf_attached"] and run["elapsed_s"] > 0
    stream = next(d for d in report["datasets"] if d["did"] == run["stream_dataset"])
    assert stream["files"] == run["stf_attached"] and not stream["open"]
    assert stream["rules"], stream  # the profile's replication rules (the butterfly)

    table = runner.invoke(cli, ["status", "--state", state, "--run", run["run"]])
    assert table.exit_code == 0, table.output
    assert f"run {run['run']}" in table.output and run["tasks"][0]["key"] in table.output
    assert "elapsed" in table.output and "STF 6/6 attached, 6 processed" in table.output

    other = runner.invoke(cli, ["status", "--state", state, "--run", "999999999", "--json"])
    assert json.loads(other.output)["runs"] == []

    # --watch stops by itself once everything is finished (--until-done)
    watched = runner.invoke(cli, ["status", "--state", state, "--watch", "--interval", "0.2",
                                  "--until-done"])
    assert watched.exit_code == 0 and f"run {run['run']}" in watched.output
    both = runner.invoke(cli, ["status", "--state", state, "--watch", "--json"])
    assert type(both.exception).__name__ == "ConfigError"  # `swfflow` prints it, exits 2
    assert "--json and --watch" in str(both.exception)


def test_a_failed_local_run_reads_at_80_columns(tmp_path):
    (tmp_path / "wf.cwl").write_text(FAILING)
    (tmp_path / "inputs.json").write_text(json.dumps({"word": "run42"}))
    ran = _swfflow(["run", "wf.cwl", "inputs.json", "--outdir", "out", "--attempts", "1", "-q"],
                   tmp_path)
    assert ran.returncode == 1, ran.stderr

    shown = _swfflow(["status", "--outdir", "out"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    # one line per task, with its state, right under the header
    header = next(i for i, line in enumerate(lines) if line.startswith("task "))
    first, second = lines[header + 1], lines[header + 2]
    assert first.startswith("first_of_several") and " failed " in first, lines
    assert second.startswith("a_step_with_a") and " blocked " in second, lines
    # below the table: the failed job's log tail in full (wrapped at 80, not cut: its command
    # line ends in "exit 3"), and one short clause for the blocked task
    text = " ".join(line.strip() for line in lines[header + 3:])
    assert "exit code 3" in text
    assert "conditions database, giving up" in text and "exit 3" in text
    blocked = next(line for line in lines if line.startswith("a_step_with_a_rather_long_name_"
                                                               "that_cannot_fit:"))
    assert "not started" in text.split("a_step_with_a_rather_long_name_that_cannot_fit:")[1]
    assert "(" not in blocked  # no nested "(not started: …)" chain
    assert "killed by user" not in text

    model = json.loads(_swfflow(["status", "--outdir", "out", "--json"], tmp_path).stdout)
    tasks = {t["key"]: t for t in model["instances"][0]["tasks"]}
    assert tasks["first_of_several_steps_with_long_names"]["jobs"][0]["exit_code"] == 3
    assert "giving up" in tasks["first_of_several_steps_with_long_names"]["jobs"][0]["log_tail"]
    assert tasks["a_step_with_a_rather_long_name_that_cannot_fit"]["phase"] == "blocked"
