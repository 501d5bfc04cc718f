"""Snakemake rules → IR attributes: the per-rule mapping of :mod:`.snakemake` (edge mode,
resources, sizing, container, display command, plain params, pchain options) and the checks
a rule must pass, with a job (a compile) or without one (a module's check)."""

from __future__ import annotations

import re
import shlex
from typing import Any

from swfflow import ir
from swfflow.errors import WorkflowError
from swfflow.frontends.cwl_pchain import ALLOWED_INPUTS
from swfflow.frontends.snakemake_dag import SnakeRule

MODES = {"stream": ir.EdgeMode.STREAM, "complete": ir.EdgeMode.COMPLETE}
NATIVE = {"prun": ir.StepKind.PRUN, "phpo": ir.StepKind.PHPO, "junction": ir.StepKind.JUNCTION}
# rule params that steer swfflow rather than the command (never passed on as values)
SIZING_PARAMS = {"swf_files_per_job": "files_per_job", "swf_max_files_per_job":
                 "max_files_per_job", "swf_gb_per_job": "gb_per_job",
                 "swf_events_per_job": "events_per_job", "swf_n_jobs": "n_jobs"}
CONTROL_PARAMS = {"swf_mode", "payload", *SIZING_PARAMS}
PLACEHOLDER = re.compile(r"\{(input|output|params|log|threads|wildcards)(?:\.(\w+))?(?::q)?\}")
TOKEN_KIND = {"input": "in", "output": "out", "params": "param", "wildcards": "param"}


def check_rule(rule: SnakeRule) -> None:
    """The per-rule checks a compile makes, for a rule without jobs (a module's)."""
    kind = NATIVE.get((rule.shell or "").strip())
    if kind is not None:
        native_options(rule, kind)
        return
    edge_mode(rule)
    step_resources(rule)
    step_sizing(rule)


def native_options(rule: SnakeRule, kind: ir.StepKind) -> dict[str, Any]:
    """A pchain rule's ``opt_*`` params, refused when one is not the kind's."""
    type_name = (rule.shell or "").strip()
    options = {k: v for k, v in rule.params.items() if k.startswith("opt_")}
    unknown = sorted(set(options) - ALLOWED_INPUTS[kind])
    if unknown:
        raise WorkflowError(f"unknown parameter(s) {', '.join(unknown)} for {type_name} rule "
                            f"{rule.name!r}", where=rule.where,
                            hint=f"{type_name} takes {', '.join(sorted(ALLOWED_INPUTS[kind]))}")
    return options


def edge_mode(rule: SnakeRule) -> ir.EdgeMode | None:
    value = rule.params.get("swf_mode")
    if value is None:
        return None
    if value not in MODES:
        raise WorkflowError(f"rule {rule.name!r}: swf_mode={value!r}", where=rule.where,
                            hint='params: swf_mode="stream" or swf_mode="complete"')
    return MODES[value]


def step_resources(rule: SnakeRule) -> ir.Resources:
    res = rule.resources
    mem = res.get("mem_mb") or (round(res["mem_mib"] * 1.048576) if res.get("mem_mib") else None)
    disk = res.get("disk_mb") or (round(res["disk_mib"] * 1.048576) if res.get("disk_mib")
                                  else None)
    runtime = res.get("runtime")
    for what, value in (("mem_mb", mem), ("disk_mb", disk), ("runtime", runtime)):
        if value is not None and not isinstance(value, int | float):
            raise WorkflowError(f"rule {rule.name!r}: resource {what}={value!r} is not a number",
                                where=rule.where, hint="give mem_mb/disk_mb in MB and runtime "
                                                       "in minutes")
    return ir.Resources(cores=rule.threads if rule.threads > 1 else None,
                        mem_mb=int(mem) if mem else None, disk_mb=int(disk) if disk else None,
                        walltime_s=int(runtime * 60) if runtime else None)


def step_sizing(rule: SnakeRule) -> ir.Sizing:
    values = {}
    for param, attribute in SIZING_PARAMS.items():
        value = rule.params.get(param)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise WorkflowError(f"rule {rule.name!r}: {param}={value!r}", where=rule.where,
                                hint=f"{param} is a positive number")
        values[attribute] = value
    return ir.Sizing(**values)


def step_container(image: str | None) -> ir.Container | None:
    if not image:
        return None
    # CWL's dockerPull has no scheme; keep one spelling of a Docker image in the IR
    return ir.Container(image.removeprefix("docker://"), required=True)


def display_command(shell: str | None) -> tuple[str, ...]:
    """Display argv with the IR's placeholders: {input.stf:q} → {in:stf}."""
    if not shell:
        return ()

    def token(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        return f"{{{TOKEN_KIND.get(kind, kind)}:{name}}}" if name else f"{{{kind}}}"

    text = PLACEHOLDER.sub(token, " ".join(shell.split()))
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return tuple(text.split())


def plain_value(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(plain_value(v) for v in value)
    return False


def param_type(value: Any) -> str:
    table = {bool: "boolean", int: "int", float: "float", str: "string"}
    return table.get(type(value), "Any")
