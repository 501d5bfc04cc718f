"""JEDI task-parameter dictionaries (what ``Client.insertTaskParams`` takes), built from a
profile and a few decisions the planner has made. Pure functions, no I/O.

Field names and the job-parameter template shapes follow what prun produces
(reference/panda.md §4): ``TaskRefinerBase.extractCommon`` reads ``taskName, userName, vo,
prodSourceLabel, taskPriority, architecture, transUses, transHome, processingType, taskType``
unconditionally, so all of them are always present.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from swfflow.ir import Resources
from swfflow.plan.profile import Profile


@dataclass(frozen=True)
class Split:
    """How JEDI cuts the task into jobs."""

    master: str | None  # dsForIN; None → noInput task
    files_per_job: int | None = None
    max_files_per_job: int | None = None
    gb_per_job: float | None = None
    events_per_job: int | None = None
    n_jobs: int | None = None
    run_until_closed: bool = False
    secondary: tuple[str, ...] = ()


def common_fields(profile: Profile, task_name: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "taskName": task_name,
        "uniqueTaskName": True,
        "userName": profile.user,
        "vo": profile.vo,
        "prodSourceLabel": profile.prodSourceLabel,
        "taskPriority": profile.taskPriority,
        "architecture": "",
        "transUses": "",
        "transHome": None,
        "processingType": profile.processingType,
        "taskType": profile.taskType,
    }
    optional = {"workingGroup": profile.workingGroup, "site": profile.site,
                "cloud": profile.cloud, "campaign": profile.campaign}
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def resource_fields(resources: Resources, profile: Profile, retries: int | None,
                    container: str | None) -> dict[str, Any]:
    d = profile.defaults
    cores = resources.cores or d.cores
    mem = resources.mem_mb or d.mem_mb
    fields: dict[str, Any] = {
        "coreCount": cores,
        "ramCount": -(-mem // cores),  # PanDA's ramCount is per core; round up
        "ramUnit": "MBPerCore",
        "workDiskCount": resources.disk_mb if resources.disk_mb is not None else d.disk_mb,
        "workDiskUnit": "MB",
        "walltime": resources.walltime_s or d.walltime_s,
        "walltimeUnit": "s",
        "maxAttempt": (retries if retries is not None else d.retries) + 1,
    }
    if container:
        fields["container_name"] = container
    return fields


def split_fields(split: Split) -> dict[str, Any]:
    if split.master is None:
        fields: dict[str, Any] = {"noInput": True}
        if split.events_per_job:
            fields["nEventsPerJob"] = split.events_per_job
            fields["nEvents"] = split.events_per_job * (split.n_jobs or 1)
        else:
            fields["nEvents"] = split.n_jobs or 1
            fields["nEventsPerJob"] = 1
        return fields
    fields = {"dsForIN": split.master}
    table = {"nFilesPerJob": split.files_per_job, "nMaxFilesPerJob": split.max_files_per_job,
             "nGBPerJob": split.gb_per_job}
    fields.update({k: v for k, v in table.items() if v is not None})
    if split.files_per_job or split.gb_per_job:
        fields["respectSplitRule"] = True
    if split.run_until_closed:
        fields["runUntilClosed"] = True
    return fields


def job_parameters(task_key: str, split: Split,
                   outputs: dict[str, str], log_dataset: str) -> tuple[list[dict], dict]:
    """The ``jobParameters`` list and the ``log`` template.

    Every job runs ``swfflow job`` on the worker with the task's payload (shipped with the
    plan); input files arrive through the ``-i`` template, outputs are declared per port so
    JEDI registers them into their datasets.
    """
    params: list[dict[str, Any]] = [
        {"type": "constant", "value": f"swfflow job --task {shlex.quote(task_key)}"},
    ]
    if split.master is not None:
        params.append({"type": "template", "param_type": "input", "dataset": split.master,
                       "value": '-i "${IN/T}"', "expand": True})
    for i, ds in enumerate(split.secondary):
        params.append({"type": "template", "param_type": "input", "dataset": ds,
                       "value": f'--secondary{i} "${{IN{i + 1}/T}}"', "expand": True})
    for port, did in sorted(outputs.items()):
        name = did.split(":", 1)[-1]
        params.append({"type": "template", "param_type": "output", "dataset": did,
                       "value": f"--out {port}={name}.$JEDITASKID._${{SN/P}}.{port}"})
    log_name = log_dataset.split(":", 1)[-1]
    log = {"type": "template", "param_type": "log", "dataset": log_dataset,
           "value": f"{log_name}.$JEDITASKID.${{SN}}.log.tgz"}
    return params, log
