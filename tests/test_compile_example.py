"""`swfflow compile` and `swfflow dag` on the example a detector expert starts from.

The golden plan pins the whole mapping (task parameters, datasets, dependencies). After an
intended change regenerate it with ``SWFFLOW_REGEN_GOLDEN=1 pytest tests/test_compile_example.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "calib.plan.json"


def swfflow(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "swfflow.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_example_plan_matches_golden_file(tmp_path):
    out = tmp_path / "plan.json"
    result = swfflow("compile", "examples/calib.cwl", "examples/calib-inputs.yml", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "reconstruct" in result.stdout and f"plan written to {out}" in result.stdout
    text = out.read_text()
    if os.environ.get("SWFFLOW_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_compile_without_output_writes_nothing_and_says_what_next(tmp_path):
    """A first-time user's first command: a table and a next step, no file in their folder."""
    for workflow, expected in ((REPO / "examples/calib.cwl", "next: swfflow run "),
                               (REPO / "Snakefile", "next: swfflow profile install && snakemake")):
        result = swfflow("compile", str(workflow), "--config",
                         f"stf_dir={REPO / 'examples/data'}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "reconstruct" in result.stdout or "stf_reco" in result.stdout
        (next_line,) = [line for line in result.stdout.splitlines() if line.startswith("next:")]
        assert next_line.startswith(expected) and str(workflow) in next_line
    assert list(tmp_path.iterdir()) == []  # no <workflow>.plan.json written by default


def test_example_plan_has_the_calibration_chain():
    plan = json.loads(GOLDEN.read_text())
    tasks = {t["key"]: t for t in plan["tasks"]}
    assert set(tasks) >= {"reconstruct", "merge", "fit", "validate/checksum"}
    reco = tasks["reconstruct"]
    assert reco["params"]["runUntilClosed"] is True and reco["streaming"] is True
    assert reco["params"]["dsForIN"] == "group.daq:swf.${RUN}.run"
    assert tasks["merge"]["release"] == "parents_done"
    assert [p["mode"] for p in tasks["merge"]["parents"]] == ["complete"]
    assert "/work/" not in json.dumps(plan)  # no machine-dependent paths


def test_plan_is_byte_identical_from_another_directory(tmp_path):
    # same workflow reached through another cwd: only `source` may differ
    a = swfflow("compile", "examples/calib.cwl", "examples/calib-inputs.yml", "--json")
    b = swfflow("compile", str(REPO / "examples/calib.cwl"),
                str(REPO / "examples/calib-inputs.yml"), "--json", cwd=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    pa, pb = json.loads(a.stdout), json.loads(b.stdout)
    pa.pop("source"), pb.pop("source")
    assert pa == pb


def test_run_option_instantiates_every_name(tmp_path):
    result = swfflow("compile", "examples/calib.cwl", "examples/calib-inputs.yml",
                     "--run", "100123", "--json")
    assert result.returncode == 0, result.stderr
    assert "${RUN}" not in result.stdout
    plan = json.loads(result.stdout)
    assert plan["run"] == "100123"
    assert plan["tasks"][0]["params"]["dsForIN"] == "group.daq:swf.100123.run"


def test_check_mode_exits_0_and_writes_nothing(tmp_path):
    result = swfflow("compile", "--check", str(REPO / "examples/calib.cwl"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ": ok (" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_dag_mermaid_and_svg(tmp_path):
    mermaid = swfflow("dag", "examples/calib.cwl")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD")
    assert "|complete|" in mermaid.stdout and "(stream)" in mermaid.stdout
    assert 'subgraph n_sub_validate["validate"]' in mermaid.stdout
    svg = tmp_path / "calib.svg"
    result = swfflow("dag", "examples/calib.cwl", "--format", "svg", "-o", str(svg))
    assert result.returncode == 0, result.stderr
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_pchain_workflow_compiles_with_pchain_dataset_names_and_parents():
    result = swfflow("compile", "examples/pchain/pedestal_scan.cwl",
                     "examples/pchain/pedestal_scan.yml", "--json")
    assert result.returncode == 0, result.stderr
    tasks = {t["key"]: t for t in json.loads(result.stdout)["tasks"]}
    seeds, gains, combine = tasks["seeds"], tasks["gains"], tasks["combine"]
    # an upstream dataset is named after its producer task, as pchain names it
    assert gains["params"]["dsForIN"] == f"{seeds['params']['taskName']}_seed.txt/"
    # a single-parent step is pipelined behind its parent; a two-parent one waits
    assert gains["params"]["noWaitParent"] is True
    assert gains["params"]["parentTaskName"] == seeds["params"]["taskName"]
    assert "noWaitParent" not in combine["params"] and combine["release"] == "parents_done"
    # no upstream placeholder (``${gains/outDS}``) is left unresolved
    text = json.dumps(combine["params"])
    assert not re.search(r"\$\{(gains|pedestals|seeds)/", text)
    assert f"{tasks['pedestals']['params']['taskName']}_ped.json/" in text
