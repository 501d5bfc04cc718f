"""Check a whole template library at once: every template × every ``test/*.yaml`` parameter set.

All cases become the steps of one *harness* workflow (each step fed by workflow inputs of the
right shape), so one ``cwltool --validate`` and one ``snakemake -n --lint`` cover the library:
each costs ~2 s of start-up, and paying it once instead of per case keeps CI fast.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swfflow.errors import ConfigError
from swfflow.templating.compose import Composition, InputSpec, Spec, StepSpec, compose, write
from swfflow.templating.meta import Meta, PortSpec
from swfflow.templating.render import Library

HARNESS_NAME = "template-harness"
HARNESS_INPUTS = "inputs.yml"  # a CWL job listing the harness's tiny input files


@dataclass(frozen=True)
class Case:
    template: str
    param_set: str  # file stem under test/
    params: dict[str, Any]

    @property
    def step(self) -> str:
        return f"{self.template}_{self.param_set}".replace("-", "_").replace(".", "_")


def cases(library: Library, names: list[str] | None = None) -> list[Case]:
    found = []
    for name in names or library.names():
        folder = library.folder(name)
        sets = sorted((folder / "test").glob("*.yaml"))
        if not sets:
            raise ConfigError(f"template {name} has no test parameter sets",
                              where=str(folder / "test"), hint="add test/defaults.yaml: {}")
        for path in sets:
            params = yaml.safe_load(path.read_text()) or {}
            found.append(Case(name, path.stem, params))
    return found


def _feed_input(meta: Meta, port_name: str, port: PortSpec) -> tuple[str, InputSpec]:
    """The harness workflow input that feeds one template input."""
    if port_name == meta.per_file_input:
        if port.mode == "stream":
            return "stf_stream", InputSpec(stream=True, suffix=port.suffix, default="data/stream")
        return "closed_stfs", InputSpec(suffix=port.suffix, default="data/closed")
    if port.type == "File[]":
        return f"{port_name}_list", InputSpec(suffix=port.suffix, default=f"data/{port_name}")
    return f"{port_name}_file", InputSpec(type="File", suffix=port.suffix,
                                          default=f"data/{port_name}{port.suffix}")


def harness_spec(library: Library, selected: list[Case]) -> Spec:
    inputs: dict[str, InputSpec] = {}
    steps: dict[str, StepSpec] = {}
    outputs: dict[str, str] = {}
    for case in selected:
        meta = library.meta(case.template)
        feeds = {}
        for port_name, port in meta.inputs.items():
            input_name, input_spec = _feed_input(meta, port_name, port)
            inputs.setdefault(input_name, input_spec)
            feeds[port_name] = input_name
        steps[case.step] = StepSpec(template=case.template, params=case.params, feeds=feeds)
        outputs.update({f"{case.step}_{out}": f"{case.step}/{out}" for out in meta.outputs})
    return Spec(name=HARNESS_NAME, doc="Every template with every test parameter set.",
                inputs=inputs, steps=steps, outputs=outputs)


def write_harness(library: Library, selected: list[Case], outdir: Path) -> Composition:
    """Compose and write the harness, with two tiny files per list input so Snakemake's DAG
    has one job per file, and a CWL job file naming them (the files are never read: the
    checks do not run the payload)."""
    spec = harness_spec(library, selected)
    composition = compose(spec, library, where=HARNESS_NAME)
    write(composition, library, outdir)
    job: dict[str, Any] = {}
    for name, wi in spec.inputs.items():
        target = outdir / wi.default
        files = [target] if wi.type == "File" else \
            [target / f"{stem}{wi.suffix}" for stem in ("swf.1.000001", "swf.1.000002")]
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        entries = [{"class": "File", "path": str(p.relative_to(outdir))} for p in files]
        job[name] = entries[0] if wi.type == "File" else entries
    (outdir / HARNESS_INPUTS).write_text(yaml.safe_dump(job, sort_keys=True))
    return composition


@dataclass(frozen=True)
class ToolResult:
    command: list[str]
    ok: bool
    output: str


def _run(command: list[str], cwd: Path) -> ToolResult:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    return ToolResult(command, proc.returncode == 0, proc.stdout + proc.stderr)


def _tool(name: str) -> str:
    """The console script next to this Python (the venv), else whatever is on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def validate_cwl(workflow: Path) -> ToolResult:
    return _run([_tool("cwltool"), "--validate", workflow.name], workflow.parent)


def lint_snakemake(workdir: Path) -> ToolResult:
    """``snakemake -n`` builds the DAG of every rule; ``--lint`` then reports style problems
    (and exits non-zero when it finds any)."""
    dry = _run([_tool("snakemake"), "-n", "--quiet", "rules"], workdir)
    if not dry.ok:
        return dry
    lint = _run([_tool("snakemake"), "--lint"], workdir)
    return ToolResult(dry.command + ["&&"] + lint.command, lint.ok, dry.output + lint.output)
