"""What one job of a local task reads and writes: which dataset feeds it, how a tool port is
shaped, how produced files become catalog records — plain functions over the stored spec."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from swfflow.backends.base import FileRecord
from swfflow.checksum import adler32_file
from swfflow.runtime.files import location_path


def master_dataset(spec: dict[str, Any]) -> str | None:
    return spec["params"].get("dsForIN") or next(
        (i["dataset"] for i in spec.get("inputs", ()) if i.get("master")), None)


def first_dataset_port(spec: dict[str, Any], did: str) -> str | None:
    return next((i["port"] for i in spec.get("inputs", ()) if i.get("dataset") == did), None)


def declared_input(tool: Any, port: str) -> Any:
    """The tool's declaration of input ``port`` (a dict or a type string), or None."""
    inputs = tool.get("inputs") or {} if isinstance(tool, dict) else {}
    if isinstance(inputs, list):
        inputs = {str(i.get("id", "")).split("#")[-1].split("/")[-1]: i for i in inputs}
    return inputs.get(port)


def is_array_port(tool: Any, port: str) -> bool:
    """Does the tool's input ``port`` take a list (``File[]``, ``type: array``)?"""
    if not isinstance(tool, dict):
        return True
    declared = declared_input(tool, port)
    kind = declared.get("type") if isinstance(declared, dict) else declared
    if isinstance(kind, list):  # optional: [null, X]
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(kind, str):
        return kind.rstrip("?").endswith("[]")
    return isinstance(kind, dict) and kind.get("type") == "array"


def bind_job_files(spec: dict[str, Any], master_files: list[dict[str, Any]],
                   dataset_files: Callable[[str], list[dict[str, Any]]]) -> dict[str, Any]:
    """The CWL job object of one job: the payload's constant values, the job's chunk of the
    master dataset (``master_files``) on the split port (or the first port reading it), and
    each gather port's files (``dataset_files(did)``). Shared by the local executor and
    ``swfflow job`` on a worker node."""
    payload = spec["payload"]
    tool = payload.get("tool")
    values = {port: value for port, value in (payload.get("job") or {}).items()
              if not _tool_default_float(tool, port, value)}
    master = master_dataset(spec)
    if master is not None:
        port = payload.get("split_port") or first_dataset_port(spec, master)
        if port:
            values[port] = master_files if is_array_port(tool, port) else master_files[0]
    for port, dids in (payload.get("gather_ports") or {}).items():
        dids = [dids] if isinstance(dids, str) else dids
        if dids == [master] and port in values:
            continue  # the master chunk already feeds it (JEDI splits, not gathers)
        files = [f for did in dids for f in dataset_files(did)]
        values[port] = files if is_array_port(tool, port) else (files[0] if files else None)
    return values


def _tool_default_float(tool: Any, port: str, value: Any) -> bool:
    """A float equal to the tool's own default is left to the tool: cwltool writes the
    document's spelling (``1.23e5`` → ``123000``), which a value that travelled through JSON
    has lost (it would write ``123000.0``)."""
    declared = declared_input(tool, port)
    return isinstance(value, float) and isinstance(declared, dict) and \
        "default" in declared and declared["default"] == value


def job_invocations(spec: dict[str, Any], master_files: list[dict[str, Any]],
                    dataset_files: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The CWL job objects of one JEDI job: one per master file when the split port takes a
    single File (scatter semantics: a job of N files runs the tool N times), else one."""
    port = spec["payload"].get("split_port")
    per_file = port and not is_array_port(spec["payload"].get("tool"), port) \
        and len(master_files) > 1
    chunks = [[f] for f in master_files] if per_file else [master_files]
    return [bind_job_files(spec, chunk, dataset_files) for chunk in chunks]


def files_in(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict) and value.get("class") == "File":
        return [value]
    if isinstance(value, list):
        return [f for v in value for f in files_in(v)]
    return []


def record_for(cwl_file: dict[str, Any], did: str) -> FileRecord:
    path = location_path(cwl_file["location"])
    return FileRecord(did=did, size=path.stat().st_size, adler32=adler32_file(path),
                      pfn=str(path))


def intact(produced: dict[str, Any]) -> bool:
    path = Path(produced.get("pfn") or "")
    return path.is_file() and path.stat().st_size == produced["size"] and \
        adler32_file(path) == produced["adler32"]


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def task_outputs_of(rows: list[Any]) -> dict[str, Any]:
    """The CWL output object of a task: its job's, or per port the list over its jobs."""
    outputs = [r.outputs or {} for r in rows if r.state == "done"]
    if len(outputs) == 1:
        return outputs[0]
    ports = sorted({p for o in outputs for p in o})
    return {p: [o.get(p) for o in outputs] for p in ports}
