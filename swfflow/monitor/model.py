"""The one status model: what ``swfflow status``, ``swfflow monitor``'s page, its REST API and
its metrics all read.

run → DAQ state history → datasets → steps/tasks → jobs → dead letters. Field names keep the
JSON keys ``swfflow status --json`` had before the model (``instances[].tasks[].jobs[]``,
``runs[]``, ``datasets[]``, ``submitted[]``), so scripts written against it keep working.
A field a backend cannot know is ``None`` (not 0): "unknown" and "none" differ on a monitor.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MODEL_VERSION = 1

# task phases as the engine writes them (drive/phases.TaskPhase values), grouped for colours
# and counts; the monitor reads strings so a phase added later still shows (as "other")
FINISHED_OK = ("succeeded", "skipped")
FINISHED_BAD = ("failed", "blocked", "killed")
ACTIVE = ("submitted", "running", "released", "paused")


class Produced(BaseModel):
    """One registered output file (provenance: which job made it is its parent)."""

    did: str
    adler32: str | None = None
    size: int | None = None
    pfn: str | None = None


class Job(BaseModel):
    number: int
    state: str
    attempt: int = 0
    exit_code: int | None = None
    inputs: int = 0  # how many master input files
    input_files: list[str] = Field(default_factory=list)
    command: list[str] | None = None
    container: str | None = None
    produced: list[dict[str, Any]] = Field(default_factory=list)
    log_tail: str = ""
    started_at: float | None = None  # epoch seconds; None: not started, or not recorded
    finished_at: float | None = None


class ParentEdge(BaseModel):
    key: str
    mode: str  # stream | complete


class Task(BaseModel):
    key: str
    name: str
    step: str | None = None
    phase: str = "pending"
    task_id: str | None = None
    message: str = ""
    backend: str = "local"  # local | panda | dryrun
    site: str | None = None
    streaming: bool = False
    parents: list[ParentEdge] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)  # empty in summaries: see the counts
    jobs_total: int = 0
    jobs_done: int = 0
    jobs_failed: int = 0
    jobs_running: int = 0
    jobs_by_state: dict[str, int] = Field(default_factory=dict)  # pending, running, done, …
    # epoch seconds: handed to the backend; its first job started; it reached a final state
    # (None: not yet, or a store/backend that does not record it)
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0  # the highest attempt of any job
    files_processed: int = 0  # master input files of its finished jobs
    jedi_status: str | None = None  # PanDA backend only
    monitor_url: str | None = None  # PanDA's own task page


class Dataset(BaseModel):
    did: str
    open: bool
    files: int
    rules: list[str] = Field(default_factory=list)  # replication wanted: "2x E1_BNL_DISK"


class Instance(BaseModel):
    """One workflow instance (a `swfflow run`, a `submit`, or a bridge's run)."""

    instance: str
    workflow: str
    run: str
    state: str
    source: str = "local"  # local | bridge | panda
    panda_url: str | None = None
    submitted_at: str | None = None
    tasks: list[Task] = Field(default_factory=list)


class DaqEvent(BaseModel):
    """One DAQ state change the bridge processed (run_imminent, start_run, pause_run, …)."""

    at: float
    event: str


class Hold(BaseModel):
    wanted: str
    applied: bool
    paused_tasks: list[str] = Field(default_factory=list)
    message: str = ""


class SiteReplication(BaseModel):
    """One E1 site's copy of a run (the bridge's butterfly): how many of the run's STFs it
    holds, its running checksum, and whether that equals the DAQ's (what was attached) now."""

    rse: str
    files: int  # STFs with a verified copy at the site
    checksum: str  # running checksum of (file name, adler32) of those copies
    daq_files: int  # STFs attached to the run dataset (what the site should hold)
    daq_checksum: str | None = None  # None: not computed (the counts already differ)
    matches_daq: bool  # same files and same running checksum as the DAQ's, now
    checked: bool = False  # the bridge compared them at run end
    alarm: str | None = None  # what differed when the bridge compared (None: nothing)
    down: bool = False  # the site is marked down (copies wait for it)
    down_reason: str | None = None


class Run(BaseModel):
    """A DAQ run as a bridge saw it, with the instance the bridge drives for it."""

    run: str
    namespace: str | None = None
    phase: str
    daq_state: str | None = None
    daq_substate: str | None = None
    daq_history: list[DaqEvent] = Field(default_factory=list)
    stream_dataset: str
    stf_announced: int | None = None  # by end_run; None until then
    stf_recorded: int = 0
    stf_attached: int = 0
    stf_metadata_set: int = 0
    stf_processed: int = 0  # input files of finished jobs of the streaming tasks
    missing: list[str] = Field(default_factory=list)
    message: str = ""
    tasks_hold: Hold | None = None
    sites: list[SiteReplication] = Field(default_factory=list)  # per E1 site (butterfly)
    created_at: float | None = None
    updated_at: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    workflow: str | None = None
    instance: str | None = None
    instance_state: str | None = None
    tasks: list[Task] = Field(default_factory=list)


class DeadLetter(BaseModel):
    received_at: float
    msg_type: str | None = None
    run: str | None = None
    reason: str
    body: str = ""


class Status(BaseModel):
    version: int = MODEL_VERSION
    collected_at: float
    instances: list[Instance] = Field(default_factory=list)
    runs: list[Run] = Field(default_factory=list)
    datasets: list[Dataset] = Field(default_factory=list)
    submitted: list[Instance] = Field(default_factory=list)
    dead_letters: list[DeadLetter] = Field(default_factory=list)


def eta(elapsed: float | None, done: int, total: int) -> float | None:
    """Seconds left at the rate so far (None when nothing is done or nothing is known)."""
    if elapsed is None or done <= 0 or total <= done:
        return None if total > done or elapsed is None else 0.0
    return elapsed * (total - done) / done
