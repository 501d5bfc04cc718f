"""What the local executor's fork server imports once, before it forks the job workers: the job
runner (cwltool) and cwltool's CWL schema, warmed by loading one trivial tool. Each worker is
forked from it with all of that in memory, instead of spending a second on its first job."""

from __future__ import annotations

from swfflow.runtime.jobrun import execute_job  # noqa: F401  (the workers' entry point)
from swfflow.runtime.tool import load_process

_WARM_TOOL = {"id": "_:swfflow-warm-up", "cwlVersion": "v1.2", "class": "CommandLineTool",
              "baseCommand": ["true"], "inputs": {}, "outputs": {}}

try:
    load_process(_WARM_TOOL)
except Exception:  # noqa: BLE001  (a warm-up only: the first real job loads what it needs)
    pass
