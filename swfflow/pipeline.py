"""The one path from a file to a plan: front end → IR → planner.

Every command (``compile``, ``dag``, ``run``, ``submit``, ``bridge``), the bridge and the
Snakemake plugin take a workflow file, an inputs file, a profile and ``--config`` pairs through
here, so they all accept exactly the same inputs and fail with the same messages:

- :func:`load_workflow` — a workflow file (CWL, Snakefile) and its inputs as IR (``dag``);
- :func:`build_plan` — a workflow file (CWL, Snakefile) compiled into a plan;
- :func:`compile_loaded` — the same for a workflow already loaded (``swfflow run`` looks at
  the IR before it decides how to run it);
- :func:`load_template` — the run-templated plan (``${RUN}`` kept) the bridge instantiates per
  run, from a workflow file or a plan.json, with the IR when there is one;
- :func:`load_instance` — the plan instance ``swfflow submit`` sends: compiled for one run, or
  a plan.json (instantiated for the run if it still has the placeholder);
- :func:`read_plan_file`, :func:`parse_config`, :func:`load_profile_with` — the pieces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.errors import ConfigError
from swfflow.frontends import load_any, load_inputs_file
from swfflow.plan.model import RUN, Plan
from swfflow.plan.planner import compile_workflow
from swfflow.plan.profile import Profile, load_profile

# panda-client resolves its cache host at import time unless told it is behind a real LB
# (reference/panda.md §8); the planner imports it to parse pchain steps offline, so the
# environment is set here, at the planner's edge, not inside the pure planner
OFFLINE_PANDA_CLIENT = {"PANDA_BEHIND_REAL_LB": "1"}


def build_plan(workflow_path: str, inputs_path: str | None, profile_path: str | None,
               run: str | None, strict: bool = False, config: dict | None = None) -> Plan:
    """Front end + planner. ``config`` (``--config k=v``) is added to the inputs; a Snakefile
    reads them as config."""
    return compile_file(workflow_path, inputs_path, profile_path, run, strict, config)[0]


def compile_file(workflow_path: str, inputs_path: str | None, profile_path: str | None,
                 run: str | None, strict: bool = False, config: dict | None = None
                 ) -> tuple[Plan, ir.Workflow]:
    """:func:`build_plan`, also returning the workflow's IR."""
    profile = load_profile(profile_path)  # cheapest check first
    workflow, inputs = load_workflow(workflow_path, inputs_path, config, strict)
    return _compile(workflow, inputs, profile, run), workflow


def check_file(workflow_path: str, inputs_path: str | None, profile_path: str | None,
               strict: bool = False, config: dict | None = None) -> str:
    """``compile --check``: compile without writing, and say what was checked. A Snakemake
    rule module (``*.smk``) whose jobs only the including Snakefile can make (no concrete
    target, inputs it does not have) is checked rule by rule instead."""
    from swfflow.frontends.snakemake_dag import NoJobGraph
    try:
        plan = build_plan(workflow_path, inputs_path, profile_path, None, strict, config)
    except NoJobGraph:
        if Path(workflow_path).suffix != ".smk":
            raise
        from swfflow.frontends.snakemake import check_module
        merged = {**load_inputs_file(inputs_path), **(config or {})}
        rules = check_module(workflow_path, merged)
        return f"ok (module: {rules} rules checked; its jobs come from the Snakefile using it)"
    return f"ok ({len(plan.tasks)} tasks, {len(plan.datasets)} datasets)"


def load_workflow(workflow_path: str, inputs_path: str | None, config: dict | None = None,
                  strict: bool = False) -> tuple[ir.Workflow, dict[str, Any]]:
    """The front end alone: the workflow's IR and the inputs it was loaded with."""
    inputs = {**load_inputs_file(inputs_path), **(config or {})}
    return load_any(workflow_path, inputs, strict=strict), inputs


def compile_loaded(workflow: ir.Workflow, inputs: Mapping[str, Any], profile_path: str | None,
                   run: str | None) -> Plan:
    """The plan of a workflow already loaded with ``inputs``."""
    return _compile(workflow, dict(inputs), load_profile(profile_path), run)


def _compile(workflow: ir.Workflow, inputs: dict[str, Any], profile: Profile,
             run: str | None) -> Plan:
    for key, value in OFFLINE_PANDA_CLIENT.items():
        os.environ.setdefault(key, value)
    return compile_workflow(workflow, inputs, profile, run)


def read_plan_file(path: str) -> Plan:
    """A compiled plan.json, or one clear error saying why it is not one."""
    try:
        return Plan.from_json(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the plan: {exc.strerror}", where=path) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"not a swfflow plan: {exc}", where=path,
                          hint="write one with `swfflow compile WORKFLOW -o plan.json`") from None


def is_plan_file(path: str) -> bool:
    """A compiled plan (``*.json``) rather than a workflow to compile."""
    return path.endswith(".json")


def load_template(workflow_path: str, inputs_path: str | None, profile_path: str | None
                  ) -> tuple[Plan, ir.Workflow | None]:
    """The run-templated plan (``${RUN}`` kept) and, for a workflow file, its IR."""
    if is_plan_file(workflow_path):
        plan, workflow = read_plan_file(workflow_path), None
    else:
        plan, workflow = compile_file(workflow_path, inputs_path, profile_path, None)
    if plan.run != RUN:
        raise ConfigError(f"the plan is already instantiated for run {plan.run}",
                          where=workflow_path,
                          hint="compile without --run: the bridge instantiates it per run")
    return plan, workflow


def load_instance(source: str, inputs: str | None, profile: str | None, run: str | None) -> Plan:
    """The plan instance to submit: a workflow compiled for ``run``, or a plan.json
    (instantiated for ``run`` if it still has the ``${RUN}`` placeholder)."""
    if not is_plan_file(source):
        if run is None:
            raise ConfigError("a workflow is submitted for one run: --run N is missing",
                              where=source, hint="e.g. swfflow submit calib.cwl --run 100123")
        return build_plan(source, inputs, profile, run)
    plan = read_plan_file(source)
    if plan.run == RUN:
        if run is None:
            raise ConfigError("the plan is not instantiated for a run: --run N is missing",
                              where=source, hint="or compile with --run N")
        return plan.instantiate(run)
    if run is not None and str(run) != plan.run:
        raise ConfigError(f"the plan is for run {plan.run}, not {run}", where=source,
                          hint="drop --run, or compile the workflow without --run")
    return plan


def parse_config(pairs: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs as Snakemake's --config reads them (values are YAML scalars)."""
    import yaml
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--config {pair!r} is not KEY=VALUE", hint="e.g. --config stf_dir=data")
        try:
            config[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            config[key.strip()] = value
    return config


def load_profile_with(profile_path: str | None, overrides: Mapping[str, Any],
                      output_scope: str | None = None) -> Profile:
    """The profile with some top-level keys replaced (those given a value) and, optionally,
    another output scope: what the Snakemake plugin's settings override."""
    data = load_profile(profile_path).as_dict()
    data.update({k: v for k, v in overrides.items() if v})
    if output_scope:
        data["scopes"]["output"] = output_scope
    return Profile.model_validate(data)
