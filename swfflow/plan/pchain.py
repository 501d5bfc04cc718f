"""Task parameters of PanDA-native steps (pchain dialect), exactly as pchain builds them.

pchain's server side (pandaserver/workflow/workflow_utils.Node.make_task_params) rebuilds a prun
command line from the step's opt_* fields and re-parses it with panda-client's own
``PrunScript.main(True, argv, dry_mode=True)`` on top of a template made by
``PrunScript.main(get_taskparams=True, ...)``. We do the same calls, offline, so the result is
panda-client's, not a re-implementation. Two deliberate differences, both for deterministic
plans: the random UUID of the ``consolidate`` dataset is derived from the task name, and
``osInfo`` comes from the profile when it sets one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import shlex
import tempfile
import uuid
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from swfflow.errors import WorkflowError
from swfflow.ir import Step, StepKind

# keys pchain copies from the parsed command line even when the template has them
_ALWAYS_COPIED = {"log", "container_name", "multiStepExec", "site", "excludedSite",
                  "includedSite", "nMaxFilesPerJob", "nGBPerJob"}


def _panda_client():
    # offline dry parsing never contacts the server; the caller's edge (swfflow.pipeline)
    # sets PANDA_BEHIND_REAL_LB so that the import does not resolve the cache host
    from pandaclient import PhpoScript, PrunScript
    return PrunScript, PhpoScript


def _quiet_call(function, *args, **kwargs) -> Any:
    """panda-client prints and may sys.exit() on bad options: turn that into WorkflowError.
    It also sets process-wide Rucio variables (``RUCIO_ACCOUNT=dummy`` in dry mode, which
    every later Rucio client of the process would then use): the environment is put back."""
    out = io.StringIO()
    environment = dict(os.environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            return function(*args, **kwargs)
    except SystemExit:
        message = out.getvalue().strip().splitlines()
        raise WorkflowError(f"panda-client rejected the step's options: "
                            f"{message[-1] if message else 'invalid arguments'}",
                            hint="check opt_args / opt_exec of the step") from None
    finally:
        os.environ.clear()
        os.environ.update(environment)


@lru_cache(maxsize=32)
def _template(out_ds: str, vo: str | None, label: str | None, group: str | None) -> dict:
    """pchain's per-workflow template (PchainScript: --exec __dummy_exec_str__ ...)."""
    prun, _ = _panda_client()
    argv = ["--exec", "__dummy_exec_str__", "--outDS", out_ds,
            "--containerImage", "__dummy_container__"]
    for option, value in (("--vo", vo), ("--prodSourceLabel", label), ("--workingGroup", group)):
        if value:
            argv += [option, value]
    params = _quiet_call(prun.main, get_taskparams=True, ext_args=argv, dry_mode=True)
    for key in ("noInput", "nEvents", "nEventsPerJob"):
        params.pop(key, None)
    return params


def output_types(task_params: Mapping[str, Any]) -> list[str]:
    """Output types of a prun task (``out.root`` of ``..._${SN/P}.out.root``), as pchain derives
    them to name a parent's dataset ``<taskName>_<type>/``."""
    found = []
    for item in task_params.get("jobParameters", ()):
        if item.get("type") == "template" and item.get("param_type") == "output":
            value = item["value"]
            match = re.search(r"_([^_]+)/$", item["dataset"]) if value.startswith("regex|") \
                else re.search(r"}\.(.+)$", value)
            if match:
                found.append(match.group(1))
    return found or ["dummy"]


def _dataset(parent: Mapping[str, Any], type_hint: str | None) -> str:
    suffix = type_hint or output_types(parent)[0]
    if "*" in suffix:
        suffix = suffix.replace("*", "XYZ") + ".tgz"
    return f"{parent['taskName']}_{suffix}/"


def _resolve_inputs(step: Step, upstream: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """opt_* values with upstream datasets named as pchain names them."""
    values = {k: v for k, v in step.native.items() if k.startswith("opt_")}
    sources = step.native.get("sources", {})

    def name_of(source: str, type_hint: str | None) -> str:
        parent = upstream.get(source)
        return _dataset(parent, type_hint) if parent else "${" + source + "}"

    for port in ("opt_inDS", "opt_trainingDS"):
        if port in sources:
            hint = values.get("opt_inDsType") or values.get("opt_trainingDsType")
            names = [name_of(s, hint) for s in sources[port]]
            values[port] = names[0] if len(names) == 1 else names
        elif values.get(port):
            hint = values.get("opt_inDsType") or values.get("opt_trainingDsType")
            items = values[port] if isinstance(values[port], list) else [values[port]]
            named = [f"{d}_{hint}/" if hint else d for d in items]
            values[port] = named if isinstance(values[port], list) else named[0]
    if "opt_secondaryDSs" in sources or values.get("opt_secondaryDSs"):
        secondary = sources.get("opt_secondaryDSs") or values.get("opt_secondaryDSs") or []
        types = list(values.get("opt_secondaryDsTypes") or [None] * len(secondary))
        names = []
        for index, (item, ds_type) in enumerate(zip(secondary, types, strict=False), start=1):
            if item in upstream:
                names.append(_dataset(upstream[item], ds_type))
            else:
                suffix = (ds_type.replace("*", "XYZ") + ".tgz") if ds_type and "*" in ds_type else ds_type
                names.append(f"{item}_{suffix}/" if suffix else f"{item}/")
            for key in ("opt_exec", "opt_args"):
                if values.get(key):
                    values[key] = values[key].replace(f"%{{SECDS{index}}}", names[-1])
        for key in ("opt_exec", "opt_args"):
            if values.get(key):
                values[key] = values[key].replace("%{SECDS*}", ",".join(names))
    return values


def pchain_task_params(step: Step, *, task_name: str, out_ds: str, profile: Mapping[str, Any],
                       upstream: Mapping[str, Mapping[str, Any]] | None = None,
                       is_workflow_output: bool = False) -> dict[str, Any]:
    """JEDI task parameters pchain would submit for ``step`` (kind PRUN, JUNCTION or PHPO).

    ``task_name`` is pchain's ``<outDS>_<serial:03d>_<step>``; ``out_ds`` the workflow's outDS;
    ``upstream`` maps a source (``"top/outDS"``) to the parent's task parameters (from this
    function), to name input datasets ``<parent taskName>_<type>/`` as pchain does. Without it
    an upstream dataset is left as ``${top/outDS}``. ``noWaitParent``/``parentTaskName`` are the
    planner's to set (pchain sets them when a step has exactly one parent)."""
    upstream = upstream or {}
    if step.kind is StepKind.PHPO:
        return _phpo_params(step, task_name, out_ds, profile, upstream)
    if step.kind not in (StepKind.PRUN, StepKind.JUNCTION):
        raise WorkflowError(f"step {step.name!r} is not a pchain step", where=step.where)
    prun, _ = _panda_client()
    values = _resolve_inputs(step, upstream)
    template = copy.deepcopy(_template(out_ds, profile.get("vo"), profile.get("prodSourceLabel"),
                                       profile.get("workingGroup")))
    params = template
    params["taskName"] = task_name
    args = values.get("opt_args") or ""
    if step.kind is StepKind.JUNCTION:  # a junction always ships its decision file
        match = re.search(r"(--outputs)( +|=)([^ ]+)", args)
        if not match:
            args += " --outputs results.json"
        elif "results.json" not in match.group(3):
            args = args.replace(match.group(0), f"--outputs={match.group(3)},results.json")
    command = ["prun", *shlex.split(args)]
    in_ds = values.get("opt_inDS")
    in_list = (in_ds if isinstance(in_ds, list) else [in_ds]) if in_ds else []
    exec_text = values.get("opt_exec") or ""
    if in_list:
        command += ["--inDS", ",".join(in_list), "--notExpandInDS", "--notExpandSecDSs"]
        if step.kind is StepKind.JUNCTION:
            command += ["--forceStaged", "--forceStagedSecondary"]
        for index, name in enumerate(in_list, start=1):
            exec_text = exec_text.replace(f"%{{DS{index}}}", name)
        exec_text = exec_text.replace("%{DS*}", ",".join(in_list))
    command += ["--exec", exec_text, "--outDS", task_name]
    image = values.get("opt_containerImage")
    parse = command[1:] + (["--containerImage", image] if image else ["--containerImage", None])
    if image:
        command += ["--containerImage", image]
    parse += ["--tmpDir", tempfile.gettempdir()]
    parsed = _quiet_call(prun.main, True, parse, dry_mode=True)
    params["cliParams"] = " ".join(shlex.quote(x) for x in command)
    for key, value in parsed.items():
        if key == "buildSpec":
            continue
        if key not in params or key in _ALWAYS_COPIED:
            params[key] = value
        elif key == "architecture":
            params[key] = value if image or value else ""
            if not image and "@" not in params[key] and "basePlatform" in params:
                params[key] = f"{params[key]}@{params['basePlatform']}"
    params["jobParameters"] = _merge_job_parameters(params["jobParameters"], parsed["jobParameters"])
    if not image:
        params.pop("container_name", None)
        params.pop("multiStepExec", None)
    params.pop("basePlatform", None)
    if not is_workflow_output:
        params["noEmail"] = True
    if step.kind is StepKind.JUNCTION:
        params["runOnInstant"] = True
    return _deterministic(params, task_name, profile)


def _merge_job_parameters(template: list[dict], parsed: list[dict]) -> list[dict]:
    """Template items minus its dummy ``-p "<exec>"`` block, then the parsed command's items
    after ``__delimiter__`` (minus its ``-a <sandbox>``): pchain's merge rule."""
    merged, in_exec, exec_done = [], False, False
    for item in template:
        constant = item["type"] == "constant"
        if constant and item["value"].startswith("-p "):
            in_exec = True
            continue
        if in_exec and not exec_done:
            if constant and "padding" not in item:
                exec_done = True
            continue
        merged.append(item)
    after_delimiter = False
    for item in parsed:
        constant = item["type"] == "constant"
        if constant and item["value"] == "__delimiter__":
            after_delimiter = True
            continue
        if after_delimiter and not (constant and item["value"].startswith("-a ")):
            merged.append(item)
    return merged


def _phpo_params(step: Step, task_name: str, out_ds: str, profile: Mapping[str, Any],
                 upstream: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    _, phpo = _panda_client()
    values = _resolve_inputs(step, upstream)
    template = _template(out_ds, profile.get("vo"), profile.get("prodSourceLabel"),
                         profile.get("workingGroup"))
    command = shlex.split(values.get("opt_args") or "")
    if values.get("opt_trainingDS"):
        command += ["--trainingDS", values["opt_trainingDS"]]
    command += ["--outDS", task_name]
    # phpo reads --loadJson/--searchSpaceFile relative to the cwd; pchain runs in the unpacked
    # sandbox, i.e. the workflow's directory
    workdir = Path(step.where.rsplit(":", 1)[0]).parent if step.where else Path.cwd()
    previous = Path.cwd()
    try:
        os.chdir(workdir if workdir.is_dir() else previous)
        params = _quiet_call(phpo.main, True, command, dry_mode=True)
    finally:
        os.chdir(previous)
    sandbox = next((i["value"].split()[-1] for i in template["jobParameters"]
                    if i["type"] == "constant" and i["value"].startswith("-a ")), "")
    for item in params["jobParameters"]:
        if item["type"] == "constant" and item["value"].startswith("-a "):
            item["value"] = f"-a {sandbox} --sourceURL {template['sourceURL']}"
    return _deterministic(params, task_name, profile)


def _deterministic(params: dict[str, Any], task_name: str, profile: Mapping[str, Any]) -> dict:
    stable = uuid.uuid5(uuid.NAMESPACE_URL, f"swfflow:{task_name}")
    for item in params.get("jobParameters", ()):
        if "consolidate" in item:
            item["consolidate"] = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                                         str(stable), item["consolidate"])
    if profile.get("osInfo"):
        params["osInfo"] = profile["osInfo"]
    return params
