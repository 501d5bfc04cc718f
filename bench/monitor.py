"""The monitor's cost: how fast it answers over a big store, and what it takes from a bridge.

    python bench/monitor.py [--runs 50] [--tasks 20] [--jobs 5] [--stfs 100] [--flood 15000] [--rounds 3]
                            [--samples 200] [--json]

1. A state store (SQLite) with ``--runs`` bridge runs × ``--tasks`` tasks (a plan of that many
   tasks per run, ``--jobs`` jobs each in the local executor's table, ``--stfs`` attached STFs
   and the DAQ messages per run) is written through the stores' own tables. ``swfflow
   monitor`` serves it in its own process (as deployed); over HTTP:
   page load = the HTML and the first server-sent event with the model (what the page needs to
   draw), and ``GET /api/v1/runs``: p50/p99 of ``--samples`` requests each (goals: < 200 ms,
   < 50 ms). Summaries are served from a snapshot re-read in the background at most once per
   ``--poll`` (1 s), so the cost of one read of the whole store is printed too.
2. Flood: the DAQ simulator's record of ``--flood`` stf_gen in one run is replayed into a bridge
   (local catalog, dryrun backend: the bridge's own work, no payloads) draining it; STFs
   attached per second without a monitor and with one attached to its store (a monitor
   process polling every second, one page's event stream open, /metrics scraped every second),
   measured ``--rounds`` times (3), each a flood alone then one monitored, in this run (the
   machine is shared: one measurement is noise); the median of the ratios (goal ≥ 0.95).
   The page and the scraper are a process of their own, as a browser and Prometheus are.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")

from tests.bridge_support import setup_for, simulate

SWFFLOW = [sys.executable, "-m", "swfflow.cli"]
PHASES = ("succeeded", "running", "submitted", "pending", "failed")
FLOOD_SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: 0.001}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- 1. a big store ------------------------------------------------------------------------

def fill_store(url: str, runs: int, tasks: int, jobs: int, stfs: int) -> None:
    from sqlalchemy import insert

    from swfflow.backends.local_executor import JOBS
    from swfflow.backends.local_executor import TASKS as EXEC_TASKS
    from swfflow.drive.store import TASKS, DriverStore
    from swfflow.state import state_engine
    from swfflow.stream.store import BridgeStore, StfRow

    engine = state_engine(url)
    store, driver = BridgeStore(engine), DriverStore(engine)
    JOBS.metadata.create_all(engine)
    task_id = 0
    for r in range(runs):
        run = str(100000 + r)
        store.add_run(run, f"group.daq:swf.{run}.run", namespace="bench", daq_state="run",
                      daq_substate="physics", container=None)
        store.mark_processed([(f"{run}-{m}", m, run) for m in
                              ("run_imminent", "start_run", "pause_run", "resume_run")])
        rows = [StfRow(run, f"swf.{run}.{s:06d}.stf", s, 4096, "00000001", None, None,
                       time.time(), None, False) for s in range(stfs)]
        store.mark_attached(store.add_files(rows), with_metadata=True)
        plan = {"tasks": [{"key": f"step{t}", "name": f"bench.{run}.step{t}", "step": f"step{t}",
                           "streaming": t == 0, "params": {"site": "BNL"},
                           "parents": [{"key": f"step{t - 1}", "mode": "stream"}] if t else []}
                          for t in range(tasks)]}
        instance = f"bench:{run}"
        driver.save_instance(instance, "bench", run, plan, "running")
        with engine.begin() as conn:
            task_rows, exec_rows, job_rows = [], [], []
            for t in range(tasks):
                task_id += 1
                task_rows.append({"instance": instance, "key": f"step{t}",
                                  "name": f"bench.{run}.step{t}",
                                  "phase": PHASES[(r + t) % len(PHASES)],
                                  "task_id": str(task_id), "message": ""})
                exec_rows.append({"id": task_id, "name": f"bench.{run}.step{t}", "spec": {},
                                  "state": "running", "message": "", "assigned": []})
                job_rows += [{"task_id": task_id, "number": j, "files": [f"f{j}"],
                              "state": "done" if j % 3 else "running", "attempt": 1,
                              "command": ["wc", "-c"], "log": "line\n" * 30,
                              "produced": []} for j in range(jobs)]
            conn.execute(insert(TASKS), task_rows)
            conn.execute(insert(EXEC_TASKS), exec_rows)
            conn.execute(insert(JOBS), job_rows)
    engine.dispose()


def collect_times(url: str, samples: int) -> list[float]:
    from swfflow.monitor.sources import open_source

    source = open_source(url, ".")
    source.read(detail=False)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        source.read(detail=False)
        times.append(time.perf_counter() - start)
    source.close()
    return times


@contextlib.contextmanager
def monitor_process(url: str):
    port = free_port()
    proc = subprocess.Popen(SWFFLOW + ["monitor", "--state", url, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/v1/runs", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the monitor did not start: {proc.stderr.read()}")
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def page_load(client, base: str) -> float:
    """The HTML, then the first event with the model: what the page needs to draw."""
    start = time.perf_counter()
    client.get(f"{base}/").raise_for_status()
    with client.stream("GET", f"{base}/api/v1/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                break
    return time.perf_counter() - start


def latencies(base: str, samples: int) -> dict[str, float]:
    import httpx

    with httpx.Client(timeout=30) as client:
        client.get(f"{base}/api/v1/runs").raise_for_status()  # warm
        runs = []
        for _ in range(samples):
            start = time.perf_counter()
            response = client.get(f"{base}/api/v1/runs")
            runs.append(time.perf_counter() - start)
            response.raise_for_status()
        size = len(response.content)
        pages = [page_load(client, base) for _ in range(max(10, samples // 10))]
    return {"runs_p50_ms": percentile(runs, 0.5) * 1000, "runs_p99_ms": percentile(runs, 0.99) * 1000,
            "runs_bytes": size, "page_p50_ms": percentile(pages, 0.5) * 1000,
            "page_p99_ms": percentile(pages, 0.99) * 1000}


# --- 2. the flood --------------------------------------------------------------------------

def flood_rate(tmp: Path, log: Path, n: int, cpu: list[float] | None = None) -> float:
    """Replay the log into a fresh bridge; STFs attached per second until all are attached
    (and, into ``cpu``, the bridge's CPU milliseconds per STF: what the machine's load does
    not change, unless the monitor makes the bridge work more — locks, retries)."""
    from swfflow.stream.bridge.setup import build_bridge
    from swfflow.stream.bridge.sources import replay

    with contextlib.ExitStack() as stack:
        bridge = build_bridge(setup_for(tmp, backend="dryrun", state=STATE_OF(tmp)), stack,
                              publish=lambda *a: None)
        start, cpu_start = time.perf_counter(), time.process_time()
        replay(bridge, log)
        deadline = time.monotonic() + 600
        attached = lambda b: sum(b.store.file_counts(r["run_id"])[1]
                                 for r in b.store.runs()) >= n
        bridge.run(until=lambda b: (b.idle and attached(b)) or time.monotonic() > deadline)
        elapsed = time.perf_counter() - start
        if cpu is not None:
            cpu.append((time.process_time() - cpu_start) / n * 1000)
        assert attached(bridge), "the flood was not drained"
    return n / elapsed


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def STATE_OF(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'state' / 'bridge.db'}"


# What is attached to a deployed monitor: one open page (its event stream) and a Prometheus
# scraping /metrics every second. A process of its own, importing httpx only, that says
# "ready" once both have had an answer: its start-up must not overlap the measured flood.
CLIENTS = """
import sys, threading, time, httpx
base = sys.argv[1]
first = threading.Event()
def page():
    with httpx.Client(timeout=None) as client, client.stream("GET", base + "/api/v1/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                first.set()
threading.Thread(target=page, daemon=True).start()
with httpx.Client(timeout=30) as client:
    client.get(base + "/metrics").raise_for_status()
    first.wait(60)
    print("ready", flush=True)
    while True:
        time.sleep(1.0)
        client.get(base + "/metrics")
"""


@contextlib.contextmanager
def attached_monitor(url: str):
    """A monitor process with one open page (event stream) and a scraper, for the flood. The
    page and the scraper run in a process of their own, as a browser and Prometheus would:
    as threads of this process (the bridge's) they took its interpreter lock, which a
    deployed monitor never does."""
    with monitor_process(url) as (base, pid):
        clients = subprocess.Popen([sys.executable, "-c", CLIENTS, base], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            ready = threading.Timer(90, clients.kill)  # a bound on the wait for "ready"
            ready.start()
            line = clients.stdout.readline()
            ready.cancel()
            if line.strip() != "ready":
                raise SystemExit("the page/scraper process did not get answers from the monitor")
            yield pid
        finally:
            clients.terminate()
            clients.wait(timeout=30)


def flood(tmp: Path, n: int, rounds: int) -> dict[str, float]:
    """``rounds`` measurements, each a flood alone and one monitored (fresh stores) back to
    back, so a change in the machine's load falls on both; the ratio of each pair and the
    median of those ratios."""
    from swfflow.state import state_engine
    from swfflow.stream.store import BridgeStore

    log = tmp / "flood.jsonl"
    summary = simulate(tmp, text=FLOOD_SCHEDULE % max(1, n // 1000), record=log, stf_size=64)
    stfs = summary.stf_files
    rates: dict[str, list[float]] = {"alone": [], "monitored": []}
    bridge_cpu: dict[str, list[float]] = {"alone": [], "monitored": []}  # ms per STF
    monitor_cpu: list[float] = []  # the monitor process's CPU seconds per second of flood
    def monitored(folder: Path) -> float:
        # the store exists before the monitor opens it (the bridge creates its tables)
        BridgeStore(state_engine(STATE_OF(folder))).engine.dispose()
        with attached_monitor(STATE_OF(folder)) as pid:
            cpu, wall = cpu_seconds(pid), time.perf_counter()
            rate = flood_rate(folder, log, stfs, bridge_cpu["monitored"])
            monitor_cpu.append((cpu_seconds(pid) - cpu) / (time.perf_counter() - wall))
        return rate

    for i in range(rounds):
        # which goes first alternates: neither gets the warmer caches every time
        for kind in (("alone", "monitored") if i % 2 == 0 else ("monitored", "alone")):
            folder = tmp / f"{kind}{i}"
            folder.mkdir()
            rates[kind].append(flood_rate(folder, log, stfs, bridge_cpu["alone"])
                               if kind == "alone" else monitored(folder))
    ratios = [m / a for a, m in zip(rates["alone"], rates["monitored"], strict=True)]
    return {"stfs": stfs, "alone_per_s": statistics.median(rates["alone"]),
            "monitored_per_s": statistics.median(rates["monitored"]),
            "ratio": statistics.median(ratios), "ratios": ratios, "all": rates,
            "monitor_cpu_share": statistics.median(monitor_cpu),
            "bridge_cpu_ms_per_stf": {k: statistics.median(v) for k, v in bridge_cpu.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--stfs", type=int, default=100)
    parser.add_argument("--flood", type=int, default=15000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swfflow-bench-monitor-") as folder:
        tmp = Path(folder)
        url = f"sqlite:///{tmp / 'big.db'}"
        fill_store(url, args.runs, args.tasks, args.jobs, args.stfs)
        reads = collect_times(url, 20)
        with monitor_process(url) as (base, _):
            served = latencies(base, args.samples)
        flooded = flood(tmp, args.flood, args.rounds)
    result = {"runs": args.runs, "tasks_per_run": args.tasks, **{k: round(v, 1) for k, v in
              served.items()}, "store_read_p50_ms": round(percentile(reads, 0.5) * 1000, 1),
              "store_read_p99_ms": round(percentile(reads, 0.99) * 1000, 1), "flood_stfs": flooded["stfs"],
              "flood_alone_per_s": round(flooded["alone_per_s"]),
              "flood_monitored_per_s": round(flooded["monitored_per_s"]),
              "flood_ratio": round(flooded["ratio"], 3),
              "flood_ratios": [round(r, 3) for r in flooded["ratios"]],
              "monitor_cpu_share_during_flood": round(flooded["monitor_cpu_share"], 3),
              "bridge_cpu_ms_per_stf": {k: round(v, 3) for k, v in
                                        flooded["bridge_cpu_ms_per_stf"].items()}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.runs} runs x {args.tasks} tasks: GET /api/v1/runs p50 "
          f"{result['runs_p50_ms']} ms, p99 {result['runs_p99_ms']} ms (goal < 50 ms; "
          f"{result['runs_bytes']} bytes)")
    print(f"one read of the whole store into the model (what each poll costs, off the request "
          f"path): p50 {result['store_read_p50_ms']} ms, p99 {result['store_read_p99_ms']} ms")
    print(f"page load (HTML + first event with the model): p50 {result['page_p50_ms']} ms, "
          f"p99 {result['page_p99_ms']} ms (goal < 200 ms)")
    print(f"flood of {flooded['stfs']} STFs: {result['flood_alone_per_s']} STF/s alone, "
          f"{result['flood_monitored_per_s']} STF/s with the monitor attached: ratio "
          f"{result['flood_ratio']} (goal >= 0.95; the median of {len(flooded['ratios'])} "
          f"measurements: {result['flood_ratios']}); each round: "
          f"{[round(r) for r in flooded['all']['alone']]} alone, "
          f"{[round(r) for r in flooded['all']['monitored']]} monitored")
    print(f"the monitor process used {result['monitor_cpu_share_during_flood']:.1%} of one core "
          f"during the flood (its own cost, whatever else shares the machine)")
    cpu = result["bridge_cpu_ms_per_stf"]
    print(f"the bridge's CPU per STF: {cpu['alone']} ms alone, {cpu['monitored']} ms monitored "
          f"(ratio {cpu['alone'] / cpu['monitored']:.3f}: its work, apart from the machine's load)")


if __name__ == "__main__":
    main()
