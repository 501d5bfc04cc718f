"""ExpressionTool steps on the client, whatever backend runs the tasks.

An ExpressionTool is never a PanDA task: the driver evaluates it where it runs (cwltool,
in-process, as ``swfflow run`` does) on the values it resolved — parameters, the outputs of
upstream expressions, and the files of upstream datasets as the catalog lists them. With the
PanDA backend nothing builds local job payloads (PanDA gets the plan's task parameters as they
are), so the expression step's tool is rebuilt here from the plan's payload, the way a worker
job rebuilds a command step's (:func:`swfflow.worker.runnable_tool`).

File inputs: cwltool opens a File only to load its contents, so an expression that reads names,
sizes or counts works wherever the replicas are. An input the tool loads (``loadContents``) must
be readable on this machine: a Rucio replica on a posix RSE (``file://`` pfn) is read in place;
a file with no such replica (``root://``, ``https://``, a bare DID) is a clear error naming the
step, the input and the files, not a cwltool traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from swfflow.drive.flow_run import ExpressionRunner, Prepare
from swfflow.errors import RunFailed
from swfflow.plan.model import Plan, TaskSpec
from swfflow.runtime.files import absolute_locations, location_path


def plan_folder(source: str, plan: Plan) -> Path:
    """Where the plan's relative paths resolve on this machine: the folder of the workflow file
    given; for a plan.json, the folder of the workflow it was compiled from when that file is
    here, else the plan file's own folder (a worker's sandbox: plan.json at the workflow's top)."""
    given = Path(source)
    if not source.endswith(".json"):
        return given.resolve().parent
    named = Path(plan.source) if plan.source else None
    return (named if named is not None and named.is_file() else given).resolve().parent


class PlanPayloads:
    """What :class:`~swfflow.drive.payload.LocalPayloads` does for one task, without the IR:
    the payload's tool made self-contained, job file locations made absolute under ``base``."""

    def __init__(self, base: Path):
        self.base = Path(base).resolve()

    def __call__(self, spec: TaskSpec) -> TaskSpec:
        from swfflow.worker import runnable_tool

        payload = dict(spec.payload)
        payload["tool"] = runnable_tool(spec, self.base)
        payload["job"] = absolute_locations(payload.get("job") or {}, self.base)
        return replace(spec, payload=payload)


def client_expressions(payloads: Prepare, workdir: Path) -> ExpressionRunner:
    """The driver's ``run_expression`` for a backend that builds no local payloads: each step
    prepared by ``payloads``, its loaded File inputs checked, then run under ``workdir``."""
    from swfflow.drive.local_run import run_expression_locally

    run = run_expression_locally(Path(workdir).resolve())

    def evaluate(spec: TaskSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        ready = payloads(spec)
        job = {**inputs, **(ready.payload.get("job") or {})}  # what the runner will bind
        _require_local_contents(ready, job)
        return run(ready, inputs)

    return evaluate


def expressions_for_plan(source: str, plan: Plan, workdir: Path) -> ExpressionRunner:
    """``run_expression`` for a driver of ``plan`` (submitted from the workflow or plan file
    ``source``) whose backend builds no local payloads: what the bridge and ``swfflow submit``
    pass with PanDA."""
    return client_expressions(PlanPayloads(plan_folder(source, plan)), workdir)


def _require_local_contents(spec: TaskSpec, job: Mapping[str, Any]) -> None:
    for port in _loaded_ports(spec.payload["tool"]):
        elsewhere = [f["location"] for f in _files(job.get(port))
                     if not _readable_here(str(f.get("location", "")))]
        if elsewhere:
            shown = ", ".join(elsewhere[:3]) + (f" and {len(elsewhere) - 3} more"
                                                if len(elsewhere) > 3 else "")
            raise RunFailed(
                f"expression step {spec.step} reads the contents of input {port!r} "
                f"(loadContents), but {len(elsewhere)} of its files have no copy readable on "
                f"this machine: {shown}", where=spec.step,
                hint="ExpressionTool steps are evaluated where swfflow runs, not on PanDA: run "
                     "swfflow where these replicas are readable (a posix RSE whose file:// "
                     "paths are mounted here), or read the files in a CommandLineTool step, "
                     "which runs on PanDA, and pass on what it found")


def _loaded_ports(tool: Mapping[str, Any]) -> list[str]:
    """The tool's inputs whose File contents cwltool loads (v1.1+ ``loadContents``, or v1.0's
    ``inputBinding.loadContents``)."""
    declared = tool.get("inputs") or {}
    pairs = declared.items() if isinstance(declared, Mapping) else \
        ((item.get("id", ""), item) for item in declared if isinstance(item, Mapping))
    ports = []
    for name, param in pairs:
        if not isinstance(param, Mapping):
            continue  # `port: File` shorthand: nothing loaded
        binding = param.get("inputBinding") or {}
        if param.get("loadContents") or (isinstance(binding, Mapping)
                                         and binding.get("loadContents")):
            ports.append(str(name).rsplit("#", 1)[-1].rsplit("/", 1)[-1])
    return ports


def _files(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if value.get("class") == "File":
            yield value
        else:
            for item in value.values():
                yield from _files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _files(item)


def _readable_here(location: str) -> bool:
    if "://" in location and not location.startswith("file://"):
        return False
    return location_path(location).is_file()
