"""Stream bridge throughput and latency, next to the raw Rucio attach rate (same services).

    python bench/bridge.py [--rate-hz 2] [--seconds 30] [--flood 6000] [--json]

Starts its own ActiveMQ and Rucio (a fresh database, ``swfflow services`` in a temporary
directory, removed at the end: figures do not depend on what an earlier run left in a shared
Rucio) and runs the PanDA contract server in-process (tasks run nothing: this measures the
bridge, not payloads). Then:

1. raw Rucio: ``RucioCatalog.add_files`` of ``--raw`` files into an open dataset, 500 per
   call: without metadata, one client and two at once; with the per-file run_number/sequence
   metadata (Rucio sets it file by file: its slow path); and into a dataset with the same
   replication rules as the bridge's run dataset, two clients (the judge-evaluator then works
   for every attached file too: the ceiling any client reaches here);
2. latency: the DAQ simulator paced in real time emits stf_gen at ``--rate-hz`` for
   ``--seconds`` over ActiveMQ; per STF, stf_gen sent (its timestamp) → attached in Rucio
   (committed in the bridge store); p50/p99;
3. sustained rate: the simulator floods ``--flood`` stf_gen into the bridge's durable
   subscription, then the bridge drains that backlog: STFs attached per second between its
   first and its last attach batch (steady state), the bridge process's CPU per STF, and when
   the deferred metadata of the last STF was set.

Goals (issue 6): p99 < 1 s at 2 Hz, sustained ≥ 500 STF/s. On one 2-core machine the
sustained rate is bound by the services sharing the cores (Rucio's server and judge,
PostgreSQL, ActiveMQ): compare it with (1), and see the bridge's own CPU per STF.
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

SCHEDULE = """\
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
- {state: run, substate: physics, span: "0,0,0,0,%d", stf_interval: %s}
- {state: beam, substate: not_ready, span: "0,0,0,0,1"}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def raw_rucio_rate(catalog, tmp: Path, n: int, *, meta: bool = False, clients: int = 1,
                   rules=()) -> float:
    """Files/s of batched ``add_files`` into one new open dataset, from ``clients`` threads."""
    from swfflow.backends.base import FileRecord
    from swfflow.checksum import write_sparse_file

    run = uuid.uuid4().hex[:10]
    did = f"group.daq:bench.{run}.raw"
    catalog.create_dataset(did, rules=rules)
    folder = tmp / "raw"
    folder.mkdir(exist_ok=True)
    records = []
    for i in range(n):
        path = folder / f"bench.{run}.{i:06d}.stf"
        checksum = write_sparse_file(path, f"{run} {i}\n".encode(), 4096)
        records.append(FileRecord(did=f"group.daq:{path.name}", size=4096, adler32=checksum,
                                  pfn=str(path),
                                  meta={"run_number": 100010, "sequence": i + 1} if meta
                                  else {}))
    shares = [records[i::clients] for i in range(clients)]
    workers = [threading.Thread(target=catalog.for_thread().add_files, args=(did, share))
               for share in shares]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = n / (time.perf_counter() - started)
    wait_for_judge(catalog, did, n * len(rules))
    return rate


def wait_for_judge(catalog, did: str, locks: int, timeout: float = 300.0) -> None:
    """Until Rucio's judge-evaluator has made the locks of every rule on ``did`` (it works
    after the attach, for every file): the next phase gets the cores to itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        made = sum(r["locks_ok_cnt"] + r["locks_replicating_cnt"] + r["locks_stuck_cnt"]
                   for r in catalog.list_rules(did))
        if made >= locks:
            return
        time.sleep(1.0)


def bridge_phase(tmp: Path, url: str, schedule: str, *, backlog: bool, panda_url: str
                 ) -> dict:
    """One simulated run through a bridge; ``backlog``: the whole run is published before the
    bridge starts (it drains it), else the simulator runs while the bridge does."""
    from swfflow.stream.bridge.setup import Setup, build_bridge
    from swfflow.stream.bridge.sources import subscribe
    from swfflow.stream.bus import open_bus
    from swfflow.stream.messages import EPIC_TOPIC, parse_message
    from swfflow.stream.store import FILES, PHASE_DONE

    name = f"bench-{uuid.uuid4().hex[:8]}"
    with open_bus(url) as bus:
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).close()
    setup = Setup(workflow=str(WORKFLOW), profile=str(PROFILE), catalog="rucio", backend="panda",
                  state=f"sqlite:///{tmp / f'{name}.db'}", workdir=tmp / "work",
                  rucio_config=os.environ["RUCIO_CONFIG"], panda_url=panda_url,
                  options={"batch_ms": 50.0, "batch_size": 500, "tick_s": 1.0,
                           "emit_ready": True, "namespace": name})
    log = tmp / f"{name}.jsonl"

    def publish() -> None:
        with open_bus(url) as sim_bus:
            simulate(tmp, text=schedule, bus=sim_bus, record=log, fast=backlog, factor=1.0,
                     namespace=name, first_run=first_run_number(),
                     counter=tmp / f"{name}.counter")

    if backlog:
        publish()
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(open_bus(url))
        bridge = build_bridge(setup, stack, publish=bus.publish)
        cpu0 = time.process_time()
        subscribe(bridge, bus, EPIC_TOPIC, name)

        def done(b) -> bool:  # idle first: the store is read only when it may be true
            return b.idle and bool(b.store.runs((PHASE_DONE,)))

        worker = threading.Thread(target=bridge.run, kwargs={"until": done})
        worker.start()
        if not backlog:
            publish()
        worker.join(timeout=900)
        cpu = time.process_time() - cpu0
        with bridge.store.engine.connect() as conn:
            rows = conn.execute(FILES.select()).all()
    with open_bus(url) as bus:  # a broker keeps messages for a durable subscription: drop it
        bus.subscribe(EPIC_TOPIC, lambda d: None, durable_name=name).forget()
    sent = {}
    for line in log.read_text().splitlines():
        message = parse_message(line)
        if message.msg_type == "stf_gen":
            sent[message.filename] = message.timestamp.timestamp()
    first = min(r.attached_at for r in rows)
    last = max(r.attached_at for r in rows)
    after_first = sum(r.attached_at > first for r in rows)
    return {"stfs": len(rows), "latencies": [r.attached_at - sent[r.filename] for r in rows],
            "steady_per_s": after_first / (last - first) if last > first else float("inf"),
            "metadata_done_after_s": max(r.meta_at for r in rows) - last,
            "cpu_ms_per_stf": 1000 * cpu / len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--flood", type=int, default=6000)
    parser.add_argument("--raw", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from swfflow import services
    from swfflow.backends.rucio import RucioCatalog
    from swfflow.services.rucio_server import client_config
    from swfflow.stream.bridge.setup import load_template
    from swfflow.testing.panda_runner import StateMachineRunner
    from swfflow.testing.panda_server import PandaContractServer

    state = Path(tempfile.mkdtemp(prefix="swfflow-bench-services-"))
    try:
        broker, _ = services.up(["activemq", "rucio"], state=state,
                                fresh_session=uuid.uuid4().hex[:12])
        os.environ["RUCIO_CONFIG"] = str(client_config(services.ServiceHome(state, "rucio")))
        catalog = RucioCatalog.from_config(os.environ["RUCIO_CONFIG"])
        template, _ = load_template(str(WORKFLOW), None, str(PROFILE))
        (stream,) = [d for d in template.datasets if d.role == "stream"]
        with tempfile.TemporaryDirectory() as tmp_name, \
                PandaContractServer(runner=StateMachineRunner(run_s=0.5), tick_s=0.2) as panda:
            tmp = Path(tmp_name)
            for var in ("PANDA_URL", "PANDA_URL_SSL", "PANDACACHE_URL"):
                os.environ[var] = panda.url
            raw = {"no metadata, 1 client": raw_rucio_rate(catalog, tmp, args.raw),
                   "no metadata, 2 clients": raw_rucio_rate(catalog, tmp, args.raw, clients=2),
                   "with metadata, 1 client": raw_rucio_rate(catalog, tmp, args.raw, meta=True),
                   "run dataset's rules, 2 clients": raw_rucio_rate(
                       catalog, tmp, args.raw, clients=2, rules=stream.rules)}
            (tmp / "paced").mkdir()
            paced = bridge_phase(tmp / "paced", broker.url,
                                 SCHEDULE % (args.seconds, 1.0 / args.rate_hz),
                                 backlog=False, panda_url=panda.url)
            (tmp / "flood").mkdir()
            flood = bridge_phase(tmp / "flood", broker.url,
                                 SCHEDULE % (max(1, args.flood // 1000), 0.001),
                                 backlog=True, panda_url=panda.url)
    finally:
        services.purge(state)
    report(args, raw, paced, flood)


def report(args, raw: dict, paced: dict, flood: dict) -> None:
    ceiling = raw["run dataset's rules, 2 clients"]
    result = {
        "raw_rucio_attach_per_s": {k: round(v, 1) for k, v in raw.items()},
        "paced_rate_hz": args.rate_hz, "paced_stfs": paced["stfs"],
        "latency_p50_s": round(statistics.median(paced["latencies"]), 3),
        "latency_p99_s": round(percentile(paced["latencies"], 0.99), 3),
        "latency_max_s": round(max(paced["latencies"]), 3),
        "flood_stfs": flood["stfs"], "sustained_attach_per_s": round(flood["steady_per_s"], 1),
        "sustained_vs_raw_with_rules": round(flood["steady_per_s"] / ceiling, 2),
        "metadata_done_after_last_attach_s": round(flood["metadata_done_after_s"], 1),
        "bridge_cpu_ms_per_stf": round(flood["cpu_ms_per_stf"], 3),
        "bridge_stf_per_cpu_s": round(1000 / flood["cpu_ms_per_stf"]),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for label, rate in result["raw_rucio_attach_per_s"].items():
        print(f"raw Rucio attach, {label + ':':<32} {rate:>8} files/s")
    print(f"bridge at {args.rate_hz} Hz ({paced['stfs']} STFs): stf_gen → attached  "
          f"p50 {result['latency_p50_s']} s  p99 {result['latency_p99_s']} s  "
          f"max {result['latency_max_s']} s   (goal p99 < 1 s)")
    print(f"bridge draining a flood of {flood['stfs']} STFs: sustained "
          f"{result['sustained_attach_per_s']} STF/s = {result['sustained_vs_raw_with_rules']}x "
          "raw Rucio into a dataset with the same rules   (goal ≥ 500 STF/s)")
    print(f"  metadata of the last STF set {result['metadata_done_after_last_attach_s']} s "
          f"after the last attach; bridge CPU {result['bridge_cpu_ms_per_stf']} ms per STF "
          f"(≈ {result['bridge_stf_per_cpu_s']} STF per CPU-second)")


if __name__ == "__main__":
    main()
