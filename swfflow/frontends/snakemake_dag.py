"""The ONE place that touches Snakemake's private DAG API (pinned: snakemake 9.27.x).

Snakemake has no public "give me the job graph" call: its API methods print or execute. We enter
``SnakemakeApi`` as Snakemake's own CLI does, then call the private ``_prepare_dag``/``_build_dag``
with ``forceall=True`` (otherwise jobs whose outputs exist are dropped), and copy what the front
end needs into plain dataclasses, so nothing outside this module sees a Snakemake object.
``tests/test_snakemake_frontend.py::test_dag_adapter_contract`` pins every attribute used here;
when Snakemake moves, that test and this module are the only things to change.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.errors import UnsupportedFeature, WorkflowError

SUPPORTED_SNAKEMAKE = "9.27."
# Snakemake caps a job's threads at --cores; the plan wants what the rule asks for
_NO_CORE_CAP = 1 << 20


@dataclass(frozen=True)
class SnakeRule:
    """A rule as the front end sees it (values of its first job where they are per job)."""

    name: str
    where: str  # snakefile:line
    shell: str | None
    norun: bool  # no shell/run/script: an aggregate target such as `rule all`
    is_checkpoint: bool
    wildcard_names: tuple[str, ...]
    input_patterns: dict[str, bool]  # port -> the declared pattern names a wildcard
    params: dict[str, Any]
    threads: int
    resources: dict[str, Any]  # only what the rule declares (mem_mb, disk_mb, runtime, ...)
    container: str | None
    retries: int | None


@dataclass
class SnakeJob:
    jobid: int
    rule: str
    wildcards: dict[str, str]
    inputs: dict[str, list[str]]  # port -> files (positional items are input_0, input_1, ...)
    outputs: dict[str, list[str]]
    parents: list[int] = field(default_factory=list)


@dataclass
class SnakeDag:
    snakefile: str
    rules: dict[str, SnakeRule]
    jobs: list[SnakeJob]
    targets: list[str]  # rules the default target asked for


def check_version() -> None:
    import snakemake
    version = getattr(snakemake, "__version__", "")
    if not version.startswith(SUPPORTED_SNAKEMAKE):
        raise UnsupportedFeature(
            f"swfflow reads Snakefiles with snakemake {SUPPORTED_SNAKEMAKE}x; found {version}",
            hint=f"pip install 'snakemake>={SUPPORTED_SNAKEMAKE}0,<9.28'")


def build_dag(snakefile: str | os.PathLike, config: Mapping[str, Any] | None = None) -> SnakeDag:
    """Parse ``snakefile`` with ``config`` and return its full job graph (nothing runs)."""
    check_version()
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings,
                                          ResourceSettings)

    path = Path(snakefile).resolve()
    noise = io.StringIO()
    with _kept_cwd(), _quiet_snakemake(noise):
        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            # A Snakefile is Python: whatever it raises while Snakemake reads it and builds the
            # DAG is the user's error (missing inputs, bad resources, a typo), not swfflow's.
            try:
                wf_api = api.workflow(resource_settings=ResourceSettings(cores=_NO_CORE_CAP),
                                      config_settings=ConfigSettings(config=dict(config or {})),
                                      snakefile=path, workdir=path.parent)
                wf_api.dag(DAGSettings())
                workflow = wf_api._workflow
                workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
                workflow._build_dag()
            except Exception as exc:  # noqa: BLE001 (see above)
                raise WorkflowError(
                    f"Snakemake could not build the job graph: {_first_line(exc)}",
                    where=_error_where(exc, path),
                    hint="run `snakemake -n` in the workflow folder for details") from None
            return _snapshot(workflow, path)


def _snapshot(workflow: Any, path: Path) -> SnakeDag:
    dag = workflow.dag
    jobs = list(dag.needrun_jobs(exclude_finished=False))
    rules: dict[str, SnakeRule] = {}
    for job in jobs:
        if job.rule.name not in rules:
            rules[job.rule.name] = _rule(job.rule, job, workflow.linemaps)
    snap = [SnakeJob(job.jobid, job.rule.name, dict(job.wildcards.items()),
                     _named(job.input, "input"), _named(job.output, "output"),
                     sorted(p.jobid for p in dag.dependencies[job]))
            for job in jobs]
    snap.sort(key=lambda j: j.jobid)
    default = workflow.default_target
    return SnakeDag(str(path), rules, snap, [default] if default else [])


def _rule(rule: Any, job: Any, linemaps: Mapping[Any, Mapping[int, int]]) -> SnakeRule:
    declared = set(rule.resources)  # only what the rule says, plus tmpdir/_nodes/_cores
    resources = {k: v for k, v in job.resources.items() if k in _DECLARABLE and k in declared}
    params = dict(job.params.items()) if job.params is not None else {}
    container = rule.container_img if isinstance(rule.container_img, str) else None
    patterns = {}
    declared_inputs = list(rule.input)
    for name, (start, end) in _ranges(rule.input, "input").items():
        patterns[name] = any(isinstance(i, str) and any(f"{{{w}" in i for w in rule.wildcard_names)
                             for i in declared_inputs[start:end])
    return SnakeRule(
        name=rule.name, where=_source_line(rule.snakefile, rule.lineno, linemaps),
        shell=rule.shellcmd,
        norun=bool(rule.norun), is_checkpoint=bool(rule.is_checkpoint),
        wildcard_names=tuple(sorted(rule.wildcard_names)), input_patterns=patterns,
        params=params, threads=int(job.threads), resources=resources, container=container,
        retries=rule._restart_times or None)


_DECLARABLE = ("mem_mb", "mem_mib", "disk_mb", "disk_mib", "runtime")


def _source_line(snakefile: Any, lineno: int, linemaps: Mapping[Any, Mapping[int, int]]) -> str:
    """Rule line numbers count lines of the Python Snakemake generates; map them back."""
    for key, mapping in linemaps.items():
        if str(key) == str(snakefile) or str(getattr(key, "get_path_or_uri", lambda: key)()) \
                == str(snakefile):
            return f"{snakefile}:{mapping.get(lineno, lineno)}"
    return f"{snakefile}:{lineno}"


def _ranges(io_list: Any, prefix: str) -> dict[str, tuple[int, int]]:
    """port -> (start, end) index range; unnamed items get ``<prefix>_<i>``."""
    size = len(io_list)
    named = {name: (start, start + 1 if end is None else end)  # None: a single item
             for name, (start, end) in io_list._names.items()}
    covered = {i for start, end in named.values() for i in range(start, end)}
    for i in range(size):
        if i not in covered:
            named[f"{prefix}_{i}"] = (i, i + 1)
    return dict(sorted(named.items(), key=lambda item: item[1]))


def _named(io_list: Any, prefix: str) -> dict[str, list[str]]:
    files = [str(f) for f in io_list]
    return {name: files[start:end] for name, (start, end) in _ranges(io_list, prefix).items()}


@contextlib.contextmanager
def _kept_cwd() -> Iterator[None]:
    """SnakemakeApi.workflow changes the process cwd to the workdir; put it back."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def _quiet_snakemake(sink: io.StringIO) -> Iterator[None]:
    """Snakemake logs "Building DAG of jobs..." and friends; keep a compile's output clean."""
    logger = logging.getLogger("snakemake")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if len(text.splitlines()) == 1 else " ".join(text.split())[:400]


def _error_where(exc: BaseException, path: Path) -> str:
    """file:line of a Snakefile error, the line mapped back from Snakemake's generated Python
    (the Workflow object in the traceback holds the line maps)."""
    snakefile = str(getattr(exc, "snakefile", None) or getattr(exc, "filename", None) or path)
    lineno = getattr(exc, "lineno", None)
    linemaps: Mapping[Any, Mapping[int, int]] = {}
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(getattr(owner, "linemaps", None), Mapping):
            linemaps = owner.linemaps
        if tb.tb_frame.f_code.co_filename == snakefile and lineno is None:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if not lineno:
        return snakefile
    if not linemaps:
        return snakefile  # an unmapped line number would point at the wrong line
    return _source_line(snakefile, lineno, linemaps)
