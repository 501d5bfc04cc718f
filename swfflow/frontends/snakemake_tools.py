"""The CWL process of a Snakemake step: what a job of a compiled Snakefile runs.

Each rule's task runs its jobs the way Snakemake's own cluster executors do: Snakemake itself
executes the one named job (``--target-jobs RULE:w=v``) in the workflow's working directory,
the folder of the Snakefile (a shared file system, as ``snakemake --cores N`` and the remote
executors assume). The process is ``swfflow snakemake-job`` (:mod:`swfflow.commands.snakemake_job`)
with the rule, its output patterns and the job's wildcards on its command line; it hands the
job's outputs back to the engine as CWL Files (``cwl.output.json``), so they are registered in
the step's datasets like any CWL tool's.

Which job? A rule scattered over the files of a dataset gets one file per job
(``--split-input FILE --split-pattern PATTERN``: the wildcards are read from the file's path);
a rule scattered over wildcard values gets them as ``--wildcard NAME=VALUE``; a rule that runs
only after a checkpoint gets its job's wildcards as JSON (``--wildcards-json``) from the
checkpoint's expansion step (:mod:`.snakemake_checkpoints`).

Pure: this module builds dicts, nothing runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swfflow import ir

COMMAND = ("swfflow", "snakemake-job")
SNAKEFILE_PORT = "snakefile"
JOBS_PORT = "snakemake_job"  # a post-checkpoint rule's scatter port: one JSON object per job
AFTER_PREFIX = "after_"  # an ordering input: the step waits for that step's outputs

# IR port kind → the CWL type of a port a job receives (a scattered port gets one element)
_ELEMENT_TYPE = {ir.PortKind.FILE: "File", ir.PortKind.FILES: "File[]"}


def snakefile_value(snakefile_name: str) -> dict[str, Any]:
    """The Snakefile as a File input: relative to the workflow's folder, like every plan path;
    the job finds the working directory through it."""
    return {"class": "File", "location": snakefile_name}


def rule_tool(step: ir.Step, rule_name: str, outputs: dict[str, list[str]],
              directories: set[str], config: dict[str, Any], *,
              split: tuple[str, str] | None = None,
              temp_outputs: set[str] = frozenset()) -> dict[str, Any]:
    """The CommandLineTool of a rule's step. ``outputs``: port → the rule's output patterns;
    ``split``: (port, input pattern) when the step is scattered over a dataset's files."""
    scattered = set(step.scatter.ports) if step.scatter else set()
    inputs: dict[str, Any] = {
        SNAKEFILE_PORT: {"type": "File", "inputBinding": {"prefix": "--snakefile",
                                                          "position": 0}}}
    for port, spec in step.inputs.items():
        if port != SNAKEFILE_PORT:
            inputs[port] = _tool_input(port, spec, port in scattered, split)
    arguments = ["--rule", rule_name, "--outputs-json", json.dumps(outputs, sort_keys=True)]
    if directories:
        arguments += ["--directories", ",".join(sorted(directories))]
    if temp_outputs:
        arguments += ["--temp-outputs", ",".join(sorted(temp_outputs))]
    if split is not None:
        arguments += ["--split-pattern", split[1]]
    if config:
        arguments += ["--config-json", json.dumps(config, sort_keys=True, default=str)]
    return _tool(arguments, inputs, {port: {"type": _output_type(port, files, directories)}
                                     for port, files in outputs.items()}, step.resources)


def expansion_tool(dynamic_rules: list[str], config: dict[str, Any],
                   after: list[str]) -> dict[str, Any]:
    """The CommandLineTool of a checkpoint expansion step: Snakemake re-evaluates the job graph
    with the checkpoints' outputs present and lists, per rule, the wildcards of its jobs."""
    inputs: dict[str, Any] = {
        SNAKEFILE_PORT: {"type": "File", "inputBinding": {"prefix": "--snakefile",
                                                          "position": 0}}}
    for port in after:
        inputs[port] = {"type": "Any?"}
    arguments = ["--expand", ",".join(dynamic_rules)]
    if config:
        arguments += ["--config-json", json.dumps(config, sort_keys=True, default=str)]
    return _tool(arguments, inputs, {rule: {"type": "string[]"} for rule in dynamic_rules},
                 ir.Resources())


def _tool_input(port: str, spec: ir.Port, scattered: bool,
                split: tuple[str, str] | None) -> dict[str, Any]:
    if split is not None and port == split[0]:
        # where the engine keeps the file (its folders name the rule's output path), not the
        # job's staged copy
        return {"type": "File", "inputBinding": {"prefix": "--split-input",
                                                 "valueFrom": "$(self.location)"}}
    if port.startswith("wildcard_") and scattered:
        name = port.removeprefix("wildcard_")
        return {"type": "string", "inputBinding": {"prefix": "--wildcard",
                                                   "valueFrom": f"{name}=$(self)"}}
    if port == JOBS_PORT:
        return {"type": "string", "inputBinding": {"prefix": "--wildcards-json"}}
    if spec.kind in _ELEMENT_TYPE and not port.startswith(AFTER_PREFIX):
        # Snakemake finds its inputs in the working directory; the engine still stages
        # them, which makes the step wait for its parents' files
        return {"type": f"{_ELEMENT_TYPE[spec.kind]}?"}
    return {"type": "Any?"}  # params (Snakemake reads its own), ordering inputs


def _output_type(port: str, files: list[str], directories: set[str]) -> str:
    kind = "Directory" if port in directories else "File"
    return kind if len(files) == 1 else f"{kind}[]"


def _tool(arguments: list[str], inputs: dict[str, Any], outputs: dict[str, Any],
          resources: ir.Resources) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "cwlVersion": "v1.2", "class": "CommandLineTool",
        "baseCommand": list(COMMAND), "arguments": arguments,
        "inputs": inputs, "outputs": outputs,
    }
    if resources.cores:
        tool["requirements"] = [{"class": "ResourceRequirement", "coresMin": resources.cores}]
        tool["arguments"] = [*arguments, "--cores", str(resources.cores)]
    return tool


def add_snakefile_input(step: ir.Step, snakefile: str) -> None:
    """The step's ``snakefile`` input: the Snakefile, a constant of every job."""
    value = snakefile_value(Path(snakefile).name)
    step.inputs[SNAKEFILE_PORT] = ir.Port(SNAKEFILE_PORT, ir.PortKind.PARAM, "File", value, True)
    step.bindings[SNAKEFILE_PORT] = ir.Binding(SNAKEFILE_PORT, default=value, has_default=True)
