"""One job of a task, as a process-pool worker runs it: plain dict in, plain dict out.

The request names the tool (URI or process dict), the CWL job object, and the job directory;
the result carries what provenance needs (command, container, exit code, log) and the CWL output
object. Nothing here touches the catalog or the state store: the parent process does that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swfflow.errors import SwfflowError
from swfflow.runtime.containers import ContainerPolicy
from swfflow.runtime.tool import run_tool

_CWLTOOL_KEYS = "http://commonwl.org/cwltool#"


def clean_outputs(value: Any) -> Any:
    """Drop cwltool's private keys (``cwltool#generation``) from an output object."""
    if isinstance(value, dict):
        return {k: clean_outputs(v) for k, v in value.items() if not k.startswith(_CWLTOOL_KEYS)}
    if isinstance(value, list):
        return [clean_outputs(v) for v in value]
    return value


def execute_job(request: dict[str, Any]) -> dict[str, Any]:
    outdir = Path(request["outdir"])
    try:
        result = run_tool(request["tool"], request["job"], outdir,
                          policy=ContainerPolicy(forbid=request.get("no_container", False)),
                          workdir=request.get("workdir"), where=request.get("where", ""))
    except SwfflowError as exc:  # e.g. a required container that cannot run: do not retry
        return {"status": "permanentFail", "outputs": None, "command": [], "container": None,
                "exit_code": None, "log": str(exc), "final": True}
    return {"status": result.status, "outputs": clean_outputs(result.outputs),
            "command": result.command, "container": result.container,
            "exit_code": result.exit_code, "log": result.log, "final": False}
