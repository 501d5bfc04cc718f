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
    """Run the job's invocations (``request["jobs"]``, one CWL job object each) in order; the
    first failure ends the job. Several invocations give each output port a list."""
    jobs = request.get("jobs") or [request["job"]]
    outdir = Path(request["outdir"])
    results = []
    for index, job in enumerate(jobs):
        results.append(_invoke(request, job, outdir if len(jobs) == 1 else outdir / f"{index:03d}"))
        if results[-1]["status"] != "success":
            break
    if len(jobs) == 1:
        return results[0]
    last = results[-1]
    ok = last["status"] == "success"
    outputs = ({port: [r["outputs"][port] for r in results] for port in last["outputs"]}
               if ok else None)
    return {**last, "outputs": outputs, "fallbacks": [f for r in results for f in r["fallbacks"]],
            "log": "\n".join(f"--- invocation {i + 1}/{len(jobs)}\n{r['log']}"
                             for i, r in enumerate(results))}


def _invoke(request: dict[str, Any], job: dict[str, Any], outdir: Path) -> dict[str, Any]:
    fallbacks: list[list[str]] = []  # host runs, for the parent to warn of once (see policy)
    policy = ContainerPolicy(forbid=request.get("no_container", False),
                             on_fallback=lambda *note: fallbacks.append(list(note)))
    try:
        result = run_tool(request["tool"], job, outdir, policy=policy,
                          workdir=request.get("workdir"), where=request.get("where", ""))
    except SwfflowError as exc:  # e.g. a required container that cannot run: do not retry
        return {"status": "permanentFail", "outputs": None, "command": [], "container": None,
                "exit_code": None, "log": str(exc), "final": True, "fallbacks": fallbacks}
    return {"status": result.status, "outputs": clean_outputs(result.outputs),
            "command": result.command, "container": result.container,
            "exit_code": result.exit_code, "log": result.log, "final": False,
            "fallbacks": fallbacks}
