"""The monitor in a real browser: Debian's headless Chromium (``/usr/bin/chromium``, installed by
scripts/test.sh) driven by Playwright's Python package opens the page while a bridge drives a
run, and sees the task graph's states and the STF counters change without a reload, and the
dead letter appear. The last frame is saved (docs/monitor.png with SWFFLOW_SCREENSHOT)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from swfflow.monitor.app import create_app
from swfflow.monitor.sources import open_source
from tests.test_monitor import RUN, LiveBridge

CHROMIUM = "/usr/bin/chromium"
# docs/monitor.png is refreshed only when asked (SWFFLOW_SCREENSHOT=docs/monitor.png): a test
# run leaves the checkout as it found it
SCREENSHOT_ENV = "SWFFLOW_SCREENSHOT"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """The monitor app on a real port (uvicorn in a thread), stopped on exit."""

    def __init__(self, state: str):
        self.source = open_source(state, ".")
        self.port = free_port()
        config = uvicorn.Config(create_app(self.source, poll_s=0.2), host="127.0.0.1",
                                port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the monitor did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.source.close()


def snapshot(page) -> dict:
    """What the page shows now: each task's state class and the STF counters of the run."""
    return page.evaluate(f"""() => ({{
        tasks: Object.fromEntries([...document.querySelectorAll('svg.dag g.task')]
            .map(g => [g.dataset.key, g.getAttribute('class').replace('task phase-', '')])),
        attached: document.getElementById('stf-{RUN}-attached')?.textContent,
        processed: document.getElementById('stf-{RUN}-processed')?.textContent,
        dead: [...document.querySelectorAll('#dead li')].map(li => li.textContent),
        tooltips: Object.fromEntries([...document.querySelectorAll('svg.dag g.task')]
            .map(g => [g.dataset.key, g.querySelector('title').textContent])),
        marker: window.__notReloaded === true,
    }})""")


def test_the_page_follows_a_run_live(tmp_path):
    assert Path(CHROMIUM).exists(), "install Debian's chromium (scripts/test.sh does)"
    with LiveBridge(tmp_path) as live, Served(live.state) as url, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.wait_for_selector("#live:not(.off)", timeout=30_000)
        page.evaluate("() => { window.__notReloaded = true; }")  # gone if the page reloads
        live.feed(0.6, bad_after=4)
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            seen.append(snapshot(page))
            last = seen[-1]
            if last["tasks"].get("merge") == "succeeded" and last["attached"] == "6" \
                    and last["dead"]:
                break
            time.sleep(0.2)
        # drill-down: a click on a task shows its jobs and their log tails
        page.click('svg.dag g.task[data-key="sizes"]')
        page.wait_for_selector("#drill-body table tr td", timeout=30_000)
        drill = page.inner_text("#drill")
        datasets = page.text_content("#datasets")
        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "monitor.png")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    last = seen[-1]
    assert last["marker"], "the page was reloaded"
    assert last["tasks"] == {"sizes": "succeeded", "merge": "succeeded"}, last
    assert last["attached"] == "6" and last["processed"] == "6", last
    # it changed under our eyes: counters rose through intermediate values, tasks moved on
    attached = [s["attached"] for s in seen if s["attached"] is not None]
    assert len(set(attached)) >= 3, attached
    merge_states = [s["tasks"].get("merge") for s in seen if s["tasks"]]
    assert len(set(merge_states)) >= 2, merge_states
    # the tooltip: the task's times and its jobs by state, kept current like the colours
    merge_tip = last["tooltips"]["merge"]
    assert "submitted " in merge_tip and "finished " in merge_tip and "jobs: 1 done" in merge_tip
    assert "finished -" not in merge_tip, merge_tip
    assert any("jobs: no jobs" in s["tooltips"].get("merge", "") or "finished -" in
               s["tooltips"].get("merge", "") for s in seen if s["tooltips"]), "never changed"
    assert "timings" in drill or "submitted" in drill, drill
    (dead,) = last["dead"]
    assert "not JSON" in dead
    assert "sizes: succeeded" in drill and "done" in drill and ".sizes.sizes" in drill, drill
    assert f"group.daq:swf.{RUN}.run" in datasets and "closed" in datasets, datasets
    assert shot.stat().st_size > 10_000
