"""JEDI task-parameter dictionaries (what ``Client.insertTaskParams`` takes), built from a
profile and a few decisions the planner has made. Pure functions, no I/O.

Field names and the job-parameter template shapes follow what prun produces
(reference/panda.md §4): ``TaskRefinerBase.extractCommon`` reads ``taskName, userName, vo,
prodSourceLabel, taskPriority, architecture, transUses, transHome, processingType, taskType``
unconditionally, so all of them are always present. At submission, the inputs the driver
computed at run time join ``jobParameters`` as ``--values=B64`` (:func:`with_computed_values`).
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from swfflow.errors import ConfigError, UnsupportedFeature
from swfflow.ir import Resources
from swfflow.plan.model import TaskInput, TaskSpec
from swfflow.plan.profile import Profile

VALUES_OPTION = "--values"  # `swfflow job --values=B64`: the inputs the driver computed
# one argv string may hold at most 128 KiB on Linux (MAX_ARG_STRLEN); stay well below it
MAX_VALUES_CHARS = 64 * 1024
_STAGED_CLASSES = ("File", "Directory")  # values a job gets only through a dataset


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
        # the executable a pilot runs the job parameters with (without it JEDI gives runGen)
        "transPath": profile.transPath,
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
        # JEDI reads ``walltime`` as seconds per MB of input and ignores ``walltimeUnit``; a
        # job's walltime is cpuTime x events + baseWalltime when cpuTimeUnit is HS06-based
        # ("Fixed": scouts never change it). cpuTime 0 leaves exactly the step's walltime.
        "cpuTime": 0,
        "cpuTimeUnit": "HS06sPerEventFixed",
        "baseWalltime": resources.walltime_s or d.walltime_s,
        "maxAttempt": (retries if retries is not None else d.retries) + 1,
    }
    if container:
        fields["container_name"] = container_url(container)
    return fields


def container_url(image: str) -> str:
    """What JEDI gives the pilot verbatim: an image reference with its scheme
    (``docker://`` unless one is given), as prun and pchain write it."""
    return image if "://" in image else f"docker://{image}"


def split_fields(split: Split, step: str = "") -> dict[str, Any]:
    """JEDI's splitting fields. Scouting is off (``skipScout``): a scout job measures a task's
    needs, which our tasks declare, and streaming tasks must not wait for scouts. A step asking
    for more files per job than JEDI allows per job is refused (JEDI accepts it silently)."""
    if (split.files_per_job and split.max_files_per_job
            and split.files_per_job > split.max_files_per_job):
        raise ConfigError(
            f"step {step or '?'!r}: {split.files_per_job} files per job is above the "
            f"maximum of {split.max_files_per_job} (nMaxFilesPerJob)", where=step or None,
            hint="lower swf:Sizing files_per_job, or raise max_files_per_job (swf:Sizing or "
                 "the profile's defaults)")
    if split.master is None:
        fields: dict[str, Any] = {"noInput": True, "skipScout": True}
        if split.events_per_job:
            fields["nEventsPerJob"] = split.events_per_job
            fields["nEvents"] = split.events_per_job * (split.n_jobs or 1)
        else:
            fields["nEvents"] = split.n_jobs or 1
            fields["nEventsPerJob"] = 1
        return fields
    fields = {"dsForIN": split.master, "skipScout": True}
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
    JEDI registers them into their datasets. Output and log templates name their dataset as
    the ``container`` too: JEDI writes each site's files into a dataset of its own inside that
    container, which is what downstream tasks read (without it they would read an empty one).
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
                       "container": did,
                       "value": f"--out {port}={name}.$JEDITASKID._${{SN/P}}.{port}"})
    log_name = log_dataset.split(":", 1)[-1]
    log = {"type": "template", "param_type": "log", "dataset": log_dataset,
           "container": log_dataset,
           "value": f"{log_name}.$JEDITASKID.${{SN}}.log.tgz"}
    return params, log


# --- inputs the driver computes at run time -----------------------------------------------
def driver_computed_ports(inputs: Iterable[TaskInput]) -> tuple[str, ...]:
    """The ports whose value only the driver knows, once upstream results are in: a dynamic
    ``valueFrom``, or a value from an upstream step (an ExpressionTool's output) or from a
    workflow input the plan had no value for (what ``ValueResolver.resolve`` computes)."""
    return tuple(i.port for i in inputs
                 if i.dataset is None and i.value is None and (i.expression or i.sources))


def encode_values(values: Mapping[str, Any]) -> str:
    """Compact JSON in unpadded base64url: only ``[A-Za-z0-9_-]``, nothing a shell expands or
    splits, whatever the values hold."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


def decode_values(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode_values`; anything else is a clear error."""
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{VALUES_OPTION} is not base64url-encoded JSON ({exc})",
                          where="swfflow job",
                          hint="pass the value the driver put into the task's jobParameters "
                               "unchanged") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{VALUES_OPTION} holds {type(values).__name__}, not an object of "
                          "port values", where="swfflow job")
    return values


def computed_values(task: TaskSpec) -> dict[str, Any]:
    """The driver-computed inputs of a task the driver has resolved (``payload["job"]``),
    checked to be plain JSON a job can get on its command line."""
    job = task.payload.get("job") or {}
    values = {port: job[port] for port in driver_computed_ports(task.inputs) if port in job}
    for port, value in values.items():
        staged = _staged_class(value)
        if staged:
            raise UnsupportedFeature(
                f"task {task.key!r}: input {port!r} is computed by the driver at run time and "
                f"is (or holds) a {staged}; a PanDA job gets files only through the datasets "
                "the pilot stages, not on its command line", where=task.step,
                hint="feed the files through a dataset (an upstream CommandLineTool's output), "
                     "or compute a string, number or list of them instead")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise UnsupportedFeature(
                f"task {task.key!r}: input {port!r} computed by the driver is not JSON ({exc})",
                where=task.step) from None
    return values


def with_computed_values(task: TaskSpec) -> dict[str, Any]:
    """The task's parameters, with its driver-computed inputs as one ``--values=B64`` constant
    right after ``swfflow job --task KEY`` (none: the parameters as they are)."""
    params = dict(task.params)
    values = computed_values(task) if task.payload.get("kind") == "cwl" else {}
    if not values:
        return params
    encoded = encode_values(values)
    if len(encoded) > MAX_VALUES_CHARS:
        sizes = ", ".join(f"{p} ({len(json.dumps(v))} B)" for p, v in sorted(values.items()))
        raise UnsupportedFeature(
            f"task {task.key!r}: the inputs computed by the driver take {len(encoded)} "
            f"characters on the job's command line, more than {MAX_VALUES_CHARS}: {sizes}",
            where=task.step, hint="pass large data as a file through a dataset")
    items = [i for i in params.get("jobParameters") or [] if _values_item(i) is None]
    items.insert(1, {"type": "constant", "value": f"{VALUES_OPTION}={encoded}"})
    params["jobParameters"] = items
    return params


def shipped_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The values :func:`with_computed_values` put into the task parameters (none: empty)."""
    found = [v for v in map(_values_item, params.get("jobParameters") or []) if v is not None]
    return decode_values(found[-1]) if found else {}


def _values_item(item: Mapping[str, Any]) -> str | None:
    """The encoded values of a ``--values=B64`` job-parameter item; None for any other."""
    flag, sep, encoded = str(item.get("value", "")).partition("=")
    return encoded if sep and flag == VALUES_OPTION else None


def _staged_class(value: Any) -> str | None:
    if isinstance(value, Mapping):
        if value.get("class") in _STAGED_CLASSES:
            return str(value["class"])
        return next(filter(None, map(_staged_class, value.values())), None)
    if isinstance(value, list):
        return next(filter(None, map(_staged_class, value)), None)
    return None


# --- what JEDI makes of the job parameters for one job -------------------------------------
def expand_job_parameters(params: Mapping[str, Any], *, task_id: str | int, serial: int,
                          files: Mapping[str, Iterable[str]]) -> list[str]:
    """One job's command line, as JEDI expands the task's ``jobParameters`` and a pilot runs
    it: ``transPath`` then the items joined and split as a shell would (never run by one).
    ``files`` gives, per input dataset, the names of the job's files (the master chunk, or
    a secondary's files): ``${IN/T}`` / ``${INn/T}`` become them comma-separated;
    ``$JEDITASKID``, ``${SN/P}`` (zero-padded to 6) and ``${SN}`` the task id and serial."""
    words: list[str] = []
    for item in params.get("jobParameters") or []:
        value = str(item.get("value", ""))
        if item.get("param_type") == "input":
            listed = list(files.get(item["dataset"], ()))
            odd = next((n for n in listed if set(n) & set("\"'\\,")), None)
            if odd is not None:
                raise ConfigError(f"input file name {odd!r} of dataset {item['dataset']} has "
                                  "a quote, backslash or comma, which a job's file list "
                                  "cannot carry", hint="rename the file")
            names = ",".join(listed)
            value = value.replace(value[value.index("${IN"):value.index("}") + 1], names) \
                if "${IN" in value else value
        value = (value.replace("$JEDITASKID", str(task_id))
                 .replace("${SN/P}", f"{serial:06d}").replace("${SN}", str(serial)))
        words += shlex.split(value)
    return [str(params.get("transPath") or "/usr/bin/env"), *words]
