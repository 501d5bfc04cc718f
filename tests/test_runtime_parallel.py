"""`swfflow run --jobs N` in the run-time engine: scatter elements and independent steps run
at the same time, results keep their order, and --jobs 1 gives the same outputs.

Concurrency is proven without timing: each job of a "rendezvous" tool leaves a marker and
waits for its partner's marker, so the pair can only succeed when both run at once (run one
after the other, the first job gives up after its patience and the run fails).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from swfflow.errors import RunFailed
from swfflow.run_plan import run_workflow_file

RENDEZVOUS_TOOL = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments:
  - position: 0
    valueFrom: >-
      touch "$2/$0" && timeout "$3" sh -c 'until [ -e "$0" ]; do sleep 0.05; done' "$2/$1"
      && echo "$0 met $1"
inputs:
  me: {type: string, inputBinding: {position: 1}}
  other: {type: string, inputBinding: {position: 2}}
  markers: {type: string, inputBinding: {position: 3}}
  patience: {type: int, default: 60, inputBinding: {position: 4}}
stdout: met.txt
outputs:
  met: stdout
"""

SCATTER_WORKFLOW = """cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  names: string[]
  partners: string[]
  markers: string
  patience: {type: int, default: 60}
outputs:
  met:
    type: {type: array, items: File}
    outputSource: meet/met
steps:
  meet:
    run: rendezvous.cwl
    scatter: [me, other]
    scatterMethod: dotproduct
    in: {me: names, other: partners, markers: markers, patience: patience}
    out: [met]
"""

TWO_STEPS_WORKFLOW = """cwlVersion: v1.2
class: Workflow
inputs:
  markers: string
outputs:
  left: {type: File, outputSource: left/met}
  right: {type: File, outputSource: right/met}
steps:
  left:
    run: rendezvous.cwl
    in: {me: {default: left}, other: {default: right}, markers: markers}
    out: [met]
  right:
    run: rendezvous.cwl
    in: {me: {default: right}, other: {default: left}, markers: markers}
    out: [met]
"""

# an ordinary nested cross product with a failing element when asked to
ECHO_WORKFLOW = """cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  letters: string[]
  numbers: int[]
  fail_on: {type: string, default: none}
outputs:
  lines: {type: {type: array, items: {type: array, items: File}}, outputSource: echo/line}
steps:
  echo:
    scatter: [letter, number]
    scatterMethod: nested_crossproduct
    in: {letter: letters, number: numbers, fail_on: fail_on}
    out: [line]
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'test "$0" != "$2" && echo "$0$1"']
      inputs:
        letter: {type: string, inputBinding: {position: 1}}
        number: {type: int, inputBinding: {position: 2}}
        fail_on: {type: string, inputBinding: {position: 3}}
      stdout: line.txt
      outputs:
        line: stdout
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "rendezvous.cwl").write_text(RENDEZVOUS_TOOL)
    workflow = tmp_path / "wf.cwl"
    workflow.write_text(text)
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    return workflow


def _text(file: dict) -> str:
    return Path(unquote(urlparse(file["location"]).path)).read_text().strip()


def test_scatter_elements_run_at_once_with_jobs_2(tmp_path):
    workflow = _write(tmp_path, SCATTER_WORKFLOW)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"names": ["a", "b"], "partners": ["b", "a"],
                                  "markers": str(tmp_path / "markers")}))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "swfflow.cli", "run", str(workflow),
                           str(inputs), "--outdir", str(out), "--jobs", "2", "-q"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    met = json.loads(done.stdout)["met"]
    assert [_text(f) for f in met] == ["a met b", "b met a"]  # scatter order kept
    status = subprocess.run([sys.executable, "-m", "swfflow.cli", "status", "--outdir",
                             str(out), "--json"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert status.returncode == 0, status.stderr
    assert '"meet.0"' in status.stdout and '"meet.1"' in status.stdout  # both recorded


def test_rendezvous_fails_when_jobs_run_one_at_a_time(tmp_path):
    """The check above can fail: sequentially the first job never meets its partner."""
    workflow = _write(tmp_path, SCATTER_WORKFLOW)
    inputs = {"names": ["a", "b"], "partners": ["b", "a"],
              "markers": str(tmp_path / "markers"), "patience": 1}
    with pytest.raises(RunFailed, match=r"step meet failed \(task .*\.meet\.0\)"):
        run_workflow_file(workflow, inputs, tmp_path / "out", no_container=True, jobs=1)
    assert not (tmp_path / "markers" / "b").exists()  # the second job never started


def test_independent_steps_run_at_once(tmp_path):
    workflow = _write(tmp_path, TWO_STEPS_WORKFLOW)
    outputs = run_workflow_file(workflow, {"markers": str(tmp_path / "markers")},
                                tmp_path / "out", no_container=True, jobs=2)
    assert (_text(outputs["left"]), _text(outputs["right"])) == ("left met right",
                                                                  "right met left")


def test_jobs_1_and_jobs_2_give_the_same_outputs(tmp_path):
    workflow = _write(tmp_path, ECHO_WORKFLOW)
    inputs = {"letters": ["x", "y", "z"], "numbers": [1, 2]}
    results = {}
    for jobs in (1, 2):
        outputs = run_workflow_file(workflow, inputs, tmp_path / f"out{jobs}",
                                    no_container=True, jobs=jobs)
        results[jobs] = [[_text(f) for f in row] for row in outputs["lines"]]
    assert results[1] == results[2] == [["x1", "x2"], ["y1", "y2"], ["z1", "z2"]]


def test_a_failed_element_is_the_error_not_its_skipped_siblings(tmp_path):
    workflow = _write(tmp_path, ECHO_WORKFLOW)
    inputs = {"letters": ["x", "y", "z"], "numbers": [1, 2], "fail_on": "y"}
    # the y elements fail (echo.1.0 first); x and z elements that did not run are no error
    with pytest.raises(RunFailed, match=r"step echo failed \(task .*\.echo\.1\.[01]\)"
                                        r"\n  hint: job 1 failed after 1 attempt\(s\), exit code 1"):
        run_workflow_file(workflow, inputs, tmp_path / "out", no_container=True, jobs=2)
