"""Snakemake executor plugin ``swfpanda``: Snakemake jobs as JEDI jobs on PanDA.

``snakemake --executor swfpanda`` (or ``--profile panda`` after ``swfflow profile install``):

- the ready jobs of one rule in one submission wave become ONE PanDA task (one JEDI job per
  Snakemake job, see :mod:`.tasks`), submitted through swfflow's PanDA backend
  (:class:`swfflow.backends.panda.PandaExecutor`, built by :mod:`swfflow.assemble`,
  idempotent by task name);
- each poll cycle asks PanDA once about every active task (the backend batches 200 ids per
  call), and every JEDI status maps to an end or a wait (``swfflow.backends.panda_states``):
  done → success; finished (partial) → success for jobs whose outputs exist, error for the
  rest; failed, broken, aborted, exhausted → error (Snakemake then retries the job in a later
  wave, as many times as the rule's ``retries`` say); unknown statuses end after a few polls;
- cancelling (Ctrl-C, a failed workflow) kills the tasks;
- ``--swfpanda-dry-submit-dir DIR`` writes each task's JSON there instead of submitting (CI):
  the jobs count as done, so run it with ``--immediate-submit --notemp`` to get every wave.
"""

import json
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from snakemake_executor_plugin_swfpanda.tasks import WaveJob, task_name, wave_task

DRY_PREFIX = "dry:"


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    panda_url: Optional[str] = field(default=None, metadata=_help(
        "PanDA server URL (default: $PANDA_URL_SSL, then $PANDA_URL).", env_var=False))
    profile: Optional[str] = field(default=None, metadata=_help(
        "swfflow profile YAML (site, VO, scopes, nickname, defaults); default: swfflow's "
        "embedded profile or $SWFFLOW_PROFILE."))
    site: Optional[str] = field(default=None, metadata=_help("PanDA queue (overrides the profile)."))
    vo: Optional[str] = field(default=None, metadata=_help("PanDA VO (overrides the profile)."))
    scope: Optional[str] = field(default=None, metadata=_help(
        "Rucio scope of the task log datasets (overrides the profile's output scope)."))
    nickname: Optional[str] = field(default=None, metadata=_help(
        "PanDA nickname, first part of task names (overrides the profile's user)."))
    working_group: Optional[str] = field(default=None, metadata=_help(
        "PanDA working group (overrides the profile)."))
    prod_source_label: Optional[str] = field(default=None, metadata=_help(
        "PanDA prodSourceLabel: user, test or managed (overrides the profile)."))
    dry_submit_dir: Optional[str] = field(default=None, metadata=_help(
        "Write each task's JSON into this folder instead of submitting (for CI); use with "
        "--immediate-submit --notemp to see every wave."))
    unknown_polls: Optional[int] = field(default=5, metadata=_help(
        "Polls after which a task PanDA does not know (or reports in an unknown state) fails."))


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=False,  # shared FS or a storage plugin; see docs/snakemake.md
    job_deploy_sources=True,
    pass_envvar_declarations_to_cmd=False,  # keeps secrets off the PanDA command line
    auto_deploy_default_storage_provider=False,  # grid workers have no PyPI access
    init_seconds_before_status_checks=2,
)


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        from swfflow.errors import SwfflowError
        try:
            self.profile = _profile(self.workflow.executor_settings)
        except SwfflowError as exc:
            raise WorkflowError(f"swfpanda: {exc}") from None
        settings = self.workflow.executor_settings
        self.run_id = uuid.uuid4().hex[:8]  # stamped on every task name of this run
        self.wave = 0
        self.dry_dir = Path(settings.dry_submit_dir) if settings.dry_submit_dir else None
        self.unknown_polls = settings.unknown_polls or 5
        self.status_queries = 0  # PanDA status calls made (one per cycle), for the bench
        self.panda = None
        if self.dry_dir is None:
            from swfflow.assemble import Settings, build_executor
            try:
                self.panda = build_executor(Settings(executor="panda",
                                                     panda_url=settings.panda_url,
                                                     unknown_alert_polls=self.unknown_polls))
            except SwfflowError as exc:
                raise WorkflowError(f"swfpanda: {exc}") from None
        else:
            self.dry_dir.mkdir(parents=True, exist_ok=True)

    # --- submission ------------------------------------------------------------------------
    def run_jobs(self, jobs: list[JobExecutorInterface]) -> None:
        by_rule: dict[str, list[JobExecutorInterface]] = defaultdict(list)
        for job in jobs:
            by_rule[job.name].append(job)
        for rule, rule_jobs in sorted(by_rule.items()):
            for job in rule_jobs:
                self.run_job_pre(job)
            self.wave += 1
            self.submit_wave(rule, sorted(rule_jobs, key=lambda j: j.jobid))

    def run_job(self, job: JobExecutorInterface) -> None:
        self.wave += 1
        self.submit_wave(job.name, [job])

    def submit_wave(self, rule: str, jobs: list[JobExecutorInterface]) -> None:
        name = task_name(self.profile, self.run_id, rule, self.wave)
        spec = wave_task(self.profile, name, rule, [self.wave_job(j) for j in jobs])
        if self.dry_dir is not None:
            path = self.dry_dir / f"{name}.json"
            path.write_text(json.dumps(spec.params, indent=1, sort_keys=True) + "\n")
            task_id = f"{DRY_PREFIX}{path}"
        else:
            from swfflow.errors import SwfflowError
            try:
                task_id = self.panda.submit(spec)
            except SwfflowError as exc:
                for job in jobs:
                    self.report_job_error(SubmittedJobInfo(job), msg=f"PanDA submission of "
                                          f"task {name} failed: {exc}")
                return
        self.logger.info(f"swfpanda: {len(jobs)} job(s) of rule {rule} → PanDA task {task_id} "
                         f"({name})")
        for index, job in enumerate(jobs):
            self.report_job_submission(SubmittedJobInfo(
                job, external_jobid=f"{task_id}#{index}",
                aux={"task_id": task_id, "task_name": name, "index": index}))

    def additional_general_args(self) -> str:
        # A rule's `retries:` would also make the Snakemake *inside* the JEDI job re-run the
        # command (the directive beats the inner --retries 0). Retrying is the submitting
        # Snakemake's job (one new PanDA task per attempt), so the inner run tries once:
        # marking every rule "preemptible" with 0 preemptible retries is the one switch
        # Snakemake 9 offers that overrides the directive.
        return "--preemptible-rules --preemptible-retries 0"

    def wave_job(self, job: JobExecutorInterface) -> WaveJob:
        resources = job.resources
        # the rule's container is where PanDA runs the job (container_name), whatever
        # software-deployment method the submitting Snakemake uses
        container = getattr(job, "container_img_url", None)
        return WaveJob(jobid=job.jobid, command=self.format_job_exec(job),
                       threads=int(job.threads or 1), mem_mb=_number(resources.get("mem_mb")),
                       disk_mb=_number(resources.get("disk_mb")),
                       runtime_min=_number(resources.get("runtime")),
                       container=container.removeprefix("docker://") if container else None)

    # --- status ----------------------------------------------------------------------------
    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]
                                ) -> AsyncGenerator[SubmittedJobInfo, None]:
        task_ids = sorted({j.aux["task_id"] for j in active_jobs
                           if not j.aux["task_id"].startswith(DRY_PREFIX)})
        statuses: dict[str, Any] = {}
        if task_ids:
            from swfflow.errors import SwfflowError
            async with self.status_rate_limiter:
                self.status_queries += 1
                try:
                    statuses = self.panda.status(task_ids)  # one bulk query per cycle
                except SwfflowError as exc:
                    self.logger.warning(f"swfpanda: status query failed, retrying next "
                                        f"cycle: {exc}")
                    for job_info in active_jobs:
                        yield job_info
                    return
        for job_info in active_jobs:
            task_id = job_info.aux["task_id"]
            if task_id.startswith(DRY_PREFIX):
                self.report_job_success(job_info)
                continue
            outcome = job_outcome(statuses.get(task_id), job_info.job)
            if outcome is None:
                yield job_info
            elif outcome == "":
                self.report_job_success(job_info)
            else:
                self.report_job_error(job_info, msg=f"PanDA task {task_id} "
                                      f"({job_info.aux['task_name']}): {outcome}")

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        from swfflow.errors import SwfflowError
        for task_id in sorted({j.aux["task_id"] for j in active_jobs}):
            if task_id.startswith(DRY_PREFIX):
                continue
            try:
                self.panda.kill(task_id)
            except SwfflowError as exc:
                self.logger.warning(f"swfpanda: could not kill PanDA task {task_id}: {exc}")


def job_outcome(status: Any, job: Any) -> str | None:
    """None: still active; "": succeeded; otherwise the error message (the full JEDI map)."""
    from swfflow.backends.base import TaskState
    if status is None:
        return None
    state = status.state
    if state is TaskState.SUCCEEDED:
        return ""
    if state is TaskState.PARTIAL:
        missing = [str(f) for f in job.output if not os.path.exists(str(f))]
        return "" if not missing else (f"the task finished partially and this job's outputs are "
                                       f"missing: {', '.join(missing[:3])}")
    if state in (TaskState.FAILED, TaskState.EXHAUSTED):
        return f"JEDI status {status.raw}" + (f": {status.message}" if status.message else "")
    if state is TaskState.UNKNOWN and "polls" in (status.message or ""):
        return status.message  # the backend gave up after its alert threshold
    return None  # submitted, waiting, running, failing (kept polling until final)


def _profile(settings: ExecutorSettings) -> Any:
    from swfflow.pipeline import load_profile_with
    return load_profile_with(settings.profile, {
        "site": settings.site, "vo": settings.vo, "user": settings.nickname,
        "workingGroup": settings.working_group, "prodSourceLabel": settings.prod_source_label,
    }, output_scope=settings.scope)


def _number(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
