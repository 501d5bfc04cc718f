"""`swfflow status --state URL`: what a bridge has done, per run and task."""

from __future__ import annotations

import json

from click.testing import CliRunner

from swfflow.cli import cli
from tests.bridge_support import recorded, setup_for


def test_status_of_a_bridge_state_store(tmp_path):
    log, summary = recorded(tmp_path)
    state = f"sqlite:///{tmp_path / 'bridge.db'}"
    runner = CliRunner()
    result = runner.invoke(cli, [
        "bridge", str(setup_for(tmp_path).workflow), "--replay", str(log), "--state", state,
        "--workdir", str(tmp_path / "w"), "--no-container", "--tick", "0.2", "-q"])
    assert result.exit_code == 0, result.output

    as_json = runner.invoke(cli, ["status", "--state", state, "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    (run,) = report["runs"]
    assert run["phase"] == "done" and run["stf_attached"] == run["stf_recorded"] > 0
    assert run["tasks"] and all(t["phase"] == "succeeded" for t in run["tasks"])

    table = runner.invoke(cli, ["status", "--state", state, "--run", run["run"]])
    assert table.exit_code == 0, table.output
    assert f"run {run['run']}" in table.output and run["tasks"][0]["key"] in table.output

    other = runner.invoke(cli, ["status", "--state", state, "--run", "999999999", "--json"])
    assert json.loads(other.output)["runs"] == []
