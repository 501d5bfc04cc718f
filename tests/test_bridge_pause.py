"""pause_run / resume_run pause and resume a run's tasks when the profile asks for it
(``bridge: {pause_tasks_on_pause: true}``): replayed logs, local catalog + local executor;
and the PanDA executor's pause/resume against the PanDA contract server."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import pytest

from swfflow.backends.base import CommandRefused, TaskState
from swfflow.backends.local_executor import LocalExecutor
from swfflow.backends.panda import PandaExecutor
from swfflow.errors import ServiceError
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay
from swfflow.stream.messages import parse_message
from swfflow.stream.status import run_status
from swfflow.testing.panda_runner import StateMachineRunner
from swfflow.testing.panda_server import PandaContractServer
from tests.bridge_support import OUTPUT_SCOPE, lines, recorded, setup_for
from tests.test_bridge import RUN, STREAM, all_done, run_until

ORDER = ["run_imminent", "start_run", "stf_gen", "stf_gen", "stf_gen", "pause_run",
         "resume_run", "stf_gen", "stf_gen", "stf_gen", "end_run"]


def staged_logs(tmp_path):
    """The one-run log cut in three: up to pause_run; three STFs (arriving while paused);
    resume_run and end_run."""
    log, _ = recorded(tmp_path)
    body = lines(log)
    assert [json.loads(b)["msg_type"] for b in body] == ORDER
    parts = {"paused": body[:6], "stfs": body[7:10], "resumed": [body[6], body[10]]}
    paths = {}
    for name, part in parts.items():
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("\n".join(part) + "\n")
    return paths, body


def pause_setup(tmp_path, on: bool, **options):
    profile = tmp_path / "pause-profile.yaml"
    profile.write_text(f"scopes:\n  output: {OUTPUT_SCOPE}\n"
                       f"bridge:\n  pause_tasks_on_pause: {str(on).lower()}\n")
    return dataclasses.replace(setup_for(tmp_path, **options), profile=str(profile))


def sizes_task(bridge) -> str:
    return bridge.driver_store.load(f"{bridge.template.workflow}:{RUN}")["sizes"]["task_id"]


def run_for(bridge, seconds: float) -> None:
    """Let the bridge follow its tasks for a while (several ticks of 0.2 s)."""
    end = time.monotonic() + seconds
    run_until(bridge, lambda b: time.monotonic() > end)


def hold_applied(bridge) -> bool:
    hold = bridge.store.hold(RUN)
    return bool(hold and hold["applied_at"] is not None and bridge.idle)


def stfs_in_summary(bridge) -> list[str]:
    summary = bridge.catalog.list_files(f"{OUTPUT_SCOPE}:swf.stfsum.{RUN}.merge.summary")
    text = Path(summary[0].pfn).read_text()
    return sorted(line.split()[-1].rsplit("/", 1)[-1] for line in text.splitlines()
                  if line.strip().endswith(".stf"))


def test_pause_run_holds_new_jobs_while_stfs_attach_and_resume_runs_them(tmp_path):
    paths, _ = staged_logs(tmp_path)
    state = f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(pause_setup(tmp_path, on=True), stack)
        replay(bridge, paths["paused"])
        run_until(bridge, hold_applied, timeout=30)
        task_id = sizes_task(bridge)
        assert bridge.store.hold(RUN)["paused"] == [task_id]
        assert bridge.executor.status([task_id])[task_id].raw == "paused"

        replay(bridge, paths["stfs"])  # 6 STFs attached: enough for a job of 4 …
        run_until(bridge, lambda b: b.store.file_counts(RUN) == (6, 6) and b.idle)
        run_for(bridge, 1.2)
        assert len(bridge.catalog.list_files(STREAM)) == 6
        assert bridge.executor.job_rows(task_id) == []  # … but none is started while paused
        # paused in the state store: a new executor on it (a restart) keeps it paused
        again = LocalExecutor(bridge.executor.catalog, bridge.executor.engine, tmp_path / "w2")
        assert again.status([task_id])[task_id].raw == "paused"
        assert again.job_rows(task_id) == []
        status = run_status(state, RUN)["runs"][0]
        assert status["tasks_hold"] == {"wanted": "paused", "applied": True,
                                        "paused_tasks": [task_id], "message": ""}

        replay(bridge, paths["resumed"])
        run_until(bridge, all_done)
        assert bridge.executor.job_rows(task_id)  # jobs ran after the resume
        files = sorted(f.name for f in bridge.catalog.list_files(STREAM))
        assert stfs_in_summary(bridge) == files  # every STF processed exactly once
        assert len(files) == 6
    status = run_status(state, RUN)["runs"][0]
    assert status["phase"] == "done"
    assert status["tasks_hold"] == {"wanted": "running", "applied": True, "paused_tasks": [],
                                    "message": ""}


def test_without_the_setting_nothing_is_paused(tmp_path):
    paths, _ = staged_logs(tmp_path)
    state = f"sqlite:///{tmp_path / 'state' / 'bridge.db'}"
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(pause_setup(tmp_path, on=False), stack)
        replay(bridge, paths["paused"])
        replay(bridge, paths["stfs"])
        run_until(bridge, lambda b: b.store.file_counts(RUN) == (6, 6) and b.idle)
        run_for(bridge, 1.2)
        task_id = sizes_task(bridge)
        assert bridge.executor.status([task_id])[task_id].raw != "paused"
        assert bridge.executor.job_rows(task_id)  # a job of 4 was cut and started
        assert bridge.store.hold(RUN) is None
        assert bridge.store.run(RUN)["daq_substate"] == "standby"  # the state is recorded
        replay(bridge, paths["resumed"])
        run_until(bridge, all_done)
        assert len(stfs_in_summary(bridge)) == 6
    assert run_status(state, RUN)["runs"][0]["tasks_hold"] is None


class FlakyPause:
    """The bridge's real executor whose first ``failures`` pause calls find PanDA down."""

    def __init__(self, executor, failures):
        self.executor, self.failures, self.calls = executor, failures, 0

    def __getattr__(self, name):
        return getattr(self.executor, name)

    def pause(self, task_id):
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ServiceError("PanDA server down (injected)")
        return self.executor.pause(task_id)


def test_pause_run_is_acked_only_once_paused_and_redelivery_changes_nothing(tmp_path):
    paths, body = staged_logs(tmp_path)
    pause_id = parse_message(body[5]).msg_id
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(pause_setup(tmp_path, on=True, retry_initial_s=0.05), stack)
        bridge.executor = flaky = FlakyPause(bridge.executor, failures=3)
        replay(bridge, paths["paused"])
        run_until(bridge, lambda b: b.gates["hold"].failures >= 2, timeout=20)
        assert bridge.waiters[("hold", RUN)] and not bridge.store.processed(pause_id)
        run_until(bridge, hold_applied, timeout=20)
        assert bridge.store.processed(pause_id)
        calls = flaky.calls
        again = tmp_path / "again.jsonl"  # the pause_run redelivered
        again.write_text(body[5] + "\n")
        replay(bridge, again)
        run_until(bridge, lambda b: b.idle)
        run_for(bridge, 0.5)
        assert bridge.counters["duplicates"] == 1 and flaky.calls == calls
    with contextlib.ExitStack() as stack:  # a restart keeps the run paused, pauses nothing again
        bridge = build_bridge(pause_setup(tmp_path, on=True), stack)
        bridge.executor = flaky = FlakyPause(bridge.executor, failures=0)
        replay(bridge, paths["stfs"])
        run_until(bridge, lambda b: b.store.file_counts(RUN) == (6, 6) and b.idle)
        run_for(bridge, 0.6)
        assert flaky.calls == 0 and bridge.executor.job_rows(sizes_task(bridge)) == []
        replay(bridge, paths["resumed"])
        run_until(bridge, all_done)
        assert len(stfs_in_summary(bridge)) == 6


# --- PanDA ------------------------------------------------------------------------------------

def _spec(name):
    from tests.test_panda_backend import spec

    return spec(name)


@pytest.fixture(scope="module")
def production_server():
    """Tasks that run for long enough to be paused; pause/resume need the production role."""
    with PandaContractServer(runner=StateMachineRunner(run_s=60), tick_s=0.02,
                             production_role=True) as srv:
        yield srv


def _executor(server):
    return PandaExecutor(server.url, attempts=3, backoff_s=0.01, max_backoff_s=0.05)


def _wait_status(server, task_id, status, timeout=5.0):
    deadline = time.monotonic() + timeout
    while server.store.get(int(task_id)).status != status:
        assert time.monotonic() < deadline, server.store.get(int(task_id)).status
        time.sleep(0.02)


def test_panda_pause_and_resume_reach_the_server_and_are_idempotent(production_server):
    server, executor = production_server, _executor(production_server)
    task_id = executor.submit(_spec("p.pause"))
    _wait_status(server, task_id, "running")
    before = len(server.calls)
    executor.pause(task_id)
    _wait_status(server, task_id, "paused")
    executor.pause(task_id)  # paused already: no error, still paused
    assert server.store.get(int(task_id)).status == "paused"
    assert executor.status([task_id])[task_id].state is TaskState.RUNNING  # JEDI's paused
    executor.resume(task_id)
    _wait_status(server, task_id, "running")
    executor.resume(task_id)  # not paused: no error, still running
    assert server.store.get(int(task_id)).status == "running"
    assert server.calls[before:].count("task/pause") == 2
    assert server.calls[before:].count("task/resume") == 2
    executor.kill(task_id)
    executor.pause(task_id)  # a killed task: nothing to pause, no error


def test_panda_pause_without_the_production_role_is_refused_clearly():
    with PandaContractServer(runner=StateMachineRunner(run_s=60), tick_s=0.02) as server:
        executor = _executor(server)
        task_id = executor.submit(_spec("p.norole"))
        _wait_status(server, task_id, "running")
        with pytest.raises(CommandRefused, match="refused pauseTask"):
            executor.pause(task_id)
        assert server.store.get(int(task_id)).status == "running"
