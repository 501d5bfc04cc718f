"""The driver over the real local backends: release rules (stream / complete edges, when),
failures blocking downstream, retries, resume, and `swfflow run` / `swfflow status`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from swfflow.backends.base import FileRecord
from swfflow.backends.local_catalog import LocalCatalog
from swfflow.state import sqlite_engine
from swfflow.backends.local_executor import LocalExecutor
from swfflow.drive import DriverStore, FlowRun, TaskPhase
from swfflow.drive.local_run import run_expression_locally
from swfflow.drive.payload import LocalPayloads
from swfflow.frontends import load_any
from swfflow.plan.planner import compile_workflow

REPO = Path(__file__).resolve().parents[1]
SWFFLOW = [sys.executable, "-m", "swfflow.cli"]

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
requirements: {ScatterFeatureRequirement: {}, InlineJavascriptRequirement: {}}
inputs:
  raw: {type: 'File[]', swf:stream: true}
  marker: string
  min_files: {type: int, default: 1}
outputs:
  total: {type: File?, outputSource: sum/total}
steps:
  check:
    run: check.cwl
    scatter: f
    in: {f: raw, marker: marker}
    out: [ok]
  sum:
    run: sum.cwl
    when: $(inputs.oks.length >= inputs.min_files)
    in: {oks: check/ok, min_files: min_files}
    out: [total]
"""
CHECK = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'test -e "$1" || { echo "marker $1 missing" >&2; exit 7; }; wc -c < "$0" > "$(basename "$0").ok"']
inputs:
  f: {type: File, inputBinding: {position: 1}}
  marker: {type: string, inputBinding: {position: 2}}
outputs:
  ok: {type: File, outputBinding: {glob: '*.ok'}}
"""
SUM = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'cat "$@" | tr -d " " | paste -sd+ | bc > total.txt', sh]
inputs:
  oks: {type: 'File[]', inputBinding: {position: 1}}
outputs:
  total: {type: File, outputBinding: {glob: total.txt}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "wf.cwl").write_text(WORKFLOW)
    (tmp_path / "check.cwl").write_text(CHECK)
    (tmp_path / "sum.cwl").write_text(SUM)
    raw = []
    for i, size in enumerate((3, 5, 7)):
        path = tmp_path / f"stf{i}.dat"
        path.write_bytes(b"x" * size)
        raw.append({"class": "File", "location": path.name})
    (tmp_path / "inputs.json").write_text(json.dumps({"raw": raw, "marker": str(_marker(tmp_path))}))
    return tmp_path


def _marker(project: Path) -> Path:
    # outside the workflow folder: the planner writes paths under it relative to it
    return project.parent / f"{project.name}-marker"


def _flow(project: Path, inputs: dict, *, attempts: int = 2):
    workflow = load_any(project / "wf.cwl", inputs)
    plan = compile_workflow(workflow, inputs, None, "42")
    engine = sqlite_engine(project / "out" / ".swfflow" / "state.db")
    catalog = LocalCatalog(engine)
    workdir = project / "out" / ".swfflow"
    executor = LocalExecutor(catalog, engine, workdir, jobs=2, attempts=attempts)
    flow = FlowRun(plan, catalog, executor, DriverStore(engine),
                   source_path=str(project / "wf.cwl"), outputs_of=executor.task_outputs,
                   prepare=LocalPayloads(workflow), run_expression=run_expression_locally(workdir))
    return flow, catalog, executor


def _attach(catalog, did: str, path: Path) -> None:
    data = path.read_bytes()
    catalog.add_files(did, [FileRecord(did=f"{did.split(':')[0]}:{path.name}", size=len(data),
                                       adler32=f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
                                       pfn=str(path))])


def _run_whole_stream(flow, catalog, executor, project: Path) -> None:
    """Attach the three STFs, close the run, drive to the end."""
    stream = next(d.did for d in flow.plan.datasets if d.role == "stream")
    try:
        flow.start()
        for i in range(3):
            _attach(catalog, stream, project / f"stf{i}.dat")
        flow.close_streams()
        _tick_until(flow, lambda: flow.finished)
    finally:
        flow.detach()
        executor.shutdown()


def _tick_until(flow, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, _phases(flow)
        flow.tick()
        time.sleep(0.1)


def _phases(flow) -> dict[str, str]:
    return {key: row["phase"] for key, row in flow.task_rows().items()}


def _task_id(flow, key: str) -> str | None:
    return (flow.task_rows().get(key) or {}).get("task_id")


def test_stream_step_runs_while_open_and_merge_waits_for_close(project):
    _marker(project).write_text("")
    flow, catalog, executor = _flow(project, {"marker": str(_marker(project))})
    stream = next(d.did for d in flow.plan.datasets if d.role == "stream")
    try:
        flow.start()
        _attach(catalog, stream, project / "stf0.dat")
        _tick_until(flow, lambda: _task_id(flow, "check") is not None and executor.status(
            [_task_id(flow, "check")])[_task_id(flow, "check")].n_jobs_done == 1)
        flow.tick()
        assert catalog.is_open(stream)
        assert _phases(flow)["check"] == TaskPhase.RUNNING  # the open dataset keeps it
        assert "sum" not in _phases(flow)  # complete edge: not released yet
        for name in ("stf1.dat", "stf2.dat"):
            _attach(catalog, stream, project / name)
        flow.tick()
        assert "sum" not in _phases(flow)
        flow.close_streams()
        _tick_until(flow, lambda: flow.finished)
    finally:
        flow.detach()
        executor.shutdown()
    assert flow.error is None
    assert _phases(flow) == {"check": TaskPhase.SUCCEEDED, "sum": TaskPhase.SUCCEEDED}
    assert Path(flow.result["total"]["location"][7:]).read_text().strip() == "15"
    for spec in flow.plan.datasets:  # every output dataset closed by its producer
        assert not catalog.is_open(spec.did), spec.did


def test_dynamic_when_is_evaluated_on_real_results(project):
    _marker(project).write_text("")
    inputs = {"marker": str(_marker(project)), "min_files": 5}
    flow, catalog, executor = _flow(project, inputs)
    assert flow.plan.task("sum").when  # reads a step output: left to the run
    _run_whole_stream(flow, catalog, executor, project)
    total = flow.task_rows()["sum"]
    assert total["phase"] == TaskPhase.SKIPPED and total["task_id"] is None  # 3 files < 5
    out = flow.plan.task("sum").outputs["total"]
    assert not catalog.is_open(out) and catalog.list_files(out) == []
    assert flow.result == {"total": None}


def test_failure_blocks_downstream_then_resume_after_fix(project):
    inputs = {"marker": str(_marker(project))}
    flow, catalog, executor = _flow(project, inputs, attempts=2)
    _run_whole_stream(flow, catalog, executor, project)
    check, total = flow.task_rows()["check"], flow.task_rows()["sum"]
    assert check["phase"] == TaskPhase.FAILED and flow.error is not None
    assert "after 2 attempt(s), exit code 7" in check["message"]
    assert "marker" in check["message"] and "missing" in check["message"]  # the job's log tail
    assert total["phase"] == TaskPhase.BLOCKED and "check failed" in total["message"]
    assert total["task_id"] is None  # never submitted
    assert flow.problems() == ["check", "sum"]

    _marker(project).write_text("")
    again, catalog2, executor2 = _flow(project, inputs)
    try:
        again.start()
        _tick_until(again, lambda: again.finished)
    finally:
        again.detach()
        executor2.shutdown()
    assert again.error is None, again.error
    assert _phases(again) == {"check": TaskPhase.SUCCEEDED, "sum": TaskPhase.SUCCEEDED}
    assert _task_id(again, "check") == check["task_id"]  # same backend task, not a new one


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(SWFFLOW + args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_run_status_and_resume(project):
    args = ["run", "wf.cwl", "inputs.json", "--outdir", "out", "--attempts", "1", "-q"]
    failed = _run(args, project)
    assert failed.returncode == 1, failed.stderr
    assert "step check failed" in failed.stderr and "exit code 7" in failed.stderr
    assert "not started because of it: sum" in failed.stderr
    assert "Traceback" not in failed.stderr
    status = json.loads(_run(["status", "--outdir", "out", "--json"], project).stdout)
    phases = {t["key"]: t["phase"] for t in status["instances"][0]["tasks"]}
    assert phases == {"check": "failed", "sum": "blocked"}

    _marker(project).write_text("")
    done = _run(args, project)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["total"]["location"][7:]).read_text().strip() == "15"
    assert Path(result["total"]["location"][7:]).parent == (project / "out").resolve()
    again = _run(args, project)  # nothing left to do: no job runs again
    assert again.returncode == 0
    status = json.loads(_run(["status", "--outdir", "out", "--json"], project).stdout)
    attempts = [j["attempt"] for t in status["instances"][0]["tasks"] for j in t["jobs"]]
    assert attempts == [1, 1, 1, 1]  # check: 3 jobs (retried once after fix, reset), sum: 1
    produced = [p for t in status["instances"][0]["tasks"] for j in t["jobs"]
                for p in j["produced"]]
    for item in produced:  # provenance: real checksums of real files
        data = Path(item["pfn"]).read_bytes()
        assert item["adler32"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_cli_bad_input_is_one_clear_error(tmp_path):
    (tmp_path / "bad.cwl").write_text("cwlVersion: v1.2\nclass: Workflow\ninputs: [\n")
    result = _run(["run", "bad.cwl"], tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "bad.cwl" in result.stderr


def test_status_without_state_says_how_to_start(tmp_path):
    result = _run(["status", "--outdir", str(tmp_path)], tmp_path)
    assert result.returncode == 1 and "swfflow run" in result.stderr


def test_calib_example_end_to_end(tmp_path):
    result = _run(["run", str(REPO / "examples/calib.cwl"),
                   str(REPO / "examples/calib-inputs.yml"), "--outdir", str(tmp_path), "-q",
                   "--jobs", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert {"constants", "feedback", "qa_reports", "checksums", "validation_report"} <= set(
        outputs)
    assert len(outputs["qa_reports"]) == 4  # the conditional branch ran per STF
    status = json.loads(_run(["status", "--outdir", str(tmp_path), "--json"], tmp_path).stdout)
    datasets = {d["did"]: d for d in status["datasets"]}
    assert all(not d["open"] for d in datasets.values())
    assert any(did.endswith(".run") and d["files"] == 4 for did, d in datasets.items())


SLOW_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
$namespaces: {swf: "https://github.com/swfflow/swfflow/cwl#"}
requirements: {ScatterFeatureRequirement: {}}
inputs:
  raw: {type: 'File[]', swf:stream: true}
outputs:
  sizes: {type: 'File[]', outputSource: slow/size}
steps:
  slow:
    scatter: f
    in: {f: raw}
    out: [size]
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'sleep 1; wc -c < "$0" > "$(basename "$0").size"']
      inputs:
        f: {type: File, inputBinding: {position: 1}}
      outputs:
        size: {type: File, outputBinding: {glob: '*.size'}}
"""


def test_ctrl_c_stops_cleanly_and_the_rerun_keeps_finished_jobs(tmp_path):
    import signal
    import sqlite3

    (tmp_path / "slow.cwl").write_text(SLOW_WORKFLOW)
    raw = []
    for i in range(6):
        (tmp_path / f"s{i}.dat").write_bytes(b"y" * (i + 1))
        raw.append({"class": "File", "location": f"s{i}.dat"})
    (tmp_path / "in.json").write_text(json.dumps({"raw": raw}))
    args = ["run", "slow.cwl", "in.json", "--outdir", "out", "--jobs", "1", "-q"]
    proc = subprocess.Popen(SWFFLOW + args, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    db = tmp_path / "out" / ".swfflow" / "state.db"

    def done_jobs() -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(db) as conn:
                return conn.execute("select count(*) from exec_jobs where state='done'"
                                    ).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0

    deadline = time.monotonic() + 90
    while done_jobs() < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    with sqlite3.connect(db) as conn:
        states = dict(conn.execute("select number, state from exec_jobs").fetchall())
    finished_before = {n for n, s in states.items() if s == "done"}
    assert len(finished_before) >= 2 and "running" not in states.values()

    rerun = _run(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert len(json.loads(rerun.stdout)["sizes"]) == 6
    with sqlite3.connect(db) as conn:
        attempts = dict(conn.execute("select number, attempt from exec_jobs").fetchall())
    assert all(attempts[n] == 1 for n in finished_before)  # not run again


PARAM_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  words: string[]
outputs:
  echoed: {type: 'File[]', outputSource: say/out}
steps:
  say:
    scatter: w
    in: {w: words}
    out: [out]
    run:
      class: CommandLineTool
      baseCommand: echo
      stdout: said.txt
      inputs:
        w: {type: string, inputBinding: {position: 1}}
      outputs:
        out: {type: stdout}
"""


def test_run_records_each_job_and_runs_nothing_again_on_rerun(tmp_path):
    (tmp_path / "say.cwl").write_text(PARAM_WORKFLOW)
    (tmp_path / "in.json").write_text(json.dumps({"words": ["a", "b", "c"]}))
    args = ["run", "say.cwl", "in.json", "--outdir", "out", "-q"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    files = json.loads(first.stdout)["echoed"]
    assert [Path(f["location"][7:]).read_text() for f in files] == ["a\n", "b\n", "c\n"]
    second = _run(args, tmp_path)
    assert second.returncode == 0 and json.loads(second.stdout) == json.loads(first.stdout)
    status = json.loads(_run(["status", "--outdir", "out", "--json"], tmp_path).stdout)
    tasks = status["instances"][0]["tasks"]
    jobs = [(t["key"], j["state"], j["attempt"], j["command"]) for t in tasks for j in t["jobs"]]
    # one job per scatter element, each run once: the second run found them all done
    assert jobs == [(f"say.{i}", "done", 1, ["echo", w]) for i, w in enumerate("abc")]
