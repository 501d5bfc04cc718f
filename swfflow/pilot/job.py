"""One PanDA job, as the pilot runs it: its description from ``acquire_jobs``
(:class:`JobSpec`), and :func:`run_job`: stage the inputs in from Rucio, run the job's
command line (``transformation`` + ``jobPars``, as JEDI expanded them), stage the outputs
out to the queue's RSE (registered in Rucio with adler32, attached to the task's output
datasets) and report each state and the output-file metadata to PanDA."""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swfflow.checksum import adler32_file
from swfflow.errors import ServiceError
from swfflow.pilot.api import JobKilled, PilotAPI
from swfflow.pilot.sandbox import Sandbox, SandboxError, fetch, split_options

# PanDA's pilot error codes the server and monitoring know (pilot3 ErrorCodes)
STAGE_IN_FAILED, STAGE_OUT_FAILED, BAD_COMMAND, PAYLOAD_TIMEOUT = 1099, 1137, 1135, 1213
MISSING_OUTPUT = 1165
LOG_MEMBERS = ("swfflow-job.json", "swfflow-job.log", "payload.stdout")
# seconds between two "running" reports; PanDA's watcher fails a job silent for its
# HEARTBEAT_TIMEOUT (production: 2 h, the production pilot beats every 30 min; swfflow's
# test services: 2 min)
HEARTBEAT_S = 60.0


def _split(value: str | None) -> list[str]:
    return [] if value in (None, "", "NULL") else str(value).split(",")


@dataclass(frozen=True)
class OutFile:
    lfn: str
    scope: str
    dataset: str  # the DID the file is attached to (the task's output container)
    is_log: bool


@dataclass(frozen=True)
class JobSpec:
    panda_id: int
    attempt: int
    task_id: int | None
    transformation: str
    job_pars: str
    inputs: tuple[str, ...]  # "scope:lfn"
    outputs: tuple[OutFile, ...]
    walltime_s: int
    rse: str | None  # where outputs go (ddmEndPointOut)

    @classmethod
    def from_dispatch(cls, data: dict[str, Any]) -> JobSpec:
        lfns, scopes = _split(data.get("inFiles")), _split(data.get("scopeIn"))
        out_lfns, datasets = _split(data.get("outFiles")), _split(data.get("realDatasets"))
        log = data.get("logFile")
        outputs = []
        for lfn, dataset in zip(out_lfns, datasets):
            # JEDI derives file scopes ATLAS-style from the dataset name ("user.x.…"), which
            # breaks on "scope:name" DIDs: take the scope of the dataset's DID instead
            scope = dataset.split(":", 1)[0] if ":" in dataset else dataset.split(".")[0]
            outputs.append(OutFile(lfn, scope, dataset, lfn == log))
        endpoints = _split(data.get("ddmEndPointOut"))
        return cls(panda_id=int(data["PandaID"]), attempt=int(data.get("attemptNr") or 1),
                   task_id=data.get("taskID"), transformation=str(data.get("transformation")),
                   job_pars=str(data.get("jobPars") or ""),
                   inputs=tuple(f"{s}:{n}" for s, n in zip(scopes, lfns)),
                   outputs=tuple(outputs), walltime_s=int(data.get("maxWalltime") or 86400),
                   rse=endpoints[0] if endpoints else None)

    def command(self) -> tuple[Sandbox, list[str]]:
        """The job's sandbox (runGen's leading options) and its command line: the
        transformation (an executable) and the rest of the job's parameters, split as a shell
        would but never run by one."""
        if "://" in self.transformation or not self.transformation.startswith("/"):
            raise ValueError(f"transformation {self.transformation!r} is not an absolute "
                             "path to an executable (a task without transPath gets JEDI's "
                             "runGen URL, which this pilot does not run)")
        sandbox, args = split_options(shlex.split(self.job_pars))
        return sandbox, [self.transformation, *args]

    def argv(self) -> list[str]:
        return self.command()[1]


@dataclass
class Outcome:
    state: str  # finished | failed
    exit_code: int | None = None
    error_code: int | None = None
    error_diag: str | None = None
    report: dict | None = None
    panda_id: int = 0


def _stage_in(job: JobSpec, workdir: Path, rucio: Any) -> None:
    from rucio.client.downloadclient import DownloadClient

    if job.inputs:
        DownloadClient(client=rucio).download_dids(
            [{"did": did, "base_dir": str(workdir), "no_subdir": True} for did in job.inputs])


def _stage_out(files: list[tuple[OutFile, Path]], rse: str, rucio: Any) -> dict:
    """Upload and register; the job output report PanDA's adder reads (lfn → guid, fsize,
    adler32, surl)."""
    from rucio.client.uploadclient import UploadClient

    report, items = {}, []
    for out, path in files:
        guid = str(uuid.uuid4())
        scope, name = out.dataset.split(":", 1) if ":" in out.dataset else (out.scope, out.dataset)
        items.append({"path": str(path), "rse": rse, "did_scope": out.scope, "did_name": out.lfn,
                      "dataset_scope": scope, "dataset_name": name, "guid": guid})
        report[out.lfn] = {"guid": guid, "fsize": path.stat().st_size,
                           "adler32": adler32_file(path), "surl": f"rucio://{rse}/{out.lfn}"}
    if items:
        UploadClient(_client=rucio).upload(items)
    return report


def _log_tarball(workdir: Path, name: str) -> Path:
    path = workdir / name
    with tarfile.open(path, "w:gz") as tar:
        for member in LOG_MEMBERS:
            if (workdir / member).exists():
                tar.add(workdir / member, arcname=member)
    return path


def execute(job: JobSpec, workdir: Path, rucio: Any, *, sandbox: Path | None,
            default_rse: str | None, log: Callable[[str], None]) -> Outcome:
    """Stage in, run, stage out; never raises for a job's own failure."""
    try:
        shipped, argv = job.command()
    except ValueError as exc:
        return Outcome("failed", error_code=BAD_COMMAND, error_diag=str(exc))
    if sandbox is not None:  # a local folder given to the pilot (--sandbox): development
        shutil.copytree(sandbox, workdir, dirs_exist_ok=True)
    try:
        unpacked = fetch(shipped, workdir)
    except SandboxError as exc:
        return Outcome("failed", error_code=STAGE_IN_FAILED, error_diag=f"sandbox: {exc}")
    if unpacked:
        log(f"job {job.panda_id}: sandbox {shipped.archive} ({len(unpacked)} entries)")
    try:
        _stage_in(job, workdir, rucio)
    except Exception as exc:  # noqa: BLE001 - Rucio's download raises many kinds: all are a stage-in failure
        return Outcome("failed", error_code=STAGE_IN_FAILED, error_diag=f"stage-in: {exc}")
    log(f"job {job.panda_id}: {shlex.join(argv)}")
    started = time.monotonic()
    try:
        with open(workdir / "payload.stdout", "wb") as out:
            code = subprocess.run(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=job.walltime_s,
                                  check=False).returncode
    except subprocess.TimeoutExpired:
        return Outcome("failed", error_code=PAYLOAD_TIMEOUT,
                       error_diag=f"payload ran over its walltime of {job.walltime_s} s")
    except OSError as exc:
        return Outcome("failed", error_code=BAD_COMMAND, error_diag=f"cannot run {argv[0]}: {exc}")
    log(f"job {job.panda_id}: exit {code} after {time.monotonic() - started:.1f} s")
    rse = job.rse or default_rse
    files = [(o, workdir / o.lfn) for o in job.outputs if not o.is_log]
    missing = [o.lfn for o, p in files if not p.exists()]
    logs = [(o, _log_tarball(workdir, o.lfn)) for o in job.outputs if o.is_log]
    if code != 0 or missing:
        diag = f"missing outputs: {', '.join(missing)}" if code == 0 else f"payload exit {code}"
        return Outcome("failed", exit_code=code, error_code=MISSING_OUTPUT if code == 0 else None,
                       error_diag=diag, report=_safe_stage_out(logs, rse, rucio, log))
    try:
        report = _stage_out(files + logs, rse, rucio)
    except Exception as exc:  # noqa: BLE001 - any upload/registration failure fails the job, not the pilot
        return Outcome("failed", exit_code=code, error_code=STAGE_OUT_FAILED,
                       error_diag=f"stage-out to {rse}: {exc}")
    return Outcome("finished", exit_code=0, report=report)


def _safe_stage_out(logs, rse, rucio, log) -> dict | None:
    try:
        return _stage_out(logs, rse, rucio)
    except Exception as exc:  # noqa: BLE001 - the log of a failed job is best effort
        log(f"log stage-out failed: {exc}")
        return None


@contextlib.contextmanager
def heartbeats(api: PilotAPI, panda_id: int, every_s: float, fields: dict[str, Any],
               log: Callable[[str], None]) -> Iterator[None]:
    """Report the job ``running`` every ``every_s`` seconds while the block runs: PanDA's
    watcher (copyArchive, docs/panda.md) fails a job whose heartbeat stopped, and JEDI
    retries it; a pilot that dies stops beating."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                api.update_job(panda_id, "running", **fields)
            except JobKilled:
                log(f"job {panda_id}: PanDA asks to kill it (it runs to its end here)")
            except ServiceError as exc:  # the next beat may get through
                log(f"job {panda_id}: heartbeat failed: {exc}")

    thread = threading.Thread(target=beat, name=f"heartbeat-{panda_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)


def run_job(api: PilotAPI, data: dict, base: Path, rucio: Any, *, queue: str, node: str,
            sandbox: Path | None = None, heartbeat_s: float = HEARTBEAT_S,
            log: Callable[[str], None] = print) -> Outcome:
    """Run one acquired job and report it to PanDA."""
    job = JobSpec.from_dispatch(data)
    workdir = base / f"{job.panda_id}.{job.attempt}"
    workdir.mkdir(parents=True, exist_ok=True)
    common = {"site_name": queue, "node": node, "attempt_nr": job.attempt}
    api.update_job(job.panda_id, "running", **common)
    with heartbeats(api, job.panda_id, heartbeat_s, common, log):
        outcome = execute(job, workdir, rucio, sandbox=sandbox, default_rse=None, log=log)
    outcome.panda_id = job.panda_id
    fields: dict[str, Any] = {**common, "trans_exit_code": outcome.exit_code,
                              "pilot_error_code": outcome.error_code,
                              "pilot_error_diag": outcome.error_diag}
    if outcome.report:
        fields["job_output_report"] = outcome.report
    api.update_job(job.panda_id, outcome.state, **fields)
    log(f"job {job.panda_id}: {outcome.state}"
        + (f" ({outcome.error_diag})" if outcome.error_diag else ""))
    return outcome
