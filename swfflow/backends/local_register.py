"""What a finished local job leaves in the catalog: its output files in the task's output
datasets, under JEDI-style names, and its log in the task's log dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog, FileRecord
from swfflow.backends.local_jobs import files_in, record_for, safe_name


def add_files(catalog: Catalog, records: dict[str, list[FileRecord]]) -> list[dict[str, Any]]:
    """Register each dataset's new files; what the job row keeps of them."""
    for did, files in records.items():
        catalog.add_files(did, files)
    return [{"did": r.did, "adler32": r.adler32, "size": r.size, "pfn": r.pfn}
            for files in records.values() for r in files]


def register_outputs(catalog: Catalog, spec: dict[str, Any], task_id: int, number: int,
                     outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of a job's CWL output object, where the tool left them."""
    records = {}
    for port, did in (spec.get("outputs") or {}).items():
        scope, dsname = did.split(":", 1)
        files = files_in(outputs.get(port))
        # several files on one port (one per invocation) may share a basename
        # JEDI's own file names carry the task id: tasks sharing a dataset never collide
        records[did] = [record_for(f, f"{scope}:{dsname}.{task_id}._{number:06d}."
                                      f"{f'{k}.' if len(files) > 1 else ''}{f['basename']}")
                        for k, f in enumerate(files)]
    return add_files(catalog, records)


def register_log(catalog: Catalog, workdir: Path, spec: dict[str, Any], task_id: int,
                 number: int, log: str) -> None:
    if not spec.get("log_dataset"):
        return
    scope, dsname = spec["log_dataset"].split(":", 1)
    path = workdir / "logs" / safe_name(spec["name"]) / f"{number:06d}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log)
    record = record_for({"location": str(path), "basename": path.name},
                        f"{scope}:{dsname}.{task_id}._{number:06d}.log")
    catalog.add_files(spec["log_dataset"], [record])
