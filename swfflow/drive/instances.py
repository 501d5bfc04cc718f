"""Which task of the plan runs a leaf job (pure): the planner's own task, or a run-time
instance of it, with the job's values in its payload."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from swfflow.plan import jedi
from swfflow.plan.model import RELEASE_AT_START, Plan, TaskSpec

# task parameters about reading datasets: a task that gets its inputs as values reads none
DATASET_PARAMS = frozenset({"dsForIN", "nFilesPerJob", "nMaxFilesPerJob", "nGBPerJob",
                            "respectSplitRule", "runUntilClosed", "noWaitParent",
                            "parentTaskName", "noInput", "nEvents", "nEventsPerJob"})


def instance_of(template: TaskSpec, key: str, indices: tuple[int, ...],
                job: dict[str, Any]) -> TaskSpec:
    """A run-time job of a leaf whose task the planner could not make (pure): the template's
    payload and resources under its own name, key and output datasets (``.<indices>`` added
    to the leaf's names; a compile-time element's own indices are taken off first)."""
    own = "".join(f".{i}" for i in template.scatter_index)
    suffix = "".join(f".{i}" for i in indices)

    def renamed(name: str) -> str:
        return (name[:-len(own)] if own and name.endswith(own) else name) + suffix

    spec = replace(template, key=key, name=renamed(template.name),
                   outputs={port: renamed(did) for port, did in template.outputs.items()},
                   log_dataset=renamed(template.log_dataset) if template.log_dataset else None,
                   scatter_index=indices)
    return with_values(spec, job, dataset_inputs=False)


def with_values(spec: TaskSpec, job: dict[str, Any], *, dataset_inputs: bool) -> TaskSpec:
    """The task with ``job`` as every input's value. Without ``dataset_inputs`` the task
    reads no dataset: its files arrive as values (one job)."""
    payload = {**spec.payload, "job": dict(job)}
    if dataset_inputs:
        return replace(spec, payload=payload)
    payload.update(split_port=None, gather_ports={})
    if not spec.params:  # an ExpressionTool: no PanDA task
        return replace(spec, payload=payload, inputs=(), parents=(), release=RELEASE_AT_START)
    params = {k: v for k, v in spec.params.items() if k not in DATASET_PARAMS}
    split = jedi.Split(master=None)
    params.update(jedi.split_fields(split))
    params["taskName"] = spec.name
    params["jobParameters"], params["log"] = jedi.job_parameters(
        spec.key, split, spec.outputs, spec.log_dataset or "")
    return replace(spec, params=params, payload=payload, parents=(), release=RELEASE_AT_START,
                   streaming=False,
                   inputs=tuple(i for i in spec.inputs if i.dataset is None))


def templates(plan: Plan) -> dict[str, TaskSpec]:
    """Per leaf path, the task its run-time instances copy (the first one planned)."""
    found: dict[str, TaskSpec] = {}
    for task in plan.tasks:
        found.setdefault(task.step, task)
    return found


def whole_dataset(spec: TaskSpec, n_files: int) -> TaskSpec:
    """A gather's task sized at release, when its input is complete: every file of its
    master dataset in ONE job (JEDI would otherwise cut it at ``nMaxFilesPerJob``, and the
    next step would read a partial result)."""
    n = max(1, n_files)
    params = {k: v for k, v in spec.params.items() if k != "nGBPerJob"}
    params.update(nFilesPerJob=n, nMaxFilesPerJob=n, respectSplitRule=True)
    return replace(spec, params=params)


def source_path_of(plan: Plan, given: str = "") -> str:
    """The workflow file the plan's relative locations resolve against: ``given`` (the file
    the user named) unless it is a plan.json, else the workflow the plan was compiled from when
    it is here, else "" (the current folder)."""
    if given and not given.endswith(".json"):
        return given
    return plan.source if plan.source and Path(plan.source).is_file() else ""
