"""Where each leaf input's data comes from, across sub-workflow boundaries (pure).

An *origin* is either a top-level workflow input, ``("input", name)``, or an output port of a
leaf step, ``("step", leaf_path, port)``. The planner turns origins into Rucio datasets (stream
inputs, step outputs) or parameter values (other workflow inputs).
"""

from __future__ import annotations

from typing import NamedTuple

from swfflow.ir import Workflow


class Origin(NamedTuple):
    kind: str  # "input" | "step"
    name: str  # workflow input name, or leaf path
    port: str = ""


OriginMap = dict[tuple[str, str], tuple[Origin, ...]]


def resolve_origins(workflow: Workflow) -> OriginMap:
    """Map ``(leaf path, input port)`` → the origins feeding it, for every leaf of the workflow."""
    found: OriginMap = {}
    top = {name: (Origin("input", name),) for name in workflow.inputs}
    _walk(workflow, "", top, found)
    return found


def _walk(workflow: Workflow, prefix: str, inputs: dict[str, tuple[Origin, ...]],
          found: OriginMap) -> None:
    for step in workflow.steps:
        path = f"{prefix}{step.name}"
        per_port: dict[str, tuple[Origin, ...]] = {}
        for port, binding in step.bindings.items():
            origins: list[Origin] = []
            for src in binding.sources:
                if src.step is None:
                    origins += inputs.get(src.port, ())
                else:
                    origins += output_origins(workflow, prefix, src.step, src.port, inputs)
            per_port[port] = tuple(origins)
        if step.subworkflow is not None:
            _walk(step.subworkflow, f"{path}/", per_port, found)
        else:
            for port, origins in per_port.items():
                found[(path, port)] = origins


def output_origins(workflow: Workflow, prefix: str, step_name: str, port: str,
                   inputs: dict[str, tuple[Origin, ...]] | None = None) -> list[Origin]:
    """The leaf outputs behind ``step_name/port`` (a sub-workflow output is followed to the
    leaves that produce it; a pass-through of a sub-workflow input is followed outwards)."""
    step = workflow.step(step_name)
    if step.subworkflow is None:
        return [Origin("step", f"{prefix}{step_name}", port)]
    out = step.subworkflow.outputs.get(port)
    if out is None:
        return []
    inner_inputs: dict[str, tuple[Origin, ...]] = {}
    if inputs is not None:
        for name, binding in step.bindings.items():
            resolved: list[Origin] = []
            for src in binding.sources:
                if src.step is None:
                    resolved += inputs.get(src.port, ())
                else:
                    resolved += output_origins(workflow, prefix, src.step, src.port, inputs)
            inner_inputs[name] = tuple(resolved)
    found: list[Origin] = []
    for src in out.sources:
        if src.step is None:
            found += inner_inputs.get(src.port, ())
        else:
            found += output_origins(step.subworkflow, f"{prefix}{step_name}/", src.step,
                                    src.port, inner_inputs)
    return found


def workflow_output_origins(workflow: Workflow) -> dict[str, tuple[Origin, ...]]:
    """Top-level workflow output → origins."""
    top = {name: (Origin("input", name),) for name in workflow.inputs}
    result: dict[str, tuple[Origin, ...]] = {}
    for name, out in sorted(workflow.outputs.items()):
        origins: list[Origin] = []
        for src in out.sources:
            if src.step is None:
                origins += top.get(src.port, ())
            else:
                origins += output_origins(workflow, "", src.step, src.port, top)
        result[name] = tuple(origins)
    return result
