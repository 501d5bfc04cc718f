"""`swfflow run --rehearse`: every job runs as a PanDA pilot runs it — the task's
jobParameters as JEDI expands them (`swfflow job …`), a subprocess in a job directory holding
the task's sandbox and the inputs under their dataset names — and the run gives the outputs
the in-process run and cwltool give."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from swfflow.backends.local_tables import JOBS, TASKS
from swfflow.bundle import is_bundle
from swfflow.plan import jedi

REPO = Path(__file__).resolve().parents[1]
SWFFLOW = [sys.executable, "-m", "swfflow.cli"]


def swfflow_run(tmp: Path, workflow: Path, inputs: Path, outdir: str, *extra: str
                ) -> subprocess.CompletedProcess:
    return subprocess.run(SWFFLOW + ["run", str(workflow), str(inputs), "--outdir", outdir,
                                     "-q", "--attempts", "1", *extra],
                          cwd=tmp, capture_output=True, text=True, timeout=900)


def output_sha1s(value, found=None) -> dict[str, str]:
    """basename → sha1 of every File in an output object."""
    found = {} if found is None else found
    if isinstance(value, dict) and value.get("class") == "File":
        path = Path(value["location"].removeprefix("file://"))
        found[value["basename"]] = hashlib.sha1(path.read_bytes()).hexdigest()
    elif isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            output_sha1s(item, found)
    return found


def without_locations(value):
    if isinstance(value, dict):
        return {k: without_locations(v) for k, v in value.items() if k != "location"}
    if isinstance(value, list):
        return [without_locations(v) for v in value]
    return value


def job_rows(outdir: Path) -> list:
    engine = create_engine(f"sqlite:///{outdir / '.swfflow' / 'state.db'}")
    with engine.connect() as conn:
        return conn.execute(select(JOBS, TASKS.c.spec, TASKS.c.name.label("task"))
                            .join(TASKS, TASKS.c.id == JOBS.c.task_id)).all()


@pytest.mark.slow
def test_calib_rehearsed_gives_the_outputs_of_the_plain_run_with_panda_job_command_lines(
        tmp_path):
    workflow, inputs = REPO / "examples/calib.cwl", REPO / "examples/calib-inputs.yml"
    plain = swfflow_run(tmp_path, workflow, inputs, "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    rehearsed = swfflow_run(tmp_path, workflow, inputs, "rehearsed", "--rehearse")
    assert rehearsed.returncode == 0, rehearsed.stderr[-3000:]
    ours, reference = json.loads(rehearsed.stdout), json.loads(plain.stdout)
    # the same files, in the same order, with the tools' own names
    assert without_locations(ours) == without_locations(reference)
    assert output_sha1s(ours) == output_sha1s(reference) and len(output_sha1s(ours)) >= 8

    rows = job_rows(tmp_path / "rehearsed")
    assert rows and all(r.state == "done" for r in rows)
    for row in rows:
        if row.spec["payload"].get("kind") != "cwl":
            continue
        # the command line is the task's jobParameters as JEDI fills them in for this job
        names = {did.split(":", 1)[1] for did in row.files}
        argv = row.command
        assert argv[:4] == ["/usr/bin/env", "swfflow", "job", "--task"], argv
        assert argv == jedi.expand_job_parameters(
            row.spec["params"], task_id=row.task_id, serial=row.number,
            files=_files_by_dataset(row, argv)), argv
        if names:
            assert set(argv[argv.index("-i") + 1].split(",")) == names
        # each output registered under JEDI's name, as a bundle of the tool's files
        for produced in row.produced:
            name = produced["did"].split(":", 1)[1]
            assert name.startswith(tuple(d.split(":", 1)[1] for d in
                                         row.spec["outputs"].values()))
            assert f".{row.task_id}._{row.number:06d}." in name
            assert is_bundle(Path(produced["pfn"]))
            assert (tmp_path / "rehearsed" / ".swfflow" / "jobs").resolve() in \
                Path(produced["pfn"]).resolve().parents


def _files_by_dataset(row, argv: list[str]) -> dict[str, list[str]]:
    """What the job got per input dataset, read back from its command line."""
    found = {}
    for item in row.spec["params"]["jobParameters"]:
        if item.get("param_type") != "input":
            continue
        flag = shlex.split(item["value"])[0]
        found[item["dataset"]] = argv[argv.index(flag) + 1].split(",") if flag in argv else []
    return found


HEADER = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}
"""


def test_a_scatter_known_at_run_time_runs_instances_with_their_values_shipped(tmp_path):
    """A scatter over what an ExpressionTool computed: each element is a run-time instance of
    the step's task (in no compiled plan), its value on the job's command line (--values),
    never through a shell."""
    (tmp_path / "wf.cwl").write_text(HEADER + """\
inputs: {text: string}
outputs: {said: {type: 'File[]', outputSource: say/out}}
steps:
  split:
    in: {text: text}
    out: [words]
    run:
      class: ExpressionTool
      inputs: {text: string}
      outputs: {words: 'string[]'}
      expression: "$({'words': inputs.text.split('|')})"
  say:
    scatter: w
    in: {w: split/words}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [printf, '%s\\n']
      inputs: {w: {type: string, inputBinding: {position: 1}}}
      stdout: $(inputs.w.length).txt
      outputs: {out: stdout}
""")
    words = ["it's", 'say "hi"', "$(touch PWNED)", "ünï"]
    (tmp_path / "in.json").write_text(json.dumps({"text": "|".join(words)}))
    plain = swfflow_run(tmp_path, tmp_path / "wf.cwl", tmp_path / "in.json", "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    rehearsed = swfflow_run(tmp_path, tmp_path / "wf.cwl", tmp_path / "in.json", "rehearsed",
                            "--rehearse")
    assert rehearsed.returncode == 0, rehearsed.stderr[-3000:]
    ours = json.loads(rehearsed.stdout)["said"]
    assert [Path(f["location"].removeprefix("file://")).read_text() for f in ours] == \
        [w + "\n" for w in words]
    assert [f["basename"] for f in ours] == [f"{len(w)}.txt" for w in words]
    assert without_locations(ours) == without_locations(json.loads(plain.stdout)["said"])
    assert not list(tmp_path.rglob("PWNED"))
    rows = sorted(job_rows(tmp_path / "rehearsed"), key=lambda r: r.task)
    assert len(rows) == len(words)
    shipped = [jedi.decode_values(next(a for a in r.command if a.startswith(
        jedi.VALUES_OPTION + "=")).partition("=")[2]) for r in rows]
    assert sorted(v["w"] for v in shipped) == sorted(words)


def test_a_file_computed_by_the_driver_is_refused_as_panda_refuses_it(tmp_path):
    """An ExpressionTool's File output feeding a tool: PanDA gets files only through
    datasets, so the rehearsal refuses it at submission (the plain run does it)."""
    (tmp_path / "data.txt").write_text("data\n")
    (tmp_path / "wf.cwl").write_text(HEADER + """\
inputs: {f: File}
outputs: {out: {type: File, outputSource: show/out}}
steps:
  pick:
    in: {f: f}
    out: [g]
    run:
      class: ExpressionTool
      inputs: {f: File}
      outputs: {g: File}
      expression: "$({'g': inputs.f})"
  show:
    in: {g: pick/g}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: [cat]
      inputs: {g: {type: File, inputBinding: {position: 1}}}
      stdout: out.txt
      outputs: {out: stdout}
""")
    (tmp_path / "in.json").write_text(json.dumps({"f": {"class": "File",
                                                        "location": "data.txt"}}))
    plain = swfflow_run(tmp_path, tmp_path / "wf.cwl", tmp_path / "in.json", "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    rehearsed = swfflow_run(tmp_path, tmp_path / "wf.cwl", tmp_path / "in.json", "rehearsed",
                            "--rehearse")
    assert rehearsed.returncode == 33, rehearsed.stderr[-3000:]
    assert "input 'g' is computed by the driver at run time and is (or holds) a File" in \
        rehearsed.stderr
    assert "Traceback" not in rehearsed.stderr
