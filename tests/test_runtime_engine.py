"""The run-time CWL engine (swfflow.runtime.engine) on real files, through cwltool's leaf runner."""

from __future__ import annotations

import pytest

from swfflow.errors import RunFailed
from swfflow.frontends import cwl
from swfflow.run_plan import run_workflow_file

# The workflow input loads its contents; the step reads them in a valueFrom and in a `when`.
LOAD_CONTENTS_WORKFLOW = """cwlVersion: v1.2
class: Workflow
requirements:
  StepInputExpressionRequirement: {}
  InlineJavascriptRequirement: {}
inputs:
  number_file: {type: File, loadContents: true}
  bound_file: {type: File, inputBinding: {loadContents: true}}
  plain_file: File
outputs:
  doubled: {type: int?, outputSource: double/result}
steps:
  double:
    when: $(inputs.other.contents.trim() == "go")
    run:
      class: ExpressionTool
      inputs: {n: int, other: File, plain: File}
      outputs: {result: int}
      expression: '${ return {"result": 2 * inputs.n + ("contents" in inputs.plain ? 1000 : 0)}; }'
    in:
      n: {source: number_file, valueFrom: $(parseInt(self.contents))}
      other: bound_file
      plain: plain_file
    out: [result]
"""


def test_workflow_input_load_contents_reaches_value_from_and_when(tmp_path):
    workflow = tmp_path / "wf.cwl"
    workflow.write_text(LOAD_CONTENTS_WORKFLOW)
    for name, text in (("n.txt", "21\n"), ("go.txt", "go\n"), ("plain.txt", "7\n")):
        (tmp_path / name).write_text(text)
    inputs = {"number_file": {"class": "File", "location": (tmp_path / "n.txt").as_uri()},
              "bound_file": {"class": "File", "location": (tmp_path / "go.txt").as_uri()},
              "plain_file": {"class": "File", "location": (tmp_path / "plain.txt").as_uri()}}
    ports = {n: wi.port.load_contents for n, wi in cwl.load_workflow(workflow, inputs).inputs.items()}
    assert ports == {"number_file": True, "bound_file": True, "plain_file": False}
    outputs = run_workflow_file(workflow, inputs, tmp_path / "out", no_container=True)
    assert outputs == {"doubled": 42}  # contents loaded for both forms, not for the plain File
    (tmp_path / "go.txt").write_text("stop\n")
    assert run_workflow_file(workflow, inputs, tmp_path / "out2", no_container=True) \
        == {"doubled": None}


NESTED_RECORDS_TOOL = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  SchemaDefRequirement:
    types:
      - {name: detector, type: record, fields: [{name: system, type: string}]}
      - {name: channel, type: record, fields: [{name: detector, type: detector},
                                                {name: number, type: int}]}
inputs:
  where: channel
outputs:
  label: string
baseCommand: echo
stdout: cwl.output.json
arguments: ['{"label": "$(inputs.where.detector.system)-$(inputs.where.number)"}']
"""


def test_tool_with_records_of_records_from_its_own_schema_def(tmp_path):
    # The leaf runs under a new id: its type names must still find the tool's own types.
    tool = tmp_path / "label.cwl"
    tool.write_text(NESTED_RECORDS_TOOL)
    job = {"where": {"detector": {"system": "dirc"}, "number": 7}}
    assert run_workflow_file(tool, job, tmp_path / "out", no_container=True) == {"label": "dirc-7"}


def test_floats_reach_the_command_line_as_the_document_spells_them(tmp_path):
    # CWL: very big and very small floats are written in decimal notation, not 1e-05
    tool = tmp_path / "echo.cwl"
    tool.write_text("""cwlVersion: v1.2
class: CommandLineTool
baseCommand: [echo, -n]
inputs:
  small: {type: float, default: 0.00001, inputBinding: {position: 1}}
  big: {type: float, default: 1.23e5, inputBinding: {position: 2}}
outputs: {line: stdout}
stdout: line.txt
""")
    outputs = run_workflow_file(tool, {}, tmp_path / "out", no_container=True)
    assert (tmp_path / "out" / "line.txt").read_text() == "0.00001 123000"
    assert outputs["line"]["basename"] == "line.txt"


FORMAT_TOOL = """$namespaces: {edam: "http://edamontology.org/"}
cwlVersion: v1.2
class: CommandLineTool
inputs:
  table: {type: File, format: "edam:format_3475", inputBinding: {}}
outputs: {copy: stdout}
baseCommand: cat
stdout: copy.tsv
"""


def test_job_file_formats_with_a_namespace_prefix_are_checked_as_full_iris(tmp_path):
    tool = tmp_path / "cat.cwl"
    tool.write_text(FORMAT_TOOL)
    (tmp_path / "t.tsv").write_text("a\tb\n")
    table = {"class": "File", "location": (tmp_path / "t.tsv").as_uri()}
    outputs = run_workflow_file(tool, {"table": {**table, "format": "edam:format_3475"}},
                                tmp_path / "out", no_container=True)
    assert outputs["copy"]["size"] == 4
    with pytest.raises(RunFailed) as err:  # another format is still refused
        run_workflow_file(tool, {"table": {**table, "format": "edam:format_1929"}},
                          tmp_path / "out2", no_container=True)
    assert "incompatible format" in err.value.hint
