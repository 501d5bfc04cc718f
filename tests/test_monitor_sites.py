"""Per-site replication in the monitor (issue 16, against a running bridge with the butterfly
on and the real Rucio server): each E1 site's copied STF count and running checksum, and
whether it equals the DAQ's, in the REST API, /metrics (a gauge per run × site), `swfflow
status` and the page. One copy at JLab is corrupted (so not registered there): JLab must show
7/8 and not equal; BNL 8/8 and equal to the checksum of the DAQ's own files."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from swfflow.checksum import adler32_file
from swfflow.cli import cli
from swfflow.monitor.app import create_app
from swfflow.monitor.sources import open_source
from swfflow.stream.bridge.setup import build_bridge
from swfflow.stream.bridge.sources import replay
from swfflow.stream.replica_store import ReplicaStore
from swfflow.stream.transfer import running_checksum
from tests.bridge_support import first_run_number, recorded
from tests.test_bridge_butterfly import TEXT, Flaky, butterfly_setup
from tests.test_monitor import metrics_of
from tests.test_monitor_browser import CHROMIUM, Served

pytestmark = pytest.mark.services
BNL, JLAB = "E1_BNL_DISK", "E1_JLAB_DISK"


def test_each_sites_copies_and_checksum_against_the_daqs(tmp_path, rucio_env):
    run = str(first_run_number())
    log, sim = recorded(tmp_path, text=TEXT, first_run=int(run))
    bad = f"swf.{run}.000003.stf"
    setup = butterfly_setup(tmp_path, rucio_env)
    source = open_source(setup.state, ".")
    client = TestClient(create_app(source, poll_s=0.2))
    seen: list[dict[str, int]] = []  # BNL's and JLab's copies as the monitor showed them

    def watch(bridge) -> bool:
        """Read the monitor while the bridge runs (its loop calls this between ticks)."""
        shown = client.get(f"/api/v1/runs/{run}")  # read now (the list is a snapshot)
        if shown.status_code == 200 and shown.json()["sites"]:
            seen.append({s["rse"]: s["files"] for s in shown.json()["sites"]})
        sums = ReplicaStore(bridge.store.engine).sums(run)
        return bool(bridge.idle and bridge.source_done.is_set()
                    and (sums.get(BNL) or {}).get("checked_at")
                    and bridge.counters["replica_alarms"] >= 1)

    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup, stack)
        corrupting = Flaky("nowhere")  # no site down; JLab's copy of `bad` reads back wrong
        corrupting.broken, corrupting.corrupt = False, {bad}
        bridge.work.lanes.butterfly.transfer = corrupting
        replay(bridge, log)
        deadline = time.monotonic() + 120
        bridge.run(until=lambda b: watch(b) or time.monotonic() > deadline)
        assert watch(bridge), seen
    assert sim.stf_files == 8
    # the monitor followed the copies as they were made: never down, up to all of them
    bnl = [s[BNL] for s in seen if BNL in s]
    assert bnl == sorted(bnl) and bnl[-1] == 8, seen

    buffer = tmp_path / "buffer" / f"swf.{run}.run"
    daq = running_checksum(sorted((p.name, adler32_file(p)) for p in buffer.glob("*.stf")))
    shown = client.get(f"/api/v1/runs/{run}").json()
    sites = {s["rse"]: s for s in shown["sites"]}
    assert set(sites) == {BNL, JLAB}
    assert sites[BNL]["files"] == sites[BNL]["daq_files"] == 8
    assert sites[BNL]["checksum"] == sites[BNL]["daq_checksum"] == daq
    assert sites[BNL]["matches_daq"] and sites[BNL]["checked"] and sites[BNL]["alarm"] is None
    assert sites[JLAB]["files"] == 7 and sites[JLAB]["daq_files"] == 8
    assert not sites[JLAB]["matches_daq"] and sites[JLAB]["checksum"] != daq

    samples = wait_for_metrics(client, run)
    assert samples["swfflow_site_replicated_stfs"][(("rse", BNL), ("run", run))] == 8
    assert samples["swfflow_site_replicated_stfs"][(("rse", JLAB), ("run", run))] == 7
    assert samples["swfflow_site_checksum_matches_daq"][(("rse", BNL), ("run", run))] == 1
    assert samples["swfflow_site_checksum_matches_daq"][(("rse", JLAB), ("run", run))] == 0
    # attached → copied, per site: every verified copy counted once
    latency = samples["swfflow_stf_replication_latency_seconds_count"]
    assert latency[(("rse", BNL),)] == 8 and latency[(("rse", JLAB),)] == 7, latency
    assert samples["swfflow_stf_replication_latency_seconds_sum"][(("rse", BNL),)] > 0

    result = CliRunner().invoke(cli, ["status", "--state", setup.state, "--run", run],
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    assert f"  {BNL} 8/8 copied, sum {daq} = DAQ, checked\n" in result.output, result.output
    assert f"  {JLAB} 7/8 copied, sum " in result.output and "≠ DAQ" in result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()), result.output

    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/test.sh does)"
    from playwright.sync_api import sync_playwright

    with Served(setup.state) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector(f'table.sites tr[data-rse="{JLAB}"]', timeout=30_000)
        rows = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
            'table.sites tr[data-rse]')].map(tr => [tr.dataset.rse,
            [...tr.cells].map(td => td.textContent)]))""")
        browser.close()
    assert rows[BNL][:4] == [BNL, "8/8", daq, "= DAQ"], rows
    assert rows[JLAB][1] == "7/8" and rows[JLAB][3] != "= DAQ", rows
    source.close()


def wait_for_metrics(client: TestClient, run: str, timeout: float = 30.0) -> dict:
    """/metrics reads the snapshot refreshed once per poll: wait until it shows both sites."""
    deadline = time.monotonic() + timeout
    while True:
        samples = metrics_of(client)
        found = samples.get("swfflow_site_replicated_stfs", {})
        if len([k for k in found if ("run", run) in k]) == 2 or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)
