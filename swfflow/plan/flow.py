"""The workflow's data flow, carried in the plan (pure).

The plan's tasks say *what* runs on PanDA; the flow says how values travel between them with
CWL's semantics: sources and ``linkMerge``, ``pickValue``, defaults, ``valueFrom``, scatter
(method, ports), ``when``, sub-workflows of any depth, and the workflow outputs. The driver's
engine (:mod:`swfflow.drive.engine`) walks it at run time to decide scatter widths, conditions
and values on real data — so a plan read from ``plan.json`` runs with exactly the semantics of
the CWL document it was compiled from, and nothing is re-derived from that document.

The flow is the IR's tree without the parts only the planner needs (resources, containers,
tools: those live in the tasks). :func:`flow_of` writes it as plain JSON-able data;
:func:`workflow_of` reads it back as an :class:`~swfflow.ir.Workflow` whose leaves name their
task (``Step.native["task"]`` = the leaf path, the plan task's ``step``).
"""

from __future__ import annotations

from typing import Any

from swfflow import ir
from swfflow.plan.paths import relative, relative_locations

FLOW_VERSION = 1


# --- writing ----------------------------------------------------------------------------------
def flow_of(workflow: ir.Workflow, bases: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """The data flow of ``workflow`` as JSON-able data (locations relative to ``bases``)."""
    return {
        "version": FLOW_VERSION,
        "name": workflow.name,
        "requirements": relative(list(workflow.requirements), bases),
        "inputs": {name: {**_port(wi.port, bases), "stream": wi.stream}
                   for name, wi in sorted(workflow.inputs.items())},
        "outputs": {name: {"type": out.type, "sources": [str(s) for s in out.sources],
                           "link_merge": out.link_merge, "pick_value": out.pick_value}
                    for name, out in sorted(workflow.outputs.items())},
        "steps": [_step(step, bases, f"{prefix}{step.name}") for step in workflow.steps],
        "links": [[lk.src_step, lk.src_port, lk.dst_step, lk.dst_port, lk.mode.value]
                  for lk in workflow.links()],
    }


def _port(port: ir.Port, bases: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": port.kind.value, "type": port.type,
                            "load_contents": port.load_contents}
    if port.has_default:
        data["default"] = relative_locations(port.default, bases)
    if port.secondary_files:
        data["secondary_files"] = list(port.secondary_files)
    return data


def _binding(binding: ir.Binding, bases: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {"sources": [str(s) for s in binding.sources],
                            "link_merge": binding.link_merge, "pick_value": binding.pick_value,
                            "value_from": binding.value_from,
                            "load_contents": binding.load_contents}
    if binding.has_default:
        data["default"] = relative_locations(binding.default, bases)
    return data


def _step(step: ir.Step, bases: tuple[str, ...], path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": step.name, "kind": step.kind.value, "where": relative(step.where, bases),
        "inputs": {n: _port(p, bases) for n, p in sorted(step.inputs.items())},
        "outputs": {n: _port(p, bases) for n, p in sorted(step.outputs.items())},
        "bindings": {n: _binding(b, bases) for n, b in sorted(step.bindings.items())},
        "scatter": None if step.scatter is None else
        {"ports": list(step.scatter.ports), "method": step.scatter.method.value},
        "when": None if step.when is None else
        {"expression": step.when.expression, "static": step.when.static,
         "depends_on": list(step.when.depends_on)},
        "requirements": relative(list(step.requirements), bases),
    }
    if step.subworkflow is not None:
        data["flow"] = flow_of(step.subworkflow, bases, f"{path}/")
    else:
        data["task"] = path
    return data


# --- reading ----------------------------------------------------------------------------------
def workflow_of(flow: dict[str, Any], source_path: str = "") -> ir.Workflow:
    """The flow as an IR tree the engine walks. ``source_path`` (the workflow file, when
    known) is where relative default locations resolve."""
    workflow = ir.Workflow(name=flow["name"], source_path=source_path,
                           requirements=tuple(flow.get("requirements") or ()))
    for name, data in flow["inputs"].items():
        workflow.inputs[name] = ir.WorkflowInput(_read_port(name, data),
                                                 stream=bool(data.get("stream")))
    for name, data in flow["outputs"].items():
        workflow.outputs[name] = ir.WorkflowOutput(
            name=name, type=data["type"], sources=tuple(_source(s) for s in data["sources"]),
            link_merge=data.get("link_merge"), pick_value=data.get("pick_value"))
    for data in flow["steps"]:
        workflow.add_step(_read_step(data, source_path))
    for src_step, src_port, dst_step, dst_port, mode in flow.get("links", []):
        workflow.add_link(ir.Link(src_step, src_port, dst_step, dst_port, ir.EdgeMode(mode)))
    return workflow


def _source(text: str) -> ir.Source:
    step, _, port = text.rpartition("/")
    return ir.Source(step or None, port)


def _read_port(name: str, data: dict[str, Any]) -> ir.Port:
    return ir.Port(name=name, kind=ir.PortKind(data["kind"]), type=data["type"],
                   default=data.get("default"), has_default="default" in data,
                   secondary_files=tuple(data.get("secondary_files") or ()),
                   load_contents=bool(data.get("load_contents")))


def _read_step(data: dict[str, Any], source_path: str) -> ir.Step:
    scatter = data.get("scatter")
    when = data.get("when")
    bindings = {port: ir.Binding(port=port, sources=tuple(_source(s) for s in b["sources"]),
                                 link_merge=b.get("link_merge"), pick_value=b.get("pick_value"),
                                 value_from=b.get("value_from"), default=b.get("default"),
                                 has_default="default" in b,
                                 load_contents=bool(b.get("load_contents")))
                for port, b in data["bindings"].items()}
    return ir.Step(
        name=data["name"], kind=ir.StepKind(data["kind"]), where=data.get("where", ""),
        inputs={n: _read_port(n, p) for n, p in data["inputs"].items()},
        outputs={n: _read_port(n, p) for n, p in data["outputs"].items()},
        bindings=bindings,
        scatter=None if scatter is None else
        ir.Scatter(tuple(scatter["ports"]), ir.ScatterMethod(scatter["method"])),
        when=None if when is None else
        ir.Condition(when["expression"], when.get("static"), tuple(when.get("depends_on") or ())),
        requirements=tuple(data.get("requirements") or ()),
        subworkflow=workflow_of(data["flow"], source_path) if "flow" in data else None,
        native={"task": data["task"]} if "task" in data else {},
    )
