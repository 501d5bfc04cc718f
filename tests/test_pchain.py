"""PanDA pchain dialect: parse, and compile to the task parameters pchain itself would build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swfflow import ir
from swfflow.errors import UnsupportedFeature, WorkflowError
from swfflow.frontends import cwl
from swfflow.frontends.cwl_pchain import parse_when
from swfflow.plan.pchain import output_types, pchain_task_params

EXAMPLE = Path(__file__).parents[1] / "examples" / "pchain"
OUT_DS = "user.expert.scan"
PROFILE = {"vo": "eic", "prodSourceLabel": "user", "osInfo": "swfflow-test"}


@pytest.fixture(scope="module")
def compiled():
    wf = cwl.load_workflow(EXAMPLE / "pedestal_scan.cwl", cwl.load_inputs(EXAMPLE / "pedestal_scan.yml"))
    params: dict[str, dict] = {}
    for serial, step in enumerate(wf.steps):  # topological: parents first, as pchain resolves
        upstream = {src: params[src.split("/")[0]]
                    for srcs in step.native.get("sources", {}).values() for src in srcs}
        params[step.name] = pchain_task_params(
            step, task_name=f"{OUT_DS}_{serial:03d}_{step.name}", out_ds=OUT_DS,
            profile=PROFILE, upstream=upstream, is_workflow_output=step.name in ("combine", "alarm"))
    return wf, params


def _items(params: dict, param_type: str) -> list[dict]:
    return [i for i in params["jobParameters"] if i.get("param_type") == param_type]


def test_pchain_steps_in_the_ir(compiled):
    wf, _ = compiled
    assert cwl.is_pchain(wf) and cwl.is_pchain(EXAMPLE / "pedestal_scan.cwl")
    assert not cwl.is_pchain(Path(__file__).parents[1] / "examples" / "calib.cwl")
    kinds = {s.name: s.kind for s in wf.steps}
    assert set(kinds.values()) == {ir.StepKind.PRUN}
    gains = wf.step("gains")
    assert gains.native["opt_containerImage"] == "docker://python:3.11-slim"
    assert gains.native["sources"] == {"opt_inDS": ["seeds/outDS"]}
    assert wf.step("pedestals").native["opt_inDS"] == "user.expert.run000123.noise/"  # from the job
    combine = wf.step("combine")
    assert combine.when == ir.Condition("$(self.opt_inDS && self.opt_secondaryDSs)", None,
                                        ("opt_inDS", "opt_secondaryDSs"))
    assert combine.native["when"] == {"and": [{"ref": "opt_inDS"}, {"ref": "opt_secondaryDSs"}]}
    assert {(lk.src_step, lk.dst_step) for lk in wf.links()} == {
        ("seeds", "gains"), ("gains", "combine"), ("pedestals", "combine"), ("gains", "alarm")}


def test_task_without_input(compiled):
    _, params = compiled
    seeds = params["seeds"]
    assert seeds["taskName"] == "user.expert.scan_001_seeds"
    assert seeds["cliParams"] == ("prun --outputs seed.txt --nJobs 3 --exec 'echo %RNDM:100 > seed.txt' "
                                  "--outDS user.expert.scan_001_seeds")
    assert seeds["vo"] == "eic" and seeds["osInfo"] == "swfflow-test"
    assert seeds["noEmail"] is True and "dsForIN" not in seeds
    assert "container_name" not in seeds and "multiStepExec" not in seeds  # no image given
    assert [o["dataset"] for o in _items(seeds, "output")] == ["user.expert.scan_001_seeds_seed.txt/"]
    assert output_types(seeds) == ["seed.txt"]
    assert seeds["log"]["dataset"] == "user.expert.scan_001_seeds.log/"


def test_input_dataset_named_after_the_parent_output(compiled):
    _, params = compiled
    gains = params["gains"]
    assert gains["dsForIN"] == "user.expert.scan_001_seeds_seed.txt/"
    assert gains["container_name"] == "docker://python:3.11-slim"
    assert gains["nGBPerJob"] == 5
    assert "--inDS user.expert.scan_001_seeds_seed.txt/ --notExpandInDS --notExpandSecDSs" in gains["cliParams"]
    [inp] = _items(gains, "input")
    assert inp["dataset"] == "user.expert.scan_001_seeds_seed.txt/"
    # the exec string travels URL-quoted, after the template's header items
    values = [i["value"] for i in gains["jobParameters"] if i["type"] == "constant"]
    assert values[:2] == ['-j "" --sourceURL ${SURL}', "-r ."]
    assert "python3%20gain.py%20--seed%20%25IN%20%3E%20gain.json" in values
    assert "__dummy_exec_str__" not in json.dumps(gains)


def test_workflow_input_dataset_and_splitting(compiled):
    _, params = compiled
    pedestals = params["pedestals"]
    assert pedestals["dsForIN"] == "user.expert.run000123.noise/"
    [inp] = _items(pedestals, "input")
    assert inp["dataset"] == "user.expert.run000123.noise/"


def test_secondary_datasets_and_workflow_outputs(compiled):
    _, params = compiled
    combine = params["combine"]
    assert "--secondaryDSs IN2:1:user.expert.scan_000_pedestals_ped.json/" in combine["cliParams"]
    datasets = [i["dataset"] for i in _items(combine, "input")]
    assert datasets == ["user.expert.scan_002_gains_gain.json/", "user.expert.scan_000_pedestals_ped.json/"]
    assert "noEmail" not in combine  # a workflow output notifies the user
    assert params["alarm"]["dsForIN"] == "user.expert.scan_002_gains_gain.json/"


def test_task_params_are_deterministic(compiled):
    wf, params = compiled
    again = pchain_task_params(wf.step("gains"), task_name="user.expert.scan_002_gains", out_ds=OUT_DS,
                               profile=PROFILE, upstream={"seeds/outDS": params["seeds"]})
    assert json.dumps(again, sort_keys=True) == json.dumps(params["gains"], sort_keys=True)


def test_junction_gets_results_json_and_instant_queue(tmp_path):
    step = ir.Step(name="decide", kind=ir.StepKind.JUNCTION,
                   native={"type": "junction", "opt_exec": "python3 decide.py", "opt_args": "--outputs a.txt"})
    params = pchain_task_params(step, task_name="user.expert.loop_000_decide", out_ds="user.expert.loop",
                                profile=PROFILE)
    assert params["runOnInstant"] is True
    assert "--outputs=a.txt,results.json" in params["cliParams"]
    assert sorted(output_types(params)) == ["a.txt", "results.json"]


def test_phpo_step_uses_phpo_parser(tmp_path):
    (tmp_path / "conf.json").write_text(json.dumps({
        "evaluationContainer": "docker://eic/hpo:1", "evaluationExec": "python3 eval.py",
        "searchSpaceFile": "space.json", "nParallelEvaluation": 2, "maxPoints": 8}))
    (tmp_path / "space.json").write_text('{"x": {"method": "uniform", "dimension": {"low": 0, "high": 1}}}')
    step = ir.Step(name="tune", kind=ir.StepKind.PHPO, where=f"{tmp_path / 'wf.cwl'}:5",
                   native={"type": "phpo", "opt_args": "--loadJson conf.json --steeringExec steer.py"})
    params = pchain_task_params(step, task_name="user.expert.hpo_000_tune", out_ds="user.expert.hpo",
                                profile=PROFILE)
    assert params["hpoWorkflow"] is True
    assert params["container_name"] == "docker://eic/hpo:1"
    assert params["hpoRequestData"]["max_points"] == 8


def test_bad_prun_options_are_a_workflow_error():
    step = ir.Step(name="broken", kind=ir.StepKind.PRUN,
                   native={"type": "prun", "opt_exec": "true", "opt_args": "--noSuchOption 3"})
    with pytest.raises(WorkflowError) as err:
        pchain_task_params(step, task_name="user.expert.x_000_broken", out_ds="user.expert.x", profile=PROFILE)
    assert "panda-client rejected" in err.value.what


@pytest.mark.parametrize(("text", "tree"), [
    ("$(self.a)", {"ref": "a"}),
    ("$(!self.a)", {"not": {"ref": "a"}}),
    ("$(self.a && !self.b)", {"and": [{"ref": "a"}, {"not": {"ref": "b"}}]}),
    # pchain: && and || have equal precedence, left to right
    ("$(self.a || self.b && self.c)", {"and": [{"or": [{"ref": "a"}, {"ref": "b"}]}, {"ref": "c"}]}),
    ("$(self.a || (self.b && self.c))", {"or": [{"ref": "a"}, {"and": [{"ref": "b"}, {"ref": "c"}]}]}),
    ("$(!(self.a || self.b))", {"not": {"or": [{"ref": "a"}, {"ref": "b"}]}}),
])
def test_when_grammar(text, tree):
    assert parse_when(text, "wf.cwl:3") == tree


@pytest.mark.parametrize("text", ["$(self.a == 1)", "$(self.a &&)", "$((self.a)", "$(inputs.a)"])
def test_when_grammar_rejects_what_pchain_cannot_evaluate(text):
    with pytest.raises(WorkflowError) as err:
        parse_when(text, "wf.cwl:3")
    assert err.value.where == "wf.cwl:3" and err.value.hint


def test_reana_and_gitlab_steps_are_unsupported(tmp_path):
    doc = tmp_path / "wf.cwl"
    doc.write_text("cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\nsteps:\n"
                   "  ana:\n    run: reana\n    in: {opt_exec: {default: run.sh}}\n    out: [outDS]\n")
    with pytest.raises(UnsupportedFeature) as err:
        cwl.load_workflow(doc)
    assert err.value.where == f"{doc}:6"


def test_compiling_a_pchain_step_leaves_the_process_environment_as_it_was(monkeypatch):
    """panda-client's dry-run parser sets RUCIO_ACCOUNT=dummy for the whole process: every
    later Rucio client (the pilot's uploads, the storage plugin) then used that account."""
    import os

    from swfflow.pipeline import build_plan

    monkeypatch.delenv("RUCIO_ACCOUNT", raising=False)
    before = dict(os.environ)
    examples = Path(__file__).resolve().parents[1] / "examples" / "pchain"
    build_plan(str(examples / "pedestal_scan.cwl"), str(examples / "pedestal_scan.yml"), None,
               "1")
    assert dict(os.environ) == before
