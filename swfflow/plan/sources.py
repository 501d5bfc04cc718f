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
        per_port = {port: _binding_origins(workflow, prefix, binding.sources, inputs)
                    for port, binding in step.bindings.items()}
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
    inner_inputs = {} if inputs is None else {
        name: _binding_origins(workflow, prefix, binding.sources, inputs)
        for name, binding in step.bindings.items()}
    return list(_binding_origins(step.subworkflow, f"{prefix}{step_name}/", out.sources,
                                 inner_inputs))


def _binding_origins(workflow: Workflow, prefix: str, sources, inputs) -> tuple[Origin, ...]:
    """Origins of a list of sources at one workflow level (inputs: this level's input map)."""
    found: list[Origin] = []
    for src in sources:
        if src.step is None:
            found += inputs.get(src.port, ())
        else:
            found += output_origins(workflow, prefix, src.step, src.port, inputs)
    return tuple(found)


def workflow_output_origins(workflow: Workflow) -> dict[str, tuple[Origin, ...]]:
    """Top-level workflow output → origins."""
    top = {name: (Origin("input", name),) for name in workflow.inputs}
    return {name: _binding_origins(workflow, "", out.sources, top)
            for name, out in sorted(workflow.outputs.items())}
