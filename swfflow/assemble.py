"""The one wiring point: the executor and catalog a command runs on, built with their helpers.

``swfflow run`` (stream workflows), ``swfflow submit``/``kill``/``retry``/``status``, the bridge
and the Snakemake plugin ask :func:`assemble` (or :func:`build_executor` for an executor alone);
nothing else constructs a backend. A backend is one row of :data:`BACKENDS`: its name →
``"module:factory"``, imported on first use (like :data:`swfflow.cli.COMMANDS`). A factory
takes the typed :class:`Settings` and what the backend stands on (the state engine; for an
executor, the catalog) and returns the backend.

To add an executor: write ``swfflow/backends/<name>.py`` with its class (subclassing
:class:`~swfflow.backends.base.ExecutorBase`) and a ``build(settings, *, engine, catalog)``
factory, and add one row to ``BACKENDS["executor"]`` (``backends/dryrun.py`` is the example).
Every command that takes ``--backend`` offers it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog, Executor
from swfflow.errors import ConfigError
from swfflow.plan.model import TaskSpec

# kind → name → "module:factory"
BACKENDS: dict[str, dict[str, str]] = {
    "executor": {
        "local": "swfflow.assemble:local_executor",
        "panda": "swfflow.assemble:panda_executor",
        "dryrun": "swfflow.backends.dryrun:build",
    },
    "catalog": {
        "local": "swfflow.assemble:local_catalog",
        "rucio": "swfflow.assemble:rucio_catalog",
    },
}
# the catalog an executor goes with when the command does not choose one: PanDA (JEDI) reads
# Rucio datasets; every other executor works on the local catalog in the state store
SERVER_CATALOG = {"panda": "rucio"}
# executors that run each task's payload on this machine: they need the workflow's IR
# (``prepare``) and evaluate ExpressionTools with it
RUN_HERE = frozenset({"local"})


@dataclass(frozen=True)
class Settings:
    """Everything a backend factory may read. Each command sets what its options say."""

    executor: str = "local"
    catalog: str | None = None  # None: the executor's (SERVER_CATALOG, else local)
    workdir: Path = Path(".swfflow")  # job folders, ExpressionTool scratch, the dry-run record
    jobs: int = 2  # local executor: jobs at once
    attempts: int | None = None  # local executor: attempts per job (None: the task's)
    no_container: bool = False
    rehearse: bool = False  # local executor: run each job's command line as a pilot would
    sandbox: Path | None = None  # the workflow folder a rehearsal's jobs get (with plan.json)
    panda_url: str | None = None  # None: $PANDA_URL_SSL, then $PANDA_URL
    panda_attempts: int = 5  # per PanDA call
    panda_backoff_s: float = 1.0
    unknown_alert_polls: int = 5  # polls after which a task PanDA does not know fails
    rucio_config: str | None = None  # None: $RUCIO_CONFIG, $RUCIO_HOME/etc/rucio.cfg, …
    rucio_attempts: int = 5  # per Rucio call
    rucio_backoff_s: float = 0.5
    rucio_max_backoff_s: float = 8.0

    @property
    def catalog_name(self) -> str:
        return self.catalog or SERVER_CATALOG.get(self.executor, "local")


@dataclass
class Backends:
    """What a driver runs on: the two backends and their helpers."""

    catalog: Catalog
    executor: Executor
    prepare: Callable[[TaskSpec], TaskSpec] | None = None  # executors that run payloads here
    run_expression: Callable[..., dict] | None = None  # the driver's ExpressionTool runner
    # the bridge attaches from threads of their own: a catalog with a client of its own there
    # (None: the same one)
    attach_catalog: Catalog | None = None
    # task id → {job number: the input DIDs it read}, where the executor keeps that (the local
    # one): outputs are then placed in the scatter order of their inputs
    job_inputs: Callable[[str], dict[int, list[str]]] | None = None
    # leaf jobs the run may have in flight at once: the local machine's job slots; a server
    # executor's leaves only submit and wait
    flow_jobs: int = 64

    def flow_run(self, plan: Any, store: Any, *, source_path: str, **options: Any) -> Any:
        """A :class:`~swfflow.drive.flow_run.FlowRun` of ``plan`` on these backends, its
        state in ``store``: the one engine of ``run``, ``submit`` and the bridge."""
        from swfflow.drive.flow_run import FlowRun

        return FlowRun(plan, self.catalog, self.executor, store, source_path=source_path,
                       outputs_of=self.executor.task_outputs,
                       prepare=self.prepare or _unchanged,
                       run_expression=self.run_expression or _no_expressions,
                       job_inputs=self.job_inputs, jobs=options.pop("jobs", self.flow_jobs),
                       **options)


def _unchanged(task: TaskSpec) -> TaskSpec:
    return task


def _no_expressions(task: TaskSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    from swfflow.errors import RunFailed

    raise RunFailed(f"expression step {task.step} cannot be evaluated here",
                    hint="these backends were assembled without a plan: a bug, please report")


def names(kind: str) -> list[str]:
    """The backend names of a kind, as offered by ``--backend`` / ``--catalog``."""
    return list(BACKENDS[kind])


def assemble(settings: Settings, *, engine: Any, stack: ExitStack, plan: Any = None,
             workflow: Any = None, source: str = "") -> Backends:
    """The catalog and executor ``settings`` name, over the state ``engine``, with the helpers
    a driver of ``plan`` needs (``workflow``: its IR, when there is one; ``source``: the
    workflow or plan file it came from). Resources are released with ``stack``."""
    if settings.executor in RUN_HERE and workflow is None:
        raise ConfigError(f"the {settings.executor} executor needs the workflow file, not a "
                          "plan.json", hint="give the .cwl/Snakefile, or use --backend panda")
    catalog = build_catalog(settings, engine=engine)
    executor = build_executor(settings, engine=engine, catalog=catalog)
    stack.callback(executor.shutdown)
    backends = Backends(catalog=catalog, executor=executor,
                        attach_catalog=catalog.for_thread() if catalog.parallel_clients
                        else None)
    workdir = Path(settings.workdir).resolve()
    if settings.executor in RUN_HERE:
        from swfflow.drive.local_run import run_expression_locally
        from swfflow.drive.payload import LocalPayloads

        if not settings.rehearse:  # a rehearsal's tasks go as PanDA gets them: unprepared
            backends.prepare = LocalPayloads(workflow)
        backends.run_expression = run_expression_locally(workdir)
        backends.job_inputs = functools.partial(_job_inputs, executor)
        # the pool runs `jobs` at once; a few more tasks submitted meanwhile are cut and
        # queued, so a freed worker starts the next job at once (no round trip through the flow)
        backends.flow_jobs = 4 * settings.jobs
    elif plan is not None:
        from swfflow.drive.expressions import expressions_for_plan

        # the tasks get the plan's task parameters as they are (no prepare); ExpressionTools
        # are no tasks: evaluated here, their tools rebuilt from the plan's payloads
        backends.run_expression = expressions_for_plan(source, plan, workdir)
    return backends


def _job_inputs(executor: Any, task_id: str) -> dict[int, list[str]]:
    return {row.number: list(row.files) for row in executor.job_rows(task_id)}


def build_catalog(settings: Settings, *, engine: Any = None) -> Any:
    """The catalog alone (the PanDA double's pilots)."""
    return _factory("catalog", settings.catalog_name)(settings, engine=engine)


def build_executor(settings: Settings, *, engine: Any = None, catalog: Any = None) -> Any:
    """The executor alone (``kill``, ``status``, the Snakemake plugin)."""
    return _factory("executor", settings.executor)(settings, engine=engine, catalog=catalog)


def executor_at(url: str, settings: Settings, *, engine: Any = None) -> Any:
    """The executor of a recorded submission (``swfflow kill``, ``retry``, ``status``): what
    its URL names — an executor's own scheme, ``NAME:<record file>`` (``dryrun:…``, its
    workdir the record's folder, on the local catalog of ``engine``) — else PanDA at ``url``."""
    name = executor_name_of(url)
    if name == "panda":
        return build_executor(replace(settings, executor="panda", panda_url=url))
    settings = replace(settings, executor=name, workdir=Path(url.partition(":")[2]).parent)
    catalog = None
    if engine is not None and settings.catalog_name == "local":
        catalog = local_catalog(settings, engine=engine)
    return build_executor(settings, engine=engine, catalog=catalog)


def executor_name_of(url: str) -> str:
    """Which executor a recorded submission URL belongs to: one whose own scheme it has
    (``dryrun:…``), else PanDA (``https://…``)."""
    scheme = url.partition(":")[0]
    return scheme if scheme in BACKENDS["executor"] else "panda"


def _factory(kind: str, name: str) -> Any:
    table = BACKENDS[kind]
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}", hint=f"{kind}s: {', '.join(table)}")
    module, attribute = table[name].split(":")
    return getattr(importlib.import_module(module), attribute)


# --- the factories of the backends that predate this table ----------------------------------

def local_catalog(settings: Settings, *, engine: Any) -> Any:
    from swfflow.backends.local_catalog import LocalCatalog

    return LocalCatalog(engine)


def rucio_catalog(settings: Settings, *, engine: Any) -> Any:
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.server_config import rucio_config_path

    return RucioCatalog.from_config(rucio_config_path(settings.rucio_config),
                                    attempts=settings.rucio_attempts,
                                    backoff_s=settings.rucio_backoff_s,
                                    max_backoff_s=settings.rucio_max_backoff_s)


def local_executor(settings: Settings, *, engine: Any, catalog: Any) -> Any:
    from swfflow.backends.local_catalog import LocalCatalog
    from swfflow.backends.local_executor import LocalExecutor
    from swfflow.backends.local_paths import LocalPathCatalog

    # the local executor binds local paths: a catalog that lists URLs (Rucio) is read through
    # a view that turns file:// URLs into paths
    reader = catalog if isinstance(catalog, LocalCatalog) else LocalPathCatalog(catalog)
    return LocalExecutor(reader, engine, Path(settings.workdir).resolve(), jobs=settings.jobs,
                         attempts=settings.attempts, no_container=settings.no_container,
                         rehearse=settings.rehearse, sandbox=settings.sandbox)


def panda_executor(settings: Settings, *, engine: Any = None, catalog: Any = None) -> Any:
    from swfflow.backends.panda import PandaExecutor

    return PandaExecutor(settings.panda_url, attempts=settings.panda_attempts,
                         backoff_s=settings.panda_backoff_s,
                         unknown_alert_polls=settings.unknown_alert_polls)
