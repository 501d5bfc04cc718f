"""Bridge edge cases (issue 15, part 5): a run without a single STF completes, and a bounded
bridge (--replay, --exit-after) exits 0 only when every run is done."""

from __future__ import annotations

import json

import pytest

from swfflow.errors import RunFailed
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
    from swfflow.backends.local_catalog import LocalCatalog
    from swfflow.state import state_engine

    engine = state_engine(state)
    try:
        assert not LocalCatalog(engine).is_open(f"group.daq:swf.{RUN}.run")
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
