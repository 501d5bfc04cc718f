"""The local Catalog and Executor: real SQLite, real files, real adler32, real cwltool jobs."""

from __future__ import annotations

import contextlib
import time
import zlib
from pathlib import Path

import pytest

from swfflow.backends.base import Catalog, Executor, FileRecord, TaskState
from swfflow.backends.local_catalog import LocalCatalog
from swfflow.state import sqlite_engine
from swfflow.backends.local_executor import LocalExecutor
from swfflow.backends.splitting import GB, SplitRule, split_files
from swfflow.errors import ServiceError
from swfflow.plan.model import TaskInput, TaskSpec

COUNT_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'cat "$@" | wc -c > count.txt; test "$(cat "$@" | head -c 4)" != FAIL', sh]
inputs:
  raw: {type: 'File[]', inputBinding: {position: 1}}
outputs:
  count: {type: File, outputBinding: {glob: count.txt}}
"""


def _adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def _records(n: int, size: int = 1) -> list[FileRecord]:
    return [FileRecord(did=f"s:f{i}", size=size, adler32="00000001") for i in range(n)]


# --- splitting ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, closed, chunks, left", [
    (SplitRule(files_per_job=2), False, [2, 2], 1),
    (SplitRule(files_per_job=2), True, [2, 2, 1], 0),
    (SplitRule(files_per_job=10, max_files_per_job=3), True, [3, 2], 0),
    (SplitRule(), False, [], 5),
    (SplitRule(), True, [5], 0),
])
def test_split_by_files(rule, closed, chunks, left):
    got, leftover = split_files(_records(5), rule, closed=closed)
    assert [len(c) for c in got] == chunks
    assert len(leftover) == left


def test_split_by_size_closes_chunk_before_it_overflows():
    files = _records(5, size=int(0.4 * GB))
    got, leftover = split_files(files, SplitRule(gb_per_job=1.0), closed=False)
    assert [len(c) for c in got] == [2, 2]  # 0.8 GB each; a third file would make 1.2
    assert len(leftover) == 1


# --- catalog -----------------------------------------------------------------------------
def test_catalog_is_idempotent_and_ordered(tmp_path):
    cat = LocalCatalog.at(tmp_path / "s.db")
    assert isinstance(cat, Catalog)
    assert cat.create_dataset("s:ds") is True
    assert cat.create_dataset("s:ds") is False
    assert cat.add_files("s:ds", _records(3)) == 3
    assert cat.add_files("s:ds", _records(4)) == 1  # three already attached
    assert [f.did for f in cat.list_files("s:ds")] == ["s:f0", "s:f1", "s:f2", "s:f3"]
    seq, newer = cat.files_after("s:ds", 2)
    assert [f.did for f in newer] == ["s:f2", "s:f3"] and seq == 4
    cat.close_dataset("s:ds")
    cat.close_dataset("s:ds")
    assert not cat.is_open("s:ds")
    with pytest.raises(Exception, match="closed"):
        cat.add_files("s:ds", [FileRecord(did="s:late", size=1, adler32="00000001")])
    assert cat.add_files("s:ds", _records(2)) == 0  # re-attaching is still fine


def test_catalog_rejects_bad_names(tmp_path):
    cat = LocalCatalog.at(tmp_path / "s.db")
    with pytest.raises(Exception, match="scope:name"):
        cat.create_dataset("no-scope")


# --- executor ----------------------------------------------------------------------------
def _setup(tmp_path: Path, attempts: int | None = 2, jobs: int = 2):
    engine = sqlite_engine(tmp_path / "state.db")
    catalog = LocalCatalog(engine)
    executor = LocalExecutor(catalog, engine, tmp_path / "work", jobs=jobs, attempts=attempts)
    tool = tmp_path / "count.cwl"
    tool.write_text(COUNT_TOOL)
    return catalog, executor, tool


def _task(tool: Path, name: str = "t.count", files_per_job: int = 2) -> TaskSpec:
    return TaskSpec(
        key="count", step="count", name=name, kind="command",
        params={"dsForIN": "raw:run1", "nFilesPerJob": files_per_job, "runUntilClosed": True},
        inputs=(TaskInput(port="raw", dataset="raw:run1", master=True),),
        outputs={"count": "out:run1.count"}, log_dataset="out:run1.count.log",
        payload={"kind": "cwl", "step": "count", "tool_uri": tool.as_uri(),
                 "tool": {"inputs": {"raw": "File[]"}}, "job": {}, "split_port": "raw",
                 "gather_ports": {}})


def _add_raw(catalog, tmp_path: Path, names: list[str], content: bytes = b"abcd") -> None:
    records = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(content)
        records.append(FileRecord(did=f"raw:{name}", size=len(content),
                                  adler32=_adler(content), pfn=str(path)))
    catalog.add_files("raw:run1", records)


def _wait(executor, task_id: str, until, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = executor.status([task_id])[task_id]
        if until(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"timeout; last status {status}")


def test_streaming_task_consumes_open_dataset_and_finishes_at_close(tmp_path):
    catalog, executor, tool = _setup(tmp_path)
    assert isinstance(executor, Executor)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    task_id = executor.submit(_task(tool))
    assert executor.submit(_task(tool)) == task_id  # idempotent by name
    try:
        _add_raw(catalog, tmp_path, ["a", "b", "c"])
        status = _wait(executor, task_id, lambda s: s.n_jobs_done == 1)
        assert status.state is TaskState.RUNNING  # open dataset: one file still waits
        _add_raw(catalog, tmp_path, ["d", "e"])
        _wait(executor, task_id, lambda s: s.n_jobs_done == 2)
        catalog.close_dataset("raw:run1")
        status = _wait(executor, task_id, lambda s: s.state.terminal)
        assert status.state is TaskState.SUCCEEDED and status.n_jobs == 3
    finally:
        executor.shutdown()
    outputs = catalog.list_files("out:run1.count")
    assert len(outputs) == 3
    for record in outputs:  # registered with the real checksum of the real file
        data = Path(record.pfn).read_bytes()
        assert record.adler32 == _adler(data) and record.size == len(data)
    assert sorted(Path(r.pfn).read_text().strip() for r in outputs) == ["4", "8", "8"]
    assert len(catalog.list_files("out:run1.count.log")) == 3
    jobs = executor.job_rows(task_id)
    assert jobs[0].command[:2] == ["sh", "-c"] and jobs[0].exit_code == 0


def test_failing_job_is_retried_then_fails_the_task_with_log(tmp_path):
    catalog, executor, tool = _setup(tmp_path, attempts=2)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    _add_raw(catalog, tmp_path, ["bad"], content=b"FAIL")
    catalog.close_dataset("raw:run1")
    task_id = executor.submit(_task(tool, files_per_job=1))
    try:
        status = _wait(executor, task_id, lambda s: s.state.terminal)
    finally:
        executor.shutdown()
    assert status.state is TaskState.FAILED
    assert "after 2 attempt(s), exit code 1" in status.message
    assert "completed permanentFail" in status.message
    assert executor.job_rows(task_id)[0].attempt == 2


def test_task_max_attempt_applies_unless_overridden(tmp_path):
    from dataclasses import replace

    catalog, executor, tool = _setup(tmp_path, attempts=None)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    _add_raw(catalog, tmp_path, ["bad"], content=b"FAIL")
    catalog.close_dataset("raw:run1")
    task = _task(tool, files_per_job=1)
    task = replace(task, params={**task.params, "maxAttempt": 1})  # from swf:Retry
    task_id = executor.submit(task)
    try:
        status = _wait(executor, task_id, lambda s: s.state.terminal)
    finally:
        executor.shutdown()
    assert status.state is TaskState.FAILED and "after 1 attempt(s)" in status.message


def test_resume_keeps_intact_outputs_and_redoes_damaged_ones(tmp_path):
    catalog, executor, tool = _setup(tmp_path)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    _add_raw(catalog, tmp_path, ["a", "b"])
    catalog.close_dataset("raw:run1")
    task_id = executor.submit(_task(tool, files_per_job=1))
    try:
        _wait(executor, task_id, lambda s: s.state.terminal)
    finally:
        executor.shutdown()
    first = {j.number: j.produced[0] for j in executor.job_rows(task_id)}
    assert sorted(first) == [1, 2]  # JEDI's serials
    Path(first[2]["pfn"]).write_text("tampered\n")

    again = LocalExecutor(catalog, executor.engine, tmp_path / "work", jobs=1)
    assert again.submit(_task(tool, files_per_job=1)) == task_id
    try:
        status = _wait(again, task_id, lambda s: s.state.terminal)
    finally:
        again.shutdown()
    assert status.state is TaskState.SUCCEEDED
    rows = {j.number: j for j in again.job_rows(task_id)}
    assert rows[1].attempt == 1  # intact: not run again
    assert rows[2].attempt == 1 and Path(rows[2].produced[0]["pfn"]).read_text().strip() == "4"


# --- containers ----------------------------------------------------------------------------
def test_container_hint_runs_on_host_and_requirement_fails_clearly(tmp_path, caplog):
    from swfflow.errors import UnsupportedFeature
    from swfflow.runtime.containers import ContainerPolicy, available_engine

    forced = ContainerPolicy(forbid=True)
    with caplog.at_level("WARNING", logger="swfflow.containers"):
        assert forced.decide("python:3.11-slim", required=False, where="step x") is None
    assert "running without container python:3.11-slim: --no-container" in caplog.text
    with pytest.raises(UnsupportedFeature, match="is a requirement but --no-container"):
        forced.decide("python:3.11-slim", required=True, where="step x")
    assert ContainerPolicy().decide(None, required=True, where="x") is None  # no image
    engine = available_engine()
    if engine is None:  # this machine: the docker client exists, but no daemon answers
        with pytest.raises(UnsupportedFeature, match="no container engine answers"):
            ContainerPolicy().decide("img", required=True, where="x")
    else:
        assert ContainerPolicy().decide("img", required=True, where="x") == engine


class _OutageCatalog:
    """The local catalog behind a switch: while ``down``, registering files fails as a
    Rucio outage would."""

    def __init__(self, inner: LocalCatalog):
        self.inner, self.down, self.refused = inner, False, 0

    def add_files(self, dataset, files, **kwargs):
        if self.down and not dataset.startswith("raw:"):
            self.refused += 1
            raise ServiceError("catalog unreachable (test outage)")
        return self.inner.add_files(dataset, files, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_job_finishing_during_a_catalog_outage_is_recorded_when_it_returns(tmp_path):
    engine = sqlite_engine(tmp_path / "state.db")
    catalog = _OutageCatalog(LocalCatalog(engine))
    executor = LocalExecutor(catalog, engine, tmp_path / "work", jobs=1, attempts=1)
    tool = tmp_path / "count.cwl"
    tool.write_text(COUNT_TOOL)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    _add_raw(catalog, tmp_path, ["a", "b"])
    catalog.close_dataset("raw:run1")
    catalog.down = True
    task_id = executor.submit(_task(tool, files_per_job=2))
    try:
        deadline = time.monotonic() + 90
        while catalog.refused < 2 and time.monotonic() < deadline:
            with contextlib.suppress(ServiceError):
                executor.status([task_id])
            time.sleep(0.1)
        assert catalog.refused >= 2  # the finished job's outputs were refused, more than once
        catalog.down = False
        status = _wait(executor, task_id, lambda s: s.state.terminal)
    finally:
        executor.shutdown()
    assert status.state is TaskState.SUCCEEDED
    (count,) = catalog.list_files("out:run1.count")
    assert Path(count.pfn).read_text().strip() == "8"  # both 4-byte files, counted once


SIZE_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'wc -c < "$0" > size.txt']
inputs:
  raw: {type: File, inputBinding: {position: 1}}
outputs:
  size: {type: File, outputBinding: {glob: size.txt}}
"""


def test_a_job_of_several_files_runs_a_single_file_tool_once_per_file(tmp_path):
    """JEDI puts nFilesPerJob files in one job; a tool taking one File (scatter semantics)
    must run once per file, and every run's output must be registered."""
    catalog, executor, _ = _setup(tmp_path)
    tool = tmp_path / "size.cwl"
    tool.write_text(SIZE_TOOL)
    for did in ("raw:run1", "out:run1.count", "out:run1.count.log"):
        catalog.create_dataset(did)
    _add_raw(catalog, tmp_path, ["a", "b", "c"], content=b"abcdef")
    catalog.close_dataset("raw:run1")
    task = _task(tool, files_per_job=3)
    payload = {**task.payload, "tool_uri": tool.as_uri(), "tool": {"inputs": {"raw": "File"}}}
    from dataclasses import replace
    task = replace(task, outputs={"size": "out:run1.count"}, payload=payload)
    task_id = executor.submit(task)
    try:
        status = _wait(executor, task_id, lambda s: s.state.terminal)
    finally:
        executor.shutdown()
    assert status.state is TaskState.SUCCEEDED, status.message
    assert len(executor.job_rows(task_id)) == 1  # one JEDI job …
    outputs = catalog.list_files("out:run1.count")
    assert len(outputs) == 3  # … three tool runs, three registered outputs
    assert [Path(f.pfn).read_text().strip() for f in outputs] == ["6", "6", "6"]
    assert len({f.did for f in outputs}) == 3
