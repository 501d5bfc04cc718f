"""The ONE place that touches Snakemake's private DAG API (pinned: snakemake 9.27.x).

Snakemake has no public "give me the job graph" call: its API methods print or execute. We enter
``SnakemakeApi`` as Snakemake's own CLI does, then call the private ``_prepare_dag``/``_build_dag``
with ``forceall=True`` (otherwise jobs whose outputs exist are dropped), and copy what the front
end needs into plain dataclasses, so nothing outside this module sees a Snakemake object.
``tests/test_snakemake_frontend.py::test_dag_adapter_contract`` pins every attribute used here;
when Snakemake moves, that test and this module are the only things to change.

Private names still used, and why (each has no public equivalent in 9.27):
``WorkflowApi._workflow`` (the parsed workflow: the public methods only print),
``Workflow._prepare_dag``/``_build_dag`` (what ``printdag`` runs, without printing a
100,000-job graph), ``Workflow.dag`` (two of its whole-graph steps are skipped when no rule
can give them work: :func:`_skip_checks_that_cannot_fire`) and ``Rule._restart_times`` (the public ``restart_times`` needs remote
execution settings that a DAG-only API never sets). Named input/output ranges are read
through the public ``Namedlist.items()``.
"""

from __future__ import annotations

import contextlib
import gc
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
    input_items: dict[str, tuple[str, ...]] = field(default_factory=dict)  # declared patterns
    output_items: dict[str, tuple[str, ...]] = field(default_factory=dict)  # (not functions)
    directories: tuple[str, ...] = ()  # output ports declared directory()
    temp_outputs: tuple[str, ...] = ()  # output ports declared temp()


@dataclass
class SnakeJob:
    jobid: int
    rule: str
    wildcards: dict[str, str]
    inputs: dict[str, list[str]]  # port -> files (positional items are input_0, input_1, ...)
    outputs: dict[str, list[str]]
    parents: list[int] = field(default_factory=list)


class NoJobGraph(WorkflowError):
    """Snakemake parsed the file but has no job graph for it on its own: no concrete target,
    or inputs that only the Snakefile including it (a module) provides."""


@dataclass
class SnakeDag:
    snakefile: str
    rules: dict[str, SnakeRule]
    jobs: list[SnakeJob]
    targets: list[str]  # rules the default target asked for
    config: dict[str, Any] = field(default_factory=dict)  # what the graph was built with
    # rules the job graph has no job of (yet): with checkpoints, they may run after one
    idle_rules: dict[str, SnakeRule] = field(default_factory=dict)


def check_version() -> None:
    import snakemake
    version = getattr(snakemake, "__version__", "")
    if not version.startswith(SUPPORTED_SNAKEMAKE):
        raise UnsupportedFeature(
            f"swfflow reads Snakefiles with snakemake {SUPPORTED_SNAKEMAKE}x; found {version}",
            hint=f"pip install 'snakemake>={SUPPORTED_SNAKEMAKE}0,<9.28'")


def build_dag(snakefile: str | os.PathLike, config: Mapping[str, Any] | None = None, *,
              everything: bool = True) -> SnakeDag:
    """Parse ``snakefile`` with ``config`` and return its full job graph (nothing runs).
    ``everything=False``: the graph as Snakemake would run it now, in the Snakefile's folder
    (checkpoints whose outputs are there are resolved: what a checkpoint expansion needs)."""
    check_version()
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    path = Path(snakefile).resolve()
    noise = io.StringIO()
    with _kept_cwd(), _quiet_snakemake(noise), \
            SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        # A Snakefile is Python: whatever it raises while Snakemake reads it and builds the
        # DAG is the user's error (missing inputs, bad resources, a typo), not swfflow's.
        try:
            wf_api = api.workflow(resource_settings=ResourceSettings(cores=_NO_CORE_CAP),
                                  config_settings=ConfigSettings(config=dict(config or {})),
                                  snakefile=path, workdir=path.parent)
            wf_api.dag(DAGSettings())
            workflow = wf_api._workflow
            workflow._prepare_dag(forceall=everything, ignore_incomplete=True,
                                   lock_warn_only=True)
            _skip_checks_that_cannot_fire(workflow)
            workflow._build_dag()
        except Exception as exc:  # noqa: BLE001 (see above)
            raise _graph_error(exc, path) from None
        return _snapshot(workflow, path, dict(config or {}), everything)


def _skip_checks_that_cannot_fire(workflow: Any) -> None:
    """Two steps of Snakemake's DAG build that walk every job (a third of the time at
    100,000 jobs) and can only act when a rule uses what they are about: the check that no
    output lies inside another job's ``directory()`` output (there is none without a
    ``directory()`` output) and collecting the jobs' conda environments (none without a
    ``conda:`` directive). They are skipped, on this DAG object only, exactly when no rule
    could give them anything to do."""
    rules = list(workflow.rules)
    if not any(_is_flagged(o, "directory") for rule in rules for o in rule.output):
        workflow.dag.check_directory_outputs = _nothing_to_do
    if all(rule.conda_env is None for rule in rules):
        workflow.dag.update_conda_envs = _nothing_to_do


def _nothing_to_do() -> None:
    return None


def parse_rules(snakefile: str | os.PathLike, config: Mapping[str, Any] | None = None
                ) -> list[SnakeRule]:
    """The rules of ``snakefile`` as declared (no job graph: a module's check). Values that
    are functions of a job (params, resources, threads) are left out: only a job has them."""
    check_version()
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
    )

    path = Path(snakefile).resolve()
    with _kept_cwd(), _quiet_snakemake(io.StringIO()), \
            SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        try:
            workflow = api.workflow(resource_settings=ResourceSettings(cores=_NO_CORE_CAP),
                                    config_settings=ConfigSettings(config=dict(config or {})),
                                    snakefile=path, workdir=path.parent)._workflow
        except Exception as exc:  # noqa: BLE001 (a Snakefile is the user's Python)
            raise _graph_error(exc, path) from None
        return [_declared_rule(rule, workflow.linemaps) for rule in workflow.rules]


# Snakemake errors that mean "this file needs whoever includes it", by class name (the
# classes live in snakemake.exceptions; matching names keeps the import lazy)
_NEEDS_INCLUDER = {"MissingInputException"}
_NEEDS_INCLUDER_TEXT = ("Target rules may not contain wildcards",)


def _graph_error(exc: BaseException, path: Path) -> WorkflowError:
    text = _first_line(exc)
    kind = NoJobGraph if (type(exc).__name__ in _NEEDS_INCLUDER
                          or any(t in text for t in _NEEDS_INCLUDER_TEXT)) else WorkflowError
    return kind(f"Snakemake could not build the job graph: {text}",
                where=_error_where(exc, path),
                hint="run `snakemake -n` in the workflow folder for details")


def _snapshot(workflow: Any, path: Path, config: dict[str, Any],
              everything: bool = True) -> SnakeDag:
    dag = workflow.dag
    jobs = list(dag.needrun_jobs(exclude_finished=False) if everything else dag.jobs)
    rules: dict[str, SnakeRule] = {}
    for job in jobs:
        if job.rule.name not in rules:
            rules[job.rule.name] = _rule(job.rule, job, workflow.linemaps)
    snap = [SnakeJob(job.jobid, job.rule.name, dict(job.wildcards.items()),
                     named_files(job.input, "input", _maker(dag.dependencies[job])),
                     named_files(job.output, "output"),
                     sorted(p.jobid for p in dag.dependencies[job]))
            for job in jobs]
    snap.sort(key=lambda j: j.jobid)
    default = workflow.default_target
    idle = {}
    if any(rule.is_checkpoint for rule in rules.values()):
        idle = {rule.name: _declared_rule(rule, workflow.linemaps) for rule in workflow.rules
                if rule.name not in rules}
    return SnakeDag(str(path), rules, snap, [default] if default else [], config, idle)


def _rule(rule: Any, job: Any, linemaps: Mapping[Any, Mapping[int, int]]) -> SnakeRule:
    declared = set(rule.resources)  # only what the rule says, plus tmpdir/_nodes/_cores
    resources = {k: v for k, v in job.resources.items() if k in _DECLARABLE and k in declared}
    params = dict(job.params.items()) if job.params is not None else {}
    return _make_rule(rule, linemaps, params, int(job.threads), resources)


def _declared_rule(rule: Any, linemaps: Mapping[Any, Mapping[int, int]]) -> SnakeRule:
    """A rule without a job: only the values that are not functions of one."""
    params = {k: v for k, v in rule.params.items() if not callable(v)}
    resources = {key: _declared_value(value) for key, value in rule.resources.items()
                 if key in _DECLARABLE and _declared_value(value) is not None}
    cores = _declared_value(rule.resources.get("_cores"))
    return _make_rule(rule, linemaps, params, cores if isinstance(cores, int) else 1, resources)


def _declared_value(resource: Any) -> Any:
    """A resource's value, None when it is a function of a job (Snakemake's ``Resource``
    raises on ``.value`` then; a plain value may also be given)."""
    if resource is None or callable(resource):
        return None
    if hasattr(resource, "is_evaluable"):
        return None if resource.is_evaluable() else resource.value
    return resource


def _make_rule(rule: Any, linemaps: Mapping[Any, Mapping[int, int]], params: dict[str, Any],
               threads: int, resources: dict[str, Any]) -> SnakeRule:
    container = rule.container_img if isinstance(rule.container_img, str) else None
    patterns, items = {}, {}
    declared_inputs = list(rule.input)
    for name, (start, end) in _ranges(rule.input, "input").items():
        patterns[name] = any(isinstance(i, str) and any(f"{{{w}" in i for w in rule.wildcard_names)
                             for i in declared_inputs[start:end])
        items[name] = tuple(str(i) for i in declared_inputs[start:end] if isinstance(i, str))
    declared_outputs = list(rule.output)
    outputs = {name: tuple(str(o) for o in declared_outputs[start:end])
               for name, (start, end) in _ranges(rule.output, "output").items()}
    output_ranges = _ranges(rule.output, "output")

    def flagged(flag: str) -> tuple[str, ...]:
        return tuple(sorted(name for name, (start, end) in output_ranges.items()
                            if any(_is_flagged(o, flag) for o in declared_outputs[start:end])))
    return SnakeRule(
        name=rule.name, where=_source_line(rule.snakefile, rule.lineno, linemaps),
        shell=rule.shellcmd,
        norun=bool(rule.norun), is_checkpoint=bool(rule.is_checkpoint),
        wildcard_names=tuple(sorted(rule.wildcard_names)), input_patterns=patterns,
        input_items=items, output_items=outputs, directories=flagged("directory"),
        temp_outputs=flagged("temp"),
        params=params, threads=threads, resources=resources, container=container,
        retries=rule._restart_times or None)


def _is_flagged(item: Any, flag: str) -> bool:
    """Snakemake's public ``is_flagged`` (an IOFile's flags: directory, temp, ...)."""
    from snakemake.io import is_flagged
    return bool(is_flagged(item, flag))


_DECLARABLE = ("mem_mb", "mem_mib", "disk_mb", "disk_mib", "runtime")


def _source_line(snakefile: Any, lineno: int, linemaps: Mapping[Any, Mapping[int, int]]) -> str:
    """Rule line numbers count lines of the Python Snakemake generates; map them back."""
    for key, mapping in linemaps.items():
        spelled = key.get_path_or_uri() if hasattr(key, "get_path_or_uri") else key
        if str(snakefile) in (str(key), str(spelled)):
            return f"{snakefile}:{mapping.get(lineno, lineno)}"
    return f"{snakefile}:{lineno}"


def _ranges(io_list: Any, prefix: str) -> dict[str, tuple[int, int]]:
    """port -> (start, end) index range; unnamed items get ``<prefix>_<i>``.

    ``Namedlist.items()`` gives each name's item or slice in declaration order; named items
    follow positional ones (Python call syntax), so each range starts where the previous one
    ended or, after positional items, at the first position that holds its value."""
    size = len(io_list)
    if not getattr(io_list, "keys", dict)():  # only positional items: the common case, cheap (no items())
        return {f"{prefix}_{i}": (i, i + 1) for i in range(size)}
    items = list(io_list)
    named: dict[str, tuple[int, int]] = {}
    cursor = 0
    for name, value in io_list.items():
        values = list(value) if isinstance(value, list) else [value]
        start = _find_run(items, values, cursor)
        named[name] = (start, start + len(values))
        cursor = start + len(values)
    covered = {i for start, end in named.values() for i in range(start, end)}
    for i in range(size):
        if i not in covered:
            named[f"{prefix}_{i}"] = (i, i + 1)
    return dict(sorted(named.items(), key=lambda item: item[1]))


def _find_run(items: list[Any], values: list[Any], cursor: int) -> int:
    """First index >= cursor where ``values`` occur as a run of ``items`` (cursor if empty)."""
    if not values:
        return cursor
    width = len(values)
    for start in range(cursor, len(items) - width + 1):
        if items[start] is values[0] and items[start:start + width] == values:
            return start
    for start in range(cursor, len(items) - width + 1):  # copies rather than the same objects
        if items[start:start + width] == values:
            return start
    return cursor


def _maker(dependencies: Mapping[Any, Any]) -> dict[str, str]:
    """input file → the rule of the parent job that writes it."""
    return {str(f): parent.rule.name for parent, files in dependencies.items() for f in files}


def named_files(io_list: Any, prefix: str, maker: Mapping[str, str] | None = None
                ) -> dict[str, list[str]]:
    """port → files. Unnamed items are ``<prefix>_<i>``; with ``maker`` (file → the rule
    writing it), a run of unnamed items written by the same rule (or by none) is ONE port
    ``<prefix>_<first i>``: ``input: expand(...)`` over 100,000 files is one gather port, not
    100,000 ports."""
    files = [str(f) for f in io_list]
    ports: dict[str, list[str]] = {}
    run_port, run_maker = None, None
    for name, (start, end) in _ranges(io_list, prefix).items():
        unnamed = name == f"{prefix}_{start}" and end == start + 1
        if maker is not None and unnamed:
            who = maker.get(files[start])
            if run_port is not None and who == run_maker:
                ports[run_port].append(files[start])
                continue
            run_port, run_maker = name, who
        else:
            run_port = None
        ports[name] = files[start:end]
    return ports


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while a job graph is built and lowered. A 100,000-job
    graph is millions of objects that all live until the compile ends, and every full
    collection scans them again, which makes the build grow faster than the graph (measured
    at 20,000 jobs: 10 s instead of 16-20 s, the same peak memory). Restored afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
