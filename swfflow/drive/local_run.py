"""The driver's local pieces: the stream feeder of ``swfflow run`` and ExpressionTool steps
run on this machine.

The stream input's files (from the inputs file) play the DAQ: they are registered (size,
adler32) and attached to the open run dataset one per tick of the run, and the dataset is closed
after the last one — so the streaming step runs while its dataset is still open and the merge
is released at close, as in a real run (:mod:`swfflow.run_plan`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog, FileRecord
from swfflow.checksum import adler32_file
from swfflow.errors import ConfigError, RunFailed
from swfflow.plan.model import Plan, TaskSpec


class StreamFeeder:
    """Attaches the stream input's files to the run dataset, one per tick, then closes it."""

    def __init__(self, plan: Plan, catalog: Catalog, files_by_input: dict[str, list]):
        self.catalog = catalog
        self.queue: list[tuple[str, Path]] = []
        for spec in plan.datasets:
            if spec.role == "stream":
                for value in files_by_input.get(spec.port or "", []) or []:
                    self.queue.append((spec.did, _local_path(value, spec.port or "")))
        self.closed = False

    def __call__(self, run: Any) -> None:
        """One tick of ``run`` (anything with ``close_streams()``: the flow run)."""
        if self.queue:
            did, path = self.queue.pop(0)
            scope = did.split(":", 1)[0]
            self.catalog.add_files(did, [FileRecord(
                did=f"{scope}:{path.name}", size=path.stat().st_size,
                adler32=adler32_file(path), pfn=str(path))])
        elif not self.closed:
            run.close_streams()
            self.closed = True


def _local_path(value: Any, port: str) -> Path:
    location = value.get("location", "") if isinstance(value, dict) else str(value)
    path = Path(location[len("file://"):] if location.startswith("file://") else location)
    if not path.is_file():
        raise ConfigError(f"stream input {port!r}: no such file {path}",
                          hint="stream inputs are local files for `swfflow run`")
    return path


def run_expression_locally(workdir: Path) -> Any:
    from swfflow.runtime.jobrun import clean_outputs
    from swfflow.runtime.tool import run_tool

    def run(spec: TaskSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        job = {**inputs, **(spec.payload.get("job") or {})}
        result = run_tool(spec.payload["tool"], job, workdir / "expressions" / spec.name,
                          workdir=workdir, where=spec.step)
        if not result.ok:
            raise RunFailed(f"expression step {spec.step} failed", hint=result.log_tail())
        return clean_outputs(result.outputs or {})

    return run
