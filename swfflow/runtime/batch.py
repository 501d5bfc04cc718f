"""Run a CWL workflow once, from files, on this machine: front end → engine → outputs.

This is what ``swfflow run`` does for a workflow without a stream input, and what the
conformance hook calls in process. Final output files are copied into ``outdir`` (as
``cwl-runner`` does) and the state store records provenance per job.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from swfflow import ir
from swfflow.runtime.containers import ContainerPolicy
from swfflow.runtime.engine import Engine
from swfflow.runtime.files import describe_files
from swfflow.runtime.leaf import LeafRunner, ProvenanceSink

log = logging.getLogger("swfflow.run")


def run_workflow_file(workflow_path: str | Path, inputs: dict[str, Any] | None,
                      outdir: str | Path, *, no_container: bool = False,
                      provenance: ProvenanceSink | None = None,
                      workdir: str | Path | None = None,
                      reuse_jobs: bool = False, jobs: int | None = None) -> dict[str, Any]:
    """``jobs``: leaf jobs at once (default: the number of cores)."""
    from swfflow.frontends.cwl import load_workflow

    outdir = Path(outdir).resolve()
    workdir = Path(workdir or outdir / ".swfflow" / "work")
    inputs = describe_files(inputs or {})
    workflow = load_workflow(workflow_path, inputs)
    records = _InWorkflowOrder(workflow, provenance) if provenance else None
    runner = LeafRunner(workdir, ContainerPolicy(forbid=no_container), records,
                        cache_dir=workdir / "cache" if reuse_jobs else None)
    try:
        outputs = Engine(runner, jobs=jobs or os.cpu_count() or 1).run(workflow, inputs)
    finally:
        if records is not None:
            records.flush()
    return relocate(outputs, outdir, workdir)


class _InWorkflowOrder:
    """Provenance of jobs that finish in parallel threads, written when the run ends in the
    order a one-at-a-time run would have written it (steps in workflow order, scatter
    elements in scatter order), so the record does not depend on --jobs."""

    def __init__(self, workflow: ir.Workflow, sink: ProvenanceSink):
        self.workflow, self.sink = workflow, sink
        self.rows: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, label: str, job: dict[str, Any], result: Any) -> None:
        with self.lock:
            self.rows.append((label, job, result))

    def flush(self) -> None:
        with self.lock:
            rows, self.rows = self.rows, []
        for label, job, result in sorted(rows, key=lambda row: self._order(row[0])):
            self.sink(label, job, result)

    def _order(self, label: str) -> list[tuple[int, ...]]:
        """``sub[1]/inner[2]`` → [(index of sub, 1), (index of inner in sub, 2)]."""
        key, level = [], self.workflow
        for segment in label.split("/"):
            name, _, indices = segment.partition("[")
            names = [step.name for step in level.steps] if level is not None else []
            position = names.index(name) if name in names else len(names)
            key.append((position, *(int(i) for i in re.findall(r"\d+", indices))))
            level = level.steps[position].subworkflow if position < len(names) else None
        return key


def relocate(outputs: dict[str, Any], outdir: Path, workdir: Path) -> dict[str, Any]:
    """Copy the output files out of the job directories into ``outdir`` (cwltool's own
    relocation, so names, secondary files and checksums follow its rules)."""
    from cwltool.process import relocateOutputs
    from cwltool.stdfsaccess import StdFsAccess

    outdir.mkdir(parents=True, exist_ok=True)
    return relocateOutputs(outputs, str(outdir), {str(workdir)}, "copy", StdFsAccess(""))
