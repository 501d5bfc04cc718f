"""Bridge edge cases (issue 15, part 5): a run without a single STF completes, and a bounded
bridge (--replay, --exit-after) exits 0 only when every run is done."""

from __future__ import annotations

import json

import pytest

from swfflow.errors import RunFailed, ServiceError
from tests.bridge_support import recorded, setup_for

RUN = "100010"
NO_STFS = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,2"}
- {state: run, substate: physics, span: "0,0,0,0,0.5", stf_interval: 5}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def test_a_run_with_zero_stfs_completes_and_the_replay_exits_0(tmp_path, capsys):
    from swfflow.cli import main
    from swfflow.stream.status import run_status

    log, sim = recorded(tmp_path, text=NO_STFS)
    assert sim.stf_files == 0
    assert [json.loads(line)["msg_type"] for line in log.read_text().splitlines()] == \
        ["run_imminent", "start_run", "end_run"]
    state = f"sqlite:///{tmp_path / 'cli.db'}"
    # returns (exit code 0): a failed or unfinished run would be SystemExit(1)
    main(["bridge", str(setup_for(tmp_path).workflow), "--replay", str(log),
          "--state", state, "--workdir", str(tmp_path / "w"), "--no-container",
          "--tick", "0.2", "--json", "-q"])
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    assert [r["phase"] for r in report["runs"]] == ["done"]
    status = run_status(state, RUN)["runs"][0]
    assert (status["stf_announced"], status["stf_recorded"], status["stf_attached"],
            status["missing"]) == (0, 0, 0, [])
    # the streaming task ends with no jobs; the run dataset was closed for it
    assert {t["key"]: t["phase"] for t in status["tasks"]} == \
        {"sizes": "succeeded", "merge": "succeeded"}
    from swfflow.backends.local_catalog import LocalCatalog, datasets_in
    from swfflow.state import state_engine

    engine = state_engine(state)
    try:
        catalog = LocalCatalog(engine)
        assert not catalog.is_open(f"group.daq:swf.{RUN}.run")
        # the merge gathers the parts of no STF: as CWL says, it runs once, on an empty list
        (summary_did,) = [d["did"] for d in datasets_in(engine)
                          if d["did"].endswith(f"swf.stfsum.{RUN}.merge.summary")]
        (summary,) = catalog.list_files(summary_did)
        assert summary.size == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("phases, code, words", [
    (["done", "done"], None, ""),
    (["done", "failed"], 1, "1 of 2 run(s) failed: run 2: boom"),
    (["done", "closed"], 1, "1 of 2 run(s) not finished: run 2: not finished (phase closed)"),
    (["failed", "ending"], 1, "2 of 2 run(s) failed or not finished"),
])
def test_a_bounded_bridge_exits_0_only_when_every_run_is_done(phases, code, words):
    from swfflow.commands.bridge import _fail_on_failed_runs

    runs = [{"run": str(i + 1), "phase": phase, "message": "boom" if phase == "failed" else ""}
            for i, phase in enumerate(phases)]
    if code is None:
        _fail_on_failed_runs(runs, "wf.cwl", "sqlite:///s.db")
        return
    with pytest.raises(RunFailed) as error:
        _fail_on_failed_runs(runs, "wf.cwl", "sqlite:///s.db")
    assert error.value.exit_code == code and words in str(error.value)
    assert "swfflow status --state sqlite:///s.db" in str(error.value)


class Unreachable:
    """The bridge's executor while its server is down: every submission is refused as a
    transient error (a connection refused, PanDA's 5xx) until :meth:`back`."""

    def __init__(self, executor):
        self.executor, self.down, self.refused = executor, True, 0

    def __getattr__(self, name):
        return getattr(self.executor, name)

    def submit(self, task):
        if self.down:
            self.refused += 1
            raise ServiceError("PanDA server down (injected)")
        return self.executor.submit(task)

    def back(self):
        self.down = False


def test_processing_down_never_holds_archiving_and_catches_up_when_back(tmp_path):
    """Req 4.7: with the executor unreachable from the run's start, every STF is still
    recorded, attached and the run closed; the tasks are submitted once it is back, and the
    run ends done with every STF processed."""
    import contextlib

    from swfflow.stream.bridge.setup import build_bridge
    from swfflow.stream.bridge.sources import replay
    from tests.test_bridge import all_closed, all_done, run_until

    log, sim = recorded(tmp_path)
    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp_path, retry_initial_s=0.05, retry_max_s=0.4),
                              stack)
        bridge.executor = down = Unreachable(bridge.executor)
        replay(bridge, log)
        run_until(bridge, all_closed)  # archiving is done while nothing could be submitted
        instance = f"{bridge.template.workflow}:{RUN}"
        assert bridge.store.file_counts(RUN) == (sim.stf_files, sim.stf_files)
        assert down.refused >= 1  # it tried (and goes on trying, with the backoff)
        assert not any(row["task_id"] for row in bridge.driver_store.load(instance).values())
        down.back()
        run_until(bridge, all_done)
        rows = bridge.driver_store.load(instance)
        assert {k: r["phase"] for k, r in rows.items()} == {"sizes": "succeeded",
                                                          "merge": "succeeded"}
