"""The Plan: what `swfflow compile` produces and every driver consumes.

A plan is pure data with a stable JSON form (sorted keys, no timestamps): the same workflow,
inputs and profile give byte-identical JSON. Run-dependent names carry the placeholder
:data:`RUN` until :meth:`Plan.instantiate` fills in a run number.

- :class:`DatasetSpec` — one Rucio dataset: the run's raw stream, or a step output/log dataset,
  with its lifecycle (created open; closed at end of run or when its producer is done) and
  replication rules.
- :class:`TaskSpec` — one JEDI task: ``params`` is exactly what ``Client.insertTaskParams``
  takes; the other fields are what the driver needs to release and follow it (parents and edge
  modes, dynamic ``when``, the payload that a job runs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

PLAN_VERSION = 1
RUN = "${RUN}"  # placeholder for the run number in names, DIDs and parameters

# when a dataset is closed
CLOSE_AT_END_RUN = "end_run"  # the raw stream: closed by the DAQ's end of run
CLOSE_WITH_PRODUCER = "producer_done"  # an output dataset: closed when its task is done

# when a task is released (submitted)
RELEASE_AT_START = "start"  # streaming or parent-independent: submit at instantiation
RELEASE_WITH_PARENTS = "parents_started"  # stream edges only: JEDI pipelines (noWaitParent)
RELEASE_AFTER_PARENTS = "parents_done"  # a complete edge: driver releases when parents finish


@dataclass(frozen=True)
class ReplicationRule:
    rse_expression: str
    copies: int = 1
    lifetime_s: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    did: str  # "scope:name"
    role: str  # "stream" | "output" | "log"
    producer: str | None = None  # TaskSpec.key of the writer; None for the stream
    port: str | None = None  # the producer's output port (or the workflow input name)
    close: str = CLOSE_WITH_PRODUCER
    rules: tuple[ReplicationRule, ...] = ()
    file_pattern: str | None = None  # for outputs: how produced files are named


@dataclass(frozen=True)
class ParentLink:
    key: str  # TaskSpec.key of the parent
    mode: str  # "stream" | "complete"
    datasets: tuple[str, ...] = ()  # DIDs of the parent's outputs this task reads


@dataclass(frozen=True)
class TaskInput:
    """What feeds one input port of a task: a dataset (split into jobs by JEDI when it is the
    master input), or a value (constant, or an expression the driver evaluates)."""

    port: str
    dataset: str | None = None
    master: bool = False  # the dataset JEDI splits into jobs (dsForIN)
    value: Any = None
    expression: str | None = None  # dynamic valueFrom / value from upstream results
    sources: tuple[str, ...] = ()  # "step/port" or workflow input names, for provenance


@dataclass(frozen=True)
class TaskSpec:
    key: str  # unique in the plan: step path plus ".<i>" for each parameter-scatter element
    step: str  # the IR leaf path
    name: str  # deterministic JEDI taskName (the idempotency key)
    kind: str  # ir.StepKind value
    params: dict[str, Any]  # JEDI task parameters
    inputs: tuple[TaskInput, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)  # port → DID
    log_dataset: str | None = None
    parents: tuple[ParentLink, ...] = ()
    release: str = RELEASE_AT_START
    streaming: bool = False  # runUntilClosed over the run's stream
    when: str | None = None  # dynamic condition for the driver; static ones are resolved
    scatter_index: tuple[int, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)  # what one job runs (see docs/design.md)


@dataclass(frozen=True)
class Plan:
    workflow: str
    source: str
    run: str  # RUN until instantiated
    profile: dict[str, Any]
    datasets: tuple[DatasetSpec, ...]
    tasks: tuple[TaskSpec, ...]
    inputs: dict[str, Any] = field(default_factory=dict)  # the job object (parameters)
    outputs: dict[str, Any] = field(default_factory=dict)  # workflow output → sources
    skipped: tuple[str, ...] = ()  # steps whose static `when` is false
    flow: dict[str, Any] = field(default_factory=dict)  # the data flow (swfflow.plan.flow)
    plan_version: int = PLAN_VERSION

    # --- access ---------------------------------------------------------------------------
    def task(self, key: str) -> TaskSpec:
        for task in self.tasks:
            if task.key == key:
                return task
        raise KeyError(key)

    def dataset(self, did: str) -> DatasetSpec:
        for ds in self.datasets:
            if ds.did == did:
                return ds
        raise KeyError(did)

    def children(self, key: str) -> list[TaskSpec]:
        return [t for t in self.tasks if any(p.key == key for p in t.parents)]

    # --- run templating -------------------------------------------------------------------
    def instantiate(self, run: int | str) -> Plan:
        """The plan for one run: every :data:`RUN` placeholder replaced (pure)."""
        if self.run != RUN:
            raise ValueError(f"plan is already instantiated for run {self.run}")
        text = self.to_json().replace(RUN, str(run))
        return replace(Plan.from_json(text), run=str(run))

    # --- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        version = data.get("plan_version")
        if version != PLAN_VERSION:
            raise ValueError(f"plan_version {version!r} is not supported (expected {PLAN_VERSION})")
        return _build(cls, data)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


# nested dataclass fields that hold tuples of other dataclasses
_NESTED: dict[tuple[type, str], type] = {
    (DatasetSpec, "rules"): ReplicationRule,
    (TaskSpec, "inputs"): TaskInput,
    (TaskSpec, "parents"): ParentLink,
    (Plan, "datasets"): DatasetSpec,
    (Plan, "tasks"): TaskSpec,
}


def _build(cls: type, data: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        inner = _NESTED.get((cls, f.name))
        if inner is not None:
            value = tuple(_build(inner, item) for item in value)
        elif isinstance(value, list) and f.name in ("scatter_index", "sources", "skipped",
                                                     "datasets"):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
