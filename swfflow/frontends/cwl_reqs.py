"""Requirements and hints: inheritance, and their mapping to IR resources/containers/sizing.

CWL rule (v1.2 §"Requirements and hints"): the most specific instance of a requirement wins
(tool over step over enclosing workflows), and a requirement overrides a hint of the same class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UnsupportedFeature, WorkflowError
from ..ir import Container, Resources, Sizing
from .cwl_expr import UNKNOWN, is_expression

SWF_NAMESPACE = "https://github.com/swfflow/swfflow/cwl#"
CWLTOOL_NAMESPACE = "http://commonwl.org/cwltool#"

# requirements the local runner (cwltool) and the planner can honour
SUPPORTED_REQUIREMENTS = frozenset({
    "InlineJavascriptRequirement", "SchemaDefRequirement", "LoadListingRequirement",
    "DockerRequirement", "SoftwareRequirement", "InitialWorkDirRequirement",
    "EnvVarRequirement", "ShellCommandRequirement", "ResourceRequirement", "WorkReuse",
    "NetworkAccess", "InplaceUpdateRequirement", "ToolTimeLimit",
    "SubworkflowFeatureRequirement", "ScatterFeatureRequirement",
    "MultipleInputFeatureRequirement", "StepInputExpressionRequirement",
})

_UNSUPPORTED_HINTS = {
    "cwltool:Loop": "unroll the loop or drive the iterations from the stream bridge",
    "cwltool:MPIRequirement": "PanDA jobs are not MPI launches; move it to hints if optional",
    "cwltool:CUDARequirement": "move it to hints and select a GPU queue in the profile",
}


def short_class(name: str) -> str:
    """``https://github.com/swfflow/swfflow/cwl#Sizing`` -> ``swf:Sizing`` (same for cwltool:)."""
    for namespace, prefix in ((SWF_NAMESPACE, "swf:"), (CWLTOOL_NAMESPACE, "cwltool:")):
        if name.startswith(namespace):
            return prefix + name[len(namespace):]
    return name.rsplit("#", 1)[-1] if name.startswith(("http://", "https://")) else name


def as_dicts(items: Iterable[Any] | None) -> list[dict[str, Any]]:
    """cwl-utils requirement objects / raw hint maps -> plain dicts with a short ``class``."""
    found = []
    for item in items or ():
        plain = item.save(top=False) if hasattr(item, "save") else _plain(item)
        plain["class"] = short_class(str(plain.get("class", "")))
        found.append(plain)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def check_supported(requirements: Iterable[Mapping[str, Any]], where: str) -> None:
    for requirement in requirements:
        cls = requirement["class"]
        if cls in SUPPORTED_REQUIREMENTS:
            continue
        raise UnsupportedFeature(
            f"requirement {cls} is not supported",
            where=where,
            hint=_UNSUPPORTED_HINTS.get(cls, "move it to hints if the step can run without it"),
        )


def merge(levels: Iterable[Iterable[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Merge by class, outermost level first: a later (more specific) level replaces a class."""
    merged: dict[str, dict[str, Any]] = {}
    for level in levels:
        for item in level:
            merged[item["class"]] = dict(item)
    return list(merged.values())


def effective(requirement_levels: list[list[dict[str, Any]]],
              hint_levels: list[list[dict[str, Any]]]) -> tuple[list[dict], list[dict]]:
    requirements = merge(requirement_levels)
    required = {r["class"] for r in requirements}
    hints = [h for h in merge(hint_levels) if h["class"] not in required]
    return requirements, hints


def find(items: Iterable[Mapping[str, Any]], cls: str) -> Mapping[str, Any] | None:
    return next((i for i in items if i["class"] == cls), None)


Evaluator = Callable[[Any], Any]  # returns UNKNOWN when the value needs run-time inputs


def _number(value: Any, evaluate: Evaluator, field: str, where: str) -> float | None:
    if value is None:
        return None
    if is_expression(value):
        value = evaluate(value)
        if value is UNKNOWN:
            return None  # decided per job by the runner
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WorkflowError(f"{field} must be a number, got {value!r}", where=where,
                            hint="use an int or an expression that returns one")
    return value


def resources(requirements: list[dict], hints: list[dict], evaluate: Evaluator,
              where: str) -> Resources:
    rr = find(requirements, "ResourceRequirement") or find(hints, "ResourceRequirement") or {}
    limit = find(requirements, "ToolTimeLimit") or find(hints, "ToolTimeLimit") or {}

    def field(*names: str) -> float | None:
        for name in names:
            value = _number(rr.get(name), evaluate, name, where)
            if value is not None:
                return value
        return None

    cores, ram = field("coresMin", "coresMax"), field("ramMin", "ramMax")
    outdir, tmpdir = field("outdirMin", "outdirMax"), field("tmpdirMin", "tmpdirMax")
    walltime = _number(limit.get("timelimit"), evaluate, "timelimit", where)
    disk = None if outdir is None and tmpdir is None else (outdir or 0) + (tmpdir or 0)
    return Resources(
        cores=math.ceil(cores) if cores is not None else None,
        mem_mb=math.ceil(ram) if ram is not None else None,
        disk_mb=math.ceil(disk) if disk is not None else None,
        walltime_s=int(walltime) if walltime else None,  # 0 means "no limit" in CWL
    )


def container(requirements: list[dict], hints: list[dict]) -> Container | None:
    for items, required in ((requirements, True), (hints, False)):
        docker = find(items, "DockerRequirement")
        if docker:
            image = docker.get("dockerPull") or docker.get("dockerImageId") or ""
            if image:
                return Container(image=str(image), required=required)
    return None


_SIZING_FIELDS = {"filesPerJob": "files_per_job", "maxFilesPerJob": "max_files_per_job",
                  "gbPerJob": "gb_per_job", "eventsPerJob": "events_per_job", "nJobs": "n_jobs"}


def sizing(hints: list[dict], requirements: list[dict], where: str) -> Sizing:
    spec = find(requirements, "swf:Sizing") or find(hints, "swf:Sizing") or {}
    unknown = set(spec) - set(_SIZING_FIELDS) - {"class"}
    if unknown:
        raise WorkflowError(f"swf:Sizing has unknown field(s) {', '.join(sorted(unknown))}",
                            where=where, hint=f"use {', '.join(_SIZING_FIELDS)}")
    values = {}
    for cwl_name, ir_name in _SIZING_FIELDS.items():
        if cwl_name in spec:
            value = spec[cwl_name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise WorkflowError(f"swf:Sizing {cwl_name} must be a positive number",
                                    where=where, hint=f"got {value!r}")
            values[ir_name] = value if ir_name == "gb_per_job" else int(value)
    return Sizing(**values)


def retries(hints: list[dict], requirements: list[dict], where: str) -> int | None:
    spec = find(requirements, "swf:Retry") or find(hints, "swf:Retry")
    if spec is None:
        return None
    attempts = spec.get("attempts")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise WorkflowError("swf:Retry attempts must be a non-negative integer", where=where,
                            hint=f"got {attempts!r}")
    return attempts
