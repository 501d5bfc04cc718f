"""Run one CWL leaf process (CommandLineTool, ExpressionTool, Operation) with cwltool.

cwltool does everything that is CWL for one invocation — input validation and defaults,
command-line building, staging, containers, output collection, checksums. swfflow only chooses
the directories and the container engine and records what happened (provenance): the command
line, the container, the exit code and the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swfflow.frontends.cwl_compile import plain  # ruamel maps → plain dicts (cwltool mutates)
from swfflow.plan.floats import unspelled
from swfflow.runtime.containers import ContainerPolicy

_EXIT_STATUS = re.compile(r"exited with status: (-?\d+)")
_LOAD_LOCK = threading.Lock()
_PROCESS_CACHE: dict[str, Any] = {}  # tool URI, or sha1 of a process dict → Process
STDERR_LINES, STDERR_BYTES = 40, 16384  # of a tool's stderr kept in its job's log


@dataclass
class ToolResult:
    status: str  # "success" | "permanentFail" | "temporaryFail"
    outputs: dict[str, Any] | None
    command: list[str] = field(default_factory=list)
    container: str | None = None
    exit_code: int | None = None
    log: str = ""
    reused: bool = False  # cwltool's job cache answered: nothing ran

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def load_process(tool: str | Mapping[str, Any]) -> Any:
    """The cwltool Process for a tool URI (cached) or a self-contained process dict."""
    import cwltool.workflow  # noqa: F401  (importing it installs cwltool's default tool factory)
    from cwltool.context import LoadingContext
    from cwltool.load_tool import load_tool

    # a process dict is cached by its content: a worker runs many jobs of one task, and
    # loading (schema validation) is half of a trivial job's time
    key = tool if isinstance(tool, str) else "sha1:" + hashlib.sha1(
        json.dumps(tool, sort_keys=True, default=str).encode()).hexdigest()
    with _LOAD_LOCK:  # schema-salad's loaders share caches: one load at a time
        if key not in _PROCESS_CACHE:
            document = tool if isinstance(tool, str) else unspelled(plain(tool))
            _PROCESS_CACHE[key] = load_tool(document, _loading_context(LoadingContext))
        return _PROCESS_CACHE[key]


def _loading_context(factory: Any) -> Any:
    ctx = factory()
    ctx.relax_path_checks = True
    ctx.do_validate = True
    return ctx


class _PerThreadLog(logging.Handler):
    """The cwltool logger's handler while jobs run: each record goes to the capture of the
    thread that logged it (jobs run in parallel threads), other records to the handlers the
    logger had before."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.captures: dict[int, _CaptureLog] = {}
        self.saved: tuple[list[logging.Handler], bool, int] = ([], True, logging.NOTSET)

    def emit(self, record: logging.LogRecord) -> None:
        capture = self.captures.get(threading.get_ident())
        if capture is not None:
            capture.handle(record)
            return
        handlers, propagate, level = self.saved
        if record.levelno < (level or logging.WARNING):
            return
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
        if propagate:
            logging.getLogger().handle(record)

    @contextmanager
    def capturing(self, capture: _CaptureLog) -> Iterator[None]:
        logger = logging.getLogger("cwltool")
        with _ROUTE_LOCK:
            if not self.captures:  # the first job running: take the logger over
                self.saved = (logger.handlers[:], logger.propagate, logger.level)
                logger.handlers, logger.propagate = [self], False
                logger.setLevel(logging.INFO)
            self.captures[threading.get_ident()] = capture
        try:
            yield
        finally:
            with _ROUTE_LOCK:
                del self.captures[threading.get_ident()]
                if not self.captures:  # the last one: give it back
                    logger.handlers, logger.propagate = self.saved[0], self.saved[1]
                    logger.setLevel(self.saved[2])


class _CaptureLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.exit_code: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.lines.append(text)
        found = _EXIT_STATUS.search(text)
        if found:
            self.exit_code = int(found.group(1))


def _container_of(process: Any) -> tuple[str | None, bool]:
    req, is_required = process.get_requirement("DockerRequirement")
    if not req:
        return None, False
    return (req.get("dockerPull") or req.get("dockerImageId") or req.get("dockerLoad")
            or "image"), bool(is_required)


def run_tool(tool: str | Mapping[str, Any], job: Mapping[str, Any], outdir: str | Path, *,
             policy: ContainerPolicy = ContainerPolicy(), workdir: str | Path | None = None,
             where: str = "", cache_dir: str | Path | None = None) -> ToolResult:
    """Run ``tool`` on the job object ``job``; outputs end up under ``outdir``.

    With ``cache_dir``, cwltool's own job cache (keyed by the command line and the inputs'
    checksums) makes a re-run reuse a finished job's outputs instead of running it again."""
    from cwltool.context import RuntimeContext
    from cwltool.stdfsaccess import StdFsAccess

    process = load_process(tool)
    image, required = _container_of(process)
    engine = policy.decide(image, required, where or str(tool)[:80])
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # one scratch folder per job: cwltool cleans its staging area when a job ends, and
    # concurrent jobs must not share (or delete) each other's staged inputs
    job_key = hashlib.sha1(str(outdir.resolve()).encode()).hexdigest()[:16]
    scratch = Path(workdir or outdir.parent) / ".cwltmp" / job_key
    scratch.mkdir(parents=True, exist_ok=True)
    runtime = RuntimeContext()
    runtime.outdir = str(outdir)
    runtime.tmpdir_prefix = str(scratch / "tmp")
    runtime.tmp_outdir_prefix = str(scratch / "out")
    runtime.stagedir = str(scratch / "stage")
    runtime.basedir = os.getcwd()
    runtime.move_outputs = "copy" if cache_dir is not None else "move"  # keep the cache whole
    runtime.compute_checksum = True
    runtime.use_container = engine is not None
    runtime.singularity = engine in ("apptainer", "singularity")
    runtime.podman = engine == "podman"
    runtime.make_fs_access = StdFsAccess
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        runtime.cachedir = str(Path(cache_dir).resolve()) + "/"

    recorder = _RecordingExecutor()
    capture = _CaptureLog()
    cwl_logger = logging.getLogger("cwltool")
    # the job's log goes to its record (log dataset, status, error message), not the
    # terminal: stderr belongs to the progress display
    # the tool's own stderr (unless the tool captures it with `stderr:`) into the job's log:
    # cwltool sends it to the worker's stderr otherwise, where a failed job's real error is lost
    stderr_path = scratch / "tool.stderr"
    with _ROUTER.capturing(capture), stderr_path.open("wb") as tool_stderr:
        runtime.default_stderr = tool_stderr
        try:
            outputs, status = recorder.execute(process, _job_for(process, tool, job), runtime,
                                               logger=cwl_logger)
        except Exception as exc:  # cwltool's WorkflowException/ValidationException: failed
            capture.lines.append(f"{type(exc).__name__}: {exc}")
            outputs, status = None, "permanentFail"
    capture.lines += stderr_block(stderr_path)
    exit_code = capture.exit_code
    if exit_code is None and status == "success" and recorder.commands:
        exit_code = 0
    return ToolResult(status=status, outputs=outputs, command=recorder.commands,
                      container=image if engine else None, exit_code=exit_code,
                      log="\n".join(capture.lines), reused=recorder.reused)


def stderr_block(path: Path, lines: int = STDERR_LINES) -> list[str]:
    """The last ``lines`` lines of a tool's stderr under a header saying whose they are (none
    if it wrote nothing); the file is removed."""
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, path.stat().st_size - STDERR_BYTES))
            text = stream.read().decode("utf-8", "replace")
        path.unlink()
    except FileNotFoundError:
        return []
    kept = text.splitlines()
    if not kept:
        return []
    shown = kept[-lines:]
    cut = f" (its last {len(shown)} lines)" if len(shown) < len(kept) else ""
    return [f"--- the tool's stderr{cut}:", *shown]


def _job_for(process: Any, tool: str | Mapping[str, Any], job: Mapping[str, Any]
             ) -> dict[str, Any]:
    """A copy of the job object as cwltool's own job loader would give it: a File ``format``
    written with a namespace prefix (``edam:format_2330``) expanded by the tool's
    ``$namespaces``, so format checks compare full IRIs."""
    from cwltool.utils import visit_class

    # a process loaded from a dict keeps no $namespaces in its metadata: read the dict's
    namespaces = ((tool.get("$namespaces") if isinstance(tool, Mapping) else None)
                  or (getattr(process, "metadata", None) or {}).get("$namespaces") or {})
    copy = plain(dict(job))

    def expand(file: dict[str, Any]) -> None:
        prefix, colon, rest = str(file.get("format", "")).partition(":")
        if colon and prefix in namespaces and not rest.startswith("//"):
            file["format"] = namespaces[prefix] + rest

    if namespaces:
        visit_class(copy, ("File",), expand)
    return copy


def _recording_executor_class() -> type:
    from cwltool.executors import SingleJobExecutor

    class RecordingExecutor(SingleJobExecutor):
        """cwltool's single-job executor that also keeps each job's command line."""

        def __init__(self) -> None:
            super().__init__()
            self.commands: list[str] = []
            self.reused = False

        def run_jobs(self, process: Any, job_order: Any, logger: Any, runtime: Any) -> None:
            # as cwltool's own multithreaded executor does: building a job (validation,
            # expressions, cache lookup) one thread at a time, only job.run() in parallel
            for job in _serialized(process.job(job_order, self.output_callback, runtime)):
                if job is None:
                    logger.error("job cannot make progress")
                    break
                if job.outdir is not None:
                    self.output_dirs.add(job.outdir)
                self.commands.extend(getattr(job, "command_line", None) or [])
                self.reused = self.reused or type(job).__name__ == "CallbackJob"
                job.run(runtime)

    return RecordingExecutor


def _RecordingExecutor() -> Any:  # noqa: N802 - a class built lazily (cwltool import is slow)
    global _RECORDING
    if _RECORDING is None:
        _RECORDING = _recording_executor_class()
    return _RECORDING()


_RECORDING: type | None = None
_ROUTE_LOCK = threading.Lock()
_ROUTER = _PerThreadLog()
_JOB_BUILD_LOCK = threading.Lock()


def _serialized(jobs: Iterator[Any]) -> Iterator[Any]:
    while True:
        with _JOB_BUILD_LOCK:
            job = next(jobs, _DONE)
        if job is _DONE:
            return
        yield job


_DONE = object()
