"""The planner's mapping rules, on IR built by hand (independent of any front end)."""

from __future__ import annotations

import json

import pytest

from swfflow.errors import ConfigError, WorkflowError
from swfflow.ir import (
    Binding, Condition, EdgeMode, Link, Port, PortKind, Resources, Scatter, ScatterMethod,
    Sizing, Source, Step, StepKind, Workflow, WorkflowInput, WorkflowOutput, Container,
)
from swfflow.plan.model import RUN, Plan
from swfflow.plan.planner import compile_workflow
from swfflow.plan.profile import load_profile


def _step(name, ins, outs, *, scatter=None, when=None, **kw):
    inputs = {p: Port(p, kind) for p, (kind, _) in ins.items()}
    bindings = {p: Binding(p, sources=tuple(srcs)) for p, (_, srcs) in ins.items()}
    outputs = {p: Port(p, kind) for p, kind in outs.items()}
    return Step(name=name, kind=kw.pop("kind", StepKind.COMMAND), inputs=inputs,
                outputs=outputs, bindings=bindings, scatter=scatter, when=when, **kw)


def stf_chain() -> Workflow:
    """stream → reco (per file) → merge (gather) → fit; qa under a dynamic when."""
    wf = Workflow(name="calib", source_path="")
    wf.inputs["stf"] = WorkflowInput(Port("stf", PortKind.FILES, "File[]"), stream=True)
    wf.inputs["qa_on"] = WorkflowInput(Port("qa_on", PortKind.PARAM, "boolean"))
    wf.add_step(_step("reco", {"stf": (PortKind.FILE, [Source(None, "stf")])},
                      {"hist": PortKind.FILE},
                      scatter=Scatter(("stf",)), resources=Resources(cores=4, mem_mb=8000),
                      container=Container("docker://epic/eic_xl:25.01", required=False),
                      streaming_inputs=("stf",)))
    wf.add_step(_step("qa", {"hist": (PortKind.FILE, [Source("reco", "hist")]),
                             "on": (PortKind.PARAM, [Source(None, "qa_on")])},
                      {"report": PortKind.FILE}, scatter=Scatter(("hist",)),
                      when=Condition("$(inputs.on)", static=None, depends_on=("on",))))
    wf.add_step(_step("merge", {"hists": (PortKind.FILES, [Source("reco", "hist")])},
                      {"merged": PortKind.FILE}))
    wf.add_step(_step("fit", {"merged": (PortKind.FILE, [Source("merge", "merged")])},
                      {"constants": PortKind.FILE, "feedback": PortKind.FILE},
                      retries=5))
    wf.add_link(Link("reco", "hist", "qa", "hist", EdgeMode.STREAM))
    wf.add_link(Link("reco", "hist", "merge", "hists", EdgeMode.COMPLETE))
    wf.add_link(Link("merge", "merged", "fit", "merged", EdgeMode.COMPLETE))
    wf.outputs["constants"] = WorkflowOutput("constants", "File", (Source("fit", "constants"),))
    return wf


def test_stream_step_reads_run_dataset_until_closed():
    plan = compile_workflow(stf_chain(), {"qa_on": True})
    reco = plan.task("reco")
    assert reco.params["dsForIN"] == "group.daq:swf.${RUN}.run"
    assert reco.params["runUntilClosed"] is True
    assert reco.params["nFilesPerJob"] == 1
    assert reco.streaming and reco.release == "start"
    assert reco.params["coreCount"] == 4 and reco.params["ramCount"] == 2000
    assert reco.params["container_name"] == "docker://epic/eic_xl:25.01"
    stream = plan.dataset("group.daq:swf.${RUN}.run")
    assert stream.close == "end_run"
    assert [r.rse_expression for r in stream.rules] == ["E1_BNL_DISK", "E1_JLAB_DISK"]


def test_stream_edge_pipelines_and_complete_edge_waits():
    plan = compile_workflow(stf_chain(), {"qa_on": True})
    qa, merge, fit = plan.task("qa"), plan.task("merge"), plan.task("fit")
    assert qa.params["noWaitParent"] is True
    assert qa.params["parentTaskName"] == plan.task("reco").name
    assert qa.release == "parents_started" and qa.when == "$(inputs.on)"
    assert "noWaitParent" not in merge.params and merge.release == "parents_done"
    assert merge.params["dsForIN"] == plan.task("reco").outputs["hist"]
    assert merge.params["nFilesPerJob"] == 1000  # a gather reads its whole input in one job
    assert [p.key for p in fit.parents] == ["merge"]
    assert fit.params["maxAttempt"] == 6


def test_every_output_port_has_an_open_dataset_closed_by_its_producer():
    plan = compile_workflow(stf_chain(), {})
    outputs = [d for d in plan.datasets if d.role == "output"]
    assert {(d.producer, d.port) for d in outputs} == {
        ("reco", "hist"), ("qa", "report"), ("merge", "merged"), ("fit", "constants"),
        ("fit", "feedback")}
    assert all(d.close == "producer_done" for d in outputs)
    assert {d.producer for d in plan.datasets if d.role == "log"} == {"reco", "qa", "merge", "fit"}
    assert plan.outputs == {"constants": ["fit/constants"]}


def test_plan_json_is_deterministic_and_round_trips():
    a = compile_workflow(stf_chain(), {"qa_on": True}).to_json()
    b = compile_workflow(stf_chain(), {"qa_on": True}).to_json()
    assert a == b
    assert json.loads(a)["plan_version"] == 1
    assert Plan.from_json(a).to_json() == a


def test_run_templating_fills_every_name():
    plan = compile_workflow(stf_chain(), {})
    run = plan.instantiate(100123)
    text = run.to_json()
    assert RUN not in text and run.run == "100123"
    assert run.task("reco").name == "swf.calib.100123.reco"
    assert run.task("reco").params["dsForIN"] == "group.daq:swf.100123.run"
    with pytest.raises(ValueError):
        run.instantiate(5)
    assert compile_workflow(stf_chain(), {}, run=7).task("fit").name == "swf.calib.7.fit"


def test_static_false_when_skips_the_step_and_its_datasets():
    wf = stf_chain()
    wf.step("qa").when = Condition("$(inputs.on)", static=False)
    plan = compile_workflow(wf, {})
    assert "qa" in plan.skipped and all(t.step != "qa" for t in plan.tasks)
    assert all(d.producer != "qa" for d in plan.datasets)


def test_parameter_scatter_makes_one_task_per_element():
    wf = Workflow(name="scan")
    wf.inputs["thr"] = WorkflowInput(Port("thr", PortKind.PARAM, "int[]"))
    wf.inputs["mode"] = WorkflowInput(Port("mode", PortKind.PARAM, "string[]"))
    wf.add_step(_step("sim", {"thr": (PortKind.PARAM, [Source(None, "thr")]),
                              "mode": (PortKind.PARAM, [Source(None, "mode")])},
                      {"out": PortKind.FILE},
                      scatter=Scatter(("thr", "mode"), ScatterMethod.FLAT_CROSSPRODUCT),
                      sizing=Sizing(events_per_job=500, n_jobs=4)))
    plan = compile_workflow(wf, {"thr": [1, 2], "mode": ["a", "b", "c"]})
    assert [t.key for t in plan.tasks] == ["sim.0.0", "sim.0.1", "sim.0.2", "sim.1.0",
                                           "sim.1.1", "sim.1.2"]
    t = plan.task("sim.1.2")
    assert t.payload["job"] == {"thr": 2, "mode": "c"}
    assert t.name.endswith(".sim.1.2")
    assert t.params["noInput"] is True and t.params["nEventsPerJob"] == 500
    assert t.params["nEvents"] == 2000
    with pytest.raises(WorkflowError, match="not a list"):
        compile_workflow(wf, {"thr": 3, "mode": ["a"]})
    wf.step("sim").scatter = Scatter(("thr", "mode"), ScatterMethod.DOTPRODUCT)
    with pytest.raises(WorkflowError, match="different lengths"):
        compile_workflow(wf, {"thr": [1, 2], "mode": ["a", "b", "c"]})


def test_subworkflow_leaves_are_tasks_with_qualified_names():
    inner = Workflow(name="validate")
    inner.inputs["files"] = WorkflowInput(Port("files", PortKind.FILES, "File[]"))
    inner.add_step(_step("checksum", {"f": (PortKind.FILES, [Source(None, "files")])},
                         {"report": PortKind.FILE}))
    inner.outputs["report"] = WorkflowOutput("report", "File", (Source("checksum", "report"),))
    wf = stf_chain()
    wf.add_step(_step("validate", {"files": (PortKind.FILES, [Source("reco", "hist")])},
                      {"report": PortKind.FILE}, kind=StepKind.WORKFLOW, subworkflow=inner))
    wf.add_link(Link("reco", "hist", "validate", "files", EdgeMode.COMPLETE))
    wf.outputs["report"] = WorkflowOutput("report", "File", (Source("validate", "report"),))
    plan = compile_workflow(wf, {})
    task = plan.task("validate/checksum")
    assert task.name == "swf.calib.${RUN}.validate.checksum"
    assert task.params["dsForIN"] == plan.task("reco").outputs["hist"]
    assert [p.key for p in task.parents] == ["reco"] and task.release == "parents_done"
    assert plan.outputs["report"] == ["validate/checksum/report"]


def test_profile_overrides_names_and_sites(tmp_path):
    prof = tmp_path / "jlab.yaml"
    prof.write_text("site: JLAB_PanDA\nuser: alice\nscopes: {output: user.alice}\n"
                    "rucio: {stream_rules: [{rse_expression: E1_JLAB_DISK}]}\n")
    plan = compile_workflow(stf_chain(), {}, load_profile(prof))
    reco = plan.task("reco")
    assert reco.params["site"] == "JLAB_PanDA" and reco.name.startswith("alice.calib.")
    assert reco.outputs["hist"].startswith("user.alice:alice.calib.")
    assert [r.rse_expression for r in plan.dataset(reco.params["dsForIN"]).rules] == \
        ["E1_JLAB_DISK"]


@pytest.mark.parametrize("text, message", [
    ("site: [1, 2]\n", "site"),
    ("defaults: {cores: 0}\n", "defaults.cores"),
    ("- a\n", "mapping"),
    ("bogus_key: 1\n", "bogus_key"),
])
def test_bad_profile_is_a_clear_config_error(tmp_path, text, message):
    prof = tmp_path / "bad.yaml"
    prof.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_profile(prof)
    assert str(prof) in str(info.value)
