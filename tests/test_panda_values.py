"""Inputs the driver computes at run time reach PanDA jobs: a dynamic ``valueFrom`` and an
upstream ExpressionTool's output become ``--values=B64`` in the task's jobParameters (base64url
of compact JSON, nothing a shell expands), which ``swfflow job`` decodes into the job object.

The end-to-end test drives a plan with the real driver and the PanDA executor through the real
panda-client against the contract server, then runs the job parameters the server received
through a real shell, as a pilot would, and checks what the tool printed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swfflow.bundle import bundle_members
from swfflow.errors import ConfigError, UnsupportedFeature
from swfflow.plan.jedi import (VALUES_OPTION, computed_values, decode_values, encode_values,
                               with_computed_values)
from swfflow.plan.model import TaskInput, TaskSpec

HOSTILE = [
    "it's",
    'say "hi"',
    "$(touch PWNED)",
    "`touch PWNED`; rm -rf ~",
    "two  spaces\tand a tab",
    "line one\nline two\n",
    "${HOME} $JEDITASKID ${SN/P} %s \\ | & > <",
    "ünïcödé ✓",
    "",
]

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}
inputs:
  who: string
outputs:
  said: {type: File, outputSource: say/said}
steps:
  greet:
    run:
      class: ExpressionTool
      inputs: {who: string}
      outputs: {text: string}
      expression: "$({'text': 'hello ' + inputs.who})"
    in: {who: who}
    out: [text]
  say:
    run:
      class: CommandLineTool
      baseCommand: [printf, "%s|%s"]
      inputs:
        text: {type: string, inputBinding: {position: 1}}
        loud: {type: string, inputBinding: {position: 2}}
      stdout: said.txt
      outputs: {said: {type: stdout}}
    in:
      text: greet/text
      loud: {source: greet/text, valueFrom: "$(self.toUpperCase())"}
    out: [said]
"""
WHO = "it's \"$(touch PWNED)\" `touch PWNED`; $HOME\nand  more"


def _task(job: dict, kind: str = "cwl") -> TaskSpec:
    inputs = (TaskInput(port="text", sources=("greet/text",)),
              TaskInput(port="loud", expression="$(self.toUpperCase())", sources=("greet/text",)),
              TaskInput(port="n", value=3))
    params = {"taskName": "swf.t.1.say",
              "jobParameters": [{"type": "constant", "value": "swfflow job --task say"},
                                {"type": "template", "param_type": "output", "value": "--out x=y"}]}
    return TaskSpec(key="say", step="say", name="swf.t.1.say", kind="tool", params=params,
                    inputs=inputs, payload={"kind": kind, "job": {"n": 3, **job}})


def _command_line(params: dict, task_id: int = 4711) -> str:
    """The job's command line as JEDI builds it: the items' values joined by spaces, the
    templates filled in (what the pilot's shell then sees)."""
    text = " ".join(str(item["value"]) for item in params["jobParameters"])
    return text.replace("$JEDITASKID", str(task_id)).replace("${SN/P}", "000001")


# --- encoding -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_survive_the_command_line(text):
    values = {"text": text, "loud": [text, {"nested": text}], "n": 3, "ok": True, "none": None}
    params = with_computed_values(_task(values))
    argv = shlex.split(_command_line(params))
    assert argv[:4] == ["swfflow", "job", "--task", "say"]
    flag, _, encoded = argv[4].partition("=")
    assert flag == VALUES_OPTION and set(encoded) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert argv[5:] == ["--out", "x=y"]
    # only the driver-computed ports travel; the plan's constant `n` stays in the plan
    assert decode_values(encoded) == {"text": text, "loud": [text, {"nested": text}]}
    assert params["taskName"] == "swf.t.1.say"  # the idempotency key is untouched


def test_a_real_shell_passes_the_values_through_unchanged(tmp_path):
    values = {"text": "\n".join(HOSTILE), "loud": HOSTILE}
    line = _command_line(with_computed_values(_task(values)))
    script = "import sys, json; print(json.dumps(sys.argv[1:]))"
    line = line.replace("swfflow job", f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}")
    done = subprocess.run(["sh", "-c", line], cwd=tmp_path, capture_output=True, text=True,
                          check=True)
    argv = json.loads(done.stdout)
    assert decode_values(argv[2].partition("=")[2]) == values
    assert not list(tmp_path.iterdir())  # nothing the values hold was run


def test_no_computed_inputs_leave_the_parameters_as_they_are():
    task = _task({})
    task = TaskSpec(**{**task.__dict__, "inputs": task.inputs[2:]})
    assert with_computed_values(task) == task.params


def test_resubmission_replaces_the_values_item():
    task = _task({"text": "a", "loud": "A"})
    once = with_computed_values(task)
    again = with_computed_values(TaskSpec(**{**task.__dict__, "params": once}))
    assert [i["value"] for i in again["jobParameters"]] == \
        [i["value"] for i in once["jobParameters"]]


@pytest.mark.parametrize("value, cls", [
    ({"class": "File", "location": "file:///data/a.txt"}, "File"),
    ([{"x": {"class": "Directory", "location": "d"}}], "Directory"),
])
def test_a_computed_file_is_a_clear_error(value, cls):
    with pytest.raises(UnsupportedFeature) as failure:
        with_computed_values(_task({"text": "fine", "loud": value}))
    text = str(failure.value)
    assert "'say'" in text and "'loud'" in text and cls in text and "dataset" in text
    assert failure.value.where == "say"


def test_non_json_and_oversized_values_are_clear_errors():
    with pytest.raises(UnsupportedFeature, match="'loud'.*not JSON"):
        computed_values(_task({"text": "a", "loud": float("nan")}))
    with pytest.raises(UnsupportedFeature, match="more than 65536.*loud"):
        with_computed_values(_task({"text": "a", "loud": "x" * 100_000}))


@pytest.mark.parametrize("text, message", [
    ("not base64!", "not base64url-encoded JSON"),
    (encode_values({"a": 1})[:-3] + "***", "not base64url-encoded JSON"),
    ("WzEsMl0", "holds list"),  # [1,2]
])
def test_bad_values_argument_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        decode_values(text)


# --- the driver, the PanDA executor, the contract server, `swfflow job` -------------------------

@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "sandbox"
    root.mkdir()
    (root / "say.cwl").write_text(WORKFLOW)
    (root / "inputs.yaml").write_text(json.dumps({"who": WHO}))
    return root


def _submitted_params(sandbox: Path, tmp_path: Path):
    """Drive the plan until `say` is on the (contract) PanDA server; its plan and parameters."""
    from swfflow.backends.local_catalog import LocalCatalog
    from swfflow.state import sqlite_engine
    from swfflow.backends.panda import PandaExecutor
    from swfflow.pipeline import build_plan
    from swfflow.drive.expressions import PlanPayloads, client_expressions
    from swfflow.drive.flow_run import FlowRun
    from swfflow.drive.store import DriverStore
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    plan = build_plan(str(sandbox / "say.cwl"), str(sandbox / "inputs.yaml"), None, "5")
    say = plan.task("say")
    assert {i.port: (i.expression, i.sources) for i in say.inputs} == {
        "text": (None, ("greet/text",)), "loud": ("$(self.toUpperCase())", ("greet/text",))}
    with PandaContractServer(runner=StateMachineRunner(run_s=0.1), tick_s=0.02) as server:
        executor = PandaExecutor(server.url, attempts=2, backoff_s=0.01)
        flow = FlowRun(plan, LocalCatalog.at(tmp_path / "catalog.db"), executor,
                       DriverStore(sqlite_engine(tmp_path / "driver.db")),
                       source_path=str(sandbox / "say.cwl"), outputs_of=executor.task_outputs,
                       prepare=lambda task: task,
                       run_expression=client_expressions(PlanPayloads(sandbox),
                                                         tmp_path / "scratch"))
        flow.start()
        deadline = time.monotonic() + 60
        while not flow.tick():
            assert time.monotonic() < deadline, flow.task_rows()
            time.sleep(0.05)
        # the double's state machine writes no files: the run says `say`'s File is missing
        assert "no value for a required File output" in str(flow.error)
        assert {k: r["phase"] for k, r in flow.task_rows().items()} == \
            {"greet": "succeeded", "say": "succeeded"}
        (on_panda,) = list(server.store.tasks.values())
    assert on_panda.taskName == say.name  # the plan's name: the idempotency key is unchanged
    return plan, on_panda.params, on_panda.jediTaskID


def _job_dir(sandbox: Path, plan, parent: Path, name: str) -> Path:
    """What the pilot gives the job: the sandbox with the compiled plan at its top."""
    work = parent / name
    shutil.copytree(sandbox, work)
    (work / "plan.json").write_text(plan.to_json())
    return work


def test_computed_inputs_reach_the_worker_through_the_shell(sandbox, tmp_path):
    plan, params, task_id = _submitted_params(sandbox, tmp_path)
    line = _command_line(params, task_id)
    argv = shlex.split(line)
    values = decode_values(next(a for a in argv if a.startswith(VALUES_OPTION + "="))
                           .partition("=")[2])
    assert values == {"text": f"hello {WHO}", "loud": f"HELLO {WHO.upper()}"}

    work = _job_dir(sandbox, plan, tmp_path, "job")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", line + " --no-container --json"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    (out,) = report["outputs"]
    assert out["name"] == f"{plan.task('say').outputs['said'].split(':', 1)[1]}.{task_id}" \
                          "._000001.said"
    [said] = bundle_members(work / out["name"])  # the tool's file, under its own name
    assert said.name == "said.txt"
    assert said.read_text() == f"hello {WHO}|HELLO {WHO.upper()}"
    assert not (work / "PWNED").exists()

    # the same job without the driver's values: refused, saying what is missing and why
    bare = " ".join(a for a in shlex.split(line) if not a.startswith(VALUES_OPTION))
    work = _job_dir(sandbox, plan, tmp_path, "bare")
    done = subprocess.run(["sh", "-c", bare], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "loud, text are computed by the driver" in done.stderr
    assert VALUES_OPTION in done.stderr and "Traceback" not in done.stderr

    # values for a port the driver does not compute are refused, naming the ports it does
    foreign = f"{bare} {VALUES_OPTION}={encode_values({'n': 1, 'text': 'x', 'loud': 'X'})}"
    done = subprocess.run(["sh", "-c", foreign], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "names port(s) n, which the driver does not compute" in done.stderr
    assert "loud, text" in done.stderr


def test_the_contract_runner_gives_its_pilots_the_shipped_values():
    """The contract server's ExecutorRunner looks a task up in the plan by name; the computed
    inputs exist only in the job parameters, so it must merge them as a worker would."""
    from swfflow.testing.panda_runner import with_shipped_values

    values = {"text": WHO, "loud": WHO.upper()}
    planned = _task({})  # the plan the pilot finds: no computed values in it
    shipped = with_shipped_values(planned, with_computed_values(_task(values)))
    assert shipped.payload["job"] == {"n": 3, **values}
    assert with_shipped_values(planned, planned.params) == planned  # nothing shipped
