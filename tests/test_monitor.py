"""`swfflow monitor`'s REST API and Prometheus metrics against a running bridge: the DAQ's
recorded messages are published at a pace over an in-process bus into a bridge running in a
thread (local catalog and executor, real STF files, real jobs), the monitor reads its state
store while the run goes on."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path
from typing import Self

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from swfflow.monitor.app import create_app
from swfflow.monitor.sources import open_source
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import subscribe
from swfflow.stream.bus import open_bus
from swfflow.stream.messages import EPIC_TOPIC
from tests.bridge_support import lines, recorded, setup_for

RUN = "100010"
NOT_JSON = "this is not a DAQ message"


class LiveBridge:
    """A bridge in a thread, fed the DAQ simulator's recorded run message by message."""

    def __init__(self, tmp: Path):
        self.log, self.summary = recorded(tmp)
        self.messages = lines(self.log)
        self.state = f"sqlite:///{tmp / 'state' / 'bridge.db'}"
        self.stack = contextlib.ExitStack()
        self.bus = self.stack.enter_context(open_bus(f"memory://monitor-{uuid.uuid4().hex}"))
        self.bridge = build_bridge(setup_for(tmp, state=self.state), self.stack,
                                   publish=self.bus.publish)
        subscribe(self.bridge, self.bus, EPIC_TOPIC, "monitor-test")
        self.thread = threading.Thread(target=self.bridge.run, daemon=True)
        self.feeder: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bridge.stop()
        if self.feeder is not None:
            self.feeder.join(timeout=60)
        self.thread.join(timeout=60)
        self.stack.close()

    def publish(self, body: str) -> None:
        self.bus.publish(EPIC_TOPIC, body)

    def feed(self, pause_s: float, *, bad_after: int | None = None) -> None:
        """Publish the recorded messages ``pause_s`` apart in a thread (one that is not a
        message after ``bad_after`` of them)."""
        def run() -> None:
            for number, body in enumerate(self.messages):
                if number == bad_after:
                    self.publish(NOT_JSON)
                self.publish(body)
                time.sleep(pause_s)
        self.feeder = threading.Thread(target=run, daemon=True)
        self.feeder.start()


def wait_for(get, condition, timeout: float = 120.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if condition(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(every)


def metrics_of(client: TestClient) -> dict[str, dict]:
    """Every sample of /metrics by name and labels, parsed by prometheus_client's parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def live(tmp_path):
    with LiveBridge(tmp_path) as bridge:
        yield bridge


def test_rest_and_metrics_follow_a_running_bridge(live):
    source = open_source(live.state, ".")
    client = TestClient(create_app(source, poll_s=0.2))
    live.feed(0.3, bad_after=3)

    # while the run is going on: the run is there and not finished yet
    during = wait_for(lambda: client.get("/api/v1/runs").json(),
                      lambda runs: runs and runs[0]["stf_recorded"] > 0)
    assert during[0]["run"] == RUN and during[0]["phase"] not in ("done", "failed")
    assert {"start_run"} <= {e["event"] for e in during[0]["daq_history"]}

    done = wait_for(lambda: client.get(f"/api/v1/runs/{RUN}").json(),
                    lambda run: run["phase"] == "done", timeout=180)
    assert done["stf_announced"] == done["stf_attached"] == live.summary.stf_files == 6
    assert done["stf_metadata_set"] == 6 and done["stf_processed"] == 6
    events = [e["event"] for e in done["daq_history"]]
    assert events == ["run_imminent", "start_run", "pause_run", "resume_run", "end_run"]
    assert [t["phase"] for t in done["tasks"]] == ["succeeded", "succeeded"]
    assert done["elapsed_s"] > 0 and done["eta_s"] is None
    # each task's times, in order and within the run's; its jobs by state
    for t in done["tasks"]:
        assert done["created_at"] <= t["submitted_at"] <= t["started_at"] <= t["finished_at"] \
            <= time.time(), t
        assert t["jobs_by_state"] == {"done": t["jobs_total"]} and t["jobs_total"] >= 1, t
    sizes_task, merge_task = done["tasks"]
    assert merge_task["started_at"] >= sizes_task["submitted_at"]
    # drill-down: a task's jobs with what they ran and produced, from the local executor
    base = f"/api/v1/instances/{done['instance']}/tasks"
    sizes, merge = client.get(f"{base}/sizes").json(), client.get(f"{base}/merge").json()
    assert sum(j["inputs"] for j in sizes["jobs"]) == 6  # every STF processed once
    (job,) = merge["jobs"]  # the merge read every file the streaming step produced
    assert job["state"] == "done" and job["exit_code"] == 0
    assert merge["started_at"] <= job["started_at"] < job["finished_at"] <= merge["finished_at"]
    assert job["inputs"] == sum(len(j["produced"]) for j in sizes["jobs"]
                                if not j["produced"][0]["did"].endswith(".log"))
    assert job["command"] and job["produced"] and len(job["produced"][0]["adler32"]) == 8
    svg = client.get(f"/api/v1/instances/{done['instance']}/dag.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert 'data-key="merge"' in svg.text and "phase-succeeded" in svg.text

    # summaries come from the snapshot re-read in the background once per poll: the first
    # read after a while may be the one from before the bad message
    (dead,) = wait_for(lambda: client.get("/api/v1/dead-letters").json(), bool, timeout=30)
    assert dead["body"] == NOT_JSON and dead["reason"]

    # /metrics reads the shared snapshot, refreshed in the background once per poll: it shows
    # the run done a poll after the run's own page does
    samples = wait_for(lambda: metrics_of(client), lambda found: found["swfflow_runs"].get(
        (("phase", "done"),)) == 1, timeout=30)
    assert samples["swfflow_stf_attached_total"][()] == 6
    assert samples["swfflow_stf_attach_latency_seconds_count"][()] == 6
    assert samples["swfflow_stf_attach_latency_seconds_sum"][()] > 0
    assert samples["swfflow_stf_metadata_latency_seconds_count"][()] == 6
    assert samples["swfflow_stf_backlog"][()] == 0
    assert sum(samples["swfflow_messages_dead_lettered_total"].values()) == 1
    # every message the simulator sent plus the bad one was received
    assert samples["swfflow_messages_received_total"][()] == len(live.messages) + 1
    assert samples["swfflow_runs"][(("phase", "done"),)] == 1
    assert sum(v for k, v in samples["swfflow_tasks"].items()
               if ("state", "succeeded") in k) == 2

    spec = client.get("/api/v1/openapi.json").json()
    assert {"/api/v1/runs", "/api/v1/runs/{run}", "/api/v1/status",
            "/api/v1/dead-letters"} <= set(spec["paths"])
    assert "Run" in spec["components"]["schemas"]
    missing = client.get("/api/v1/runs/999999")
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    source.close()


def test_events_stream_the_model_as_it_changes(live):
    """The page's live feed: server-sent events carry the model each time it changes."""
    import json

    source = open_source(live.state, ".")
    client = TestClient(create_app(source, poll_s=0.2))
    live.feed(0.2)
    seen: list[int] = []
    with client.stream("GET", "/api/v1/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                runs = json.loads(line[6:])["runs"]
                seen.append(runs[0]["stf_attached"] if runs else -1)
                if seen[-1] == 6:
                    break
    assert seen[-1] == 6 and len(set(seen)) >= 3, seen  # several states, not one final read
    source.close()


def test_bad_sources_are_one_clear_error(tmp_path):
    import socket
    import subprocess
    import sys

    def monitor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "swfflow.cli", "monitor", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    empty = monitor("--outdir", str(tmp_path), "--port", "0")
    assert empty.returncode == 1 and "no swfflow state under" in empty.stderr
    assert "swfflow run" in empty.stderr and "Traceback" not in empty.stderr
    not_url = monitor("--state", "bridge.db", "--port", "0")
    assert not_url.returncode == 2 and "not a database URL" in not_url.stderr
    assert "Traceback" not in not_url.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = monitor("--state", f"sqlite:///{tmp_path / 'x.db'}", "--port",
                       str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "cannot listen on" in busy.stderr


def test_the_monitor_of_a_local_run(tmp_path):
    """`swfflow monitor --outdir D` over a failed `swfflow run`: the instance, its graph coloured
    by the tasks' states, the failed job's exit code and log tail, the task metrics."""
    import json
    import os
    import subprocess
    import sys

    from tests.test_status_cli import FAILING

    (tmp_path / "wf.cwl").write_text(FAILING)
    (tmp_path / "inputs.json").write_text(json.dumps({"word": "run7"}))
    ran = subprocess.run([sys.executable, "-m", "swfflow.cli", "run", "wf.cwl", "inputs.json",
                          "--outdir", "out", "--attempts", "1", "-q"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 1, ran.stderr
    source = open_source(None, tmp_path / "out")
    client = TestClient(create_app(source, poll_s=0.2))
    (inst,) = client.get("/api/v1/instances").json()
    assert inst["source"] == "local" and inst["state"] == "failed"
    phases = {t["key"]: t["phase"] for t in inst["tasks"]}
    assert sorted(phases.values()) == ["blocked", "failed"]
    failed = next(key for key, phase in phases.items() if phase == "failed")
    task = client.get(f"/api/v1/instances/{inst['instance']}/tasks/{failed}").json()
    (job,) = task["jobs"]
    assert job["exit_code"] == 3 and "exit 3" in job["log_tail"]
    # the tool's own stderr, not only swfflow's and cwltool's lines about it
    said = "calibration constants for run7 are missing from the conditions database"
    assert f"--- the tool's stderr:\ndetector {said}" in job["log_tail"], job["log_tail"]
    assert said in task["message"], task["message"]
    shown = subprocess.run([sys.executable, "-m", "swfflow.cli", "status", "--outdir", "out"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           check=False, env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0 and said in shown.stdout, shown.stdout + shown.stderr
    svg = client.get(f"/api/v1/instances/{inst['instance']}/dag.svg").text
    assert "phase-failed" in svg and "phase-blocked" in svg and "edge-" in svg
    samples = metrics_of(client)
    by_state = {dict(k)["state"]: v for k, v in samples["swfflow_tasks"].items()}
    assert by_state == {"failed": 1, "blocked": 1}
    assert all(dict(k)["site"] for k in samples["swfflow_tasks"])  # the profile's site
    assert "swfflow_stf_attached_total" not in samples  # no bridge here: no bridge metrics
    assert client.get("/api/v1/runs").json() == []
    source.close()


def test_submitted_instances_link_to_pandas_monitor(tmp_path):
    """Instances `swfflow submit` recorded (the submission store, read as recorded: the
    monitor never polls PanDA itself) appear with their PanDA task ids, and each task links to
    its page in PanDA's monitor when one is configured."""
    from swfflow.pipeline import load_template
    from swfflow.submission import SubmissionStore
    from tests.bridge_support import PROFILE, WORKFLOW

    template, _ = load_template(str(WORKFLOW), None, str(PROFILE))
    plan = template.instantiate("4242")
    instance = f"{plan.workflow}:4242"
    store = SubmissionStore(tmp_path / ".swfflow")
    store.driver_store.save_instance(instance, plan.workflow, plan.run, plan.to_dict(), "running")
    store.driver_store.save(instance, "sizes", name=plan.tasks[0].name, phase="running",
                            task_id="7001", message="")
    store.record(instance, "https://panda.example:25443/server/panda", "rucio.example",
                 str(WORKFLOW))
    store.engine.dispose()

    source = open_source(None, tmp_path)
    source.panda_monitor = "https://bigpanda.example/"
    client = TestClient(create_app(source, poll_s=0.2))
    (inst,) = client.get("/api/v1/instances").json()
    assert inst["source"] == "panda" and inst["panda_url"].startswith("https://panda.example")
    tasks = {t["key"]: t for t in inst["tasks"]}
    assert tasks["sizes"]["task_id"] == "7001" and tasks["sizes"]["phase"] == "running"
    assert tasks["sizes"]["monitor_url"] == "https://bigpanda.example/task/7001/"
    assert tasks["merge"]["phase"] == "pending" and tasks["merge"]["monitor_url"] is None
    by_state = {dict(k)["state"]: v for k, v in metrics_of(client)["swfflow_tasks"].items()}
    assert by_state == {"running": 1, "pending": 1}
    source.close()


def test_snapshots_read_less_often_when_a_read_costs_more_than_its_share():
    """The monitor shares the machine with the bridge: a read that costs more CPU than
    READ_SHARE of the poll interval stretches the interval (measured in this thread's CPU)."""
    from swfflow.monitor.app import READ_SHARE, Snapshots
    from swfflow.monitor.model import Status

    class Costly:  # a source whose read burns `cost` seconds of CPU
        engine = None

        def __init__(self, cost: float):
            self.cost = cost

        def read(self, **_: object) -> Status:
            until = time.thread_time() + self.cost
            while time.thread_time() < until:
                pass
            return Status(collected_at=time.time())

    cheap, costly = Snapshots(Costly(0.0), poll_s=0.5), Snapshots(Costly(0.06), poll_s=0.5)
    for snapshots in (cheap, costly):
        snapshots.get()
        assert snapshots.interval == 0.5  # one costly read is not yet a costly store
        snapshots.refresh()
    assert cheap.interval == 0.5
    assert costly.interval >= 0.06 / READ_SHARE > 0.5
