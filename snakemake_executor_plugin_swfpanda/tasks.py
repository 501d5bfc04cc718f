"""Pure part of the swfpanda executor: one JEDI task for a wave of jobs of one rule.

A wave of N ready jobs of one rule becomes ONE task without an input dataset whose N JEDI jobs
are cut one "event" each (``noInput``, ``nEvents=N``, ``nEventsPerJob=1``); job ``k`` gets
``${FIRSTEVENT}=k`` and runs the k-th Snakemake job command, which travels in the task's
constant job parameter as a compressed table (:func:`encode_jobs`). Resources are the largest
of the wave; names, site, VO, scopes and defaults come from the swfflow profile. Nothing here
does I/O.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from swfflow.ir import Resources
from swfflow.plan import jedi
from swfflow.plan.model import TaskSpec
from swfflow.plan.profile import Profile

WORKER = "python3 -m snakemake_executor_plugin_swfpanda.worker"
JOB_INDEX = "${FIRSTEVENT}"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class WaveJob:
    """What the task needs of one Snakemake job."""

    jobid: int
    command: str  # Snakemake's own `python -m snakemake --target-jobs ...` line
    threads: int = 1
    mem_mb: int | None = None
    disk_mb: int | None = None
    runtime_min: float | None = None
    container: str | None = None


def encode_jobs(commands: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(zlib.compress(json.dumps(list(commands)).encode(), 9)).decode()


def decode_jobs(text: str) -> list[str]:
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(text.encode())))


def task_name(profile: Profile, run_id: str, rule: str, wave: int) -> str:
    """``<user>.snakemake.<run id>.<rule>.w<wave>``: unique per submission (the idempotency key)."""
    return f"{profile.user}.snakemake.{run_id}.{_UNSAFE.sub('_', rule)}.w{wave}"


def wave_task(profile: Profile, name: str, rule: str, jobs: Sequence[WaveJob]) -> TaskSpec:
    """The TaskSpec of one wave: JEDI parameters plus, in the payload, the job ids in order."""
    if not jobs:
        raise ValueError("a wave has at least one job")
    resources = Resources(
        cores=max(j.threads for j in jobs),
        mem_mb=_largest(j.mem_mb for j in jobs),
        disk_mb=_largest(j.disk_mb for j in jobs),
        walltime_s=_largest(int(j.runtime_min * 60) if j.runtime_min else None for j in jobs))
    containers = {j.container for j in jobs if j.container}
    container = sorted(containers)[0] if containers else None
    params = jedi.common_fields(profile, name)
    # Snakemake owns retries (a failed job comes back in a later wave): JEDI tries once
    params.update(jedi.resource_fields(resources, profile, 0, container))
    params.update(jedi.split_fields(jedi.Split(master=None, n_jobs=len(jobs))))
    log_ds = f"{profile.scopes.output}:{name}.log"
    params["jobParameters"] = [{
        "type": "constant",
        "value": f"{WORKER} --index {JOB_INDEX} --jobs {encode_jobs([j.command for j in jobs])}",
    }]
    params["log"] = {"type": "template", "param_type": "log", "dataset": log_ds,
                     "value": f"{name}.log.$JEDITASKID.${{SN}}.log.tgz"}
    return TaskSpec(key=f"{rule}.w{name.rsplit('.w', 1)[-1]}", step=rule, name=name,
                    kind="snakemake", params=params, log_dataset=log_ds,
                    payload={"kind": "snakemake", "jobids": [j.jobid for j in jobs]})


def _largest(values: Any) -> int | None:
    found = [int(v) for v in values if v]
    return max(found) if found else None
