"""Run a CWL workflow once, from files, on this machine: front end → engine → outputs.

This is what ``swfflow run`` does for a workflow without a stream input, and what the
conformance hook calls in process. Final output files are copied into ``outdir`` (as
``cwl-runner`` does) and the state store records provenance per job.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from swfflow.runtime.containers import ContainerPolicy
from swfflow.runtime.engine import Engine
from swfflow.runtime.files import describe_files
from swfflow.runtime.leaf import LeafRunner, ProvenanceSink

log = logging.getLogger("swfflow.run")


def run_workflow_file(workflow_path: str | Path, inputs: dict[str, Any] | None,
                      outdir: str | Path, *, no_container: bool = False,
                      provenance: ProvenanceSink | None = None,
                      workdir: str | Path | None = None,
                      reuse_jobs: bool = False) -> dict[str, Any]:
    from swfflow.frontends.cwl import load_workflow

    outdir = Path(outdir).resolve()
    workdir = Path(workdir or outdir / ".swfflow" / "work")
    inputs = describe_files(inputs or {})
    workflow = load_workflow(workflow_path, inputs)
    runner = LeafRunner(workdir, ContainerPolicy(forbid=no_container), provenance,
                        cache_dir=workdir / "cache" if reuse_jobs else None)
    outputs = Engine(runner).run(workflow, inputs)
    return relocate(outputs, outdir, workdir)


def relocate(outputs: dict[str, Any], outdir: Path, workdir: Path) -> dict[str, Any]:
    """Copy the output files out of the job directories into ``outdir`` (cwltool's own
    relocation, so names, secondary files and checksums follow its rules)."""
    from cwltool.process import relocateOutputs
    from cwltool.stdfsaccess import StdFsAccess

    outdir.mkdir(parents=True, exist_ok=True)
    return relocateOutputs(outputs, str(outdir), {str(workdir)}, "copy", StdFsAccess(""))
