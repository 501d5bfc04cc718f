"""Build a bridge from command-line choices: the plan template (:mod:`swfflow.pipeline`), the
catalog and executor (:mod:`swfflow.assemble`), the store (:mod:`swfflow.state`)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.errors import ConfigError
from swfflow.plan.model import Plan


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


@dataclass
class Prepared:
    """Everything a bridge needs but the bridge itself: what a standby holds ready while it
    waits for the bridge lock (nothing here writes to the state store)."""

    template: Plan
    backends: Any
    engine: Any
    config: Any
    publish: Any = None

    def build(self, stack: ExitStack):
        """The :class:`~swfflow.stream.bridge.core.Bridge` (it creates and migrates the
        store's tables): only once this process is the active bridge."""
        from swfflow.stream.bridge.core import Bridge

        bridge = Bridge(self.template, self.backends, self.engine, config=self.config,
                        publish=self.publish)
        stack.callback(bridge.open.detach_all)  # the runs' flows stop before backends close
        return bridge


def build_bridge(setup: Setup, stack: ExitStack, publish=None):
    """A ready :class:`~swfflow.stream.bridge.core.Bridge`; resources close with ``stack``."""
    return prepare_bridge(setup, stack, publish).build(stack)


def prepare_bridge(setup: Setup, stack: ExitStack, publish=None) -> Prepared:
    """The plan template (:mod:`swfflow.pipeline`), the catalog and executor
    (:mod:`swfflow.assemble`), the store's engine (:mod:`swfflow.state`) and the settings;
    resources close with ``stack``."""
    from swfflow.assemble import Settings, assemble, names
    from swfflow.pipeline import load_template
    from swfflow.state import state_engine
    from swfflow.stream.bridge.config import BridgeConfig

    if setup.catalog not in names("catalog") or setup.backend not in names("executor"):
        raise ConfigError(f"unknown catalog/backend {setup.catalog}/{setup.backend}",
                          hint=f"catalogs: {', '.join(names('catalog'))}; "
                               f"backends: {', '.join(names('executor'))}")
    template, workflow = load_template(setup.workflow, setup.inputs, setup.profile)
    engine = state_engine(setup.state)
    stack.callback(engine.dispose)
    # few quick attempts per Rucio call: the bridge's own gates back off for longer outages
    settings = Settings(executor=setup.backend, catalog=setup.catalog, workdir=setup.workdir,
                        jobs=setup.jobs, no_container=setup.no_container,
                        panda_url=setup.panda_url, rucio_config=setup.rucio_config,
                        rucio_attempts=2, rucio_backoff_s=0.2, rucio_max_backoff_s=1.0)
    backends = assemble(settings, engine=engine, stack=stack, plan=template, workflow=workflow,
                        source=setup.workflow)
    from_profile = site_options(template.profile)
    options = {**from_profile, **setup.options}
    # down is down wherever it is said: the profile's and the command line's together
    options["sites_down"] = tuple(sorted({*from_profile.get("sites_down", ()),
                                          *(setup.options.get("sites_down") or ())}))
    config = BridgeConfig(**options)
    if config.sites:  # fail at start, not at the first copy
        backends.catalog.replica_paths(config.sites[0], [])
    return Prepared(template, backends, engine, config, publish)


def site_options(profile: dict[str, Any]) -> dict[str, Any]:
    """The butterfly's sites from the profile's ``bridge`` section (``sites``: the E1 RSEs
    every STF is copied to; ``sites_down``: the ones marked down)."""
    section = profile.get("bridge") or {}
    options: dict[str, Any] = {}
    for key in ("sites", "sites_down"):
        value = section.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"profile bridge.{key} must be a list of RSE names, not {value!r}",
                              hint="e.g. bridge: {sites: [E1_BNL_DISK, E1_JLAB_DISK]}")
        if value:
            options[key] = tuple(value)
    return options


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
