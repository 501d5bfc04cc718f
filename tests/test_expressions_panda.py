"""ExpressionTool steps with the PanDA backend: no PanDA task, the driver evaluates them on the
client (cwltool, in-process) in the stream bridge (`swfflow bridge --backend panda`) and in
`swfflow submit`, exactly as `swfflow run` does. Before, each expression step failed with "no
expression runner configured" and blocked its children.

tests/data/bridge/stfexpr.cwl: `decide` computes the merge's `when` from a parameter, `count`
reads only the metadata of the streaming step's outputs, `stf_lines` reads their contents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge_support import OUTPUT_SCOPE, PROFILE, first_run_number, recorded, setup_for

EXPR_WORKFLOW = Path(__file__).parent / "data" / "bridge" / "stfexpr.cwl"
EXPRESSION_STEPS = ("decide", "count", "stf_lines")


def _dead_url() -> str:
    """A PanDA URL nothing listens on: the environment points there, so a test only passes
    when the command used the address given on its command line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/server/panda"


def _driver_rows(state_db: Path) -> dict[str, dict]:
    """Every task row the driver saved (phase, message, outputs of expression steps)."""
    from swfflow.state import sqlite_engine
    from swfflow.drive.store import DriverStore

    store = DriverStore(sqlite_engine(state_db))
    instances = store.instances()
    assert len(instances) == 1, [i.instance for i in instances]
    return store.load(instances[0].instance)


def _inputs_file(tmp: Path, min_parts: int) -> Path:
    path = tmp / "inputs.yaml"
    path.write_text(f"min_parts: {min_parts}\n")
    return path


# --- the bridge, --replay, against the PanDA contract server (no broker, no Rucio) -----------

@pytest.mark.parametrize("min_parts, merged", [(2, True), (0, False)])
def test_bridge_panda_evaluates_expression_steps_on_the_client(tmp_path, min_parts, merged):
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    log, _ = recorded(tmp_path)
    state = tmp_path / "bridge.db"
    with PandaContractServer(runner=StateMachineRunner(run_s=0.2), tick_s=0.05) as panda:
        dead = _dead_url()
        env = {**os.environ, **panda.env(), "PANDA_URL_SSL": dead, "PANDA_URL": dead}
        argv = [sys.executable, "-m", "swfflow.cli", "bridge", str(EXPR_WORKFLOW),
                "--inputs", str(_inputs_file(tmp_path, min_parts)), "--profile", str(PROFILE),
                "--replay", str(log), "--backend", "panda", "--panda-url", panda.url,
                "--state", f"sqlite:///{state}", "--workdir", str(tmp_path / "work"),
                "--tick", "0.2", "--batch-ms", "20", "--exit-after", "1", "--json", "-q"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        on_panda = sorted(t.taskName for t in panda.store.tasks.values())
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(done.stdout)["runs"]
    phases = {t["key"]: (t["phase"], t["message"]) for t in run["tasks"]}
    assert run["phase"] == "done", phases
    # only the command steps reached PanDA, and the merge only when its `when` said so
    name = f"swf.stfexpr.{run['run']}"
    assert on_panda == ([f"{name}.merge", f"{name}.sizes"] if merged else [f"{name}.sizes"])
    rows = _driver_rows(state)
    assert {k: r["phase"] for k, r in rows.items()} == {
        "decide": "succeeded", "sizes": "succeeded", "count": "succeeded",
        "stf_lines": "succeeded", "merge": "succeeded" if merged else "skipped"}
    assert rows["decide"]["outputs"] == {"do_merge": merged, "label": f"merge if {min_parts}"}
    # the state machine runs nothing: the streaming step's output dataset stays empty
    assert rows["count"]["outputs"] == {"n": 0} and rows["stf_lines"]["outputs"] == {"stfs": 0}


def test_bridge_panda_url_needs_the_panda_backend(tmp_path, capsys):
    from swfflow.cli import main

    log, _ = recorded(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", str(EXPR_WORKFLOW), "--replay", str(log),
              "--panda-url", "https://panda.example:25443/server/panda",
              "--state", f"sqlite:///{tmp_path / 'b.db'}", "--workdir", str(tmp_path / "w")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--panda-url" in err and "--backend panda" in err and "Traceback" not in err
    assert not (tmp_path / "b.db").exists()  # refused before anything was set up


def test_bridge_help_documents_panda_url():
    from click.testing import CliRunner

    from swfflow.cli import cli

    result = CliRunner().invoke(cli, ["bridge", "--help"])
    assert result.exit_code == 0
    assert "--panda-url" in result.output and "PANDA_URL_SSL" in result.output


# --- the client-side runner itself: File inputs that live only in Rucio ----------------------

def _plan_task(step: str):
    from swfflow.pipeline import build_plan

    plan = build_plan(str(EXPR_WORKFLOW), None, str(PROFILE), "7")
    return plan, plan.task(step)


def _file(location: str, name: str = "part.txt") -> dict:
    return {"class": "File", "location": location, "basename": name, "size": 12}


def test_metadata_only_expression_needs_no_local_copy(tmp_path):
    """cwltool never opens a File an expression does not load: a replica elsewhere will do."""
    from swfflow.drive.expressions import expressions_for_plan

    plan, task = _plan_task("count")
    run = expressions_for_plan(str(EXPR_WORKFLOW), plan, tmp_path)
    parts = [_file("root://eos.example.org//eic/a.txt"), _file("user.swfflow:b.txt")]
    assert run(task, {"parts": parts}) == {"n": 2}


def test_contents_of_a_local_replica_are_read_in_place(tmp_path):
    """A posix RSE's replica (file://localhost/… as Rucio lists it) is read where it is."""
    from swfflow.drive.expressions import expressions_for_plan

    part = tmp_path / "sizes.txt"
    part.write_text("4096 /buffer/swf.1.000001.stf\n4096 /buffer/swf.1.000002.stf\n8192 total\n")
    plan, task = _plan_task("stf_lines")
    run = expressions_for_plan(str(EXPR_WORKFLOW), plan, tmp_path)
    assert run(task, {"parts": [_file(f"file://localhost{part}")]}) == {"stfs": 2}


def test_contents_of_a_file_only_in_rucio_are_a_clear_error(tmp_path):
    from swfflow.drive.expressions import expressions_for_plan
    from swfflow.errors import RunFailed

    local = tmp_path / "here.txt"
    local.write_text("1 x.stf\n")
    plan, task = _plan_task("stf_lines")
    run = expressions_for_plan(str(EXPR_WORKFLOW), plan, tmp_path)
    parts = [_file(local.as_uri()), _file("root://eos.example.org//eic/sizes.txt", "sizes.txt")]
    with pytest.raises(RunFailed) as failure:
        run(task, {"parts": parts})
    text = str(failure.value)
    assert failure.value.where == "stf_lines"
    assert "reads the contents of input 'parts'" in text
    assert "root://eos.example.org//eic/sizes.txt" in text and "here.txt" not in text
    assert "hint:" in text and "CommandLineTool" in text


@pytest.mark.parametrize("source, folder", [
    (str(EXPR_WORKFLOW), EXPR_WORKFLOW.parent),  # the workflow the plan names is here
    ("elsewhere/stfexpr.cwl", None),  # it is not: the plan file's folder (a worker's sandbox)
])
def test_plan_json_expression_tools_are_rebuilt_from_the_plan(tmp_path, source, folder):
    """A bridge or submission given a plan.json rebuilds each expression's tool from the plan's
    payload (what a worker job does), with the inherited InlineJavascriptRequirement."""
    from swfflow.pipeline import build_plan
    from swfflow.drive.expressions import expressions_for_plan, plan_folder

    inputs = str(_inputs_file(tmp_path, 3))
    plan = dataclasses.replace(build_plan(str(EXPR_WORKFLOW), inputs, str(PROFILE), "7"),
                               source=source)
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(plan.to_json())
    assert plan_folder(str(plan_json), plan) == (folder or tmp_path)
    run = expressions_for_plan(str(plan_json), plan, tmp_path)
    assert run(plan.task("decide"), {"min_parts": 3}) == {"do_merge": True, "label": "merge if 3"}


# --- the bridge over real Rucio, PanDA running the tasks for real ---------------------------

def panda_running(template, tmp: Path, rucio_config: str):
    """The contract server whose runner executes each accepted task of the bridge's template
    with the local executor over the same Rucio server (as the pilots would)."""
    from swfflow.drive.expressions import PlanPayloads
    from swfflow.testing.panda_server import pilots_for_template

    return pilots_for_template(template, PlanPayloads(EXPR_WORKFLOW.parent), tmp,
                               rucio_config=rucio_config)


@pytest.mark.services
@pytest.mark.slow
def test_bridge_expressions_read_the_streaming_outputs_in_rucio(tmp_path, rucio_env,
                                                                rucio_catalog):
    from swfflow.stream.bridge.setup import build_bridge
    from swfflow.pipeline import load_template
    from swfflow.stream.bridge.sources import replay
    from tests.test_bridge import all_done, run_until

    run = str(first_run_number())
    log, sim = recorded(tmp_path, first_run=int(run))
    template, _ = load_template(str(EXPR_WORKFLOW), None, str(PROFILE))
    setup = dataclasses.replace(
        setup_for(tmp_path, catalog="rucio", rucio_config=rucio_env["RUCIO_CONFIG"]),
        workflow=str(EXPR_WORKFLOW), backend="panda")
    with panda_running(template, tmp_path, rucio_env["RUCIO_CONFIG"]) as panda:
        setup = dataclasses.replace(setup, panda_url=panda.url)
        with contextlib.ExitStack() as stack:
            bridge = build_bridge(setup, stack)
            replay(bridge, log)
            run_until(bridge, all_done, timeout=150)
    rows = _driver_rows(tmp_path / "state" / "bridge.db")
    assert {k: r["phase"] for k, r in rows.items()} == dict.fromkeys(
        ("decide", "sizes", "count", "stf_lines", "merge"), "succeeded"), rows
    parts = rucio_catalog.list_files(f"{OUTPUT_SCOPE}:swf.stfexpr.{run}.sizes.sizes")
    assert parts and all(p.pfn.startswith("file://") for p in parts)
    # `count` saw every part the streaming jobs registered in Rucio; `stf_lines` read them
    # (the replicas' file:// paths) and found each STF of the run exactly once
    assert rows["count"]["outputs"] == {"n": len(parts)}
    assert rows["stf_lines"]["outputs"] == {"stfs": sim.stf_files} and sim.stf_files == 6
    assert rucio_catalog.list_files(f"{OUTPUT_SCOPE}:swf.stfexpr.{run}.merge.summary")


# --- swfflow submit: real Rucio, the contract server's state machine -------------------------

@pytest.mark.services
@pytest.mark.parametrize("min_parts, merged", [(1, True), (0, False)])
def test_submit_follow_evaluates_expression_steps(tmp_path, rucio_env, min_parts, merged):
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    run = str(random.randrange(10**6, 10**7))
    state = tmp_path / "state"
    with PandaContractServer(runner=StateMachineRunner(run_s=0.2), tick_s=0.05) as panda:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDA_", "SWFFLOW_"))}
        env.update(panda.env(), **rucio_env)
        done = subprocess.run(
            [sys.executable, "-m", "swfflow.cli", "submit", str(EXPR_WORKFLOW),
             str(_inputs_file(tmp_path, min_parts)), "--run", run, "--profile", str(PROFILE),
             "--state", str(state), "--follow", "--poll", "0.2", "--timeout", "90", "--json"],
            env=env, capture_output=True, text=True, timeout=150, check=False)
        on_panda = sorted(t.taskName for t in panda.store.tasks.values()
                          if t.taskName.startswith(f"swf.stfexpr.{run}."))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    phases = {t["key"]: t["phase"] for t in report["tasks"]}
    assert report["state"] == "done", report["tasks"]
    assert phases == {"decide": "succeeded", "sizes": "succeeded", "count": "succeeded",
                      "stf_lines": "succeeded", "merge": "succeeded" if merged else "skipped"}
    name = f"swf.stfexpr.{run}"
    assert on_panda == ([f"{name}.merge", f"{name}.sizes"] if merged else [f"{name}.sizes"])
    rows = _driver_rows(state / "submit.db")
    assert rows["decide"]["outputs"] == {"do_merge": merged, "label": f"merge if {min_parts}"}
    assert rows["count"]["outputs"] == {"n": 0}
