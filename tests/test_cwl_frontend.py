"""The CWL front end: CWL v1.2 semantics -> IR, swfflow extensions, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swfflow import ir
from swfflow.errors import SwfflowError, UnsupportedFeature, WorkflowError
from swfflow.frontends import cwl
from swfflow.frontends.cwl_loader import DocumentCache

DATA = Path(__file__).parent / "data" / "cwl"
REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "examples"
CONFORMANCE = Path(__file__).parents[1].parent / "shared" / "cwl-v1.2"
STREAM, COMPLETE = ir.EdgeMode.STREAM, ir.EdgeMode.COMPLETE


def load(name: str, inputs: dict | None = None, **kwargs) -> ir.Workflow:
    return cwl.load_workflow(DATA / name, inputs, **kwargs)


def link_modes(workflow: ir.Workflow) -> dict[tuple[str, str], ir.EdgeMode]:
    return {(lk.src_step, lk.dst_step): lk.mode for lk in workflow.links()}


# --- structure ---------------------------------------------------------------------------
def test_scatter_methods():
    wf = load("scatter_methods.cwl")
    methods = {s.name: s.scatter for s in wf.steps}
    assert methods["dot"] == ir.Scatter(("msg", "tag"), ir.ScatterMethod.DOTPRODUCT)
    assert methods["flat"].method is ir.ScatterMethod.FLAT_CROSSPRODUCT
    assert methods["nested"].method is ir.ScatterMethod.NESTED_CROSSPRODUCT
    assert methods["single"] == ir.Scatter(("msg",), ir.ScatterMethod.DOTPRODUCT)


def test_nested_scatter_keeps_both_levels():
    wf = load("nested_scatter.cwl")
    outer = wf.step("per_group")
    assert outer.kind is ir.StepKind.WORKFLOW and outer.scatter.ports == ("msgs",)
    inner = outer.subworkflow.step("each")
    assert inner.scatter.ports == ("msg",)
    [leaf] = list(ir.iter_leaves(wf))
    assert leaf.path == "per_group/each"
    assert leaf.enclosing_scatter == (outer.scatter,)
    assert wf.inputs["groups"].port.type == "string[][]"


def test_subworkflows_of_depth_two_and_reuse_of_one_file():
    wf = load("depth/top.cwl")
    paths = [leaf.path for leaf in ir.iter_leaves(wf)]
    assert paths == ["first/level2/leaf", "again/level2/leaf"]
    flat = ir.qualified_graph(wf)
    assert list(flat.edges) == [("first/level2/leaf", "again/level2/leaf")]
    assert wf.step("first").subworkflow.step("level2").subworkflow.step("leaf").kind \
        is ir.StepKind.COMMAND


def test_cache_parses_each_file_once():
    cache = DocumentCache()
    cwl.load_workflow(DATA / "depth" / "top.cwl", cache=cache)
    # top, level1 (used twice), level2 (reached twice), plain tool (reached twice)
    assert cache.file_loads == 4
    cwl.load_workflow(DATA / "depth" / "top.cwl", cache=cache)
    assert cache.file_loads == 4  # a second compile costs no parse at all


def test_packed_graph_document_through_the_cache():
    cache = DocumentCache()
    wf = cwl.load_workflow(DATA / "packed.cwl", cache=cache)
    assert cache.file_loads == 1  # every #member comes from the one parse
    assert [s.name for s in wf.steps] == ["s1", "s2"]
    assert wf.step("s1").tool_uri.endswith("packed.cwl#tool")
    assert wf.step("s1").tool["class"] == "CommandLineTool"
    assert wf.step("s2").subworkflow.step("t").tool_uri.endswith("#tool")
    assert link_modes(wf) == {("s1", "s2"): STREAM}  # both scattered: per-file chain


def test_fragment_selects_a_graph_member():
    wf = cwl.load_workflow(f"{DATA / 'packed.cwl'}#sub")
    assert [s.name for s in wf.steps] == ["t"]


def test_bare_tool_becomes_a_one_step_workflow():
    wf = load("tools/echo.cwl")
    [step] = wf.steps
    assert step.name == "echo" and step.kind is ir.StepKind.COMMAND
    assert set(wf.inputs) == {"msg", "tag"} and wf.inputs["tag"].port.type == "string?"
    assert step.command == ("echo", "--tag", "{param:tag}", "{param:msg}", ">", "echo.txt")
    assert wf.outputs["out"].sources == (ir.Source("echo", "out"),)


def test_expression_tool_and_ports():
    wf = load("values.cwl")
    count = wf.step("nested")
    assert count.kind is ir.StepKind.EXPRESSION
    assert count.inputs["files"].kind is ir.PortKind.FILES
    assert count.outputs["n"].kind is ir.PortKind.PARAM
    assert wf.inputs["a"].port.kind is ir.PortKind.FILE


# --- values, conditions --------------------------------------------------------------------
def test_when_static_true_false_and_dynamic():
    on = load("conditions.cwl", {"flag": True})
    off = load("conditions.cwl", {"flag": False, "threshold": 9})
    assert on.step("fast").when == ir.Condition("$(inputs.flag)", True, ("flag",))
    assert off.step("fast").when.static is False
    assert on.step("slow").when.static is False  # default threshold 3 is not > 5
    assert off.step("slow").when.static is True
    after = on.step("after").when
    assert after.static is None and after.depends_on == ("f",)  # reads upstream outputs


def test_when_without_job_is_dynamic_even_with_defaults():
    wf = load("conditions.cwl")  # a job may still override the default
    assert wf.step("slow").when == ir.Condition("$(inputs.threshold > 5)", None, ("threshold",))


def test_pick_value_on_outputs_and_inputs():
    wf = load("conditions.cwl", {"flag": True})
    assert wf.outputs["chosen"].pick_value == "first_non_null"
    assert wf.outputs["chosen"].sources == (ir.Source("fast", "out"), ir.Source("slow", "out"))
    binding = wf.step("after").bindings["f"]
    assert binding.pick_value == "the_only_non_null"
    assert {(lk.src_step, lk.dst_port) for lk in wf.links_into("after")} == {("fast", "f"), ("slow", "f")}


def test_value_from_evaluated_when_inputs_are_known():
    wf = load("values.cwl", {"number": 7, "a": {"class": "File", "location": "a.txt"}, "b": []})
    label = wf.step("label").bindings["msg"]
    assert (label.value_from, label.default, label.sources) == (None, "run-7", ())
    dynamic = wf.step("upstream_expr").bindings["msg"]
    assert dynamic.value_from == "$(self.basename)" and dynamic.sources == (ir.Source("label", "out"),)


def test_value_from_stays_dynamic_without_a_job():
    wf = load("values.cwl")
    assert wf.step("label").bindings["msg"].value_from == "$(inputs.tag + '-' + self)"


def test_link_merge_and_defaults():
    wf = load("values.cwl")
    flat = wf.step("flat").bindings["files"]
    assert flat.link_merge == "merge_flattened"
    assert flat.sources == (ir.Source(None, "a"), ir.Source(None, "b"), ir.Source("label", "out"))
    assert wf.step("nested").bindings["files"].link_merge == "merge_nested"
    defaults = wf.step("defaults").bindings
    assert (defaults["msg"].default, defaults["msg"].has_default) == ("fallback", True)
    assert defaults["tag"].sources == (ir.Source(None, "prefix"),) and defaults["tag"].default == "unused"
    assert wf.inputs["prefix"].port.default == "run"


def test_js_error_on_known_values_is_a_clean_error():
    with pytest.raises(WorkflowError) as err:
        load("bad/when_not_boolean.cwl", {"n": 3})
    assert "not a boolean" in err.value.what and err.value.where.endswith("when_not_boolean.cwl:6")


# --- requirements -------------------------------------------------------------------------
def test_resources_and_container_from_requirements_and_hints():
    wf = load("scatter_methods.cwl")
    step = wf.step("dot")
    assert step.resources == ir.Resources(cores=2, mem_mb=1024, disk_mb=150, walltime_s=600)
    assert step.container == ir.Container("alpine:3", required=False)  # a hint
    cat = load("values.cwl").step("flat")
    assert cat.container == ir.Container("debian:12", required=True)  # a requirement
    assert {"class": "DockerRequirement", "dockerPull": "debian:12"} in cat.requirements


def test_expression_on_partly_known_file_stays_dynamic_but_invalid_one_fails(tmp_path):
    # A File named by location has no size before staging: coresMin reading it is decided per
    # job (None here), for a null step input falling back to the tool default too.
    tool = tmp_path / "tool.cwl"
    tool.write_text("""cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
  ResourceRequirement: {coresMin: $(inputs.f.size), ramMin: "${ return inputs.f.size; }",
                        tmpdirMin: "$(inputs.n * 2)"}
inputs:
  f: {type: File, default: {class: File, location: data.txt}}
  n: {type: int, default: 3}
outputs: []
baseCommand: "true"
""")
    workflow = tmp_path / "wf.cwl"
    workflow.write_text("""cwlVersion: v1.2
class: Workflow
inputs: {maybe: File?}
outputs: []
steps:
  given: {run: tool.cwl, in: {f: maybe}, out: []}
""")
    step = cwl.load_workflow(workflow, {}).step("given")
    assert step.resources == ir.Resources(cores=None, mem_mb=None, disk_mb=6)
    tool.write_text(tool.read_text().replace("return inputs.f.size;", "return inputs.f.size +;"))
    with pytest.raises(WorkflowError) as err:  # a syntax error is the user's, File or not
        cwl.load_workflow(workflow, {})
    assert "SyntaxError" in err.value.what


def test_requirement_inheritance_most_specific_wins():
    wf = load("inherit.cwl")
    inherited = wf.step("from_workflow")
    assert inherited.resources == ir.Resources(cores=8, mem_mb=512, walltime_s=60)
    assert inherited.container == ir.Container("wf/image:1", required=False)
    step = wf.step("step_overrides")
    assert step.resources.cores == 4 and step.resources.mem_mb == 2048
    assert step.container == ir.Container("step/image:2", required=True)  # requirement beats hint
    assert not any(h["class"] == "DockerRequirement" for h in step.hints)
    tool = wf.step("tool_overrides")  # the tool's own ResourceRequirement beats the step's
    assert tool.resources == ir.Resources(cores=2, mem_mb=1024, disk_mb=150, walltime_s=600)
    leaf = wf.step("inner").subworkflow.step("level2").subworkflow.step("leaf")
    assert leaf.container == ir.Container("inner/image:3", required=False)
    assert leaf.resources.cores == 8  # from two levels up


# --- swfflow extensions -------------------------------------------------------------------
def test_stream_input_and_edge_mode_rule():
    wf = load("stream.cwl")
    assert wf.inputs["stfs"].stream and not wf.inputs["calib"].stream
    assert wf.stream_inputs() == ["stfs"]
    assert wf.step("reco").streaming_inputs == ("f",)
    assert wf.step("uses_calib").streaming_inputs == ()
    assert wf.step("whole_run").streaming_inputs == ()  # swf:mode complete on a stream read
    assert link_modes(wf) == {
        ("reco", "qa"): STREAM,  # scattered consumer of a scattered producer: per file
        ("reco", "qa_after_close"): COMPLETE,  # explicit swf:mode
        ("reco", "merge"): COMPLETE,  # a gather
        ("reco", "eager_merge"): STREAM,  # explicit swf:mode
    }


def test_sizing_and_retry_hints():
    step = load("stream.cwl").step("reco")
    assert step.sizing == ir.Sizing(files_per_job=2, max_files_per_job=10, gb_per_job=4.5, n_jobs=7)
    assert step.retries == 3
    assert load("stream.cwl").step("qa").retries is None


def test_extensions_pass_cwltool_validation():
    result = subprocess.run([sys.executable, "-m", "cwltool", "--validate", str(DATA / "stream.cwl")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is valid CWL" in result.stdout


def test_strict_mode_runs_cwltool_validation():
    wf = load("stream.cwl", strict=True)
    assert wf.step("reco").sizing.files_per_job == 2
    with pytest.raises(WorkflowError) as err:  # File -> string link: only cwltool's checker sees it
        cwl.load_workflow(DATA / "bad" / "strict_type_mismatch.cwl", strict=True)
    assert "cwltool validation failed" in err.value.what
    cwl.load_workflow(DATA / "bad" / "strict_type_mismatch.cwl")  # the fast path does not type-check


# --- the example ----------------------------------------------------------------------------
def test_calib_example_compiles_to_the_expected_graph():
    wf = cwl.load_workflow(EXAMPLES / "calib.cwl", cwl.load_inputs(EXAMPLES / "calib-inputs.yml"))
    assert [s.name for s in wf.steps] == ["reconstruct", "fast_qa", "merge", "fit", "validate"]
    assert wf.stream_inputs() == ["stf_files"]
    assert wf.step("reconstruct").streaming_inputs == ("stf",)
    assert wf.step("fast_qa").when.static is True
    modes = link_modes(wf)
    assert modes[("reconstruct", "fast_qa")] is STREAM
    assert modes[("reconstruct", "merge")] is COMPLETE and modes[("merge", "fit")] is COMPLETE
    assert [leaf.path for leaf in ir.iter_leaves(wf)][-2:] == ["validate/checksum", "validate/integrity"]
    fit = wf.step("fit")
    assert fit.resources == ir.Resources(cores=2, mem_mb=2000, disk_mb=128, walltime_s=1200)
    assert fit.container == ir.Container("python:3.11-slim", required=False)
    assert fit.tool["class"] == "CommandLineTool" and fit.tool_uri.endswith("examples/tools/fit.cwl")
    off = cwl.load_workflow(EXAMPLES / "calib.cwl", {"qa_enabled": False})
    assert off.step("fast_qa").when.static is False


def test_load_inputs_resolves_file_locations(tmp_path):
    job = tmp_path / "sub" / "job.yml"
    job.parent.mkdir()
    job.write_text("files:\n  - {class: File, path: ../a.stf}\n  - {class: File, location: /x/b.stf}\nn: 3\n")
    data = cwl.load_inputs(job)
    assert data["files"][0]["location"] == (tmp_path / "a.stf").as_uri()
    assert data["files"][0]["basename"] == "a.stf"
    assert data["files"][1]["location"] == "file:///x/b.stf" and data["n"] == 3


def test_locations_are_uri_references_and_colons_are_fine_in_file_names(tmp_path):
    # a location is percent-encoded (A%3Ab is the file A:b); a path is a plain file name
    job = tmp_path / "job:1.yml"
    job.write_text("a: {class: File, location: 'A%3Ab'}\n"
                   "b: {class: File, location: 'item%20%231.txt'}\n"
                   "c: {class: File, path: 'run #2.stf'}\n"
                   "d: {class: File, path: 'file:///x/y.stf'}\n")  # cwl-utils' form of a path
    data = cwl.load_inputs(job)
    assert [data[k]["basename"] for k in "abc"] == ["A:b", "item #1.txt", "run #2.stf"]
    assert data["a"]["location"] == tmp_path.as_uri() + "/A%3Ab"
    assert data["c"]["location"] == (tmp_path / "run #2.stf").as_uri()
    assert data["d"]["location"] == "file:///x/y.stf"
    tool = tmp_path / "colon:tool.cwl"  # a bare tool is wrapped in a step named after its file
    tool.write_text("cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: 'true'\n"
                    "inputs: {a: File}\noutputs: {log: stdout}\nstdout: 're:sult'\n")
    wf = cwl.load_workflow(tool, {"a": data["a"]})
    assert [s.name for s in wf.steps] == ["colon_tool"]
    assert [str(src) for src in wf.outputs["log"].sources] == ["colon_tool/log"]


@pytest.mark.slow
def test_calib_example_runs_end_to_end_with_cwltool(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cwltool", "--no-container", "--outdir", str(tmp_path / "out"),
         str(EXAMPLES / "calib.cwl"), str(EXAMPLES / "calib-inputs.yml")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout)
    assert len(outputs["qa_reports"]) == 4
    feedback = json.loads((tmp_path / "out" / "feedback.json").read_text())
    assert feedback["flagged_channels"] == ["7"] and feedback["n_stf"] == 4  # channel 7 is 35% off
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert report["valid"] and report["checksummed_files"] == 3
    import zlib
    constants = (tmp_path / "out" / "constants.json").read_bytes()
    checksums = (tmp_path / "out" / "checksums.txt").read_text()
    assert f"{zlib.adler32(constants) & 0xFFFFFFFF:08x}  constants.json" in checksums


# --- bad input: one clear error each -----------------------------------------------------
BAD_CASES = [
    ("malformed_yaml.cwl", WorkflowError, "malformed YAML", "malformed_yaml.cwl:4"),
    ("schema_invalid.cwl", WorkflowError, "invalid CWL document", "schema_invalid.cwl:10"),
    ("missing_run.cwl", WorkflowError, "does_not_exist.cwl: no such file", "missing_run.cwl:7"),
    ("unknown_source.cwl", WorkflowError, "'nonexistent_input'", "unknown_source.cwl:6"),
    ("unknown_output.cwl", WorkflowError, "output 'histogram'", "unknown_output.cwl:6"),
    ("cycle.cwl", WorkflowError, "cycle: ping -> pong -> ping", "cycle.cwl:6"),
    ("operation.cwl", UnsupportedFeature, "abstract Operation", "operation.cwl:6"),
    ("unsupported_requirement.cwl", UnsupportedFeature, "cwltool:MPIRequirement", "unsupported_requirement.cwl:4"),
    ("bad_mode.cwl", WorkflowError, "swf:mode 'sometimes'", "bad_mode.cwl:11"),
    ("stream_not_files.cwl", WorkflowError, "marked swf:stream", "stream_not_files.cwl:5"),
    ("pchain_unknown_opt.cwl", WorkflowError, "opt_walltime", "pchain_unknown_opt.cwl:6"),
    ("bad_scatter.cwl", WorkflowError, "needs a scatterMethod", "bad_scatter.cwl:7"),
]


@pytest.mark.parametrize(("name", "error", "text", "where"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_one_clear_error(name, error, text, where):
    with pytest.raises(error) as err:
        load(f"bad/{name}", {})
    assert text in err.value.what
    assert err.value.where and err.value.where.endswith(where)
    assert err.value.hint
    assert err.value.exit_code == (33 if error is UnsupportedFeature else 2)


def test_bad_input_through_the_cli_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "swfflow.cli", "compile",
                             str(DATA / "bad" / "cycle.cwl"), "--check"],
                            capture_output=True, text=True, timeout=120)
    if "No such command" in result.stderr or result.returncode == 0 and not result.stdout:
        pytest.fail(f"compile CLI missing: {result.stderr}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "cycle" in result.stderr + result.stdout


# --- the official conformance workflows ----------------------------------------------------
@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="CWL v1.2 conformance suite not present")
def test_conformance_workflows_load_or_fail_cleanly():
    files = sorted((CONFORMANCE / "tests").rglob("*wf*.cwl"))
    assert len(files) > 50
    loaded, clean_errors = 0, 0
    for path in files:
        try:
            wf = cwl.load_workflow(path)
        except SwfflowError as exc:
            assert exc.where, f"{path}: {exc}"
            clean_errors += 1
            continue
        loaded += 1
        assert wf.graph.number_of_nodes() >= 0
    assert loaded >= 90, (loaded, clean_errors)


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="CWL v1.2 conformance suite not present")
def test_conformance_scatter_and_conditionals_semantics():
    tests = CONFORMANCE / "tests"
    wf = cwl.load_workflow(tests / "scatter-wf4.cwl")
    assert wf.step("step1").scatter == ir.Scatter(("echo_in1", "echo_in2"), ir.ScatterMethod.DOTPRODUCT)
    cond = cwl.load_workflow(tests / "conditionals" / "cond-wf-001.cwl", {"val": 1})
    assert cond.step("step1").when.static is False
    cond = cwl.load_workflow(tests / "conditionals" / "cond-wf-001.cwl", {"val": 3})
    assert cond.step("step1").when.static is True
    count = cwl.load_workflow(tests / "count-lines1-wf.cwl")
    assert [(lk.src_step, lk.dst_step) for lk in count.links()] == [("step1", "step2")]
