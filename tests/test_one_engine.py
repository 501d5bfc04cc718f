"""One engine: `swfflow run` compiles every workflow into a plan and runs that plan's tasks
through the local executor, with CWL's semantics decided on real values (issue 13's list)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SWFFLOW = [sys.executable, "-m", "swfflow.cli"]
HEADER = """\
cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
requirements:
  ScatterFeatureRequirement: {}
  SubworkflowFeatureRequirement: {}
  MultipleInputFeatureRequirement: {}
  InlineJavascriptRequirement: {}
  StepInputExpressionRequirement: {}
"""
# a tool that writes the basenames of its input files, one per line
NAMES_TOOL = """\
class: CommandLineTool
baseCommand: [sh, -c, 'for f; do basename "$f"; done > names.txt', sh]
inputs: {files: {type: 'File[]', inputBinding: {position: 1}}}
outputs: {names: {type: File, outputBinding: {glob: names.txt}}}
"""
COPY_TOOL = """\
class: CommandLineTool
baseCommand: [cp]
inputs: {f: {type: File, inputBinding: {position: 1}}}
arguments: [{position: 2, valueFrom: $(inputs.f.nameroot).out}]
outputs: {out: {type: File, outputBinding: {glob: "*.out"}}}
"""
ECHO_TOOL = """\
class: CommandLineTool
baseCommand: [echo]
stdout: echo.txt
inputs: {w: {type: string, inputBinding: {position: 1}}}
outputs: {out: stdout}
"""


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


# a step that reads the whole stream (a gather): the names of all its files in one job
GATHER_WORKFLOW = HEADER + f"""\
inputs:
  stf_files: {{type: 'File[]', swf:stream: true}}
outputs:
  names: {{type: File, outputSource: combine/names}}
steps:
  combine:
    in: {{files: stf_files}}
    out: [names]
    run:
{_indent(NAMES_TOOL, 6)}
"""


def _stfs(folder: Path, n: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(1, n + 1):
        path = folder / f"run000001_stf{i:04d}.stf"
        path.write_text(f"# STF run=1 seq={i}\n{i}\n")
        files.append({"class": "File", "location": str(path)})
    return files


def _run(tmp: Path, workflow: str, inputs: dict, *extra: str) -> subprocess.CompletedProcess:
    (tmp / "wf.cwl").write_text(workflow)
    (tmp / "inputs.json").write_text(json.dumps(inputs))
    return subprocess.run(SWFFLOW + ["run", "wf.cwl", "inputs.json", "--outdir", "out", "-q",
                                     "--attempts", "1", *extra],
                          cwd=tmp, capture_output=True, text=True, timeout=600)


def _ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _lines(value: dict) -> list[str]:
    return Path(value["location"].removeprefix("file://")).read_text().split()


def test_merge_flattened_of_a_stream_and_a_workflow_file_keeps_both(tmp_path):
    (tmp_path / "extra.txt").write_text("extra\n")
    workflow = HEADER + f"""\
inputs:
  stf_files: {{type: 'File[]', swf:stream: true}}
  extra: {{type: File, default: {{class: File, location: extra.txt}}}}
outputs:
  names: {{type: File, outputSource: combine/names}}
  nested:
    type: Any
    outputSource: [copy/out, extra]
    linkMerge: merge_nested
steps:
  copy:
    scatter: f
    in: {{f: stf_files}}
    out: [out]
    run:
{_indent(COPY_TOOL, 6)}
  combine:
    in:
      files: {{source: [copy/out, extra], linkMerge: merge_flattened}}
    out: [names]
    run:
{_indent(NAMES_TOOL, 6)}
"""
    out = _ok(_run(tmp_path, workflow, {"stf_files": _stfs(tmp_path / "stf", 3)}))
    assert _lines(out["names"]) == [f"run000001_stf000{i}.out" for i in (1, 2, 3)] + ["extra.txt"]
    nested = out["nested"]
    assert [len(nested[0]), nested[1]["basename"]] == [3, "extra.txt"]


def test_scatter_width_known_only_at_run_time_runs_instances_in_order(tmp_path):
    workflow = HEADER + f"""\
inputs: {{n: int}}
outputs:
  said: {{type: 'File[]', outputSource: say/out}}
steps:
  make:
    in: {{n: n}}
    out: [words]
    run:
      class: ExpressionTool
      inputs: {{n: int}}
      outputs: {{words: 'string[]'}}
      expression: '${{var w = []; for (var i = 0; i < inputs.n; i++) w.push("w" + i); return {{"words": w}};}}'
  say:
    scatter: w
    in: {{w: make/words}}
    out: [out]
    run:
{_indent(ECHO_TOOL, 6)}
"""
    out = _ok(_run(tmp_path, workflow, {"n": 4}))
    assert [_lines(f) for f in out["said"]] == [["w0"], ["w1"], ["w2"], ["w3"]]
    status = subprocess.run(SWFFLOW + ["status", "--outdir", "out", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    tasks = {t["key"]: t for t in json.loads(status.stdout)["instances"][0]["tasks"]}
    assert {f"say.{i}" for i in range(4)} <= set(tasks)
    assert all(tasks[f"say.{i}"]["phase"] == "succeeded" for i in range(4))
    assert tasks["say.2"]["name"].endswith(".say.2")


def test_scatter_of_a_scattering_sub_workflow_nests_in_order(tmp_path):
    workflow = HEADER + f"""\
inputs: {{outer: 'string[]', inner: 'string[]'}}
outputs:
  said: {{type: Any, outputSource: sub/said}}
steps:
  sub:
    scatter: a
    in: {{a: outer, bs: inner}}
    out: [said]
    run:
      class: Workflow
      inputs: {{a: string, bs: 'string[]'}}
      outputs: {{said: {{type: 'File[]', outputSource: say/out}}}}
      steps:
        say:
          scatter: w
          in: {{a: a, w: {{source: bs, valueFrom: '$(inputs.a + "-" + self)'}}}}
          out: [out]
          run:
{_indent(ECHO_TOOL, 12)}
"""
    out = _ok(_run(tmp_path, workflow, {"outer": ["a", "b"], "inner": ["1", "2", "3"]}))
    assert [[_lines(f)[0] for f in row] for row in out["said"]] == \
        [["a-1", "a-2", "a-3"], ["b-1", "b-2", "b-3"]]


def test_single_file_through_dynamic_when_and_first_non_null_is_one_file(tmp_path):
    (tmp_path / "fallback.txt").write_text("fallback\n")
    workflow = HEADER + f"""\
inputs:
  go: boolean
  fallback: {{type: File, default: {{class: File, location: fallback.txt}}}}
  word: {{type: string, default: made}}
outputs:
  picked: {{type: File, outputSource: copy/out}}
steps:
  make:
    when: $(inputs.go)
    in: {{go: go, w: word}}
    out: [out]
    run:
{_indent(ECHO_TOOL, 6)}
  copy:
    in:
      f: {{source: [make/out, fallback], pickValue: first_non_null}}
    out: [out]
    run:
{_indent(COPY_TOOL, 6)}
"""
    made = _ok(_run(tmp_path, workflow, {"go": True}))["picked"]
    assert (made["basename"], _lines(made)) == ("echo.out", ["made"])
    second = tmp_path / "second"
    second.mkdir()
    (second / "fallback.txt").write_text("fallback\n")
    fallback = _ok(_run(second, workflow, {"go": False}))["picked"]
    assert (fallback["basename"], _lines(fallback)) == ("fallback.out", ["fallback"])


def test_gather_over_more_than_200_stream_files_reads_them_all_in_one_job(tmp_path):
    workflow = GATHER_WORKFLOW
    files = _stfs(tmp_path / "stf", 205)
    out = _ok(_run(tmp_path, workflow, {"stf_files": files}))
    assert _lines(out["names"]) == [Path(f["location"]).name for f in files]


@pytest.mark.parametrize("inputs, says", [
    ({"stf_files": []}, "stream input 'stf_files' has no files"),
    ({}, "stream input 'stf_files' has no files"),
    ({"stf_files": "notalist"}, "stream input 'stf_files' must be a list of Files"),
])
def test_an_empty_or_missing_stream_is_one_clear_error_before_anything_runs(tmp_path, inputs,
                                                                              says):
    workflow = GATHER_WORKFLOW
    proc = _run(tmp_path, workflow, inputs)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / ".swfflow" / "jobs").exists()


def _sha1s(value, found=None) -> dict[str, str]:
    found = {} if found is None else found
    if isinstance(value, dict) and value.get("class") == "File":
        path = Path(value["location"].removeprefix("file://"))
        found[value["basename"]] = hashlib.sha1(path.read_bytes()).hexdigest()
    elif isinstance(value, dict):
        for item in value.values():
            _sha1s(item, found)
    elif isinstance(value, list):
        for item in value:
            _sha1s(item, found)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workflow, inputs", [
    ("examples/calib.cwl", "examples/calib-inputs.yml"),
    ("examples/templated/ecal-prompt.cwl", "examples/templated/inputs.yml"),
])
def test_example_outputs_are_byte_identical_to_cwltool(tmp_path, workflow, inputs):
    ours = subprocess.run(SWFFLOW + ["run", str(REPO / workflow), str(REPO / inputs),
                                     "--outdir", str(tmp_path / "ours"), "-q"],
                          capture_output=True, text=True, timeout=900)
    assert ours.returncode == 0, ours.stderr[-3000:]
    theirs = subprocess.run([sys.executable, "-m", "cwltool", "--no-container", "--quiet",
                             "--outdir", str(tmp_path / "theirs"), str(REPO / workflow),
                             str(REPO / inputs)],
                            capture_output=True, text=True, timeout=900)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    mine, reference = _sha1s(json.loads(ours.stdout)), _sha1s(json.loads(theirs.stdout))
    assert mine and mine == reference


@pytest.mark.slow
def test_a_run_of_205_stfs_is_byte_identical_to_cwltool(tmp_path):
    """calib.cwl over a run of 205 STFs (daqsim's format, deterministic content): every output
    — 205 QA files in STF order, the merge of all 205 reconstructions in one job, the fit, the
    checksums — has the bytes cwltool makes."""
    import random

    import yaml

    from swfflow.daqsim.files import stf_content

    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(205)
    files = []
    for seq in range(1, 206):
        path = data / f"run000777_stf{seq:04d}.stf"
        path.write_bytes(stf_content(777, seq, rng, 2048))
        files.append({"class": "File", "location": str(path)})
    inputs = tmp_path / "inputs.yml"
    inputs.write_text(yaml.safe_dump({"stf_files": files, "qa_enabled": True,
                                      "detector": "bemc"}))
    ours = subprocess.run(SWFFLOW + ["run", str(REPO / "examples/calib.cwl"), str(inputs),
                                     "--outdir", str(tmp_path / "ours"), "--jobs", "2", "-q"],
                          capture_output=True, text=True, timeout=1200)
    assert ours.returncode == 0, ours.stderr[-3000:]
    theirs = subprocess.run([sys.executable, "-m", "cwltool", "--no-container", "--quiet",
                             "--parallel", "--outdir", str(tmp_path / "theirs"),
                             str(REPO / "examples/calib.cwl"), str(inputs)],
                            capture_output=True, text=True, timeout=1200)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    mine, reference = _sha1s(json.loads(ours.stdout)), _sha1s(json.loads(theirs.stdout))
    assert sum(name.endswith(".qa.json") for name in mine) == 205  # one QA file per STF
    assert mine == reference


def test_a_type_typo_is_one_clear_error_with_its_line(tmp_path):
    workflow = HEADER + f"""\
inputs:
  flag: {{type: bolean}}
outputs:
  said: {{type: File, outputSource: say/out}}
steps:
  say:
    in: {{w: {{default: hi}}}}
    out: [out]
    run:
{_indent(ECHO_TOOL, 6)}
"""
    proc = _run(tmp_path, workflow, {"flag": True})
    assert proc.returncode == 2, proc.stderr
    assert "wf.cwl:11: input 'flag' has unknown type 'bolean' (a typo of 'boolean'?)" \
        in proc.stderr and "Traceback" not in proc.stderr


def test_a_pchain_workflow_is_unsupported_locally_with_a_pointer_to_submit(tmp_path):
    proc = subprocess.run(SWFFLOW + ["run", str(REPO / "examples/pchain/pedestal_scan.cwl"),
                                     str(REPO / "examples/pchain/pedestal_scan.yml"),
                                     "--outdir", "out", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 33, proc.stderr
    assert "runs only on PanDA" in proc.stderr and "swfflow submit" in proc.stderr
    assert not (tmp_path / "out" / ".swfflow" / "jobs").exists()
