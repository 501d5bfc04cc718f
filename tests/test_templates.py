"""The template library: meta.yaml checking, rendering, composing, the generated files, the
CLI's errors, and the checks CI relies on (cwltool, snakemake -n --lint, golden plans, a real run
of the templated example with both cwltool and Snakemake).

Subprocess tools are batched: one harness workflow holds every template × test parameter set.
Regenerate the golden plans with ``SWFFLOW_REGEN_GOLDEN=1 pytest tests/test_templates.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from swfflow.cli import main
from swfflow.errors import ConfigError
from swfflow.templating import check as checks
from swfflow.templating import docs
from swfflow.templating.compose import Spec, compose, load_spec, write
from swfflow.templating.meta import parse_assignments, validate_params
from swfflow.templating.render import (PAYLOAD, Library, builtin_library, render, rule_name,
                                       standalone_io)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "templated"
GOLDEN = REPO / "tests" / "golden" / "templates"
BIN = Path(sys.executable).parent
LIBRARY_TEMPLATES = {"stf-reco", "fast-skim", "merge", "calib-fit", "simulation", "reprocess",
                     "checksum-validate"}


@pytest.fixture(scope="module")
def library() -> Library:
    return Library([builtin_library()])


@pytest.fixture(scope="module")
def harness(library: Library, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("harness")
    checks.write_harness(library, checks.cases(library), workdir)
    return workdir


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the library and its generated files ------------------------------------------------------
def test_library_covers_the_use_cases(library: Library) -> None:
    assert LIBRARY_TEMPLATES <= set(library.names())
    covered = {uc for meta in library.metas() for uc in meta.use_cases}
    for req in ("req 2.4", "req 2.5", "req 3.4", "req 3.5", "req 3.7", "req 3.9", "req 3.11"):
        assert req in covered, req
    # simulation has no input dataset but sizes its task by events
    sim = library.meta("simulation")
    assert not sim.inputs and sim.sizing.eventsPerJob == "$n_events"


def test_generated_files_are_up_to_date(library: Library) -> None:
    files = docs.generated_files(library, REPO)
    assert not docs.stale(files), "run `swfflow template docs` and commit the result"
    readme = (REPO / "templates" / "fast-skim" / "README.md").read_text()
    assert "| `sampling_fraction` | number in (0, 1] | `0.1` |" in readme


def test_every_case_renders_with_its_parameters(library: Library) -> None:
    all_cases = checks.cases(library)
    assert len(all_cases) >= 2 * len(LIBRARY_TEMPLATES)
    for case in all_cases:
        meta = library.meta(case.template)
        rendered = render(library, case.template, case.params, step=case.step,
                          rule_io=standalone_io(meta, case.step))
        tool = yaml.safe_load(rendered.cwl)
        assert tool["$namespaces"]["swf"] == "https://github.com/swfflow/swfflow/cwl#"
        hints = {h["class"]: h for h in tool["hints"]}
        assert hints["DockerRequirement"]["dockerPull"] == meta.container
        listing = tool["requirements"][0]["listing"][0]
        assert listing["entryname"] == PAYLOAD and "def cmd_reco" in listing["entry"]
        for name, value in case.params.items():
            if meta.parameters[name].command:
                assert tool["inputs"][name]["default"] == value, (case, name)
                assert f"{name}={value!r}" in rendered.smk.replace(".0,", ",") or \
                    f"{name}={float(value)!r}" in rendered.smk, (case, name)
            else:  # sizing-only parameters land in swf:Sizing, not on the command line
                assert value in hints["swf:Sizing"].values(), (case, name)
        assert "swf_mode=" in rendered.smk and "container:" in rendered.smk


def test_payload_has_no_cwl_parameter_references() -> None:
    """The payload is embedded in CWL (InitialWorkDirRequirement), where $( and ${ expand."""
    text = (builtin_library() / "_lib" / PAYLOAD).read_text()
    assert "$(" not in text and "${" not in text


# --- parameters: one clear error each -------------------------------------------------------
@pytest.mark.parametrize(("assignments", "expected"), [
    (["detector=muon"], "parameter detector = 'muon' is invalid: expected one of ecal, hcal"),
    (["threshold=256"], "parameter threshold = 256 is invalid: expected integer in [0, 255]"),
    (["threshold=-1"], "expected integer in [0, 255]"),
    (["threshold=high"], "parameter threshold = 'high' is invalid: expected integer in [0, 255]"),
    (["threshold=1.5"], "expected integer in [0, 255]"),
    (["colour=red"], "unknown parameter colour (known: detector, threshold, tf_size_kb)"),
    (["threshold"], "parameter 'threshold' is not key=value"),
])
def test_render_rejects_bad_parameters(assignments: list[str], expected: str,
                                       capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(["template", "render", "stf-reco", *assignments], capsys)
    assert code == 2 and expected in err and "template stf-reco" in err
    assert "Traceback" not in err and out == ""


def test_number_ranges_and_booleans(library: Library) -> None:
    skim = library.meta("fast-skim")
    with pytest.raises(ConfigError, match=r"sampling_fraction = 0 is invalid: expected number "
                                          r"in \(0, 1\]"):
        validate_params(skim, {"sampling_fraction": 0})
    check = library.meta("checksum-validate")
    with pytest.raises(ConfigError, match="fail_on_mismatch = 'yes please' is invalid: expected "
                                          "boolean"):
        validate_params(check, parse_assignments(check, ["fail_on_mismatch=yes please"]))
    values = validate_params(check, parse_assignments(check, ["fail_on_mismatch=true"]))
    assert values["fail_on_mismatch"] is True and values["sampling_fraction"] == 1.0


def test_show_renders_markdown_and_writes_numbers_as_numbers(capsys: pytest.CaptureFixture
                                                             ) -> None:
    code, out, _ = run_cli(["template", "show", "stf-reco"], capsys)
    assert code == 0 and "integer in [1, 1048576]" in out and "e+06" not in out
    assert "| `" not in out and "## " not in out  # a rendered table and headings, not the source
    assert "tf_size_kb" in out and "Parameters" in out


def test_bounds_are_written_as_numbers() -> None:
    from swfflow.templating.meta import _num

    assert [_num(v) for v in (1048576, 1e7, 0.5, 1e-6, 2.0)] == \
        ["1048576", "10000000", "0.5", "1e-06", "2"]


def test_unknown_template(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(["template", "show", "stf-rec"], capsys)
    assert code == 2 and "unknown template 'stf-rec'" in err and "did you mean stf-reco" in err


def test_new_template_with_a_required_parameter(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["template", "new", "tof-reco", "--library", str(tmp_path)], capsys)
    assert code == 0 and (tmp_path / "tof-reco" / "test" / "defaults.yaml").is_file()
    meta_path = tmp_path / "tof-reco" / "meta.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["parameters"]["detector"].pop("default")
    meta_path.write_text(yaml.safe_dump(meta))
    code, _, err = run_cli(["template", "render", "tof-reco", "--library", str(tmp_path)], capsys)
    assert code == 2 and "template tof-reco: missing parameter detector (one of ecal" in err
    code, out, _ = run_cli(["template", "render", "tof-reco", "detector=pid", "--json",
                            "--library", str(tmp_path)], capsys)
    assert code == 0 and json.loads(out)["params"]["detector"] == "pid"
    code, _, err = run_cli(["template", "new", "tof-reco", "--library", str(tmp_path)], capsys)
    assert code == 2 and "already exists" in err


def test_render_params_file_and_outdir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("detector: hcal\nthreshold: 12\n")
    code, _, _ = run_cli(["template", "render", "stf-reco", "--params", str(params),
                          "threshold=30", "--step", "hcal_reco", "-o", str(tmp_path)], capsys)
    assert code == 0
    tool = yaml.safe_load((tmp_path / "hcal_reco.cwl").read_text())
    assert tool["inputs"]["detector"]["default"] == "hcal"
    assert tool["inputs"]["threshold"]["default"] == 30  # the command line wins
    assert "rule hcal_reco:" in (tmp_path / "hcal_reco.smk").read_text()
    assert (tmp_path / PAYLOAD).is_file()


def test_list_and_show_json(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["template", "list", "--json"], capsys)
    assert code == 0 and LIBRARY_TEMPLATES <= {t["name"] for t in json.loads(out)}
    code, out, _ = run_cli(["template", "show", "simulation", "--json"], capsys)
    shown = json.loads(out)
    assert shown["parameters"]["n_jobs"]["command"] is False and shown["inputs"] == {}


# --- the Jinja2 conventions --------------------------------------------------------------------
def _custom_library(tmp_path: Path, rule_body: str) -> Library:
    folder = tmp_path / "lib" / "awk-count"
    (folder / "test").mkdir(parents=True)
    meta = yaml.safe_load((builtin_library() / "merge" / "meta.yaml").read_text())
    meta["name"] = "awk-count"
    (folder / "meta.yaml").write_text(yaml.safe_dump(meta))
    (folder / "tool.cwl.j2").write_text(
        (builtin_library() / "merge" / "tool.cwl.j2").read_text())
    (folder / "rule.smk.j2").write_text(rule_body)
    return Library([tmp_path / "lib", builtin_library()])


def test_snakemake_braces_survive_and_undefined_names_fail(tmp_path: Path) -> None:
    library = _custom_library(tmp_path, "rule [[ step ]]:\n    shell: \"awk '{{print $1}}' "
                                        "[[ params.min_inputs ]]\"\n")
    meta = library.meta("awk-count")
    rendered = render(library, "awk-count", {}, step="count", rule_io=standalone_io(meta, "c"))
    assert "awk '{{print $1}}' 1" in rendered.smk
    broken = _custom_library(tmp_path / "b", "rule x:\n    shell: \"[[ params.typo ]]\"\n")
    with pytest.raises(ConfigError, match="rule.smk.j2 failed to render: .*typo"):
        render(broken, "awk-count", {}, step="x", rule_io=standalone_io(meta, "x"))


def test_a_template_can_run_its_own_program(tmp_path: Path) -> None:
    library = _custom_library(tmp_path, '[% extends "_lib/rule.smk.j2" %]'
                                        '[% block shell_command %]eicrecon -Pjana:nevents=5'
                                        '[% endblock %]\n')
    folder = tmp_path / "lib" / "awk-count"
    (folder / "tool.cwl.j2").write_text('[% extends "_lib/tool.cwl.j2" %]'
                                        '[% block base_command %][eicrecon, -Pjana:nevents=5]'
                                        '[% endblock %]\n')
    (folder / "meta.yaml").write_text((folder / "meta.yaml").read_text() + "payload: false\n")
    meta = library.meta("awk-count")
    rendered = render(library, "awk-count", {}, step="eic", rule_io=standalone_io(meta, "eic"))
    tool = yaml.safe_load(rendered.cwl)
    assert tool["baseCommand"] == ["eicrecon", "-Pjana:nevents=5"]
    assert [r["class"] for r in tool["requirements"]] == ["ResourceRequirement", "ToolTimeLimit"]
    assert '"eicrecon -Pjana:nevents=5"\n        " --parts {input.parts:q}"' in rendered.smk
    assert "payload=" not in rendered.smk


# --- composing --------------------------------------------------------------------------------
def _spec(**changes) -> Spec:
    data = yaml.safe_load((EXAMPLE / "spec.yaml").read_text())
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = data
        for key in path:
            target = target[key]
        if value is None:
            target.pop(last)
        else:
            target[last] = value
    return Spec.model_validate(data)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"steps__reco__template": "stf-recon"}, "step reco: unknown template 'stf-recon'"),
    ({"steps__reco__params": {"threshold": 999}},
     "step reco: template stf-reco: parameter threshold = 999 is invalid: expected integer in "
     "[0, 255]"),
    ({"steps__reco__params": {"detektor": "ecal"}}, "unknown parameter detektor"),
    ({"steps__calib__params": {"target": "high"}},
     "parameter target = 'high' is invalid: expected number in (0, 255]"),
    ({"steps__reco__in": {"raw": "stf_files"}}, "template stf-reco has no input 'raw'"),
    ({"steps__reco__in": {}}, "step reco: input stf of template stf-reco is not fed"),
    ({"steps__reco__in": {"stf": "stf_filez"}}, "step reco: unknown source 'stf_filez'"),
    ({"steps__calib__in": {"merged": "merge_reco/merge"}},
     "step merge_reco (template merge) has no output 'merge'"),
    ({"steps__calib__in": {"merged": "reco/reco"}},
     "input merged of template calib-fit takes one file, but reco/reco is a list of files"),
    ({"steps__merge_reco__in": {"parts": "calib/constants"}}, "the steps form a cycle"),
    ({"steps__merge_reco__in": {"parts": "manifest"}},
     "input parts of template merge takes a list of files, but manifest is one file"),
    ({"outputs__constants": "calib/gain"}, "workflow output constants: 'calib/gain'"),
    ({"steps__Calib": {"template": "merge"}}, "step name 'Calib'"),
])
def test_compose_rejects_bad_specs(library: Library, changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        compose(_spec(**changes), library, where="spec.yaml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("spec.yaml")


SIMULATION_SPEC = """
name: sim-calib
doc: Simulated events, reconstructed and fitted; no input dataset at all.
steps:
  sim:
    template: simulation
    params: {n_events: 64, n_jobs: 4, seed: 3}
  reco:
    template: stf-reco
    params: {detector: hcal, tf_size_kb: 4}
    in: {stf: sim/events}
  fit:
    template: calib-fit
    params: {detector: hcal, target: 50}
    in: {merged: reco/reco}
outputs:
  constants: fit/constants
"""


def test_simulation_chain_composes_and_runs(library: Library, tmp_path: Path) -> None:
    spec_path = tmp_path / "sim.yaml"
    spec_path.write_text(SIMULATION_SPEC)
    composition = compose(load_spec(spec_path), library)
    write(composition, library, tmp_path)
    steps = composition.cwl["steps"]
    assert composition.cwl["inputs"] == {} and "requirements" not in composition.cwl
    assert all("scatter" not in step for step in steps.values())  # one file: no per-file jobs
    assert steps["reco"]["in"]["stf"] == {"source": "sim/events", "swf:mode": "stream"}
    sim_tool = yaml.safe_load((tmp_path / "tools" / "sim.cwl").read_text())
    sizing = next(h for h in sim_tool["hints"] if h["class"] == "swf:Sizing")
    assert sizing == {"class": "swf:Sizing", "eventsPerJob": 64, "nJobs": 4}
    proc = subprocess.run([str(BIN / "cwltool"), "--no-container", "--quiet", "--outdir",
                           str(tmp_path / "out"), "sim-calib.cwl"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    constants = json.loads((tmp_path / "out" / "fit.constants.json").read_text())
    assert constants["detector"] == "hcal" and constants["n_hits"] > 0


def test_compose_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: x\n")
    code, _, err = run_cli(["template", "compose", str(bad)], capsys)
    assert code == 2 and "the spec must be a YAML mapping" in err
    bad.write_text("name: x\nsteps:\n  a: {template: merge, params: {}, inn: {}}\n")
    code, _, err = run_cli(["template", "compose", str(bad)], capsys)
    assert code == 2 and "spec field steps.a.inn: Extra inputs are not permitted" in err
    bad.write_text("name: x\ninputs: {files: {}}\nsteps:\n"
                   "  z: {template: merge, in: {parts: files}}\n"
                   "  a: {template: merge, in: {parts: nowhere}}\n")
    code, _, err = run_cli(["template", "compose", str(bad), "-o", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{bad}:5: step a: unknown source 'nowhere'" in err
    assert "earlier step's output: files, z/<output>" in err


def test_example_is_composed_from_its_spec(library: Library, tmp_path: Path) -> None:
    composition = compose(load_spec(EXAMPLE / "spec.yaml"), library)
    written = write(composition, library, tmp_path)
    for path in written:
        committed = EXAMPLE / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), \
            f"{committed} is stale: run swfflow template compose examples/templated/spec.yaml"
    steps = composition.cwl["steps"]
    assert steps["reco"]["scatter"] == "stf"
    assert steps["reco"]["in"]["stf"] == {"source": "stf_files", "swf:mode": "stream"}
    assert steps["merge_reco"]["in"]["parts"]["swf:mode"] == "complete"
    assert "scatter" not in steps["merge_reco"]
    assert composition.cwl["inputs"]["stf_files"]["swf:stream"] is True
    rules = {name: step.rendered.smk for name, step in composition.steps.items()}
    assert "swf_mode='stream'," in rules["reco"] and "swf_input_modes" not in rules["reco"]
    assert "swf_mode='complete'," in rules["merge_reco"]
    assert "swf_input_modes={'stf': 'stream', 'manifest': 'complete'}," in rules["check"]


# --- external tools, batched ------------------------------------------------------------------
def test_harness_validates_with_cwltool(harness: Path) -> None:
    result = checks.validate_cwl(harness / f"{checks.HARNESS_NAME}.cwl")
    assert result.ok, result.output


def test_harness_passes_snakemake_dry_run_and_lint(harness: Path) -> None:
    result = checks.lint_snakemake(harness)
    assert result.ok, result.output
    assert "good condition" in result.output


def test_rules_modules_work_with_module_and_use_rule(library: Library, tmp_path: Path) -> None:
    """rules/*.smk, imported with `module` and specialised with `use rule … with:`."""
    lines, targets = [], []
    for meta in library.metas():
        rule = rule_name(meta.name)
        lines += [f"module {rule}_lib:", f'    snakefile: "{REPO}/rules/{rule}.smk"',
                  '    config: {"results": "results"}',
                  f"use rule {rule} from {rule}_lib as lib_{rule}"]
        targets.append(f'expand(rules.lib_{rule}.output[0], stf=["swf.1.000001"])')
        for name, port in meta.inputs.items():
            path = tmp_path / "data" / (f"{name}/swf.1.000001{port.suffix}"
                                        if name == meta.per_file_input or port.type == "File[]"
                                        else f"{name}{port.suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
    lines += ["use rule stf_reco from stf_reco_lib as hcal_reco with:",
              '    output: reco="results/hcal/{stf}.reco.json"',
              '    params: detector="hcal"',
              "rule all:", "    default_target: True",
              "    input: " + ", ".join(targets) + ', "results/hcal/swf.1.000001.reco.json"']
    (tmp_path / "Snakefile").write_text("\n".join(lines) + "\n")
    dry = subprocess.run([str(BIN / "snakemake"), "-n", "-p"], cwd=tmp_path, capture_output=True,
                         text=True, check=False)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "--detector hcal" in dry.stdout and "--detector all" in dry.stdout
    assert "simulate --events results/simulation/simulation.sim.stf" in dry.stdout
    # and a specialised rule runs for real, finding the payload through the module
    target = "results/hcal/swf.1.000001.reco.json"
    real = subprocess.run([str(BIN / "snakemake"), target, "-c1", "--quiet"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert real.returncode == 0, real.stdout + real.stderr
    result = json.loads((tmp_path / target).read_text())
    assert result["detector"] == "hcal" and result["source"] == "swf.1.000001.stf"


def _golden(name: str, plan_json: str, replace: dict[str, str]) -> None:
    plan = json.loads(plan_json)
    for task in plan["tasks"]:  # the tools are the rendered files, checked above
        task["payload"].pop("tool", None)
    text = json.dumps(plan, indent=1, sort_keys=True) + "\n"
    for old, new in replace.items():
        text = text.replace(old, new)
    path = GOLDEN / f"{name}.plan.json"
    if os.environ.get("SWFFLOW_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden file {path}; regenerate with SWFFLOW_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"plan differs from {path}"


def test_compiled_plans_match_golden_files(harness: Path) -> None:
    from swfflow.pipeline import build_plan

    harness_plan = build_plan(str(harness / f"{checks.HARNESS_NAME}.cwl"),
                              str(harness / checks.HARNESS_INPUTS), None, None)
    _golden("harness", harness_plan.to_json(), {str(harness): "<harness>"})
    tasks = {t["key"]: t for t in json.loads(harness_plan.to_json())["tasks"]}
    assert tasks["stf_reco_defaults"]["params"]["runUntilClosed"] is True
    assert tasks["simulation_particle_gun"]["params"]["nEventsPerJob"] == 50
    example = build_plan(str(EXAMPLE / "ecal-prompt.cwl"), str(EXAMPLE / "inputs.yml"), None,
                         None)
    _golden("ecal-prompt", example.to_json(), {str(REPO): "<repo>"})


def test_snakemake_rules_compile_to_golden_plans_equivalent_to_the_cwl(harness: Path) -> None:
    """Every template × parameter set, rendered as Snakemake rules, compiles to the plan the
    CWL rendering gives (issue 8: both kinds of template are compiled and pinned)."""
    from swfflow.pipeline import build_plan
    from swfflow.plan.compare import plan_shape

    snakemake_plan = build_plan(str(harness / "Snakefile"), None, None, None)
    _golden("harness-snakemake", snakemake_plan.to_json(), {str(harness): "<harness>"})
    cwl_plan = build_plan(str(harness / f"{checks.HARNESS_NAME}.cwl"),
                          str(harness / checks.HARNESS_INPUTS), None, None)
    assert len(snakemake_plan.tasks) == len(cwl_plan.tasks) >= 14
    assert plan_shape(snakemake_plan) == plan_shape(cwl_plan)


# --- the templated example runs for real ------------------------------------------------------
RESULTS = ("calib.constants.json", "calib.feedback.json", "merge_checks.merged.json",
           "merge_reco.merged.json")


@pytest.fixture(scope="module")
def cwltool_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The templated example run by the reference CWL runner (cwltool)."""
    outdir = tmp_path_factory.mktemp("cwltool")
    proc = subprocess.run([str(BIN / "cwltool"), "--no-container", "--quiet", "--outdir",
                           str(outdir), "ecal-prompt.cwl", "inputs.yml"], cwd=EXAMPLE,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = json.loads(proc.stdout)
    assert len(outputs["reco"]) == 3 and len(outputs["skims"]) == 3
    return outdir


def _same_results(results: dict[str, Path], reference: Path) -> None:
    for name, path in results.items():
        assert json.loads(path.read_text()) == json.loads((reference / name).read_text()), name


@pytest.mark.slow  # ~5 s
def test_example_runs_with_cwltool(cwltool_run: Path) -> None:
    integrity = json.loads((cwltool_run / "merge_checks.merged.json").read_text())
    assert integrity["n_checked"] == 3 and integrity["n_mismatch"] == 0
    run_data = b"".join(p.read_bytes() for p in sorted((EXAMPLE / "data").glob("*.stf")))
    assert integrity["running_adler32"] == "%08x" % zlib.adler32(run_data)
    merged = json.loads((cwltool_run / "merge_reco.merged.json").read_text())
    assert merged["n_inputs"] == 3 and merged["n_tf"] == 12  # 3 STFs × 16 KiB / 4 KiB TFs
    feedback = json.loads((cwltool_run / "calib.feedback.json").read_text())
    constants = json.loads((cwltool_run / "calib.constants.json").read_text())
    assert feedback["gain"] == constants["gain"] > 0
    assert feedback["status"] == ("ok" if feedback["deviation"] <= 0.05 else "recalibrate")


@pytest.mark.slow  # ~5 s
def test_example_snakefile_gives_the_same_results(cwltool_run: Path, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "wf")
    proc = subprocess.run([str(BIN / "snakemake"), "-c2", "--quiet"], cwd=tmp_path / "wf",
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _same_results({n: tmp_path / "wf" / "results" / n.split(".")[0] / n for n in RESULTS},
                  cwltool_run)


@pytest.mark.slow  # ~15 s
def test_example_runs_with_swfflow_run(cwltool_run: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN / "swfflow"), "run", "ecal-prompt.cwl", "inputs.yml",
                           "--outdir", str(tmp_path), "--no-container"], cwd=EXAMPLE,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(json.loads(proc.stdout)["reco"]) == 3
    _same_results({n: tmp_path / n for n in RESULTS}, cwltool_run)


def test_checksum_mismatch_is_an_alarm(tmp_path: Path) -> None:
    payload = builtin_library() / "_lib" / PAYLOAD
    stf = tmp_path / "swf.1.000001.stf"
    stf.write_bytes(bytes(range(256)) * 40)
    good = "%08x" % zlib.adler32(stf.read_bytes())
    for expected, code, mismatches in ((good, 0, 0), ("0badc0de", 1, 1)):
        (tmp_path / "m.json").write_text(json.dumps({stf.name: expected}))
        proc = subprocess.run([sys.executable, str(payload), "checksum", "--stf", str(stf),
                               "--check", str(tmp_path / "c.json"), "--manifest",
                               str(tmp_path / "m.json"), "--fail-on-mismatch"],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == code, proc.stderr
        record = json.loads((tmp_path / "c.json").read_text())
        assert record["checksum"] == good and record["n_mismatch"] == mismatches


def test_skim_keeps_the_tf_range(tmp_path: Path) -> None:
    payload = builtin_library() / "_lib" / PAYLOAD
    stf = tmp_path / "a.stf"
    stf.write_bytes(b"".join(bytes([i]) * 1024 for i in range(10)))  # 10 TFs of 1 KiB
    subprocess.run([sys.executable, str(payload), "skim", "--stf", str(stf), "--skim",
                    str(tmp_path / "a.skim"), "--summary", str(tmp_path / "a.json"),
                    "--tf-first", "2", "--tf-last", "5", "--sampling-fraction", "1",
                    "--tf-size-kb", "1"], check=True)
    summary = json.loads((tmp_path / "a.json").read_text())
    assert summary["selected_tfs"] == [2, 3, 4, 5]
    assert (tmp_path / "a.skim").read_bytes() == b"".join(bytes([i]) * 1024 for i in (2, 3, 4, 5))


# --- template authors' mistakes -----------------------------------------------------------------
@pytest.mark.parametrize(("edit", "expected"), [
    (lambda m: m.update(colour="red"), "meta.yaml field colour: Extra inputs are not permitted"),
    (lambda m: m["parameters"]["threshold"].update(default=999),
     "parameter threshold = 999 is invalid: expected integer in [0, 255]"),
    (lambda m: m["parameters"]["threshold"].update(type="float"),
     "meta.yaml field parameters.threshold.type"),
    (lambda m: m.update(name="other"), "meta.yaml name 'other' differs from its folder"),
    (lambda m: m["outputs"]["reco"].update(name_from="raw"), "name_from 'raw' must name an input"),
])
def test_malformed_meta_yaml(tmp_path: Path, edit, expected: str) -> None:
    folder = tmp_path / "stf-reco"
    shutil.copytree(builtin_library() / "stf-reco", folder)
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    edit(meta)
    (folder / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError) as caught:
        Library([tmp_path]).meta("stf-reco")
    assert expected in str(caught.value) and str(folder / "meta.yaml") in str(caught.value)


def test_check_command_fails_on_invalid_cwl(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "broken-reco"
    shutil.copytree(builtin_library() / "stf-reco", folder)
    (folder / "meta.yaml").write_text(
        (folder / "meta.yaml").read_text().replace("name: stf-reco", "name: broken-reco"))
    # valid YAML and Jinja, invalid CWL: a misspelt field of a command-line binding
    (folder / "tool.cwl.j2").write_text((folder / "tool.cwl.j2").read_text()
                                        + "[% block extra_arguments %]  - positionn: 1\n"
                                          "    valueFrom: x\n[% endblock %]\n")
    code, out, err = run_cli(["template", "check", "broken-reco", "--library", str(tmp_path),
                              "--json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["cases"] == ["broken-reco/defaults", "broken-reco/hcal"]
    assert report["cwltool"]["ok"] is False and "positionn" in report["cwltool"]["output"]
    assert report["snakemake"]["ok"] is True


def test_docs_check_command(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(["template", "docs", "--check"], capsys)
    assert code == 0 and "generated files up to date" in out


def test_reco_reads_daqsim_stf_files(tmp_path: Path) -> None:
    """The payload on the DAQ simulator's real (sparse) STF files: header bytes are the hits."""
    import random

    from swfflow.daqsim.files import stf_content, write_stf

    header = stf_content(100042, 1, random.Random(3), 64 * 1024 * 1024)
    stf = write_stf(str(tmp_path), "swf.100042.000001.stf", header, 64 * 1024 * 1024)
    subprocess.run([sys.executable, str(builtin_library() / "_lib" / PAYLOAD), "reco",
                    "--stf", stf.path, "--reco", str(tmp_path / "r.json"), "--detector", "all",
                    "--threshold", "16", "--tf-size-kb", "64"], check=True)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["n_tf"] == 1024
    assert result["n_hits"] == sum(1 for b in header if b > 16)
    assert result["energy_sum"] == sum(b for b in header if b > 16)


def test_merged_checksums_give_the_running_checksum_of_the_run(tmp_path: Path) -> None:
    """req 3.4: the merge of per-STF checks carries the adler32 of the whole run's data."""
    payload = str(builtin_library() / "_lib" / PAYLOAD)
    contents = [bytes(range(256)) * 300, b"\xff" * 70000, b"", b"epic" * 12345]
    checks_made = []
    for seq, content in enumerate(contents, 1):
        stf = tmp_path / f"swf.7.{seq:06d}.stf"
        stf.write_bytes(content)
        check = tmp_path / f"swf.7.{seq:06d}.check.json"
        subprocess.run([sys.executable, payload, "checksum", "--stf", str(stf), "--check",
                        str(check)], check=True)
        checks_made.append(str(check))
    merged = tmp_path / "merged.json"
    subprocess.run([sys.executable, payload, "merge", "--merged", str(merged),
                    "--expect-kind", "checksum", "--parts", *reversed(checks_made)], check=True)
    result = json.loads(merged.read_text())
    assert result["running_adler32"] == "%08x" % zlib.adler32(b"".join(contents))
    assert result["n_checked"] == 4 and result["n_bytes"] == sum(map(len, contents))
