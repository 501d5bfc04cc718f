"""Benchmark the DAQ simulator: a 24-hour physics day in --fast mode, and the message rate it
sustains into ActiveMQ.

    python bench/daqsim.py [--broker stomp://127.0.0.1:61613] [--stf-size 2GB]

The broker comes from --broker, else $SWFFLOW_STOMP_URL, else a broker started with
`swfflow services up`; without one only the in-process figures are printed. Baselines are
measured in the same run: creating as many empty files as the day has STFs (the filesystem
floor), and publishing the same bodies with bare stomp.py (the transport floor).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import stomp

from swfflow.daqsim.runs import RunCounter
from swfflow.daqsim.schedule import load_schedule, parse_size
from swfflow.daqsim.sim import DaqSimulator, SimConfig
from swfflow.stream.bus import open_bus

REPO = Path(__file__).resolve().parents[1]
GOAL_DAY_S = 60.0


def simulate(schedule: Path, workdir: Path, stf_size: int, broker: str | None):
    """One fast simulation; returns (summary, recorded JSON lines)."""
    buffer = Path(tempfile.mkdtemp(dir=workdir, prefix="buffer-"))
    config = SimConfig(buffer=buffer, seed=1, stf_size=(stf_size, stf_size),
                       namespace="bench", start_time=datetime(2026, 3, 2, tzinfo=timezone.utc))
    sink = io.StringIO()
    bus = open_bus(broker) if broker else None
    started = time.perf_counter()
    try:
        summary = DaqSimulator(load_schedule(schedule), config, bus,
                               RunCounter(workdir / "run-counter"), record=sink).simulate()
    finally:
        if bus:
            bus.close()  # waits for the broker's receipt: everything is stored
    summary.wall_s = time.perf_counter() - started
    shutil.rmtree(buffer)
    return summary, sink.getvalue().splitlines()


def empty_files_floor(count: int, workdir: Path) -> float:
    directory = Path(tempfile.mkdtemp(dir=workdir, prefix="floor-"))
    started = time.perf_counter()
    for index in range(count):
        with open(directory / f"f{index:06d}", "xb"):
            pass
    elapsed = time.perf_counter() - started
    shutil.rmtree(directory)
    return elapsed


def bare_stomp_floor(broker: str, bodies: list[str]) -> float:
    """Publish the same bodies persistently with plain stomp.py, one receipt at the end."""
    from urllib.parse import urlsplit

    parts = urlsplit(broker)
    conn = stomp.Connection11([(parts.hostname, parts.port)], auto_content_length=False)
    conn.connect(parts.username, parts.password, wait=True)
    listener = stomp.listener.WaitingListener("bench-done")
    conn.set_listener("wait", listener)
    started = time.perf_counter()
    for body in bodies:
        conn.send("/topic/epictopic", body, headers={"persistent": "true"})
    conn.disconnect(receipt="bench-done")
    listener.wait_on_receipt()
    return time.perf_counter() - started


def find_broker(argument: str | None) -> str | None:
    if argument or os.environ.get("SWFFLOW_STOMP_URL"):
        return argument or os.environ["SWFFLOW_STOMP_URL"]
    try:
        from swfflow import services

        return services.stomp_url()
    except Exception:  # no services module state: run without a broker
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=None, help="stomp://host:port of an ActiveMQ")
    parser.add_argument("--stf-size", default="2GB", help="STF size for the day (sparse)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    broker = find_broker(args.broker)
    stf_size = int(parse_size(args.stf_size))
    figures: dict[str, object] = {"stf_size": stf_size, "broker": broker}

    with tempfile.TemporaryDirectory(prefix="swfflow-bench-") as tmp:
        workdir = Path(tmp)
        day, _ = simulate(REPO / "schedules/physics-day.yaml", workdir, stf_size, "memory://bench")
        floor = empty_files_floor(day.stf_files, workdir)
        figures["day_memory"] = {
            "wall_s": round(day.wall_s, 2), "goal_s": GOAL_DAY_S,
            "meets_goal": day.wall_s < GOAL_DAY_S, "stf_files": day.stf_files,
            "messages": sum(day.messages.values()),
            "speedup_vs_real_time": round(day.simulated_s / day.wall_s),
            "empty_file_floor_s": round(floor, 2),
            "ratio_vs_floor": round(day.wall_s / floor, 1),
        }
        if broker:
            day_mq, _ = simulate(REPO / "schedules/physics-day.yaml", workdir, stf_size, broker)
            stress, lines = simulate(REPO / "schedules/stress.yaml", workdir, 4096, broker)
            stress_messages = sum(stress.messages.values())
            bare = bare_stomp_floor(broker, lines)
            figures["day_activemq"] = {
                "wall_s": round(day_mq.wall_s, 2), "meets_goal": day_mq.wall_s < GOAL_DAY_S,
                "messages_per_s": round(sum(day_mq.messages.values()) / day_mq.wall_s),
            }
            figures["stress_activemq"] = {
                "messages": stress_messages, "wall_s": round(stress.wall_s, 2),
                "messages_per_s": round(stress_messages / stress.wall_s),
                "bare_stomp_py_messages_per_s": round(len(lines) / bare),
                "ratio_vs_bare_stomp_py": round(stress.wall_s / bare, 2),
            }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    mem = figures["day_memory"]
    print(f"24 h physics day, --fast, {stf_size:,}-byte sparse STFs, in-process bus:")
    print(f"  {mem['wall_s']} s wall (goal < {GOAL_DAY_S:.0f} s: "
          f"{'met' if mem['meets_goal'] else 'MISSED'}), {mem['stf_files']} STFs, "
          f"{mem['messages']} messages, {mem['speedup_vs_real_time']}x real time")
    print(f"  floor: creating {mem['stf_files']} empty files takes {mem['empty_file_floor_s']} s "
          f"→ simulator/floor = {mem['ratio_vs_floor']}x")
    if not broker:
        print("no broker: pass --broker stomp://host:port or set SWFFLOW_STOMP_URL for the "
              "ActiveMQ figures")
        return
    mq, stress = figures["day_activemq"], figures["stress_activemq"]
    print(f"same day into ActiveMQ ({broker}): {mq['wall_s']} s, {mq['messages_per_s']} msg/s")
    print(f"stress schedule into ActiveMQ: {stress['messages']} messages in {stress['wall_s']} s "
          f"= {stress['messages_per_s']} msg/s sustained (with 4 KiB STF files)")
    print(f"  floor: bare stomp.py persistent publish of the same bodies "
          f"{stress['bare_stomp_py_messages_per_s']} msg/s → simulator/floor time = "
          f"{stress['ratio_vs_bare_stomp_py']}x")


if __name__ == "__main__":
    main()
