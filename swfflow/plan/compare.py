"""When two plans are *equivalent*: the same work mapped the same way onto PanDA and Rucio,
whatever the front end (a Snakefile and its CWL twin compile to equivalent plans).

Equivalent means: the same task keys; per task the same parents with the same edge modes, the
same release rule, streaming flag and kind of master input (the stream / which step's output /
none), the same JEDI splitting and the same resources, retries and container. Names, command
lines and payloads may differ.
"""

from __future__ import annotations

from typing import Any

from swfflow.plan.model import Plan

SHAPE_PARAMS = ("nFilesPerJob", "nMaxFilesPerJob", "nGBPerJob", "runUntilClosed", "noInput",
                "respectSplitRule", "noWaitParent", "coreCount", "ramCount", "ramUnit",
                "workDiskCount", "baseWalltime", "maxAttempt", "container_name")


def plan_shape(plan: Plan) -> dict[str, dict[str, Any]]:
    """The part of a plan that equivalence compares, per task key."""
    stream_dids = {d.did for d in plan.datasets if d.role == "stream"}
    producer_of = {d.did: d.producer for d in plan.datasets if d.role == "output"}
    shape = {}
    for task in plan.tasks:
        master = task.params.get("dsForIN")
        shape[task.key] = {
            "parents": sorted((p.key, p.mode) for p in task.parents),
            "release": task.release, "streaming": task.streaming,
            "input": "stream" if master in stream_dids else producer_of.get(master),
            "params": {k: task.params.get(k) for k in SHAPE_PARAMS},
        }
    return shape
