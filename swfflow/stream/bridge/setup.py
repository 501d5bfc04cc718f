"""Build a bridge from command-line choices: the plan template, catalog, executor, store."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.errors import ConfigError
from swfflow.plan.model import RUN, Plan

CATALOGS = ("local", "rucio")
BACKENDS = ("local", "panda")


@dataclass
class Setup:
    workflow: str  # CWL, Snakefile or plan.json
    inputs: str | None = None
    profile: str | None = None
    catalog: str = "local"
    backend: str = "local"
    state: str = "sqlite:///bridge-state/bridge.db"
    workdir: Path = Path("bridge-work")
    jobs: int = 2
    no_container: bool = False
    rucio_config: str | None = None
    panda_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # BridgeConfig fields


def load_template(workflow_path: str, inputs_path: str | None, profile_path: str | None
                  ) -> tuple[Plan, Any]:
    """The run-templated plan (``${RUN}`` kept) and, for a workflow file, its IR."""
    if workflow_path.endswith(".json"):
        from swfflow.commands.compile import read_plan_file

        plan = read_plan_file(workflow_path)
        workflow = None
    else:
        from swfflow.frontends import load_any, load_inputs_file
        from swfflow.plan.planner import compile_workflow
        from swfflow.plan.profile import load_profile

        profile = load_profile(profile_path)
        inputs = load_inputs_file(inputs_path)
        workflow = load_any(workflow_path, inputs)
        plan = compile_workflow(workflow, inputs, profile, None)
    if plan.run != RUN:
        raise ConfigError(f"the plan is already instantiated for run {plan.run}",
                          where=workflow_path,
                          hint="compile without --run: the bridge instantiates it per run")
    return plan, workflow


def build_bridge(setup: Setup, stack: ExitStack, publish=None):
    """A ready :class:`~swfflow.stream.bridge.core.Bridge`; resources close with ``stack``."""
    from swfflow.stream.bridge.core import Bridge, BridgeConfig
    from swfflow.state import state_engine

    if setup.catalog not in CATALOGS or setup.backend not in BACKENDS:
        raise ConfigError(f"unknown catalog/backend {setup.catalog}/{setup.backend}",
                          hint=f"catalogs: {', '.join(CATALOGS)}; backends: {', '.join(BACKENDS)}")
    template, workflow = load_template(setup.workflow, setup.inputs, setup.profile)
    engine = state_engine(setup.state)
    stack.callback(engine.dispose)
    catalog = _catalog(setup, engine)
    executor, prepare, run_expression = _executor(setup, engine, catalog, workflow, template,
                                                  stack)
    # a Rucio client is not thread-safe: the attach thread gets its own
    attach_catalog = _catalog(setup, engine) if setup.catalog == "rucio" else None
    return Bridge(template, catalog, executor, engine, config=BridgeConfig(**setup.options),
                  publish=publish, prepare=prepare, run_expression=run_expression,
                  attach_catalog=attach_catalog)


def _catalog(setup: Setup, engine: Any):
    if setup.catalog == "local":
        from swfflow.backends.local_catalog import LocalCatalog

        return LocalCatalog(engine)
    from swfflow.backends.rucio import RucioCatalog

    # few quick attempts per call: the bridge's own gates back off for longer outages
    return RucioCatalog.from_config(setup.rucio_config, attempts=2, backoff_s=0.2,
                                    max_backoff_s=1.0)


def _executor(setup: Setup, engine: Any, catalog: Any, workflow: Any, template: Plan,
              stack: ExitStack):
    if setup.backend == "panda":
        from swfflow.backends.panda import PandaExecutor
        from swfflow.drive.expressions import expressions_for_plan

        # PanDA gets the plan's task parameters as they are (no prepare); ExpressionTools are
        # no PanDA tasks: evaluated here, their tools rebuilt from the plan's payloads
        return (PandaExecutor(setup.panda_url), None,
                expressions_for_plan(setup.workflow, template, setup.workdir))
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.drive.local_run import run_expression_locally
    from swfflow.drive.payload import LocalPayloads
    from swfflow.backends.local_paths import LocalPathCatalog

    if workflow is None:
        raise ConfigError("the local executor needs the workflow file, not a plan.json",
                          hint="give the .cwl/Snakefile, or use --backend panda")
    workdir = setup.workdir.resolve()
    reader = LocalPathCatalog(catalog) if setup.catalog == "rucio" else catalog
    executor = LocalExecutor(reader, engine, workdir, jobs=setup.jobs,
                             no_container=setup.no_container)
    stack.callback(executor.shutdown)
    return executor, LocalPayloads(workflow), run_expression_locally(workdir)


def summary(bridge: Any) -> dict[str, Any]:
    """Counters and the per-run view, for --json and logs."""
    from swfflow.stream.status import run_status_of

    errors = {name: {"failures": gate.total_failures, "last_error": gate.last_error}
              for name, gate in bridge.gates.items() if gate.total_failures}
    if bridge.last_error:
        errors["handling"] = {"failures": bridge.counters["errors"],
                              "last_error": bridge.last_error}
    return {"counters": dict(bridge.counters), "errors": errors,
            **run_status_of(bridge.store.engine)}


def default_subscription(template: Plan, namespace: str | None) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in template.workflow)
    return f"swfflow-bridge-{safe}-{namespace or 'all'}"


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
