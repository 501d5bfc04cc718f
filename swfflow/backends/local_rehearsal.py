"""A local job run the way PanDA runs it (``swfflow run --rehearse``): a rehearsal.

Each job of a CWL task runs its task's ``jobParameters`` as JEDI expands them and a pilot runs
them — ``swfflow job --task … -i "…" --out port=NAME …`` as a subprocess, in a job directory
holding the task's sandbox (the workflow folder with ``plan.json``) and its input files under
their catalog names. The placed outputs are registered under the names JEDI gave them, and the
job's CWL output object is read back from its report (``swfflow-job.json``), files resolved to
where the job put them (a bundle is unpacked next to itself). What PanDA would refuse — an
input computed at run time that is a File — is refused here at submission, as PanDA's backend
refuses it. So a workflow that passes a rehearsal ran with the task parameters PanDA gets.

Pure helpers for the local executor; the subprocess runs in its process pool
(:func:`swfflow.runtime.jobcommand.run_command_job`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from swfflow.backends.base import Catalog
from swfflow.backends.local_jobs import master_dataset, record_for, safe_name
from swfflow.bundle import bundle_members, map_file_locations, split_reference
from swfflow.plan import jedi
from swfflow.plan.model import PLAN_VERSION, Plan, TaskSpec

SANDBOXES = "sandbox"  # under the executor's workdir: one folder per task
RUNNABLE_KINDS = ("cwl",)  # what `swfflow job` runs; other payloads run as before
DEFAULT_WALLTIME_S = 24 * 3600


def rehearses(spec: dict[str, Any]) -> bool:
    return spec["payload"].get("kind") in RUNNABLE_KINDS and bool(spec["params"])


def submitted(task: TaskSpec) -> TaskSpec:
    """The task as PanDA's backend submits it: the inputs the driver computed join the job
    parameters (``--values``), and what cannot travel there is refused now."""
    if task.payload.get("kind") not in RUNNABLE_KINDS or not task.params:
        return task
    return replace(task, params=jedi.with_computed_values(task))


def sandbox(spec: dict[str, Any], workdir: Path, source: Path | None) -> Path:
    """The task's sandbox, made once: the workflow folder's entries (``source``, linked) and a
    ``plan.json`` holding the task as submitted (a run-time instance is in no compiled plan)."""
    folder = workdir / SANDBOXES / safe_name(spec["name"])
    if (folder / "plan.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None:
        for entry in source.iterdir():
            link = folder / entry.name
            if entry.name != "plan.json" and not link.exists():
                link.symlink_to(entry.resolve())
    plan = Plan.from_dict({"workflow": spec["name"], "source": "", "run": "", "profile": {},
                           "datasets": [], "tasks": [spec],
                           "plan_version": PLAN_VERSION})
    tmp = folder / "plan.json.part"
    tmp.write_text(plan.to_json())
    tmp.replace(folder / "plan.json")
    return folder


def command_request(spec: dict[str, Any], task_id: int, number: int, job_files: list[str],
                    catalog: Catalog, jobdir: Path, workdir: Path,
                    source: Path | None) -> dict[str, Any]:
    """What the pool worker runs for job ``number`` (its master files ``job_files``)."""
    master = master_dataset(spec)
    records = {}
    names: dict[str, list[str]] = {}
    for item in spec["params"].get("jobParameters") or []:
        did = item.get("dataset")
        if item.get("param_type") != "input" or not did:
            continue
        listed = {f.did: f for f in catalog.list_files(did)}
        chosen = job_files if did == master else sorted(listed)
        names[did] = [listed[d].name for d in chosen]
        records.update({listed[d].name: listed[d] for d in chosen})
    argv = jedi.expand_job_parameters(spec["params"], task_id=task_id, serial=number,
                                      files=names)
    return {"argv": argv, "jobdir": str(jobdir), "sandbox": str(sandbox(spec, workdir, source)),
            "inputs": {name: r.pfn for name, r in records.items()},
            "timeout_s": int(spec["params"].get("baseWalltime") or DEFAULT_WALLTIME_S)}


def placed_outputs(spec: dict[str, Any], report: dict[str, Any], jobdir: Path) -> tuple[
        dict[str, list[Any]], dict[str, Any]]:
    """The files the job placed, as catalog records per output dataset (named as JEDI named
    them), and its CWL output object with each file where it now is."""
    scope_of = {port: did.split(":", 1)[0] for port, did in (spec.get("outputs") or {}).items()}
    records: dict[str, list[Any]] = {}
    for placed in report.get("outputs") or []:
        port = placed["port"]
        if port not in scope_of:
            continue
        did = spec["outputs"][port]
        path = jobdir / placed["name"]
        records.setdefault(did, []).append(
            record_for({"location": str(path)}, f"{scope_of[port]}:{placed['name']}"))

    def located(reference: str) -> str | None:
        name, member = split_reference(reference)
        path = jobdir / name
        if member is None:
            return path.resolve().as_uri() if path.is_file() else None
        found = next((p for p in bundle_members(path) or () if p.name == member), None)
        return found.resolve().as_uri() if found is not None else None

    return records, map_file_locations(report.get("output_object") or {}, located)

