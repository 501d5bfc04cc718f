"""Make a plan task's payload runnable on this machine.

The plan is machine-independent: file locations are relative to the workflow's folder and the
tool dict's own relative references are relative to the tool's file. For a local run the IR is
at hand, so each leaf's tool becomes self-contained (:func:`~swfflow.runtime.leaf.standalone_tool`)
and job values get absolute locations. (Optional payload key added here: ``tool`` is replaced;
nothing else in the plan changes.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from swfflow import ir
from swfflow.plan.model import TaskSpec
from swfflow.runtime.files import absolute_locations
from swfflow.runtime.leaf import standalone_tool


class LocalPayloads:
    """``prepare`` callback for the driver when the IR of the plan is available."""

    def __init__(self, workflow: ir.Workflow):
        self.base = Path(workflow.source_path).resolve().parent if workflow.source_path \
            else Path.cwd()
        self.tools = {leaf.path: standalone_tool(leaf.step) for leaf in ir.iter_leaves(workflow)
                      if leaf.step.tool is not None}

    def __call__(self, spec: TaskSpec) -> TaskSpec:
        payload = dict(spec.payload)
        if spec.step in self.tools:
            payload["tool"] = self.tools[spec.step]
        payload["job"] = absolute_locations(payload.get("job") or {}, self.base)
        return replace(spec, payload=payload)
