"""Stream bridge throughput and latency, next to the raw Rucio attach rate (same services).

    python bench/bridge.py [--rate-hz 2] [--seconds 30] [--flood 3000]

Starts (or reuses) the local ActiveMQ + Rucio services (``swfflow services``), runs the PanDA
contract server in-process (tasks run nothing: this measures the bridge, not payloads), then:

1. raw Rucio: ``RucioCatalog.add_files`` of ``--flood`` files into one open dataset, batched,
   without and with the per-file run_number/sequence metadata the bridge registers (Rucio
   sets metadata file by file: the second is the ceiling any bridge can reach here);
2. latency: the DAQ simulator paced in real time emits stf_gen at ``--rate-hz`` for
   ``--seconds`` over ActiveMQ; per STF, stf_gen sent (its timestamp) → attached in Rucio
   (committed in the bridge store); p50/p99;
3. sustained rate: the simulator floods ``--flood`` stf_gen as fast as it can; STFs attached
   per second from the first stf_gen received to the last attach.

Prints one table; goals (issue 6): p99 < 1 s at 2 Hz, sustained ≥ 500 STF/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")

from tests.bridge_support import PROFILE, WORKFLOW, first_run_number, simulate  # noqa: E402

FLOOD_SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: 0.001}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""
PACED_SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: %s}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raw_rucio_rate(catalog, tmp: Path, n: int, with_meta: bool = False) -> float:
    """Files/s of one batched ``add_files`` call; ``with_meta``: each file carries the
    run_number/sequence metadata the bridge attaches it with (Rucio sets it file by file)."""
    from swfflow.backends.base import FileRecord
    from swfflow.checksum import write_sparse_file

    run = uuid.uuid4().hex[:10]
    did = f"group.daq:bench.{run}.raw"
    catalog.create_dataset(did)
    folder = tmp / "raw"
    folder.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        path = folder / f"bench.{run}.{i:06d}.stf"
        checksum = write_sparse_file(path, f"{run} {i}\n".encode(), 4096)
        meta = {"run_number": 100010, "sequence": i + 1} if with_meta else {}
        records.append(FileRecord(did=f"group.daq:{path.name}", size=4096, adler32=checksum,
                                  pfn=str(path), meta=meta))
    started = time.perf_counter()
    catalog.add_files(did, records)
    return n / (time.perf_counter() - started)


def bridge_phase(tmp: Path, url: str, schedule: str, *, fast: bool, panda_url: str,
                 expected_runs: int = 1) -> tuple[list[float], float, int]:
    """(latencies from stf_gen timestamp, attached per second, STFs) for one simulated run."""
    from swfflow.stream.bridge.setup import Setup, build_bridge
    from swfflow.stream.bridge.sources import subscribe
    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC, parse_message
    from swfflow.stream.store import FILES

    name = f"bench-{uuid.uuid4().hex[:8]}"
    with open_bus(url) as bus:
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).close()
    setup = Setup(workflow=str(WORKFLOW), profile=str(PROFILE), catalog="rucio", backend="panda",
                  state=f"sqlite:///{tmp / f'{name}.db'}", workdir=tmp / "work",
                  rucio_config=os.environ["RUCIO_CONFIG"], panda_url=panda_url,
                  options={"batch_ms": 50.0, "batch_size": 500, "tick_s": 1.0,
                           "emit_ready": True})
    log = tmp / f"{name}.jsonl"
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(url))
        bridge = build_bridge(setup, stack, publish=bus.publish)
        subscribe(bridge, bus, EPIC_TOPIC, name)
        done = threading.Event()

        def closed(b) -> bool:
            runs = b.store.runs()
            return (len(runs) >= expected_runs and all(r["closed_at"] for r in runs)
                    and b.idle) or done.is_set()

        worker = threading.Thread(target=bridge.run, kwargs={"until": closed})
        worker.start()
        with open_bus(url) as sim_bus:
            simulate(tmp, text=schedule, bus=sim_bus, record=log, fast=fast, factor=1.0,
                     first_run=first_run_number(), counter=tmp / f"{name}.counter")
        worker.join(timeout=600)
        done.set()
        worker.join()
        sent = {}
        for line in log.read_text().splitlines():
            message = parse_message(line)
            if message.msg_type == "stf_gen":
                sent[message.filename] = message.timestamp.timestamp()
        with bridge.store.engine.connect() as conn:
            rows = conn.execute(FILES.select()).all()
    latencies = [r.attached_at - sent[r.filename] for r in rows if r.attached_at]
    span = max(r.attached_at for r in rows) - min(r.gen_at for r in rows)
    return latencies, len(rows) / span if span > 0 else float("inf"), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from swfflow import services
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.services.rucio_server import client_config
    from swfflow.services.state import state_dir
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    broker, rucio = services.up(["activemq", "rucio"])
    os.environ["RUCIO_CONFIG"] = str(client_config(services.ServiceHome(state_dir(None),
                                                                        "rucio")))
    catalog = RucioCatalog.from_config(os.environ["RUCIO_CONFIG"])
    with tempfile.TemporaryDirectory() as tmp_name, \
            PandaContractServer(runner=StateMachineRunner(run_s=0.5), tick_s=0.2) as panda:
        tmp = Path(tmp_name)
        for var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
            os.environ[var] = panda.url
        raw = raw_rucio_rate(catalog, tmp, args.flood)
        raw_meta = raw_rucio_rate(catalog, tmp, args.flood, with_meta=True)
        paced = PACED_SCHEDULE % (args.seconds, 1.0 / args.rate_hz)
        (tmp / "paced").mkdir()
        latencies, _, paced_n = bridge_phase(tmp / "paced", broker.url, paced, fast=False,
                                             panda_url=panda.url)
        flood = FLOOD_SCHEDULE % max(1, args.flood // 1000)
        (tmp / "flood").mkdir()
        _, sustained, flood_n = bridge_phase(tmp / "flood", broker.url, flood, fast=True,
                                             panda_url=panda.url)
    result = {
        "raw_rucio_attach_per_s": round(raw, 1),
        "raw_rucio_attach_with_meta_per_s": round(raw_meta, 1),
        "paced_rate_hz": args.rate_hz, "paced_stfs": paced_n,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(percentile(latencies, 0.99), 3),
        "latency_max_s": round(max(latencies), 3),
        "flood_stfs": flood_n, "sustained_attach_per_s": round(sustained, 1),
        "sustained_vs_raw": round(sustained / raw, 2),
        "sustained_vs_raw_with_meta": round(sustained / raw_meta, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"raw Rucio attach (add_files, batched):   {result['raw_rucio_attach_per_s']:>8} files/s")
    print(f"  … with run_number/sequence metadata:   "
          f"{result['raw_rucio_attach_with_meta_per_s']:>8} files/s  (what the bridge sends)")
    print(f"bridge at {args.rate_hz} Hz ({paced_n} STFs): stf_gen → attached  "
          f"p50 {result['latency_p50_s']} s  p99 {result['latency_p99_s']} s  "
          f"max {result['latency_max_s']} s   (goal p99 < 1 s)")
    print(f"bridge flood ({flood_n} STFs): sustained {result['sustained_attach_per_s']} STF/s "
          f"= {result['sustained_vs_raw']}x raw Rucio, {result['sustained_vs_raw_with_meta']}x "
          "raw with metadata   (goal ≥ 500 STF/s)")


if __name__ == "__main__":
    main()
